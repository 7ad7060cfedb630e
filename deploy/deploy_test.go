package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dchain-dev/dchain/runs"
	"github.com/dchain-dev/dchain/scanner"
	"github.com/dchain-dev/dchain/workflows"
)

func TestMain(m *testing.M) {
	if playRole() {
		return
	}
	os.Exit(m.Run())
}

// pgBin is Debian's PostgreSQL 15 (make deps installs it).
const pgBin = "/usr/lib/postgresql/15/bin"

// The hosts of the deployment and the compose services each runs: the
// control host (PostgreSQL, Temporal, the API, the chain worker, the trace
// collector) and one host per region (its registry and its region
// worker). A service's name resolves to its host everywhere, as on
// compose's network.
var hosts = map[string][]string{
	"control":   {"postgresql", "temporal", "dchain-api", "dchain-worker", "jaeger"},
	"hangzhou":  {"dchain-worker-hangzhou"},
	"frankfurt": {"dchain-worker-frankfurt"},
	"virginia":  {"dchain-worker-virginia"},
}

// deployment is the running topology.
type deployment struct {
	root     string // deploy-init.sh's output, the binaries, the volumes, the logs
	net      *network
	services map[string]*service
	procs    []*proc
	bin      string // dchain
	temporal *proc
	pushed   map[string]string // image → digest, as the pusher saw it
	ca       string
	userCred string // the registries' user, for the pusher and the readers
}

// The deployment of README's Deploy section, for real on one machine:
// Temporal's server (built from the Temporal module dchain embeds) on
// PostgreSQL 15 (Debian's) whose schema Temporal's SQL tool sets up
// (deploy/temporal-schema.sh), with a frontend that requires client
// certificates of a CA that scripts/deploy-init.sh made; the registries
// over TLS with sign-in, the source one notifying dchain's API of pushes;
// dchain's API, chain worker and one worker per region, each region's
// worker and registry on a host (network namespace) of its own. Every
// process runs with the command, environment and files docker-compose.yml
// gives its service. Then: an image push reaches every region; `dchain
// replicate` copies; a region's link is cut for 60 s in the middle of a
// copy, and Temporal's server is SIGKILLed in the middle of a run: both
// runs complete, digest-identical.
func TestDeployment(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("the deployment test builds network namespaces and runs PostgreSQL as its own user: run it as root (CI does)")
	}
	for _, tool := range []string{"ip", "tc", "openssl", "htpasswd", "curl", "wget", "runuser", pgBin + "/postgres"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing: make deps installs it (%v)", tool, err)
		}
	}
	d := prepare(t)
	d.net = newNetwork(t, hosts)
	t.Cleanup(d.stop)

	d.startPostgreSQL(t)
	d.setUpSchema(t)
	d.startTemporal(t)
	d.runToEnd(t, "control", "dchain-setup", 6*time.Minute)
	d.startCollector(t)
	d.startRegistry(t, "hangzhou", "hangzhou")
	d.startRegistry(t, "frankfurt", "frankfurt")
	d.startRegistry(t, "virginia", "virginia")
	d.startDchain(t, "control", "dchain-api")
	d.startDchain(t, "control", "dchain-worker")
	for _, r := range []string{"hangzhou", "frankfurt", "virginia"} {
		d.startDchain(t, hostOf("dchain-worker-"+r), "dchain-worker-"+r)
	}
	t.Cleanup(func() { d.stillRunning(t) })

	t.Run("TemporalRefusesAClientWithoutCertificate", func(t *testing.T) {
		env := slices.DeleteFunc(d.services["dchain-setup"].environ(), func(kv string) bool {
			return strings.HasPrefix(kv, "TEMPORAL_TLS_CERT=") || strings.HasPrefix(kv, "TEMPORAL_TLS_KEY=")
		})
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, err := d.exec(ctx, "control", env, d.bin, "run", "list")
		if err == nil || !strings.Contains(err.Error(), "requires client certificates (mTLS)") {
			t.Fatalf("run list without a client certificate: %v, want refused, with the mTLS hint", err)
		}
	})

	t.Run("ImagePushReachesEveryRegion", func(t *testing.T) {
		digest := d.push(t, "apps/web:v1", 0)
		run := d.runOf(t, "apps", "apps/web", "v1", 2*time.Minute)
		d.watch(t, run, 3*time.Minute)
		// The record says which DB the scan used: the worker's offline copy.
		if st, err := d.status(t, run); err != nil || st.Scan == nil || st.Scan.DB.Offline != filepath.Join(d.root, "trivy", "db") || st.Scan.DB.Repository != "" {
			t.Errorf("the run's scan: %+v (%v), want the offline DB in %s", st.Scan, err, filepath.Join(d.root, "trivy", "db"))
		}
		for _, r := range []string{"frankfurt", "virginia"} {
			if got := d.digest(t, r, r+":5000/apps/web:v1"); got != digest {
				t.Errorf("%s holds apps/web:v1 at %s, pushed %s", r, got, digest)
			}
		}
		// One trace spans the processes of the run, on three hosts.
		d.traced(t, []string{"dchain-api", "dchain-worker", "dchain-worker-frankfurt", "dchain-worker-virginia"}, time.Minute)
	})

	t.Run("PrometheusTargetsAnswer", func(t *testing.T) {
		b, err := os.ReadFile(filepath.Join(d.root, "deploy", "prometheus.yml"))
		if err != nil {
			t.Fatal(err)
		}
		targets := regexp.MustCompile(`[a-z][a-z0-9-]*:[0-9]+`).FindAllString(string(b[strings.Index(string(b), "scrape_configs:"):]), -1)
		if len(targets) == 0 {
			t.Fatal("deploy/prometheus.yml names no target")
		}
		for _, tg := range targets {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			out, err := d.exec(ctx, "control", nil, "curl", "-fsS", "http://"+tg+"/metrics")
			cancel()
			if err != nil || !strings.Contains(out, "# TYPE ") {
				t.Errorf("Prometheus's target %s: %v", tg, err)
			}
		}
	})

	t.Run("NoSecretInTheRegistryLog", func(t *testing.T) {
		secret := d.services["hangzhou"].env["REGISTRY_NOTIFICATIONS_ENDPOINTS"]
		secret = secret[strings.Index(secret, "Bearer ")+len("Bearer "):]
		secret = secret[:strings.IndexAny(secret, `"]`)]
		if b, _ := os.ReadFile(filepath.Join(d.root, "logs", "hangzhou.log")); len(secret) < 32 || strings.Contains(string(b), secret) {
			t.Errorf("hangzhou's log holds the webhook secret (%d characters)", len(secret))
		}
	})

	t.Run("Replicate", func(t *testing.T) {
		// As `docker compose exec dchain-api dchain replicate …`: with the
		// registries' credentials, which resolve the source and check the
		// destination before the run starts.
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		out, err := d.exec(ctx, "control", d.services["dchain-api"].environ(), d.bin, "replicate", "hangzhou/apps/web:v1", "--to", "virginia/mirror/web:v1", "--watch")
		if err != nil {
			t.Fatalf("dchain replicate: %v\n%s", err, out)
		}
		if got, want := d.digest(t, "virginia", "virginia:5000/mirror/web:v1"), d.pushed["apps/web:v1"]; got != want {
			t.Errorf("virginia holds mirror/web:v1 at %s, want %s", got, want)
		}
	})

	t.Run("LinkCutMidCopy", func(t *testing.T) {
		// 48 MB at 16 Mbit/s: about 25 s of copying into frankfurt.
		d.net.limit(t, "frankfurt", "16mbit")
		digest := d.push(t, "apps/big:v1", 48<<20)
		run := d.runOf(t, "apps", "apps/big", "v1", 2*time.Minute)
		d.waitCopying(t, run, "frankfurt", 2*time.Minute)
		d.net.cut(t, "frankfurt", true)
		cut := time.Now()
		if got := d.digest(t, "frankfurt", "frankfurt:5000/apps/big:v1"); got != "" {
			t.Fatalf("frankfurt already holds apps/big:v1 (%s) when its link is cut: the copy was not in the middle", got)
		}
		time.Sleep(60*time.Second - time.Since(cut))
		d.net.cut(t, "frankfurt", false)
		t.Logf("frankfurt's link was down %s in the middle of the copy", time.Since(cut).Round(time.Second))
		d.watch(t, run, 8*time.Minute)
		for _, r := range []string{"frankfurt", "virginia"} {
			if got := d.digest(t, r, r+":5000/apps/big:v1"); got != digest {
				t.Errorf("%s holds apps/big:v1 at %s, pushed %s", r, got, digest)
			}
		}
	})

	t.Run("TemporalKilledMidRun", func(t *testing.T) {
		digest := d.push(t, "apps/big:v2", 48<<20)
		run := d.runOf(t, "apps", "apps/big", "v2", 2*time.Minute)
		d.waitCopying(t, run, "frankfurt", 2*time.Minute)
		d.temporal.kill(syscall.SIGKILL)
		t.Log("Temporal's server SIGKILLed in the middle of the run")
		time.Sleep(5 * time.Second)
		d.startTemporal(t)
		d.runToEnd(t, "control", "dchain-setup", 3*time.Minute) // waits for it, and finds the namespace ready
		d.watch(t, run, 8*time.Minute)
		for _, r := range []string{"frankfurt", "virginia"} {
			if got := d.digest(t, r, r+":5000/apps/big:v2"); got != digest {
				t.Errorf("%s holds apps/big:v2 at %s, pushed %s", r, got, digest)
			}
		}
	})
}

func hostOf(svc string) string {
	for h, names := range hosts {
		if h == svc || slices.Contains(names, svc) {
			return h
		}
	}
	panic("no host runs " + svc)
}

// prepare lays out what an operator's checkout holds after
// scripts/deploy-init.sh, in a directory of its own, and builds the
// binaries: dchain, and Temporal's server and SQL tool at go.mod's version.
func prepare(t *testing.T) *deployment {
	t.Helper()
	root, err := os.MkdirTemp("", "dchain-deploy-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(root, 0o755); err != nil { // PostgreSQL's user reaches its data dir
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !t.Failed() {
			os.RemoveAll(root)
		} else {
			t.Logf("the deployment's files and logs are kept in %s", root)
		}
	})
	// The repository's own files (git's list: nothing a developer's
	// deploy-init.sh left in this checkout), as an operator clones them.
	files, err := exec.Command("git", "-C", "..", "ls-files", "-z", "docker-compose.yml", "scripts/deploy-init.sh", "deploy").Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	for _, f := range strings.Split(strings.TrimRight(string(files), "\x00"), "\x00") {
		b, err := os.ReadFile(filepath.Join("..", f))
		if err != nil {
			t.Fatal(err)
		}
		fi, _ := os.Stat(filepath.Join("..", f))
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, f), b, fi.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command("bash", filepath.Join(root, "scripts", "deploy-init.sh")).CombinedOutput(); err != nil {
		t.Fatalf("deploy-init.sh: %v\n%s", err, out)
	}
	d := &deployment{root: root, pushed: map[string]string{}, bin: filepath.Join(root, "bin", "dchain")}
	d.services = loadServices(t, root)

	// dchain.yaml names files as the dchain containers see them.
	worker := d.services["dchain-worker"]
	cfgPath := worker.path(worker.env["DCHAIN_CONFIG"])
	cfg, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg = regexp.MustCompile(`file:(\S+)`).ReplaceAllFunc(cfg, func(m []byte) []byte {
		return []byte("file:" + worker.path(string(m[len("file:"):])))
	})
	if err := os.WriteFile(cfgPath, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	d.ca = worker.path("/etc/dchain/certs/ca.pem")
	d.userCred = d.services["dchain-worker-hangzhou"].env["DCHAIN_HANGZHOU_CREDENTIALS"]

	for out, pkg := range map[string]string{"dchain": "github.com/dchain-dev/dchain/cmd/dchain", "temporal-server": "go.temporal.io/server/cmd/server", "temporal-sql-tool": "go.temporal.io/server/cmd/tools/sql"} {
		if b, err := exec.Command("go", "build", "-o", filepath.Join(root, "bin", out), pkg).CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", pkg, err, b)
		}
	}
	return d
}

func (d *deployment) stop() {
	for _, p := range slices.Backward(d.procs) {
		if !p.exited() {
			p.kill(syscall.SIGTERM)
		}
	}
}

// startPostgreSQL initialises the database as the postgres image does
// with postgres.env (its user is the superuser, signing in over TCP with
// its password) and serves it on the control host.
func (d *deployment) startPostgreSQL(t *testing.T) {
	t.Helper()
	s := d.services["postgresql"]
	data := s.path("/var/lib/postgresql/data")
	sock := filepath.Join(d.root, "pgsock")
	pw := filepath.Join(d.root, "pgpass")
	if err := os.MkdirAll(sock, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pw, []byte(s.env["POSTGRES_PASSWORD"]+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pg, err := user.Lookup("postgres")
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(pg.Uid)
	gid, _ := strconv.Atoi(pg.Gid)
	for _, p := range []string{data, sock, pw} {
		if err := os.Chown(p, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command("runuser", "-u", "postgres", "--", pgBin+"/initdb", "-D", data, "-U", s.env["POSTGRES_USER"],
		"--pwfile", pw, "--auth-local", "trust", "--auth-host", "scram-sha-256").CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	hba, err := os.OpenFile(filepath.Join(data, "pg_hba.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(hba, "host all all all scram-sha-256")
	hba.Close()
	// setpriv execs (runuser would fork and stay the parent): postgres is
	// the process the test kills, and dies with it.
	p := d.spawn(t, "control", "postgresql", s.environ(), "setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--pdeathsig=KILL", "--",
		pgBin+"/postgres", "-D", data, "-k", sock, "-c", "listen_addresses=*")
	d.healthy(t, "control", s, p, time.Minute)
}

// setUpSchema runs the compose schema job's script with Temporal's SQL tool.
func (d *deployment) setUpSchema(t *testing.T) {
	t.Helper()
	s := d.services["temporal-schema"]
	env := s.environ("TEMPORAL_SCHEMA_DIR="+filepath.Join(moduleDir(t, "go.temporal.io/server"), "schema"), "PATH="+filepath.Join(d.root, "bin")+":"+os.Getenv("PATH"))
	script := s.path(s.command0(t))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for i := range 2 { // the second time, everything is there already
		if out, err := d.exec(ctx, "control", env, "sh", script); err != nil {
			t.Fatalf("temporal-schema.sh (run %d): %v\n%s", i+1, err, out)
		}
	}
}

// command0 is the script a service's entrypoint runs (["/bin/sh", script]).
func (s *service) command0(t *testing.T) string {
	t.Helper()
	for p := range s.mounts {
		if strings.HasSuffix(p, ".sh") {
			return p
		}
	}
	t.Fatalf("%s runs no script", s.name)
	return ""
}

// startTemporal runs the server as its image does: the image's entrypoint
// script (from the Temporal module), on a host name of the service's own
// (compose's container names resolve; the script broadcasts that
// address), with the service's environment, which the server's embedded
// config template reads; it returns once the frontend listens.
func (d *deployment) startTemporal(t *testing.T) {
	t.Helper()
	s := d.services["temporal"]
	entrypoint := filepath.Join(moduleDir(t, "go.temporal.io/server"), "docker", "scripts", "sh", "entrypoint.sh")
	// bash for the image's busybox sh (Debian's dash lacks pipefail).
	d.temporal = d.spawn(t, "control", "temporal", s.environ("PATH="+filepath.Join(d.root, "bin")+":"+os.Getenv("PATH")),
		"unshare", "--uts", "bash", "-c", `hostname temporal && exec bash "$0"`, entrypoint)
	d.ready(t, "control", d.temporal, 2*time.Minute, nil, "bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/7233") // the frontend listens
}

// startCollector runs the trace collector the services export to (compose's
// jaeger service, whose OTLP/HTTP port the test serves itself) on the
// control host.
func (d *deployment) startCollector(t *testing.T) {
	t.Helper()
	self, _ := os.Executable()
	p := d.spawn(t, "control", "jaeger", []string{roleEnv + "=otlp", "DCHAIN_DEPLOY_SPANS=" + filepath.Join(d.root, "spans")}, self)
	d.ready(t, "control", p, 30*time.Second, nil, "curl", "-s", "-o", "/dev/null", "http://127.0.0.1:4318/")
}

// traced waits for a trace holding spans of every one of services, as
// their OTEL_SERVICE_NAME names them.
func (d *deployment) traced(t *testing.T, services []string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		b, _ := os.ReadFile(filepath.Join(d.root, "spans"))
		byTrace := map[string]map[string]bool{}
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) == 3 {
				if byTrace[f[1]] == nil {
					byTrace[f[1]] = map[string]bool{}
				}
				byTrace[f[1]][f[0]] = true
			}
		}
		for id, seen := range byTrace {
			if !slices.ContainsFunc(services, func(s string) bool { return !seen[s] }) {
				t.Logf("trace %s spans %v", id, slices.Sorted(maps.Keys(seen)))
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no trace spans all of %v after %s; %d traces seen", services, within, len(byTrace))
		}
		time.Sleep(time.Second)
	}
}

// runToEnd runs a one-shot dchain service (its compose command) on host.
func (d *deployment) runToEnd(t *testing.T, host, name string, within time.Duration) {
	t.Helper()
	s := d.services[name]
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	if out, err := d.exec(ctx, host, s.environ(), append([]string{d.bin}, s.command...)...); err != nil {
		t.Fatalf("%s: %v\n%s\nTemporal's log:\n%s", name, err, out, d.temporal.tail())
	}
}

// startRegistry serves a registry service on host: distribution's server
// with the image's config and the service's REGISTRY_* variables, its
// storage where the service's volume is.
func (d *deployment) startRegistry(t *testing.T, host, name string) {
	t.Helper()
	s := d.services[name]
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p := d.spawn(t, host, name, s.environ(roleEnv+"=registry",
		"DCHAIN_DEPLOY_REGISTRY_CONFIG="+filepath.Join(moduleDir(t, "github.com/distribution/distribution/v3"), "cmd", "registry", "config-dev.yml"),
		"REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY="+s.path("/var/lib/registry")), self)
	d.healthy(t, host, s, p, time.Minute)
}

// startDchain runs a dchain service on host with its compose command;
// the chain worker scans with a DB of its own instead of compose's Trivy
// server (a third-party image this machine cannot run).
func (d *deployment) startDchain(t *testing.T, host, name string) {
	t.Helper()
	s := d.services[name]
	args := slices.Clone(s.command)
	if i := slices.Index(args, "--trivy-server"); i >= 0 {
		cache := filepath.Join(d.root, "trivy")
		advisories, err := scanner.DemoAdvisories()
		if err != nil {
			t.Fatal(err)
		}
		if err := scanner.BuildDB(filepath.Join(cache, "db"), advisories); err != nil {
			t.Fatal(err)
		}
		args = slices.Replace(args, i, i+2, "--trivy-offline", "--trivy-cache-dir", cache)
	}
	// The image's DCHAIN_WORK_DIR, private to each container.
	p := d.spawn(t, host, name, s.environ("DCHAIN_WORK_DIR="+filepath.Join(d.root, "work", name)), append([]string{d.bin}, args...)...)
	if s.healthcheck != nil {
		d.healthy(t, host, s, p, 2*time.Minute)
	}
}

// cli runs a dchain command on the control host as an operator does
// there: the setup service's environment (Temporal over mTLS, no secret).
func (d *deployment) cli(t *testing.T, within time.Duration, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	return d.exec(ctx, "control", d.services["dchain-setup"].environ(), append([]string{d.bin}, args...)...)
}

// userEnv is the environment of a user's registry client on a host.
func (d *deployment) userEnv(role, ref string, extra ...string) []string {
	return append([]string{"PATH=" + os.Getenv("PATH"), roleEnv + "=" + role, "DCHAIN_DEPLOY_REF=" + ref,
		"DCHAIN_DEPLOY_CA=" + d.ca, "DCHAIN_DEPLOY_CREDENTIALS=" + d.userCred}, extra...)
}

// push pushes image (namespace/repo:tag) to the source registry from the
// control host: size bytes of random layer, or the two-platform sample.
func (d *deployment) push(t *testing.T, image string, size int64) string {
	t.Helper()
	self, _ := os.Executable()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := d.exec(ctx, "control", d.userEnv("push", "hangzhou:5000/"+image, "DCHAIN_DEPLOY_SIZE="+strconv.FormatInt(size, 10)), self)
	if err != nil {
		t.Fatalf("push %s: %v", image, err)
	}
	d.pushed[image] = strings.TrimSpace(out)
	return d.pushed[image]
}

// digest is what ref names on its registry, read from host ("" when
// absent).
func (d *deployment) digest(t *testing.T, host, ref string) string {
	t.Helper()
	self, _ := os.Executable()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := d.exec(ctx, host, d.userEnv("digest", ref), self)
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.ExitCode() == absentExit {
		return ""
	}
	if err != nil {
		t.Fatalf("read %s from %s: %v", ref, host, err)
	}
	return strings.TrimSpace(out)
}

// runOf waits for the run the push of repo:tag started (through the
// registry's notification to the API) and returns its id.
func (d *deployment) runOf(t *testing.T, chainName, repo, tag string, within time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		out, err := d.cli(t, 30*time.Second, "run", "list", "--chain", chainName, "--repository", repo, "--tag", tag, "-o", "json")
		var rows []runs.Row
		if err == nil {
			if err = json.Unmarshal([]byte(out), &rows); err == nil && len(rows) > 0 {
				return rows[0].WorkflowID
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no run of %s for %s:%s after %s (%v); the API's log:\n%s", chainName, repo, tag, within, err, d.logOf("dchain-api"))
		}
		time.Sleep(time.Second)
	}
}

// status is a run's record as `dchain run show -o json` prints it.
func (d *deployment) status(t *testing.T, run string) (workflows.RunStatus, error) {
	t.Helper()
	var st workflows.RunStatus
	out, err := d.cli(t, 30*time.Second, "run", "show", run, "-o", "json")
	if err == nil {
		err = json.Unmarshal([]byte(out), &st)
	}
	return st, err
}

// waitCopying waits until run is copying into registry: some bytes
// there, not all.
func (d *deployment) waitCopying(t *testing.T, run, registry string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		st, err := d.status(t, run)
		if err == nil && st.Outcome != workflows.OutcomeRunning {
			t.Fatalf("%s ended %s before copying into %s: %s", run, st.Outcome, registry, st.Message)
		}
		if err == nil {
			for _, dst := range st.Destinations {
				if dst.Registry == registry && dst.BytesCopied > 0 && (dst.BytesTotal == 0 || dst.BytesCopied < dst.BytesTotal) && dst.State != workflows.StateSucceeded {
					t.Logf("%s: %d of %d bytes copied into %s", run, dst.BytesCopied, dst.BytesTotal, registry)
					return
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is not copying into %s after %s (%v): %+v", run, registry, within, err, st.Destinations)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// watch follows run with `dchain run watch` until it ends; it must
// succeed. A watch that loses Temporal (restarting) is started again.
func (d *deployment) watch(t *testing.T, run string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		out, err := d.cli(t, time.Until(deadline), "run", "watch", run)
		if err == nil {
			return
		}
		if d.temporal.exited() {
			t.Fatalf("Temporal's server stopped while run %s ran; its log:\n%s", run, d.temporal.tail())
		}
		st, serr := d.status(t, run)
		if serr == nil && st.Outcome != workflows.OutcomeRunning || time.Now().After(deadline) {
			t.Fatalf("run %s did not succeed: %v\n%s\nrecord: %+v\nfrankfurt's worker:\n%s", run, err, out, st, d.logOf("dchain-worker-frankfurt"))
		}
		time.Sleep(2 * time.Second)
	}
}

// logOf is the end of a service's log.
func (d *deployment) logOf(name string) string {
	for _, p := range slices.Backward(d.procs) {
		if p.name == name {
			return p.tail()
		}
	}
	return ""
}

// stillRunning fails the test for every long-running service that ended
// on its own (Temporal's server, killed and restarted by the test, is
// judged by its last start).
func (d *deployment) stillRunning(t *testing.T) {
	for _, p := range d.procs {
		if p.exited() && (p.name != "temporal" || p == d.temporal) {
			t.Errorf("%s stopped during the test; its log:\n%s", p.name, p.tail())
		}
	}
}

// moduleDir is where the module go.mod pins (at its version) is on disk:
// the files its images ship come from there.
func moduleDir(t *testing.T, path string) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", path).Output()
	if err != nil {
		t.Fatalf("go list -m %s: %v", path, err)
	}
	return strings.TrimSpace(string(out))
}
