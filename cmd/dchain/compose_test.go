package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/distribution/distribution/v3/configuration"
	"github.com/google/go-containerregistry/pkg/name"
	bkconfig "github.com/moby/buildkit/cmd/buildkitd/config"
	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/dchain-dev/dchain/activities"
	"github.com/dchain-dev/dchain/buildnet"
	"github.com/dchain-dev/dchain/chain"
	"github.com/dchain-dev/dchain/devstack"
	"github.com/dchain-dev/dchain/starter"
	"github.com/dchain-dev/dchain/workflows"
)

const repoRoot = "../.."

// The production compose file, without a Docker engine: it loads with the
// compose spec's own loader; every image is pinned; every dchain service's
// command parses with the CLI's real flags and arguments; there is one
// chain worker, one worker per configured registry, an API and the setup
// that registers the search attributes, which every other dchain service
// waits for; no secret is written in the file, each dchain service reads
// the env file of its role (deploy/roles/ROLE.env, which
// scripts/deploy-init.sh cuts from deploy/dchain.env: TestDeployInit) and
// setup none (every reference the config makes is in dchain.env's
// template), PostgreSQL's and Temporal's from deploy/postgres.env only.
func TestComposeDeployment(t *testing.T) {
	p := loadCompose(t)
	l, err := chain.Load(filepath.Join(repoRoot, "deploy", "dchain.yaml"))
	if err != nil {
		t.Fatalf("deploy/dchain.yaml: %v", err)
	}

	secretKey := regexp.MustCompile(`(?i)(^|_)(secret|token|password|pwd|credentials|api_key)($|_)`)
	secretValue := regexp.MustCompile(`change-me|[0-9a-f]{32,}|[A-Za-z0-9+/]{40,}`)
	regionWorkers := map[string][]string{}
	roles := map[string][]string{}
	for _, s := range p.Services {
		if s.Image == "" {
			t.Errorf("%s: no image", s.Name)
			continue
		}
		ref, err := name.ParseReference(s.Image)
		if err != nil {
			t.Errorf("%s: image %q: %v", s.Name, s.Image, err)
		} else if tag, ok := ref.(name.Tag); ok && (tag.TagStr() == "latest" || !strings.Contains(s.Image[strings.LastIndex(s.Image, "/")+1:], ":")) {
			t.Errorf("%s: image %q is not pinned to a version", s.Name, s.Image)
		}
		for k, v := range s.Environment {
			if secretKey.MatchString(k) {
				t.Errorf("%s: %s is set in the compose file; secrets belong in an env file", s.Name, k)
			}
			if v != nil && secretValue.MatchString(*v) {
				t.Errorf("%s: %s=%q looks like a secret", s.Name, k, *v)
			}
		}
		envFiles := map[string]bool{}
		for _, f := range s.EnvFiles {
			envFiles[filepath.Base(f.Path)] = true
		}
		for _, v := range s.Volumes {
			if v.Type == types.VolumeTypeBind && !strings.Contains(v.Source, "/deploy/certs") && !strings.HasSuffix(v.Source, "/deploy/htpasswd") {
				if _, err := os.Stat(v.Source); err != nil {
					t.Errorf("%s: mounts %s, which the repository lacks", s.Name, v.Source)
				}
			}
		}
		var roleFiles []string
		for _, f := range s.EnvFiles {
			if filepath.Base(filepath.Dir(f.Path)) == "roles" || filepath.Base(f.Path) == "dchain.env" {
				roleFiles = append(roleFiles, filepath.Base(f.Path))
			}
		}
		if s.Build == nil {
			if len(roleFiles) > 0 {
				t.Errorf("%s is not dchain but reads dchain's secrets %v", s.Name, roleFiles)
			}
			continue
		}

		// A dchain service: its command is a dchain command line, its
		// secrets its role's (below, once the role is known).
		if envFiles["postgres.env"] || envFiles["dchain.env"] {
			t.Errorf("%s: env files %v: dchain.env and postgres.env are for no dchain container", s.Name, s.EnvFiles)
		}
		root := newRoot()
		cmd, rest, err := root.Find(s.Command)
		if err != nil || cmd == root {
			t.Errorf("%s: %q is not a dchain command (%v)", s.Name, s.Command, err)
			continue
		}
		if err := cmd.ParseFlags(rest); err != nil {
			t.Errorf("%s: %q: %v", s.Name, s.Command, err)
			continue
		}
		if err := cmd.ValidateArgs(cmd.Flags().Args()); err != nil {
			t.Errorf("%s: %q: %v", s.Name, s.Command, err)
		}
		if want := composeRoleFile(cmd); !slices.Equal(roleFiles, want) {
			t.Errorf("%s: role env files %v, want %v", s.Name, roleFiles, want)
		}
		switch cmd.Name() {
		case "worker":
			regions, _ := cmd.Flags().GetStringSlice("region")
			chainsOnly, _ := cmd.Flags().GetBool("chains-only")
			switch {
			case chainsOnly:
				roles["chains"] = append(roles["chains"], s.Name)
			case len(regions) == 0:
				t.Errorf("%s: a worker for the chain queue and every region: use --chains-only and a worker per region", s.Name)
			}
			for _, r := range regions {
				if _, ok := l.Config.Registry(r); !ok {
					t.Errorf("%s: --region %s is not a registry of deploy/dchain.yaml", s.Name, r)
				}
				regionWorkers[r] = append(regionWorkers[r], s.Name)
			}
		default:
			roles[cmd.Name()] = append(roles[cmd.Name()], s.Name)
		}
		if cmd.Name() != "setup" {
			if d, ok := s.DependsOn["dchain-setup"]; !ok || d.Condition != types.ServiceConditionCompletedSuccessfully {
				t.Errorf("%s must wait for dchain-setup to complete (it registers the search attributes the workers need)", s.Name)
			}
		}
		if v := s.Environment["TEMPORAL_ADDRESS"]; v == nil || *v != "temporal:7233" {
			t.Errorf("%s: TEMPORAL_ADDRESS %v, want temporal:7233", s.Name, v)
		}
	}
	for _, r := range l.Config.Registries {
		if len(regionWorkers[r.Name]) != 1 {
			t.Errorf("registry %s has region workers %v, want one", r.Name, regionWorkers[r.Name])
		}
		if _, ok := p.Services[r.Name]; !ok {
			t.Errorf("registry %s (%s) has no service", r.Name, r.Address)
		}
	}
	for role, want := range map[string]int{"chains": 1, "api": 1, "setup": 1} {
		if len(roles[role]) != want {
			t.Errorf("%d services of role %s (%v), want %d", len(roles[role]), role, roles[role], want)
		}
	}

	// Every secret the config references is in dchain.env's template.
	template := envKeys(t, filepath.Join(repoRoot, "deploy", "dchain.env.example"))
	refs := []chain.SecretRef{l.Config.API.Token}
	for _, r := range l.Config.Registries {
		refs = append(refs, r.Credentials)
	}
	for _, s := range l.Config.Sources {
		refs = append(refs, s.Secret)
	}
	for _, ch := range l.Chains {
		for _, tr := range ch.Triggers {
			refs = append(refs, tr.Secret)
		}
	}
	for _, r := range refs {
		if env, ok := strings.CutPrefix(string(r), "env:"); ok && !template[env] {
			t.Errorf("deploy/dchain.yaml references %s, which deploy/dchain.env.example lacks", r)
		}
	}
	pg := envKeys(t, filepath.Join(repoRoot, "deploy", "postgres.env.example"))
	for _, k := range []string{"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_PWD", "SQL_USER", "SQL_PASSWORD"} {
		if !pg[k] {
			t.Errorf("deploy/postgres.env.example lacks %s", k)
		}
	}

	// buildkitd trusts the CA for every registry the config names.
	bk, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "buildkitd.toml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range l.Config.Registries {
		if !strings.Contains(string(bk), `[registry."`+r.Address+`"]`) {
			t.Errorf("deploy/buildkitd.toml does not trust %s", r.Address)
		}
	}
	if !slices.Contains(p.ServiceNames(), "temporal-schema") {
		t.Error("no service sets up Temporal's schema")
	}
}

// composeRoleFile is the env file of secrets a dchain command's role
// reads in docker-compose.yml (none for setup).
func composeRoleFile(cmd *cobra.Command) []string {
	switch cmd.Name() {
	case "worker":
		if regions, _ := cmd.Flags().GetStringSlice("region"); len(regions) == 1 {
			return []string{"worker-" + regions[0] + ".env"}
		}
		return []string{"worker.env"}
	case "api":
		return []string{"api.env"}
	}
	return nil
}

// serviceEnv is the value a compose service's environment block gives k
// ("" when it gives none).
func serviceEnv(s types.ServiceConfig, k string) string {
	if v := s.Environment[k]; v != nil {
		return *v
	}
	return ""
}

// envKeys are the variable names an env file sets.
func envKeys(t *testing.T, path string) map[string]bool {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	keys := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if k, _, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			keys[k] = true
		}
	}
	return keys
}

// scripts/deploy-init.sh makes what the deployment needs, and it works: a
// registry serving its certificate behind its htpasswd answers dchain,
// which signs in with the credentials of the dchain.env it wrote and
// trusts the CA it made; secrets are random and not readable by others.
func TestDeployInit(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"scripts/deploy-init.sh", "deploy/dchain.env.example", "deploy/postgres.env.example"} {
		b, err := os.ReadFile(filepath.Join(repoRoot, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command("bash", filepath.Join(dir, "scripts", "deploy-init.sh")).CombinedOutput(); err != nil {
		t.Fatalf("deploy-init.sh: %v\n%s", err, out)
	}
	deploy := filepath.Join(dir, "deploy")
	env := map[string]string{}
	for _, f := range []string{"dchain.env", "postgres.env"} {
		fi, err := os.Stat(filepath.Join(deploy, f))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s is readable by others (%v)", f, fi.Mode())
		}
		b, _ := os.ReadFile(filepath.Join(deploy, f))
		if strings.Contains(string(b), "change-me") {
			t.Errorf("%s still holds a placeholder", f)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
				env[k] = v
			}
		}
	}
	if env["DCHAIN_API_TOKEN"] == env["DCHAIN_GITHUB_WEBHOOK_SECRET"] || len(env["DCHAIN_API_TOKEN"]) < 32 {
		t.Errorf("secrets are not distinct random values: %d-character token", len(env["DCHAIN_API_TOKEN"]))
	}

	port := freePort(t)
	certs := filepath.Join(deploy, "certs")
	reg, err := devstack.StartRegistry("hangzhou", "127.0.0.1:"+strconv.Itoa(port), filepath.Join(dir, "data"), devstack.RegistryOptions{
		TLS:      &devstack.Pair{CertFile: filepath.Join(certs, "registry.pem"), KeyFile: filepath.Join(certs, "registry-key.pem")},
		Htpasswd: filepath.Join(deploy, "htpasswd")})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Stop()
	t.Setenv("DCHAIN_HANGZHOU_CREDENTIALS", env["DCHAIN_HANGZHOU_CREDENTIALS"])
	hz := chain.Registry{Name: "hangzhou", Address: reg.Addr, CA: chain.SecretRef("file:" + filepath.Join(certs, "ca.pem")),
		Credentials: "env:DCHAIN_HANGZHOU_CREDENTIALS"}
	a := &activities.Activities{}
	if _, err := a.ResolveImage(context.Background(), workflows.ResolveImageInput{Registry: hz, Image: workflows.ImageRef{Repository: "apps/web", Tag: "v1"}}); err == nil || !strings.Contains(err.Error(), "not found") && !strings.Contains(err.Error(), "MANIFEST_UNKNOWN") {
		t.Fatalf("an absent image through sign-in and the CA: %v, want not found", err)
	}
	hz.Credentials = ""
	if _, err := a.ResolveImage(context.Background(), workflows.ResolveImageInput{Registry: hz, Image: workflows.ImageRef{Repository: "apps/web", Tag: "v1"}}); err == nil || !strings.Contains(err.Error(), "access denied") {
		t.Fatalf("without credentials: %v, want access denied", err)
	}
	registryNotifies(t, deploy, env["DCHAIN_REGISTRY_WEBHOOK_SECRET"])
	roleSecretsAreTheirs(t, deploy, env)
	certificatesChain(t, certs)
}

// roleSecretsAreTheirs checks deploy/roles/*.env, what compose hands each
// dchain role: the secrets its role resolves (from deploy/dchain.yaml, as
// the code paths that resolve them decide) with dchain.env's values, and
// no other, readable by the owner alone.
func roleSecretsAreTheirs(t *testing.T, deploy string, env map[string]string) {
	t.Helper()
	l, err := chain.Load(filepath.Join(repoRoot, "deploy", "dchain.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	roles := map[string][]chain.SecretRef{"api": {l.Config.API.Token}, "worker": nil}
	for _, src := range l.Config.Sources {
		roles["api"] = append(roles["api"], src.Secret)
	}
	creds := func(registry string) chain.SecretRef {
		r, _ := l.Config.Registry(registry)
		return r.Credentials
	}
	for _, r := range l.Config.Registries {
		roles["worker-"+r.Name] = []chain.SecretRef{r.Credentials}
		// The API (its starter) resolves the image a run starts from, and
		// a replication's destinations, in any registry.
		roles["api"] = append(roles["api"], r.Credentials)
	}
	for _, ch := range l.Chains {
		// The chain worker builds into, scans and blocks at the scope's
		// registry, clones the build source and fires the triggers.
		roles["worker"] = append(roles["worker"], creds(ch.Scope.Registry))
		if ch.Build != nil {
			roles["worker"] = append(roles["worker"], ch.Build.Source.Credentials)
			for _, rule := range ch.Build.Rules {
				roles["worker"] = append(roles["worker"], slices.Collect(maps.Values(rule.Secrets))...)
			}
		}
		for _, tr := range ch.Triggers {
			roles["worker"] = append(roles["worker"], tr.Secret)
		}
		// A region's worker reads from the scope's registry.
		for _, rule := range ch.Replication {
			roles["worker-"+rule.Destination] = append(roles["worker-"+rule.Destination], creds(ch.Scope.Registry))
		}
	}
	for role, refs := range roles {
		want := map[string]string{}
		for _, r := range refs {
			if name, ok := strings.CutPrefix(string(r), "env:"); ok {
				want[name] = env[name]
			}
		}
		path := filepath.Join(deploy, "roles", role+".env")
		fi, err := os.Stat(path)
		if err != nil {
			t.Errorf("role %s: %v", role, err)
			continue
		}
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s is readable by others (%v)", path, fi.Mode())
		}
		b, _ := os.ReadFile(path)
		got := map[string]string{}
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
				got[k] = v
			}
		}
		if !maps.Equal(got, want) {
			t.Errorf("roles/%s.env sets %v, want %v", role, slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)))
		}
	}
}

// certificatesChain checks the certificates deploy-init.sh made: each
// chains to its CA for the use and names its users verify.
func certificatesChain(t *testing.T, certs string) {
	t.Helper()
	read := func(name string) *x509.Certificate {
		b, err := os.ReadFile(filepath.Join(certs, name))
		if err != nil {
			t.Fatal(err)
		}
		block, _ := pem.Decode(b)
		if block == nil {
			t.Fatalf("%s holds no PEM block", name)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return c
	}
	roots := x509.NewCertPool()
	roots.AddCert(read("ca.pem"))
	for _, c := range []struct {
		file, name string
		usage      []x509.ExtKeyUsage
	}{
		{"registry.pem", "frankfurt", []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}},
		{"temporal.pem", "temporal", []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}},
		{"temporal.pem", "", []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, // its nodes dial each other with it
		{"dchain-client.pem", "", []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}},
		{"temporal-ui-client.pem", "", []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}},
	} {
		if _, err := read(c.file).Verify(x509.VerifyOptions{Roots: roots, DNSName: c.name, KeyUsages: c.usage}); err != nil {
			t.Errorf("%s for %q %v: %v", c.file, c.name, c.usage, err)
		}
	}
	for _, key := range []string{"registry-key.pem", "temporal-key.pem", "dchain-client-key.pem", "temporal-ui-client-key.pem"} {
		if _, err := tls.LoadX509KeyPair(filepath.Join(certs, strings.TrimSuffix(key, "-key.pem")+".pem"), filepath.Join(certs, key)); err != nil {
			t.Errorf("%s: %v", key, err)
		}
	}
	if fi, err := os.Stat(filepath.Join(certs, "ca-key.pem")); err != nil || fi.Mode().Perm()&0o077 != 0 {
		t.Errorf("ca-key.pem: %v %v, want the owner's alone", fi.Mode(), err)
	}
}

// registryNotifies checks deploy/registry-notify.env as distribution reads
// it (its own config parser, REGISTRY_* overrides): pushes, not pulls, go
// to dchain-api's webhook of source hangzhou-registry; a registry with
// those notifications delivers a push that dchain's verifier and parser
// accept.
func registryNotifies(t *testing.T, deploy, secret string) {
	t.Helper()
	fi, err := os.Stat(filepath.Join(deploy, "registry-notify.env"))
	if err != nil || fi.Mode().Perm()&0o077 != 0 {
		t.Fatalf("registry-notify.env: %v %v", fi, err)
	}
	b, _ := os.ReadFile(filepath.Join(deploy, "registry-notify.env"))
	k, v, _ := strings.Cut(strings.TrimSpace(string(b)), "=")
	t.Setenv(k, v)
	cfg, err := configuration.Parse(strings.NewReader("version: 0.1\nstorage: {inmemory: {}}\n"))
	if err != nil {
		t.Fatalf("distribution's parser: %v", err)
	}
	eps := cfg.Notifications.Endpoints
	if len(eps) != 1 || eps[0].URL != "http://dchain-api:8080/webhooks/hangzhou-registry" ||
		eps[0].Headers.Get("Authorization") != "Bearer "+secret || !slices.Contains(eps[0].Ignore.Actions, "pull") {
		t.Fatalf("notifications %+v", eps)
	}
	// Delivered for real, to a receiver standing in for the API.
	got := make(chan starter.Event, 4)
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := starter.Verify(starter.ProviderDistribution, secret, r.Header, body); err != nil {
			t.Errorf("delivery refused: %v", err)
		}
		if ev, err := starter.Parse(starter.ProviderDistribution, r.Header, body); err == nil && ev.Kind == starter.EventImage {
			got <- ev
		}
	}))
	defer recv.Close()
	eps[0].URL = recv.URL + "/webhooks/hangzhou-registry"
	reg, err := devstack.StartRegistry("notifying", "127.0.0.1:0", filepath.Join(t.TempDir(), "data"), devstack.RegistryOptions{Notifications: cfg.Notifications})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Stop()
	digest, err := devstack.PushSample(context.Background(), reg.Addr, "apps/web", "v1")
	if err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-got:
		if len(ev.Images) == 0 || ev.Images[0].Repository != "apps/web" {
			t.Fatalf("event %+v", ev)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("no notification of the push of %s", digest)
	}
}

// The deployment's builds are isolated like the dev stack's: buildkitd's
// own config loader reads deploy/buildkitd.toml as bridge networking on
// the bridge and subnet that deploy/build-network.sh closes, and that
// script is what `dchain build-network` prints; compose runs it before
// buildkitd, and puts buildkitd on the builds network alone, where neither
// Temporal, its UI, PostgreSQL nor the API is.
func TestComposeBuildIsolation(t *testing.T) {
	cfg, err := bkconfig.LoadFile(filepath.Join(repoRoot, "deploy", "buildkitd.toml"))
	if err != nil {
		t.Fatalf("deploy/buildkitd.toml: %v", err)
	}
	oci := cfg.Workers.OCI
	if oci.Mode != "bridge" || oci.BridgeName != buildnet.DefaultBridge || oci.BridgeSubnet != buildnet.DefaultSubnet {
		t.Fatalf("deploy/buildkitd.toml: network mode %q, bridge %q, subnet %q", oci.Mode, oci.BridgeName, oci.BridgeSubnet)
	}
	if fe := cfg.Frontends.Gateway.AllowedRepositories; !slices.Equal(fe, []string{buildnet.AllowedFrontend}) {
		t.Fatalf("deploy/buildkitd.toml: gateway frontends allowed %v, want %s alone", fe, buildnet.AllowedFrontend)
	}
	if len(cfg.Entitlements) > 0 {
		t.Fatalf("deploy/buildkitd.toml grants entitlements %v", cfg.Entitlements)
	}
	var out strings.Builder
	cmd := newBuildNetworkCmd()
	cmd.SetOut(&out)
	cmd.SetArgs(nil)
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	script, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "build-network.sh"))
	if err != nil || string(script) != out.String() {
		t.Fatalf("deploy/build-network.sh is not what `dchain build-network` prints (%v); make it again with: dchain build-network > deploy/build-network.sh", err)
	}

	bk, err := loadCompose(t).GetService("buildkitd")
	if err != nil {
		t.Fatal(err)
	}
	if nets := slices.Sorted(maps.Keys(bk.Networks)); !slices.Equal(nets, []string{"builds"}) {
		t.Errorf("buildkitd is on networks %v, want builds alone", nets)
	}
	entry := strings.Join(bk.Entrypoint, " ")
	if !strings.Contains(entry, "sh /etc/dchain/build-network.sh && exec buildkitd") {
		t.Errorf("buildkitd does not run the build network's rules first: %q", entry)
	}
	mounted := false
	for _, v := range bk.Volumes {
		mounted = mounted || (v.Target == "/etc/dchain/build-network.sh" && filepath.Base(v.Source) == "build-network.sh" && v.ReadOnly)
	}
	if !mounted {
		t.Error("buildkitd does not mount deploy/build-network.sh read-only")
	}
	for _, s := range loadCompose(t).Services {
		_, onBuilds := s.Networks["builds"]
		switch {
		case s.Name == "temporal" || s.Name == "temporal-ui" || s.Name == "postgresql" || s.Name == "dchain-api" || s.Name == "trivy":
			if onBuilds {
				t.Errorf("%s is on the builds network", s.Name)
			}
		case s.Name == "dchain-worker" || slices.Contains(registryNames(t), s.Name):
			if !onBuilds {
				t.Errorf("%s is not on the builds network (buildkitd cannot reach it)", s.Name)
			}
		}
	}
}

// loadCompose loads docker-compose.yml with the compose spec's own loader.
func loadCompose(t *testing.T) *types.Project {
	t.Helper()
	opts, err := cli.NewProjectOptions([]string{filepath.Join(repoRoot, "docker-compose.yml")},
		cli.WithWorkingDirectory(repoRoot), cli.WithoutEnvironmentResolution)
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return p
}

// registryNames are the deployment's registries (compose services of the same names).
func registryNames(t *testing.T) []string {
	t.Helper()
	cfg, err := chain.Load(filepath.Join(repoRoot, "deploy", "dchain.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range cfg.Config.Registries {
		names = append(names, r.Name)
	}
	return names
}

// No container gets the deployment CA's private key: a registry mounts its
// own certificate and key, dchain's services the CA certificate only.
func TestComposeKeepsTheCAKeyOut(t *testing.T) {
	p := loadCompose(t)
	certs, err := filepath.Abs(filepath.Join(repoRoot, "deploy", "certs"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range p.Services {
		for _, v := range s.Volumes {
			if v.Type != types.VolumeTypeBind {
				continue
			}
			src, err := filepath.Abs(v.Source)
			if err != nil {
				t.Fatal(err)
			}
			base := filepath.Base(src)
			if src == certs || base == "ca-key.pem" || (strings.HasPrefix(src, certs+string(filepath.Separator)) && !strings.HasSuffix(base, ".pem")) {
				t.Errorf("service %s mounts %s", s.Name, v.Source)
			}
			// A private key is mounted by the services it is of, and no other.
			owner := map[string]func(string) bool{
				"registry-key.pem":           func(n string) bool { return slices.Contains(registryNames(t), n) },
				"temporal-key.pem":           func(n string) bool { return n == "temporal" },
				"dchain-client-key.pem":      func(n string) bool { return strings.HasPrefix(n, "dchain-") },
				"temporal-ui-client-key.pem": func(n string) bool { return n == "temporal-ui" },
			}
			if strings.HasSuffix(base, "-key.pem") && (owner[base] == nil || !owner[base](s.Name)) {
				t.Errorf("service %s mounts the private key %s, not its own", s.Name, base)
			}
		}
	}
}

// Start-up order holds up: PostgreSQL is healthy only once it accepts TCP
// (what Temporal uses), the schema job is retried when it fails, and
// dchain's processes run under an init that reaps their git/ssh children.
func TestComposeStartOrder(t *testing.T) {
	p := loadCompose(t)
	pg, err := p.GetService("postgresql")
	if err != nil || pg.HealthCheck == nil || !strings.Contains(strings.Join(pg.HealthCheck.Test, " "), "pg_isready -h 127.0.0.1") {
		t.Errorf("postgresql health check: %+v %v", pg.HealthCheck, err)
	}
	if s, err := p.GetService("temporal-schema"); err != nil || s.Restart != "on-failure" {
		t.Errorf("temporal-schema restart %q %v", s.Restart, err)
	}
	for _, s := range p.Services {
		if s.Image == "dchain:0.1.0" && (s.Init == nil || !*s.Init) {
			t.Errorf("dchain service %s runs without init", s.Name)
		}
	}
}

// Temporal's frontend requires a client certificate of the deployment's
// CA (mTLS) and serves the certificate deploy-init.sh made for the name
// its clients verify; every client of it (dchain's services, the Web UI)
// presents one and verifies the server. Temporal, its Web UI (which has
// no sign-in and cancels and terminates runs) and dchain's API (plain
// HTTP) are published on the loopback only. (The deployment test runs
// this configuration for real.)
func TestComposeTemporalMTLS(t *testing.T) {
	p := loadCompose(t)
	tmp, err := p.GetService("temporal")
	if err != nil {
		t.Fatal(err)
	}
	env := serviceEnv
	mounted := func(s types.ServiceConfig, target, file string) bool {
		for _, v := range s.Volumes {
			if v.Target == target && filepath.Base(v.Source) == file && v.ReadOnly {
				return true
			}
		}
		return false
	}
	if env(tmp, "TEMPORAL_TLS_REQUIRE_CLIENT_AUTH") != "true" {
		t.Error("Temporal does not require client certificates")
	}
	for k, file := range map[string]string{"TEMPORAL_TLS_FRONTEND_CERT": "temporal.pem", "TEMPORAL_TLS_FRONTEND_KEY": "temporal-key.pem",
		"TEMPORAL_TLS_SERVER_CERT": "temporal.pem", "TEMPORAL_TLS_SERVER_KEY": "temporal-key.pem",
		"TEMPORAL_TLS_CLIENT1_CA_CERT": "ca.pem", "TEMPORAL_TLS_SERVER_CA_CERT": "ca.pem"} {
		if !mounted(tmp, env(tmp, k), file) {
			t.Errorf("temporal: %s=%q is not deploy/certs/%s mounted read-only", k, env(tmp, k), file)
		}
	}
	for _, s := range p.Services {
		if env(s, "TEMPORAL_ADDRESS") == "" {
			continue
		}
		if env(s, "TEMPORAL_TLS_SERVER_NAME") != env(tmp, "TEMPORAL_TLS_FRONTEND_SERVER_NAME") || env(s, "TEMPORAL_TLS_SERVER_NAME") == "" {
			t.Errorf("%s verifies Temporal as %q, the server is %q", s.Name, env(s, "TEMPORAL_TLS_SERVER_NAME"), env(tmp, "TEMPORAL_TLS_FRONTEND_SERVER_NAME"))
		}
		cert := "dchain-client"
		if s.Name == "temporal-ui" {
			cert = "temporal-ui-client"
		}
		for k, file := range map[string]string{"TEMPORAL_TLS_CA": "ca.pem", "TEMPORAL_TLS_CERT": cert + ".pem", "TEMPORAL_TLS_KEY": cert + "-key.pem"} {
			if !mounted(s, env(s, k), file) {
				t.Errorf("%s: %s=%q is not deploy/certs/%s mounted read-only", s.Name, k, env(s, k), file)
			}
		}
	}
	if !mounted(tmp, env(tmp, "DYNAMIC_CONFIG_FILE_PATH"), "temporal-dynamicconfig.yaml") {
		t.Errorf("temporal: DYNAMIC_CONFIG_FILE_PATH=%q is not deploy/temporal-dynamicconfig.yaml mounted (the image has no file at the default path)", env(tmp, "DYNAMIC_CONFIG_FILE_PATH"))
	}
	for _, name := range []string{"temporal", "temporal-ui", "dchain-api"} {
		s, err := p.GetService(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, port := range s.Ports {
			if port.HostIP != "127.0.0.1" {
				t.Errorf("%s publishes %s on %q, want 127.0.0.1 only", name, port.Published, port.HostIP)
			}
		}
	}
}

// Every worker serves its metrics, and compose checks its health there.
func TestComposeWorkersHealth(t *testing.T) {
	p := loadCompose(t)
	n := 0
	for _, s := range p.Services {
		if len(s.Command) == 0 || s.Command[0] != "worker" {
			continue
		}
		n++
		if !slices.Contains(s.Command, "--metrics-listen") {
			t.Errorf("%s serves no metrics", s.Name)
		}
		if s.HealthCheck == nil || !strings.Contains(strings.Join(s.HealthCheck.Test, " "), "/healthz") {
			t.Errorf("%s has no health check on /healthz", s.Name)
		}
	}
	if n != 1+len(registryNames(t)) {
		t.Errorf("%d workers", n)
	}
}

// Observability is on out of the box: Prometheus (deploy/prometheus.yml)
// scrapes every process that serves metrics (each worker's
// --metrics-listen, the API's /metrics, Temporal's PROMETHEUS_ENDPOINT,
// every registry's debug server), and every dchain service exports its
// traces over OTLP to the collector service under its own name. Temporal
// is waited for by `dchain setup --wait`, which every dchain service waits
// for in turn.
func TestComposeObservability(t *testing.T) {
	p := loadCompose(t)
	b, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var prom struct {
		ScrapeConfigs []struct {
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal(b, &prom); err != nil {
		t.Fatalf("deploy/prometheus.yml: %v", err)
	}
	targets := map[string]bool{}
	for _, sc := range prom.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			for _, tg := range st.Targets {
				targets[tg] = true
			}
		}
	}
	port := func(hostport string) string {
		_, port, err := net.SplitHostPort(hostport)
		if err != nil {
			t.Errorf("%q: %v", hostport, err)
		}
		return port
	}
	want := map[string]bool{}
	for _, s := range p.Services {
		env := func(k string) string { return serviceEnv(s, k) }
		switch {
		case s.Build != nil: // dchain
			if env("OTEL_SERVICE_NAME") != s.Name {
				t.Errorf("%s: OTEL_SERVICE_NAME %q, want its name", s.Name, env("OTEL_SERVICE_NAME"))
			}
			u, err := url.Parse(env("OTEL_EXPORTER_OTLP_ENDPOINT"))
			if err != nil || u.Hostname() == "" {
				t.Errorf("%s: OTEL_EXPORTER_OTLP_ENDPOINT %q", s.Name, env("OTEL_EXPORTER_OTLP_ENDPOINT"))
			} else if _, err := p.GetService(u.Hostname()); err != nil {
				t.Errorf("%s exports traces to %s, which is no service", s.Name, u.Host)
			}
			if i := slices.Index(s.Command, "--metrics-listen"); i >= 0 {
				want[s.Name+":"+port(s.Command[i+1])] = true
			}
			if i := slices.Index(s.Command, "--listen"); i >= 0 && s.Command[0] == "api" {
				want[s.Name+":"+port(s.Command[i+1])] = true
			}
			if s.Command[0] == "setup" && !slices.Contains(s.Command, "--wait") {
				t.Errorf("%s does not wait for Temporal (setup --wait)", s.Name)
			}
		case s.Name == "temporal":
			want[s.Name+":"+port(env("PROMETHEUS_ENDPOINT"))] = true
		case slices.Contains(registryNames(t), s.Name):
			if env("REGISTRY_HTTP_DEBUG_PROMETHEUS_ENABLED") != "true" {
				t.Errorf("registry %s serves no metrics", s.Name)
			}
			want[s.Name+":"+port(env("REGISTRY_HTTP_DEBUG_ADDR"))] = true
		}
	}
	for tg := range want {
		if !targets[tg] {
			t.Errorf("Prometheus does not scrape %s", tg)
		}
	}
	for tg := range targets {
		if !want[tg] {
			t.Errorf("Prometheus scrapes %s, which serves no metrics", tg)
		}
	}
}
