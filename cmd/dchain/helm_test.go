package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	bkconfig "github.com/moby/buildkit/cmd/buildkitd/config"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/common"
	chartutil "helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	release "helm.sh/helm/v4/pkg/release/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/dchain-dev/dchain/buildnet"
	"github.com/dchain-dev/dchain/chain"
)

// The Helm chart (deploy/helm/dchain), rendered by Helm's own install
// action (client-only dry run, as `helm template` does) with its default
// values and with ci/full-values.yaml (every option on), then checked the
// way the compose test checks docker-compose.yml.
var helmChart = filepath.Join(repoRoot, "deploy", "helm", "dchain")

// helmValueFiles are the values the chart is tested with ("" is the defaults).
var helmValueFiles = []string{"", filepath.Join(helmChart, "ci", "full-values.yaml")}

// helmValues is what the checks need of the chart's values (defaults and
// the file's, coalesced by Helm).
type helmValues struct {
	Image    struct{ Repository, Tag, Digest string }
	Temporal struct {
		Address, Namespace string
		TLS                struct {
			Enabled                       bool
			SecretName, CAKey, ServerName string
		} `json:"tls"`
		APIKey struct{ SecretName, Key string } `json:"apiKey"`
	}
	SourceRegistries []helmRegion `json:"sourceRegistries"`
	Regions          []helmRegion
	RegionWorker     struct {
		ExtraArgs []string `json:"extraArgs"`
	} `json:"regionWorker"`
	ChainWorker struct {
		SecretName string   `json:"secretName"`
		ExtraArgs  []string `json:"extraArgs"`
	} `json:"chainWorker"`
	API struct {
		Port       int
		SecretName string   `json:"secretName"`
		ExtraArgs  []string `json:"extraArgs"`
	} `json:"api"`
	Setup struct {
		Retention string
	}
	Ingress struct {
		Enabled bool
		Host    string
		TLS     struct{ SecretName string } `json:"tls"`
	}
	Metrics struct {
		Port           int
		ServiceMonitor struct{ Enabled bool } `json:"serviceMonitor"`
	}
	Tracing struct {
		OTLPEndpoint string `json:"otlpEndpoint"`
	}
	RegistryCA struct {
		ConfigMapName string `json:"configMapName"`
	} `json:"registryCA"`
	Trivy struct {
		Enabled bool
		Port    int
	}
	Buildkitd     struct{ Port int }
	NetworkPolicy struct {
		Enabled              bool
		BuildkitdExtraEgress []networkingv1.NetworkPolicyEgressRule `json:"buildkitdExtraEgress"`
	} `json:"networkPolicy"`
}

// helmRegion is an entry of the values' regions or sourceRegistries.
type helmRegion struct {
	Name       string   `json:"name"`
	SecretName string   `json:"secretName"`
	ExtraArgs  []string `json:"extraArgs"` // regions: over regionWorker's
}

// serviceMonitor is monitoring.coreos.com/v1 ServiceMonitor, the fields the
// chart writes (decoded strictly: any other field is an error).
type serviceMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Selector          metav1.LabelSelector `json:"selector"`
		NamespaceSelector struct {
			MatchNames []string `json:"matchNames"`
		} `json:"namespaceSelector"`
		Endpoints []struct {
			Port     string `json:"port"`
			Path     string `json:"path"`
			Interval string `json:"interval"`
		} `json:"endpoints"`
	} `json:"spec"`
}

// helmRelease is a rendered chart: its objects by kind, decoded into the
// Kubernetes API's types.
type helmRelease struct {
	values      helmValues
	appVersion  string
	namespace   string
	notes       string
	hooks       []*release.Hook
	configMaps  map[string]*corev1.ConfigMap
	services    map[string]*corev1.Service
	deployments map[string]*appsv1.Deployment
	jobs        map[string]*batchv1.Job
	pdbs        map[string]*policyv1.PodDisruptionBudget
	netpols     map[string]*networkingv1.NetworkPolicy
	ingresses   map[string]*networkingv1.Ingress
	monitors    map[string]*serviceMonitor
}

// renderHelm renders the chart with the values of file ("": the defaults)
// through Helm's install action, client-only, and decodes every manifest
// and hook strictly: a field the Kubernetes type lacks is an error.
func renderHelm(t *testing.T, file string) *helmRelease {
	t.Helper()
	vals := map[string]any{}
	if file != "" {
		v, err := common.ReadValuesFile(file)
		if err != nil {
			t.Fatal(err)
		}
		vals = v
	}
	return renderHelmValues(t, vals)
}

// renderHelmValues is renderHelm with values given as a map.
func renderHelmValues(t *testing.T, vals map[string]any) *helmRelease {
	t.Helper()
	ch, err := loader.Load(helmChart)
	if err != nil {
		t.Fatalf("load the chart: %v", err)
	}
	inst := helmInstall(t)
	r, err := inst.Run(ch, vals)
	if err != nil {
		t.Fatalf("helm install --dry-run=client: %v", err)
	}
	rel, ok := r.(*release.Release)
	if !ok {
		t.Fatalf("release of type %T", r)
	}
	h := &helmRelease{appVersion: ch.Metadata.AppVersion, namespace: inst.Namespace, notes: rel.Info.Notes, hooks: rel.Hooks,
		configMaps: map[string]*corev1.ConfigMap{}, services: map[string]*corev1.Service{}, deployments: map[string]*appsv1.Deployment{},
		jobs: map[string]*batchv1.Job{}, pdbs: map[string]*policyv1.PodDisruptionBudget{}, netpols: map[string]*networkingv1.NetworkPolicy{},
		ingresses: map[string]*networkingv1.Ingress{}, monitors: map[string]*serviceMonitor{}}
	coalesced, err := chartutil.CoalesceValues(ch, vals)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(coalesced)
	if err := json.Unmarshal(b, &h.values); err != nil {
		t.Fatalf("values: %v", err)
	}

	// Split as Helm's Kubernetes client does before sending the objects
	// (apimachinery's YAML reader: a document keeps its last line break).
	var docs []string
	for _, m := range slices.Concat([]string{rel.Manifest}, hookManifests(rel.Hooks)) {
		r := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(m)))
		for {
			doc, err := r.Read()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			docs = append(docs, string(doc))
		}
	}
	for _, doc := range docs {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
			t.Fatalf("a manifest that is not YAML: %v\n%s", err, doc)
		}
		var obj interface{ GetName() string }
		var add func()
		switch tm.APIVersion + " " + tm.Kind {
		case "v1 ConfigMap":
			o := &corev1.ConfigMap{}
			obj, add = o, func() { h.configMaps[o.Name] = o }
		case "v1 Service":
			o := &corev1.Service{}
			obj, add = o, func() { h.services[o.Name] = o }
		case "apps/v1 Deployment":
			o := &appsv1.Deployment{}
			obj, add = o, func() { h.deployments[o.Name] = o }
		case "batch/v1 Job":
			o := &batchv1.Job{}
			obj, add = o, func() { h.jobs[o.Name] = o }
		case "policy/v1 PodDisruptionBudget":
			o := &policyv1.PodDisruptionBudget{}
			obj, add = o, func() { h.pdbs[o.Name] = o }
		case "networking.k8s.io/v1 NetworkPolicy":
			o := &networkingv1.NetworkPolicy{}
			obj, add = o, func() { h.netpols[o.Name] = o }
		case "networking.k8s.io/v1 Ingress":
			o := &networkingv1.Ingress{}
			obj, add = o, func() { h.ingresses[o.Name] = o }
		case "monitoring.coreos.com/v1 ServiceMonitor":
			o := &serviceMonitor{}
			obj, add = o, func() { h.monitors[o.Name] = o }
		default:
			t.Fatalf("the chart renders a %s %s, which this test does not know (a Secret must never be one)\n%s", tm.APIVersion, tm.Kind, doc)
		}
		if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
			t.Fatalf("%s: %v\n%s", tm.Kind, err, doc)
		}
		if errs := validation.IsDNS1123Subdomain(obj.GetName()); len(errs) > 0 {
			t.Errorf("%s %q: %v", tm.Kind, obj.GetName(), errs)
		}
		add()
	}
	return h
}

// helmKubeVersion is the Kubernetes version the chart is rendered for.
const helmKubeVersion = "v1.33.0"

// helmInstall is `helm install --dry-run=client` (what `helm template`
// does): release dchain in namespace delivery, rendered for helmKubeVersion.
func helmInstall(t *testing.T) *action.Install {
	t.Helper()
	kv, err := common.ParseKubeVersion(helmKubeVersion)
	if err != nil {
		t.Fatal(err)
	}
	inst := action.NewInstall(action.NewConfiguration())
	inst.DryRunStrategy = action.DryRunClient
	inst.ReleaseName, inst.Namespace, inst.Replace, inst.KubeVersion = "dchain", "delivery", true, kv
	return inst
}

// hookManifests are the manifests of hooks.
func hookManifests(hooks []*release.Hook) []string {
	var ms []string
	for _, h := range hooks {
		ms = append(ms, h.Manifest)
	}
	return ms
}

// dchainContainer is a dchain process of the release: its pod, container
// and command line as the CLI parses it.
type dchainContainer struct {
	owner string // Deployment or Job
	pod   *corev1.PodTemplateSpec
	c     corev1.Container
	cmd   *cobra.Command
	set   []string // flags given
	role  string   // chains, region, api, setup
}

// dchainContainers are the containers running the dchain image; every one's
// command line parses with the CLI's real flags and arguments.
func (h *helmRelease) dchainContainers(t *testing.T) []dchainContainer {
	t.Helper()
	var out []dchainContainer
	for owner, pod := range h.podsOf() {
		for _, c := range slices.Concat(pod.Spec.InitContainers, pod.Spec.Containers) {
			if !strings.HasPrefix(c.Image, h.values.Image.Repository+":") {
				continue
			}
			if !slices.Equal(c.Command, []string{"dchain"}) {
				t.Errorf("%s: command %q, want [dchain] (the image's entrypoint, named)", owner, c.Command)
				continue
			}
			root := newRoot()
			cmd, rest, err := root.Find(c.Args)
			if err != nil || cmd == root {
				t.Errorf("%s: %q is not a dchain command (%v)", owner, c.Args, err)
				continue
			}
			if err := cmd.ParseFlags(rest); err != nil {
				t.Errorf("%s: %q: %v", owner, c.Args, err)
				continue
			}
			if err := cmd.ValidateArgs(cmd.Flags().Args()); err != nil {
				t.Errorf("%s: %q: %v", owner, c.Args, err)
			}
			dc := dchainContainer{owner: owner, pod: pod, c: c, cmd: cmd, set: flagsSet(cmd), role: cmd.Name()}
			if cmd.Name() == "worker" {
				regions, _ := cmd.Flags().GetStringSlice("region")
				chainsOnly, _ := cmd.Flags().GetBool("chains-only")
				switch {
				case chainsOnly && len(regions) == 0:
					dc.role = "chains"
				case len(regions) == 1 && !chainsOnly:
					dc.role = "region"
				default:
					t.Errorf("%s: %q: a worker is --chains-only or serves one --region", owner, c.Args)
				}
			}
			out = append(out, dc)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].owner < out[j].owner })
	return out
}

// flagsSet are the names of the flags given on a parsed command line.
func flagsSet(cmd *cobra.Command) []string {
	var set []string
	cmd.Flags().Visit(func(f *pflag.Flag) { set = append(set, f.Name) })
	sort.Strings(set)
	return set
}

// composeFlags are the flags compose's dchain service of the role gives
// (chains, region, api or setup; the same for every region worker).
func composeFlags(t *testing.T, role string) []string {
	t.Helper()
	var got []string
	for _, s := range loadCompose(t).Services {
		if s.Build == nil || len(s.Command) == 0 {
			continue // not dchain
		}
		root := newRoot()
		cmd, rest, err := root.Find(s.Command)
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.ParseFlags(rest); err != nil {
			t.Fatal(err)
		}
		r := cmd.Name()
		if r == "worker" {
			r = "region"
			if chainsOnly, _ := cmd.Flags().GetBool("chains-only"); chainsOnly {
				r = "chains"
			}
		}
		if r != role {
			continue
		}
		set := flagsSet(cmd)
		if got != nil && !slices.Equal(got, set) {
			t.Fatalf("compose's %s services differ in flags: %v and %v", role, got, set)
		}
		got = set
	}
	if got == nil {
		t.Fatalf("compose has no %s service", role)
	}
	return got
}

// extraFlags are the flag names of extra arguments from the values.
func extraFlags(args []string) []string {
	var names []string
	for _, a := range args {
		if n, ok := strings.CutPrefix(a, "--"); ok {
			n, _, _ = strings.Cut(n, "=")
			names = append(names, n)
		}
	}
	return names
}

// The chart's roles are compose's: one chain worker, exactly one region
// worker per values region (each a registry of the rendered dchain.yaml),
// one API and `dchain setup` as a pre-install/pre-upgrade hook, each
// with the flags of compose's service of that role (and the values' own);
// every dchain command line parses with the CLI's flags; every chain's
// source registry has its credentials' Secret and every registry a chain
// replicates into has its worker; images are pinned; every container has
// requests and a memory limit; Kubernetes names and selectors hold
// together (each Deployment's selector matches its pods, each Service
// selects pods with the port it targets, one PDB per API and worker).
func TestHelmChartRoles(t *testing.T) {
	for _, file := range helmValueFiles {
		t.Run(valuesName(file), func(t *testing.T) {
			h := renderHelm(t, file)
			v := h.values
			l := h.loadConfig(t)

			roles := map[string][]dchainContainer{}
			regionWorkers := map[string][]string{}
			for _, dc := range h.dchainContainers(t) {
				roles[dc.role] = append(roles[dc.role], dc)
				if dc.role == "region" {
					r, _ := dc.cmd.Flags().GetStringSlice("region")
					regionWorkers[r[0]] = append(regionWorkers[r[0]], dc.owner)
					if _, ok := l.Config.Registry(r[0]); !ok {
						t.Errorf("%s: --region %s is not a registry of the rendered dchain.yaml", dc.owner, r[0])
					}
				}
			}
			for role, want := range map[string]int{"chains": 1, "api": 1, "setup": 1} {
				if len(roles[role]) != want {
					t.Errorf("%d %s containers, want %d", len(roles[role]), role, want)
				}
			}
			var valueRegions []string
			for _, r := range v.Regions {
				valueRegions = append(valueRegions, r.Name)
				if len(regionWorkers[r.Name]) != 1 || !strings.HasPrefix(regionWorkers[r.Name][0], "Deployment ") {
					t.Errorf("region %s: workers %v, want one Deployment", r.Name, regionWorkers[r.Name])
				}
			}
			if len(regionWorkers) != len(v.Regions) {
				t.Errorf("region workers for %v, values regions %v", slices.Sorted(maps.Keys(regionWorkers)), valueRegions)
			}
			for _, ch := range l.Chains {
				if !slices.ContainsFunc(v.SourceRegistries, func(s helmRegion) bool { return s.Name == ch.Scope.Registry }) {
					t.Errorf("chain %s reads %s, which is not a source registry (no worker gets its credentials)", ch.Name, ch.Scope.Registry)
				}
				for _, r := range ch.Replication {
					if len(regionWorkers[r.Destination]) == 0 {
						t.Errorf("chain %s replicates into %s, which has no region worker", ch.Name, r.Destination)
					}
				}
			}

			// Every role gives the flags of compose's service of that role,
			// and those the values add.
			for _, dc := range slices.Concat(roles["chains"], roles["region"], roles["api"], roles["setup"]) {
				want := composeFlags(t, dc.role)
				var extra []string
				switch dc.role {
				case "chains":
					extra = v.ChainWorker.ExtraArgs
				case "region":
					extra = v.RegionWorker.ExtraArgs
					r, _ := dc.cmd.Flags().GetStringSlice("region")
					if i := slices.IndexFunc(v.Regions, func(x helmRegion) bool { return x.Name == r[0] }); i >= 0 && v.Regions[i].ExtraArgs != nil {
						extra = v.Regions[i].ExtraArgs
					}
				case "api":
					extra = v.API.ExtraArgs
				case "setup":
					if v.Setup.Retention != "" {
						extra = []string{"--retention"}
					}
				}
				want = slices.Compact(slices.Sorted(slices.Values(append(slices.Clone(want), extraFlags(extra)...))))
				if !slices.Equal(dc.set, want) {
					t.Errorf("%s: flags %v, want compose's %s service's and the values' (%v)", dc.owner, dc.set, dc.role, want)
				}
			}
			for _, dc := range roles["chains"] {
				bk, _ := dc.cmd.Flags().GetString("buildkit-addr")
				if svc := h.serviceAt(t, bk, "tcp://"); svc == "" || !strings.HasSuffix(svc, "-buildkitd") {
					t.Errorf("%s: --buildkit-addr %s is not the buildkitd Service (%q)", dc.owner, bk, svc)
				}
				if tv, _ := dc.cmd.Flags().GetString("trivy-server"); v.Trivy.Enabled {
					if svc := h.serviceAt(t, tv, "http://"); !strings.HasSuffix(svc, "-trivy") {
						t.Errorf("%s: --trivy-server %s is not the Trivy Service", dc.owner, tv)
					}
				}
			}
			for _, dc := range roles["setup"] {
				h.checkSetupHook(t, dc)
			}
			for _, dc := range h.dchainContainers(t) {
				env := envMap(dc.c)
				if env["TEMPORAL_ADDRESS"] != v.Temporal.Address || env["TEMPORAL_NAMESPACE"] != v.Temporal.Namespace {
					t.Errorf("%s: Temporal %s/%s, want %s/%s", dc.owner, env["TEMPORAL_ADDRESS"], env["TEMPORAL_NAMESPACE"], v.Temporal.Address, v.Temporal.Namespace)
				}
			}

			h.checkImagesAndResources(t)
			h.checkWiring(t)
		})
	}
}

// valuesName names a values file for a subtest.
func valuesName(file string) string {
	if file == "" {
		return "defaults"
	}
	return strings.TrimSuffix(filepath.Base(file), ".yaml")
}

// serviceAt is the name of the release's Service that addr (scheme://host:port)
// names, on one of its ports; "" if none.
func (h *helmRelease) serviceAt(t *testing.T, addr, scheme string) string {
	t.Helper()
	hostPort, ok := strings.CutPrefix(addr, scheme)
	if !ok {
		t.Errorf("%s: want %s…", addr, scheme)
		return ""
	}
	host, port, err := net.SplitHostPort(hostPort)
	if err != nil {
		t.Errorf("%s: %v", addr, err)
		return ""
	}
	svc, ok := h.services[host]
	if !ok {
		return ""
	}
	for _, p := range svc.Spec.Ports {
		if strconv.Itoa(int(p.Port)) == port {
			return host
		}
	}
	return ""
}

// loadConfig writes the config volume of the chain worker as Kubernetes
// would project it (the ConfigMap's keys at their paths) and loads it with
// dchain's own loader: the config and every chain validate.
func (h *helmRelease) loadConfig(t *testing.T) *chain.Loaded {
	t.Helper()
	dir := t.TempDir()
	var pod *corev1.PodTemplateSpec
	for _, d := range h.deployments {
		if d.Spec.Template.Labels["app.kubernetes.io/component"] == "chain-worker" {
			pod = &d.Spec.Template
		}
	}
	if pod == nil {
		t.Fatal("no chain worker Deployment")
	}
	mount := ""
	for _, m := range pod.Spec.Containers[0].VolumeMounts {
		if m.MountPath == "/etc/dchain" {
			mount = m.Name
			if !m.ReadOnly {
				t.Error("/etc/dchain is mounted writable")
			}
		}
	}
	if env := envMap(pod.Spec.Containers[0]); env["DCHAIN_CONFIG"] != "/etc/dchain/dchain.yaml" {
		t.Errorf("DCHAIN_CONFIG %q", env["DCHAIN_CONFIG"])
	}
	for _, vol := range pod.Spec.Volumes {
		if vol.Name != mount || vol.Projected == nil {
			continue
		}
		for _, src := range vol.Projected.Sources {
			if src.ConfigMap == nil {
				continue
			}
			cm, ok := h.configMaps[src.ConfigMap.Name]
			if !ok {
				continue // the registry CA: the user's
			}
			for _, it := range src.ConfigMap.Items {
				data, ok := cm.Data[it.Key]
				if !ok {
					t.Fatalf("config volume: ConfigMap %s lacks key %s", cm.Name, it.Key)
				}
				p := filepath.Join(dir, filepath.FromSlash(it.Path))
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	l, err := chain.Load(filepath.Join(dir, "dchain.yaml"))
	if err != nil {
		t.Fatalf("the rendered dchain.yaml: %v", err)
	}
	// Every chain file of the values is one the config's globs find.
	var files, found []string
	for _, cm := range h.configMaps {
		for k := range cm.Data {
			if f, ok := strings.CutPrefix(k, "chain."); ok {
				files = append(files, f)
			}
		}
	}
	for _, ch := range l.Chains {
		found = append(found, filepath.Base(ch.File))
	}
	if files, found = slices.Compact(slices.Sorted(slices.Values(files))), slices.Compact(slices.Sorted(slices.Values(found))); !slices.Equal(files, found) {
		t.Errorf("chain files %v, the config loads chains from %v", files, found)
	}
	return l
}

// checkSetupHook: `dchain setup` is a Job run as a pre-install and
// pre-upgrade hook (before the workers, so that an install waiting for
// them cannot wait forever), replaced on the next run and removed when it
// succeeded, retried a bounded number of times; it is not a plain
// manifest (which would run once, at install, and race the workers).
func (h *helmRelease) checkSetupHook(t *testing.T, dc dchainContainer) {
	t.Helper()
	jobName, ok := strings.CutPrefix(dc.owner, "Job ")
	if !ok {
		t.Errorf("setup runs in %s, want a Job", dc.owner)
		return
	}
	var hook *release.Hook
	for _, hk := range h.hooks {
		if hk.Kind == "Job" && hk.Name == jobName {
			hook = hk
		}
	}
	if hook == nil {
		t.Errorf("Job %s is not a Helm hook", jobName)
		return
	}
	events := fmt.Sprint(hook.Events)
	if events != "[pre-install pre-upgrade]" {
		t.Errorf("setup hook on %s, want pre-install and pre-upgrade (before the workers, which refuse a namespace without its search attributes)", events)
	}
	// Its config comes from a hook ConfigMap of its own, made before it
	// (the release's ConfigMap does not exist yet on a first install),
	// holding what the workers' holds.
	j := h.jobs[jobName]
	var mounted string
	for _, v := range j.Spec.Template.Spec.Volumes {
		if v.Name == "config" && v.Projected != nil {
			for _, src := range v.Projected.Sources {
				if src.ConfigMap != nil && strings.HasSuffix(src.ConfigMap.Name, "-config") {
					mounted = src.ConfigMap.Name
				}
			}
		}
	}
	var cmHook *release.Hook
	for _, hk := range h.hooks {
		if hk.Kind == "ConfigMap" && hk.Name == mounted {
			cmHook = hk
		}
	}
	switch {
	case cmHook == nil:
		t.Errorf("the setup Job mounts ConfigMap %q, which is not a hook of its own", mounted)
	case fmt.Sprint(cmHook.Events) != events || cmHook.Weight >= hook.Weight:
		t.Errorf("setup's ConfigMap hook runs on %v with weight %d, the Job on %s with weight %d", cmHook.Events, cmHook.Weight, events, hook.Weight)
	}
	for n, cm := range h.configMaps {
		if n != mounted && strings.HasSuffix(n, "-config") && !maps.Equal(cm.Data, h.configMaps[mounted].Data) {
			t.Errorf("setup's config %s differs from the workers' %s", mounted, n)
		}
	}
	if dp := fmt.Sprint(hook.DeletePolicies); dp != "[before-hook-creation hook-succeeded]" {
		t.Errorf("setup hook delete policy %s", dp)
	}
	if j.Spec.BackoffLimit == nil || *j.Spec.BackoffLimit < 1 {
		t.Errorf("setup Job backoffLimit %v", j.Spec.BackoffLimit)
	}
	if rp := j.Spec.Template.Spec.RestartPolicy; rp != corev1.RestartPolicyNever && rp != corev1.RestartPolicyOnFailure {
		t.Errorf("setup Job restartPolicy %q", rp)
	}
}

// envMap is a container's literal environment.
func envMap(c corev1.Container) map[string]string {
	m := map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			m[e.Name] = e.Value
		}
	}
	return m
}

// podsOf are the release's pod templates by owner ("Deployment x", "Job y").
func (h *helmRelease) podsOf() map[string]*corev1.PodTemplateSpec {
	pods := map[string]*corev1.PodTemplateSpec{}
	for n, d := range h.deployments {
		pods["Deployment "+n] = &d.Spec.Template
	}
	for n, j := range h.jobs {
		pods["Job "+n] = &j.Spec.Template
	}
	return pods
}

// checkImagesAndResources: every image is pinned to a version (dchain's to
// the values' tag or the chart's appVersion), every container requests
// CPU and memory and has a memory limit.
func (h *helmRelease) checkImagesAndResources(t *testing.T) {
	t.Helper()
	wantTag := h.values.Image.Tag
	if wantTag == "" {
		wantTag = h.appVersion
	}
	for owner, pod := range h.podsOf() {
		for _, c := range slices.Concat(pod.Spec.InitContainers, pod.Spec.Containers) {
			ref, err := name.ParseReference(c.Image)
			if err != nil {
				t.Errorf("%s: image %q: %v", owner, c.Image, err)
				continue
			}
			last := c.Image[strings.LastIndex(c.Image, "/")+1:]
			if tag, ok := ref.(name.Tag); ok && (tag.TagStr() == "latest" || !strings.Contains(last, ":")) {
				t.Errorf("%s: image %q is not pinned to a version", owner, c.Image)
			}
			if strings.HasPrefix(c.Image, h.values.Image.Repository+":") && !strings.HasPrefix(c.Image, h.values.Image.Repository+":"+wantTag) {
				t.Errorf("%s: dchain image %q, want tag %s", owner, c.Image, wantTag)
			}
			req, lim := c.Resources.Requests, c.Resources.Limits
			if req.Cpu().IsZero() || req.Memory().IsZero() || lim.Memory().IsZero() {
				t.Errorf("%s/%s: resources %v, want CPU and memory requests and a memory limit", owner, c.Name, c.Resources)
			}
		}
	}
}

// checkWiring: the objects refer to one another correctly, as the API
// server and the controllers would need.
func (h *helmRelease) checkWiring(t *testing.T) {
	t.Helper()
	podLabels := map[string]labels.Set{}
	for n, d := range h.deployments {
		sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
		if err != nil || sel.Empty() || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			t.Errorf("Deployment %s: selector %v does not select its pods %v (%v)", n, d.Spec.Selector, d.Spec.Template.Labels, err)
		}
		podLabels[n] = d.Spec.Template.Labels
	}
	// Deployments select only their own pods.
	for n, d := range h.deployments {
		sel, _ := metav1.LabelSelectorAsSelector(d.Spec.Selector)
		for o, ls := range podLabels {
			if o != n && sel.Matches(ls) {
				t.Errorf("Deployment %s's selector also selects %s's pods", n, o)
			}
		}
	}
	for n, s := range h.services {
		if errs := validation.IsDNS1035Label(n); len(errs) > 0 {
			t.Errorf("Service %q: %v", n, errs)
		}
		var selected []string
		for d, ls := range podLabels {
			if len(s.Spec.Selector) > 0 && labels.SelectorFromSet(s.Spec.Selector).Matches(ls) {
				selected = append(selected, d)
			}
		}
		if len(selected) != 1 {
			t.Errorf("Service %s selects Deployments %v, want one", n, selected)
			continue
		}
		d := h.deployments[selected[0]]
		for _, p := range s.Spec.Ports {
			if p.TargetPort.Type != intstr.String || containerPort(d.Spec.Template.Spec, p.TargetPort.StrVal) == 0 {
				t.Errorf("Service %s port %s: target %s is not a named port of %s", n, p.Name, p.TargetPort.String(), d.Name)
			}
		}
	}
	// One PDB for the API and each worker, maxUnavailable 1.
	for n, d := range h.deployments {
		comp := d.Spec.Template.Labels["app.kubernetes.io/component"]
		if comp != "api" && comp != "chain-worker" && comp != "region-worker" {
			continue
		}
		var pdbs []string
		for pn, p := range h.pdbs {
			sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
			if err == nil && sel.Matches(labels.Set(d.Spec.Template.Labels)) {
				pdbs = append(pdbs, pn)
				if p.Spec.MaxUnavailable == nil || p.Spec.MaxUnavailable.IntValue() != 1 || p.Spec.MinAvailable != nil {
					t.Errorf("PDB %s: maxUnavailable %v minAvailable %v, want maxUnavailable 1", pn, p.Spec.MaxUnavailable, p.Spec.MinAvailable)
				}
			}
		}
		if len(pdbs) != 1 {
			t.Errorf("Deployment %s is covered by PDBs %v, want one", n, pdbs)
		}
	}
}

// containerPort is the number of a named port of the pod's containers (0: none).
func containerPort(spec corev1.PodSpec, portName string) int32 {
	for _, c := range spec.Containers {
		for _, p := range c.Ports {
			if p.Name == portName {
				return p.ContainerPort
			}
		}
	}
	return 0
}

// Secrets are never in the chart, and each role reads its own: no Secret
// object is rendered, no literal environment value is or looks like a
// secret, and the Secrets a pod's environment comes from (envFrom,
// secretKeyRef) are exactly those of what its role uses (as
// scripts/deploy-init.sh splits compose's roles/*.env): the API its own
// and every registry's (it resolves images and checks destinations); the
// chain worker its own and the source registries'; a region worker its
// registry's and the source registries'; setup, buildkitd and Trivy none. Temporal's
// client certificate is mounted as files, never put in the environment,
// and its API key is read by key as TEMPORAL_API_KEY. With the full
// values the roles' Secrets are distinct, so no role can get another's.
func TestHelmChartSecrets(t *testing.T) {
	apiKey := map[string]any{"temporal": map[string]any{"apiKey": map[string]any{"secretName": "temporal-cloud", "key": "key"}}}
	cases := map[string]func(t *testing.T) *helmRelease{"temporal-api-key": func(t *testing.T) *helmRelease { return renderHelmValues(t, apiKey) }}
	for _, file := range helmValueFiles {
		cases[valuesName(file)] = func(t *testing.T) *helmRelease { return renderHelm(t, file) }
	}
	for name, render := range cases {
		t.Run(name, func(t *testing.T) { checkHelmSecrets(t, render(t), name == "full-values") })
	}
}

func checkHelmSecrets(t *testing.T, h *helmRelease, full bool) {
	t.Helper()
	secretKey := regexp.MustCompile(`(?i)(^|_)(secret|token|password|pwd|credentials|api_key)($|_)`)
	secretValue := regexp.MustCompile(`change-me|[0-9a-f]{32,}|[A-Za-z0-9+/]{40,}`)
	v := h.values
	var sources []string
	for _, s := range v.SourceRegistries {
		sources = append(sources, s.SecretName)
	}
	own := func(names ...string) []string {
		return slices.Compact(slices.Sorted(slices.Values(slices.DeleteFunc(names, func(s string) bool { return s == "" }))))
	}
	want := map[string][]string{}
	for _, dc := range h.dchainContainers(t) {
		switch dc.role {
		case "api":
			// Its starter resolves images in, and checks, every registry.
			registries := slices.Clone(sources)
			for _, r := range v.Regions {
				registries = append(registries, r.SecretName)
			}
			want[dc.owner] = own(append([]string{v.API.SecretName}, registries...)...)
		case "chains":
			want[dc.owner] = own(append([]string{v.ChainWorker.SecretName}, sources...)...)
		case "region":
			r, _ := dc.cmd.Flags().GetStringSlice("region")
			i := slices.IndexFunc(v.Regions, func(x helmRegion) bool { return x.Name == r[0] })
			if i < 0 {
				t.Errorf("%s: region %s is not in the values", dc.owner, r[0])
				continue
			}
			want[dc.owner] = own(append([]string{v.Regions[i].SecretName}, sources...)...)
		case "setup":
			want[dc.owner] = own()
		}

		// Temporal's Secrets: the certificate as files, the API key by key.
		var tls []string
		for _, vol := range dc.pod.Spec.Volumes {
			if vol.Secret != nil {
				tls = append(tls, vol.Secret.SecretName)
			}
			if vol.Projected != nil && slices.ContainsFunc(vol.Projected.Sources, func(p corev1.VolumeProjection) bool { return p.Secret != nil }) {
				t.Errorf("%s: Secrets in projected volume %s", dc.owner, vol.Name)
			}
		}
		if wantTLS := own(map[bool]string{true: v.Temporal.TLS.SecretName}[v.Temporal.TLS.Enabled]); !slices.Equal(own(tls...), wantTLS) {
			t.Errorf("%s mounts Secrets %v, want Temporal's client certificate %v alone", dc.owner, tls, wantTLS)
		}
		var key *corev1.SecretKeySelector
		for _, e := range dc.c.Env {
			if e.Name == "TEMPORAL_API_KEY" && e.ValueFrom != nil {
				key = e.ValueFrom.SecretKeyRef
			}
		}
		if v.Temporal.APIKey.SecretName == "" && key != nil || v.Temporal.APIKey.SecretName != "" && (key == nil || key.Name != v.Temporal.APIKey.SecretName || key.Key != v.Temporal.APIKey.Key) {
			t.Errorf("%s: TEMPORAL_API_KEY from %+v, want the values' %+v", dc.owner, key, v.Temporal.APIKey)
		}
	}
	for owner, pod := range h.podsOf() {
		got := envSecrets(pod.Spec)
		if w, ok := want[owner]; ok {
			if !slices.Equal(got, w) {
				t.Errorf("%s's environment comes from Secrets %v, want its own %v", owner, got, w)
			}
		} else if len(got) > 0 || len(secretVolumes(pod.Spec)) > 0 {
			t.Errorf("%s is not dchain but reads Secrets %v %v", owner, got, secretVolumes(pod.Spec))
		}
		for _, c := range slices.Concat(pod.Spec.InitContainers, pod.Spec.Containers) {
			for _, e := range c.Env {
				if e.ValueFrom == nil && secretKey.MatchString(e.Name) {
					t.Errorf("%s: %s is set in the chart; secrets come from the role's Secret", owner, e.Name)
				}
				if secretValue.MatchString(e.Value) {
					t.Errorf("%s: %s=%q looks like a secret", owner, e.Name, e.Value)
				}
			}
		}
	}
	if full {
		// The full values give each role a Secret of its own, so the
		// checks above are not vacuous.
		owned := slices.Concat([]string{v.API.SecretName, v.ChainWorker.SecretName}, sources)
		for _, r := range v.Regions {
			if !slices.Contains(sources, r.SecretName) {
				owned = append(owned, r.SecretName)
			}
		}
		if len(own(owned...)) != len(owned) || len(owned) != 2+len(v.Regions) {
			t.Errorf("the full values share Secrets between roles: %v", owned)
		}
	}
	for n, cm := range h.configMaps {
		for k, d := range cm.Data {
			if secretValue.MatchString(d) {
				t.Errorf("ConfigMap %s key %s holds what looks like a secret", n, k)
			}
		}
	}
	checkHelmNotes(t, h)
}

// checkHelmNotes: the install notes name, under each role's Secret, every
// variable the config and the chains reference that the role resolves
// (as deploy/dchain.env.example lists compose's).
func checkHelmNotes(t *testing.T, h *helmRelease) {
	t.Helper()
	v, l := h.values, h.loadConfig(t)
	listed := map[string][]string{}
	line := regexp.MustCompile(`^  (\S+) \([^)]*\): (.*)$`)
	for _, ln := range strings.Split(h.notes, "\n") {
		if m := line.FindStringSubmatch(ln); m != nil {
			listed[m[1]] = append(listed[m[1]], strings.Split(m[2], ", ")...)
		}
	}
	need := func(secret string, ref chain.SecretRef, what string) {
		if env, ok := strings.CutPrefix(string(ref), "env:"); ok && !slices.Contains(listed[secret], env) {
			t.Errorf("the notes do not list %s (%s) under Secret %s: %v", env, what, secret, listed[secret])
		}
	}
	need(v.API.SecretName, l.Config.API.Token, "api.token")
	for _, src := range l.Config.Sources {
		need(v.API.SecretName, src.Secret, "source "+src.Name)
	}
	for _, ch := range l.Chains {
		for _, tr := range ch.Triggers {
			need(v.ChainWorker.SecretName, tr.Secret, "trigger "+tr.Name)
		}
	}
	for _, r := range l.Config.Registries {
		held := false
		for _, ref := range slices.Concat(v.SourceRegistries, v.Regions) {
			if ref.Name == r.Name {
				need(ref.SecretName, r.Credentials, "credentials of "+r.Name)
				held = true
			}
		}
		if !held && r.Credentials != "" {
			t.Errorf("registry %s has credentials (%s) but no Secret: it is neither a source registry nor a region", r.Name, r.Credentials)
		}
	}
}

// envSecrets are the Secrets a pod's environment comes from (envFrom and
// secretKeyRef, but Temporal's API key), sorted.
func envSecrets(spec corev1.PodSpec) []string {
	set := map[string]bool{}
	for _, c := range slices.Concat(spec.InitContainers, spec.Containers) {
		for _, ef := range c.EnvFrom {
			if ef.SecretRef != nil {
				set[ef.SecretRef.Name] = true
			}
		}
		for _, e := range c.Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && e.Name != "TEMPORAL_API_KEY" {
				set[e.ValueFrom.SecretKeyRef.Name] = true
			}
		}
	}
	// imagePullSecrets are the kubelet's, not the process's.
	return slices.Sorted(maps.Keys(set))
}

// secretVolumes are the Secrets a pod mounts.
func secretVolumes(spec corev1.PodSpec) []string {
	var names []string
	for _, vol := range spec.Volumes {
		if vol.Secret != nil {
			names = append(names, vol.Secret.SecretName)
		}
		if vol.Projected != nil {
			for _, s := range vol.Projected.Sources {
				if s.Secret != nil {
					names = append(names, s.Secret.Name)
				}
			}
		}
	}
	return names
}

// dchain's pods: probes at the ports their commands listen on (workers:
// ready on /healthz of --metrics-listen's port; the API: /healthz and
// /readyz of --listen's), metrics Services and prometheus.io annotations
// on those ports, a ServiceMonitor when asked for, an Ingress with TLS
// when asked for, Temporal's TLS files mounted where the TEMPORAL_TLS_*
// variables say, tracing per component, a reaping PID 1
// (shareProcessNamespace), no service account token, and a locked-down
// container (non-root, read-only root filesystem, no capabilities).
func TestHelmChartPods(t *testing.T) {
	for _, file := range helmValueFiles {
		t.Run(valuesName(file), func(t *testing.T) {
			h := renderHelm(t, file)
			v := h.values
			serviceNames := map[string]string{}
			for _, dc := range h.dchainContainers(t) {
				spec := dc.pod.Spec
				if spec.ShareProcessNamespace == nil || !*spec.ShareProcessNamespace {
					t.Errorf("%s: no shared process namespace: nothing reaps dchain's git and ssh children", dc.owner)
				}
				if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
					t.Errorf("%s mounts a service account token", dc.owner)
				}
				if spec.EnableServiceLinks == nil || *spec.EnableServiceLinks {
					t.Errorf("%s gets service links: variables named after the release's Services (DCHAIN_…) in dchain's environment", dc.owner)
				}
				psc, sc := spec.SecurityContext, dc.c.SecurityContext
				if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
					t.Errorf("%s: pod security context %+v, want non-root", dc.owner, psc)
				}
				if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
					sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0 || (sc.Privileged != nil && *sc.Privileged) {
					t.Errorf("%s: container security context %+v", dc.owner, sc)
				}
				if dc.pod.Annotations["checksum/config"] == "" {
					t.Errorf("%s: no checksum/config annotation: a config change would not roll it", dc.owner)
				}
				env := envMap(dc.c)

				// Temporal over TLS: the files the variables name are mounted from the Secret.
				if v.Temporal.TLS.Enabled {
					for _, k := range []string{"TEMPORAL_TLS_CERT", "TEMPORAL_TLS_KEY", "TEMPORAL_TLS_CA"} {
						if !mountedFromSecret(spec, dc.c, env[k], v.Temporal.TLS.SecretName) {
							t.Errorf("%s: %s=%q is not a file of Secret %s", dc.owner, k, env[k], v.Temporal.TLS.SecretName)
						}
					}
					if env["TEMPORAL_TLS_SERVER_NAME"] != v.Temporal.TLS.ServerName {
						t.Errorf("%s: TEMPORAL_TLS_SERVER_NAME %q", dc.owner, env["TEMPORAL_TLS_SERVER_NAME"])
					}
				} else if env["TEMPORAL_TLS_CERT"] != "" {
					t.Errorf("%s: TLS files without temporal.tls", dc.owner)
				}
				// Tracing: the collector, and a service name per component.
				if v.Tracing.OTLPEndpoint != "" {
					if env["OTEL_EXPORTER_OTLP_ENDPOINT"] != v.Tracing.OTLPEndpoint || env["OTEL_SERVICE_NAME"] == "" {
						t.Errorf("%s: tracing env %q %q", dc.owner, env["OTEL_EXPORTER_OTLP_ENDPOINT"], env["OTEL_SERVICE_NAME"])
					}
					if o, dup := serviceNames[env["OTEL_SERVICE_NAME"]]; dup {
						t.Errorf("%s and %s trace as one service %s", dc.owner, o, env["OTEL_SERVICE_NAME"])
					}
					serviceNames[env["OTEL_SERVICE_NAME"]] = dc.owner
				} else if env["OTEL_EXPORTER_OTLP_ENDPOINT"] != "" {
					t.Errorf("%s: traces without tracing.otlpEndpoint", dc.owner)
				}

				if dc.role == "setup" {
					if dc.c.ReadinessProbe != nil || dc.c.LivenessProbe != nil || len(dc.c.Ports) > 0 {
						t.Errorf("%s: a Job with probes or ports", dc.owner)
					}
					continue
				}
				listenFlag, ready, live := "metrics-listen", "/healthz", ""
				if dc.role == "api" {
					listenFlag, ready, live = "listen", "/readyz", "/healthz"
				}
				listen, _ := dc.cmd.Flags().GetString(listenFlag)
				host, port, err := net.SplitHostPort(listen)
				if err != nil || host != "0.0.0.0" {
					t.Errorf("%s: --%s %q, want 0.0.0.0:PORT (reachable from the kubelet and Prometheus)", dc.owner, listenFlag, listen)
					continue
				}
				for kind, p := range map[string]*corev1.Probe{"readiness": dc.c.ReadinessProbe, "liveness": dc.c.LivenessProbe} {
					if p == nil || p.HTTPGet == nil {
						t.Errorf("%s: no HTTP %s probe", dc.owner, kind)
						continue
					}
					pp := p.HTTPGet.Port.IntValue()
					if p.HTTPGet.Port.Type == intstr.String {
						pp = int(containerPort(spec, p.HTTPGet.Port.StrVal))
					}
					if strconv.Itoa(pp) != port {
						t.Errorf("%s: %s probe at port %s (%d), the command listens on %s", dc.owner, kind, p.HTTPGet.Port.String(), pp, port)
					}
					if kind == "readiness" && p.HTTPGet.Path != ready || kind == "liveness" && live != "" && p.HTTPGet.Path != live {
						t.Errorf("%s: %s probe at %s", dc.owner, kind, p.HTTPGet.Path)
					}
				}
				if dc.pod.Annotations["prometheus.io/scrape"] != "true" || dc.pod.Annotations["prometheus.io/port"] != port {
					t.Errorf("%s: prometheus.io annotations %v, metrics on port %s", dc.owner, dc.pod.Annotations, port)
				}
				// A Service port named metrics reaches this port.
				found := false
				for _, s := range h.services {
					if labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(dc.pod.Labels)) {
						for _, sp := range s.Spec.Ports {
							found = found || sp.Name == "metrics" && strconv.Itoa(int(containerPort(spec, sp.TargetPort.StrVal))) == port
						}
					}
				}
				if !found {
					t.Errorf("%s: no Service port named metrics reaches port %s", dc.owner, port)
				}
			}

			// The ServiceMonitor, when enabled, scrapes every metrics Service.
			if len(h.monitors) != map[bool]int{true: 1}[v.Metrics.ServiceMonitor.Enabled] {
				t.Errorf("%d ServiceMonitors with metrics.serviceMonitor.enabled %v", len(h.monitors), v.Metrics.ServiceMonitor.Enabled)
			}
			for n, m := range h.monitors {
				sel, err := metav1.LabelSelectorAsSelector(&m.Spec.Selector)
				if err != nil || len(m.Spec.Endpoints) != 1 || m.Spec.Endpoints[0].Port != "metrics" || !slices.Equal(m.Spec.NamespaceSelector.MatchNames, []string{h.namespace}) {
					t.Errorf("ServiceMonitor %s: %+v (%v)", n, m.Spec, err)
					continue
				}
				scraped := 0
				for sn, s := range h.services {
					hasMetrics := slices.ContainsFunc(s.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == "metrics" })
					if sel.Matches(labels.Set(s.Labels)) != hasMetrics {
						t.Errorf("ServiceMonitor %s and Service %s: selected %v, metrics port %v", n, sn, sel.Matches(labels.Set(s.Labels)), hasMetrics)
					}
					if hasMetrics {
						scraped++
					}
				}
				if scraped != 2+len(v.Regions) {
					t.Errorf("ServiceMonitor %s scrapes %d Services, want the API's and %d workers'", n, scraped, 1+len(v.Regions))
				}
			}

			// The Ingress, when enabled: TLS, to the API's http port.
			if len(h.ingresses) != map[bool]int{true: 1}[v.Ingress.Enabled] {
				t.Errorf("%d Ingresses with ingress.enabled %v", len(h.ingresses), v.Ingress.Enabled)
			}
			for n, ing := range h.ingresses {
				if len(ing.Spec.TLS) != 1 || ing.Spec.TLS[0].SecretName != v.Ingress.TLS.SecretName || !slices.Equal(ing.Spec.TLS[0].Hosts, []string{v.Ingress.Host}) {
					t.Errorf("Ingress %s: TLS %+v, want %s for %s (the API has no TLS of its own)", n, ing.Spec.TLS, v.Ingress.TLS.SecretName, v.Ingress.Host)
				}
				for _, rule := range ing.Spec.Rules {
					for _, p := range rule.HTTP.Paths {
						svc := h.services[p.Backend.Service.Name]
						if svc == nil || svc.Labels["app.kubernetes.io/component"] != "api" || p.Backend.Service.Port.Name != "http" {
							t.Errorf("Ingress %s path %s goes to %s:%s, want the API's http port", n, p.Path, p.Backend.Service.Name, p.Backend.Service.Port.Name)
						}
						if p.Path == "/" || strings.HasPrefix(p.Path, "/metrics") {
							t.Errorf("Ingress %s publishes %s: the API's metrics and probes stay inside", n, p.Path)
						}
					}
				}
			}
		})
	}
}

// mountedFromSecret says whether file, in container c of spec, is a key of
// Secret secret (through a secret volume mounted read-only).
func mountedFromSecret(spec corev1.PodSpec, c corev1.Container, file, secret string) bool {
	for _, m := range c.VolumeMounts {
		rel, ok := strings.CutPrefix(file, strings.TrimSuffix(m.MountPath, "/")+"/")
		if !ok || !m.ReadOnly {
			continue
		}
		for _, vol := range spec.Volumes {
			if vol.Name != m.Name || vol.Secret == nil || vol.Secret.SecretName != secret {
				continue
			}
			if len(vol.Secret.Items) == 0 {
				return true
			}
			for _, it := range vol.Secret.Items {
				if it.Path == rel {
					return true
				}
			}
		}
	}
	return false
}

// buildkitd in the chart is isolated like compose's: its config, read by
// buildkitd's own loader, is bridge networking on the bridge and subnet
// build-network.sh closes, Docker's frontend alone and no entitlement,
// trusting the registry CA for every registry; the script it runs first
// is `dchain build-network`'s output (the chart's copy in files/ too);
// it is privileged (BuildKit needs it) and the only pod that is. Its
// NetworkPolicy admits the chain worker alone on BuildKit's port, and its
// egress is DNS and addresses outside every range of buildnet.DefaultDeny,
// plus what the values add: never the pods of Temporal, the API or the
// workers.
func TestHelmChartBuildIsolation(t *testing.T) {
	var script strings.Builder
	cmd := newBuildNetworkCmd()
	cmd.SetOut(&script)
	cmd.SetArgs([]string{}) // not nil: cobra would read the test binary's arguments
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(helmChart, "files", "build-network.sh")); err != nil || string(b) != script.String() {
		t.Fatalf("deploy/helm/dchain/files/build-network.sh is not what `dchain build-network` prints (%v); make it again with: dchain build-network > deploy/helm/dchain/files/build-network.sh", err)
	}
	for _, file := range helmValueFiles {
		t.Run(valuesName(file), func(t *testing.T) {
			h := renderHelm(t, file)
			v := h.values
			l := h.loadConfig(t)
			var bk *appsv1.Deployment
			for n, d := range h.deployments {
				privileged := false
				for _, c := range d.Spec.Template.Spec.Containers {
					privileged = privileged || c.SecurityContext != nil && c.SecurityContext.Privileged != nil && *c.SecurityContext.Privileged
				}
				if d.Spec.Template.Labels["app.kubernetes.io/component"] == "buildkitd" {
					bk = d
					if !privileged {
						t.Errorf("buildkitd %s is not privileged (BuildKit needs it)", n)
					}
				} else if privileged {
					t.Errorf("%s is privileged", n)
				}
			}
			if bk == nil {
				t.Fatal("no buildkitd Deployment")
			}
			spec := bk.Spec.Template.Spec
			c := spec.Containers[0]
			if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
				t.Error("buildkitd, which runs the pusher's code, mounts a service account token")
			}
			if entry := strings.Join(slices.Concat(c.Command, c.Args), " "); !strings.Contains(entry, "sh /etc/dchain/build-network.sh && exec buildkitd --config /etc/buildkit/buildkitd.toml") {
				t.Errorf("buildkitd does not run the build network's rules first: %q", entry)
			}
			files := map[string]string{}
			for _, m := range c.VolumeMounts {
				for _, vol := range spec.Volumes {
					if vol.Name == m.Name && vol.ConfigMap != nil && m.SubPath != "" {
						cm := h.configMaps[vol.ConfigMap.Name]
						if cm == nil || !m.ReadOnly {
							t.Errorf("buildkitd mounts %s from %s (read-only %v)", m.MountPath, vol.ConfigMap.Name, m.ReadOnly)
							continue
						}
						files[m.MountPath] = cm.Data[m.SubPath]
					}
				}
			}
			if files["/etc/dchain/build-network.sh"] != script.String() {
				t.Error("buildkitd's /etc/dchain/build-network.sh is not what `dchain build-network` prints")
			}
			toml := filepath.Join(t.TempDir(), "buildkitd.toml")
			if err := os.WriteFile(toml, []byte(files["/etc/buildkit/buildkitd.toml"]), 0o644); err != nil {
				t.Fatal(err)
			}
			cfg, err := bkconfig.LoadFile(toml)
			if err != nil {
				t.Fatalf("buildkitd.toml: %v", err)
			}
			oci := cfg.Workers.OCI
			if oci.Enabled == nil || !*oci.Enabled || oci.Mode != "bridge" || oci.BridgeName != buildnet.DefaultBridge || oci.BridgeSubnet != buildnet.DefaultSubnet {
				t.Errorf("buildkitd.toml: network mode %q, bridge %q, subnet %q", oci.Mode, oci.BridgeName, oci.BridgeSubnet)
			}
			if fe := cfg.Frontends.Gateway.AllowedRepositories; !slices.Equal(fe, []string{buildnet.AllowedFrontend}) {
				t.Errorf("buildkitd.toml: gateway frontends allowed %v, want %s alone", fe, buildnet.AllowedFrontend)
			}
			if len(cfg.Entitlements) > 0 || cfg.Workers.OCI.Rootless {
				t.Errorf("buildkitd.toml grants entitlements %v", cfg.Entitlements)
			}
			if !slices.Contains(cfg.GRPC.Address, "tcp://0.0.0.0:"+strconv.Itoa(v.Buildkitd.Port)) {
				t.Errorf("buildkitd listens on %v, want tcp on port %d", cfg.GRPC.Address, v.Buildkitd.Port)
			}
			if v.RegistryCA.ConfigMapName != "" {
				for _, r := range l.Config.Registries {
					if rc, ok := cfg.Registries[r.Address]; !ok || !slices.Equal(rc.RootCAs, []string{"/etc/dchain/certs/ca.pem"}) {
						t.Errorf("buildkitd does not trust the registry CA for %s (%+v)", r.Address, rc)
					}
				}
				if !slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == "/etc/dchain/certs" }) {
					t.Error("buildkitd does not mount the registry CA")
				}
			}

			if !v.NetworkPolicy.Enabled {
				t.Fatal("the network policy is off")
			}
			checkBuildkitdPolicy(t, h, bk)
		})
	}
}

// checkBuildkitdPolicy checks the NetworkPolicy of buildkitd's pods.
func checkBuildkitdPolicy(t *testing.T, h *helmRelease, bk *appsv1.Deployment) {
	t.Helper()
	v := h.values
	bkLabels := labels.Set(bk.Spec.Template.Labels)
	var np *networkingv1.NetworkPolicy
	for _, p := range h.netpols {
		if sel, err := metav1.LabelSelectorAsSelector(&p.Spec.PodSelector); err == nil && !sel.Empty() && sel.Matches(bkLabels) {
			if np != nil {
				t.Fatalf("NetworkPolicies %s and %s both select buildkitd", np.Name, p.Name)
			}
			np = p
		}
	}
	if np == nil {
		t.Fatal("no NetworkPolicy selects buildkitd")
	}
	if !slices.Equal(np.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}) {
		t.Errorf("buildkitd's policy types %v, want Ingress and Egress", np.Spec.PolicyTypes)
	}
	dchainPods := map[string]labels.Set{}
	for n, d := range h.deployments {
		if n != bk.Name {
			dchainPods[n] = d.Spec.Template.Labels
		}
	}
	for n, j := range h.jobs {
		dchainPods[n] = j.Spec.Template.Labels
	}
	// Ingress: from the chain worker's pods alone, on BuildKit's port.
	if len(np.Spec.Ingress) != 1 {
		t.Fatalf("buildkitd ingress rules %+v, want one", np.Spec.Ingress)
	}
	in := np.Spec.Ingress[0]
	if len(in.Ports) != 1 || in.Ports[0].Port == nil || in.Ports[0].Port.IntValue() != v.Buildkitd.Port {
		t.Errorf("buildkitd admits ports %+v, want %d alone", in.Ports, v.Buildkitd.Port)
	}
	for _, peer := range in.From {
		if peer.PodSelector == nil || peer.NamespaceSelector != nil || peer.IPBlock != nil {
			t.Errorf("buildkitd admits %+v, want the chain worker's pods only", peer)
			continue
		}
		sel, _ := metav1.LabelSelectorAsSelector(peer.PodSelector)
		for n, ls := range dchainPods {
			chainWorker := ls["app.kubernetes.io/component"] == "chain-worker"
			if sel.Matches(ls) != chainWorker {
				t.Errorf("buildkitd's ingress selects %s: %v", n, sel.Matches(ls))
			}
		}
	}
	// Egress: DNS on port 53, the internet without the private ranges, and
	// the values' own rules; nothing that selects the release's pods.
	var deny []netip.Prefix
	for _, p := range buildnet.DefaultDeny {
		if p.Addr().Is4() {
			deny = append(deny, p)
		}
	}
	internet := false
	extra := 0
	for _, rule := range np.Spec.Egress {
		if slices.ContainsFunc(v.NetworkPolicy.BuildkitdExtraEgress, func(e networkingv1.NetworkPolicyEgressRule) bool {
			a, _ := json.Marshal(e)
			b, _ := json.Marshal(rule)
			return string(a) == string(b)
		}) {
			extra++
			continue
		}
		for _, peer := range rule.To {
			switch {
			case peer.IPBlock != nil:
				if peer.IPBlock.CIDR != "0.0.0.0/0" {
					t.Errorf("buildkitd egress to %s", peer.IPBlock.CIDR)
				}
				for _, d := range deny {
					covered := slices.ContainsFunc(peer.IPBlock.Except, func(e string) bool {
						p, err := netip.ParsePrefix(e)
						return err == nil && p.Bits() <= d.Bits() && p.Contains(d.Addr())
					})
					if !covered {
						t.Errorf("buildkitd's egress to %s does not exclude %s", peer.IPBlock.CIDR, d)
					}
				}
				internet = true
			case peer.PodSelector != nil:
				sel, _ := metav1.LabelSelectorAsSelector(peer.PodSelector)
				for n, ls := range dchainPods {
					if sel.Matches(ls) {
						t.Errorf("buildkitd's egress reaches %s", n)
					}
				}
				for _, p := range rule.Ports {
					if p.Port == nil || p.Port.IntValue() != 53 {
						t.Errorf("buildkitd's egress to pods %v on port %v: DNS only", peer.PodSelector.MatchLabels, p.Port)
					}
				}
				if len(rule.Ports) == 0 {
					t.Errorf("buildkitd's egress to pods %v on every port", peer.PodSelector.MatchLabels)
				}
			default:
				t.Errorf("buildkitd's egress to %+v", peer)
			}
		}
		if len(rule.To) == 0 {
			t.Errorf("buildkitd's egress rule %+v reaches everything", rule)
		}
	}
	if !internet {
		t.Error("buildkitd cannot reach the internet (base images, packages)")
	}
	if extra != len(v.NetworkPolicy.BuildkitdExtraEgress) {
		t.Errorf("buildkitd's policy has %d of the values' %d extra egress rules", extra, len(v.NetworkPolicy.BuildkitdExtraEgress))
	}
}

// Helm's own linter, strict (warnings fail), passes the chart with each
// values file, and the chart refuses values that break a rule of
// deployment instead of rendering them.
func TestHelmChartLint(t *testing.T) {
	for _, file := range helmValueFiles {
		vals := map[string]any{}
		if file != "" {
			v, err := common.ReadValuesFile(file)
			if err != nil {
				t.Fatal(err)
			}
			vals = v
		}
		kv, err := common.ParseKubeVersion(helmKubeVersion)
		if err != nil {
			t.Fatal(err)
		}
		lint := action.NewLint()
		lint.Strict, lint.Namespace, lint.KubeVersion = true, "delivery", kv
		res := lint.Run([]string{helmChart}, vals)
		for _, m := range res.Messages {
			t.Logf("%s: %s", valuesName(file), m)
		}
		if len(res.Errors) > 0 {
			t.Errorf("helm lint --strict with %s: %v", valuesName(file), res.Errors)
		}
	}

	ch, err := loader.Load(helmChart)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, values, want string
	}{
		{"a region that is no registry", `regions: [{name: nowhere, secretName: x}]`, "not a registry"},
		{"the API reading a worker's Secret", `api: {secretName: dchain-registry-primary}`, "api.secretName"},
		{"the chain worker reading a region's Secret", `chainWorker: {secretName: dchain-registry-replica}`, "chainWorker.secretName"},
		{"two regions sharing a Secret", `regions: [{name: primary, secretName: shared}, {name: replica, secretName: shared}]`, "share Secret"},
		{"a chain into a region without a worker", `regions: [{name: primary, secretName: p}]
chains: {a.yaml: {name: a, scope: {registry: primary, namespace: x, allRepositories: true}, replication: [{name: r, destination: replica, level: namespace}]}}`, "no regions entry serves"},
		{"an Ingress without TLS", `ingress: {enabled: true}`, "ingress.tls.secretName"},
		{"the latest image", `image: {tag: latest}`, "/image/tag"},
		{"Temporal TLS without its Secret", `temporal: {tls: {enabled: true}}`, "temporal.tls.secretName"},
		// values.schema.json
		{"a misspelt key", `region: [{name: primary, secretName: p}]`, "additional properties 'region'"},
		{"a region without its Secret", `regions: [{name: primary}]`, "missing property 'secretName'"},
		{"a Secret's value instead of its name", `api: {secretName: "s3cr3t:value"}`, "/api/secretName"},
	} {
		var vals map[string]any
		if err := yaml.Unmarshal([]byte(c.values), &vals); err != nil {
			t.Fatal(err)
		}
		_, err := helmInstall(t).Run(ch, vals)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error saying %q", c.name, err, c.want)
		}
	}
}
