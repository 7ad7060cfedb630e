package devstack

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/dchain-dev/dchain/activities"
	"github.com/dchain-dev/dchain/chain"
	"github.com/dchain-dev/dchain/workflows"
)

// outsideHost is an HTTP server that stands for the internet: in a network
// namespace of the test's own, at an address in no private range, routed
// from the host through a veth pair. Removed when the test ends.
// private is the same server at an address in a private range, where a
// deployment's services live.
type outsideHost struct{ url, host, port, private string }

func startOutside(t *testing.T, body string) outsideHost {
	t.Helper()
	pid := os.Getpid()
	ns := fmt.Sprintf("dchain-out-%d", pid)
	hostIf, nsIf := fmt.Sprintf("dcoh%d", pid), fmt.Sprintf("dcon%d", pid)
	hostIP, nsIP := fmt.Sprintf("198.18.%d.1", pid%250), fmt.Sprintf("198.18.%d.2", pid%250)
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v %s", args, err, out)
		}
	}
	ip("netns", "add", ns)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() }) // (takes the veth pair with it)
	ip("link", "add", hostIf, "type", "veth", "peer", "name", nsIf, "netns", ns)
	ip("addr", "add", hostIP+"/30", "dev", hostIf)
	ip("link", "set", hostIf, "up")
	ip("-n", ns, "addr", "add", nsIP+"/30", "dev", nsIf)
	ip("-n", ns, "link", "set", nsIf, "up")
	ip("-n", ns, "link", "set", "lo", "up")
	privHost, privNS := fmt.Sprintf("172.31.%d.1", pid%250), fmt.Sprintf("172.31.%d.2", pid%250)
	ip("addr", "add", privHost+"/30", "dev", hostIf)
	ip("-n", ns, "addr", "add", privNS+"/30", "dev", nsIf)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "index.html"), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := exec.Command("ip", "netns", "exec", ns, "busybox", "httpd", "-f", "-p", "8080", "-h", dir)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Process.Kill(); _ = srv.Wait() })
	o := outsideHost{url: "http://" + nsIP + ":8080/", host: nsIP, port: "8080", private: privNS + ":8080"}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		got, err := httpBody(o.url)
		priv, perr := httpBody("http://" + o.private + "/")
		if err == nil && got == body && perr == nil && priv == body {
			return o
		}
		if time.Now().After(deadline) {
			t.Fatalf("the outside server at %s did not answer", o.url)
		}
	}
}

func httpBody(url string) (string, error) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func randomHex(t *testing.T) string {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func portOf(t *testing.T, hostport string) string {
	t.Helper()
	hostport = strings.TrimPrefix(strings.TrimPrefix(hostport, "http://"), "https://")
	_, p, err := net.SplitHostPort(strings.TrimSuffix(hostport, "/"))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// probeScript is a RUN step of a hostile push: it tries every target
// (HOST:PORT; a refused or unanswered connection is "closed"), tries to
// terminate the victim run through the Web UI's HTTP API, reaches for the
// outside, reads the namespace's sockets and looks for buildkitd's socket.
// It writes what it saw into /probe of the image.
const probeScript = `#!/bin/sh
# http HOST PORT METHOD PATH [BODY]: one HTTP/1.0 request over nc (busybox's
# wget crashes here); exit 1 when the connection is refused.
http() {
  printf '%s %s HTTP/1.0\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %s\r\n\r\n%s' \
    "$3" "$4" "$1" "${#5}" "$5" | timeout 10 nc -w 5 "$1" "$2"
}
mkdir -p /probe
for t in $TARGETS; do
  timeout 5 nc -w 3 "${t%:*}" "${t##*:}" </dev/null >/dev/null 2>&1
  if [ $? -eq 1 ]; then echo "closed $t"; else echo "open $t"; fi
done > /probe/connect.txt
if http $TERMINATE POST "$TERMINATE_PATH" '{"reason":"from a build"}' > /probe/terminate.txt; then
  echo reached >> /probe/terminate.txt
else
  echo refused > /probe/terminate.txt
fi
if http $OUTSIDE GET / > /tmp/outside; then sed '1,/^\r$/d' /tmp/outside > /probe/outside.txt; else echo unreachable > /probe/outside.txt; fi
cat /proc/net/tcp /proc/net/tcp6 > /probe/tcp.txt 2>/dev/null
if [ -e "$BUILDKIT_SOCK" ]; then echo visible; else echo absent; fi > /probe/buildkitd.txt
`

// A pushed repository whose RUN step attacks the platform reaches none of
// it: not Temporal's gRPC port, the Web UI (the victim run of another chain
// is not terminated), the API (here listening on every interface), the
// trigger receiver, any registry or buildkitd, on loopback or on any of
// the host's addresses; it sees no socket of the host. The same build
// reaches an outside server, and a chain with network: none does not.
func TestBuildIsolation(t *testing.T) {
	token := "outside-" + randomHex(t)
	outside := startOutside(t, token)

	// The API on every interface: only the host's own addresses lead to it.
	l0, _ := testChain("it-iso-api", "shop/isoapi")
	_, apiSrv := apiServer(t, l0, stack.Client)
	apiLn, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = http.Serve(apiLn, apiSrv.Handler()) }()
	t.Cleanup(func() { apiLn.Close() })

	// The victim: another chain's build, running while the attack runs.
	victimSrc := filepath.Join(t.TempDir(), "victim")
	writeRepo(t, victimSrc, map[string]string{"Dockerfile": "ARG BASE\nFROM ${BASE}\nRUN sleep 10 && echo victim > /victim.txt\n"})
	lv := buildChain(t, "it-victim", "shop/victim", victimSrc, "linux/amd64")
	lv.Chains[0].Build.Rules[0].NoCache = true
	victim := startPush(t, lv, "refs/heads/main", false)

	ports := []string{portOf(t, stack.Temporal.Address), portOf(t, stack.Endpoints.UI), portOf(t, stack.Endpoints.Receiver),
		portOf(t, apiLn.Addr().String())}
	for _, addr := range stack.Endpoints.Registries {
		ports = append(ports, portOf(t, addr))
	}
	hosts := []string{"127.0.0.1"}
	used, err := hostPrefixes()
	if err != nil {
		t.Fatal(err)
	}
	gateway := stack.BuildKit.Network.Subnet.Addr().Next().String()
	for _, p := range used {
		hosts = append(hosts, p.prefix.Addr().String())
	}
	hosts = append(hosts, gateway) // (the bridge may have its address only once a build ran)
	var targets []string
	seen := map[string]bool{}
	for _, h := range hosts {
		for _, p := range ports {
			if t := net.JoinHostPort(h, p); !seen[t] {
				seen[t] = true
				targets = append(targets, t)
			}
		}
	}
	targets = append(targets, outside.private) // a service in a private range, which the host reaches
	sort.Strings(targets)
	uiPort := portOf(t, stack.Endpoints.UI)
	sock := strings.TrimPrefix(stack.BuildKit.Addr, "unix://")
	dockerfile := fmt.Sprintf("ARG BASE\nFROM ${BASE}\nCOPY probe.sh /probe.sh\n"+
		"ENV TARGETS=%q TERMINATE=%q TERMINATE_PATH=%q OUTSIDE=%q BUILDKIT_SOCK=%q\nRUN sh /probe.sh\n",
		strings.Join(targets, " "), gateway+" "+uiPort, "/api/v1/namespaces/default/workflows/"+victim.WorkflowID+"/terminate",
		outside.host+" "+outside.port, sock)
	src := filepath.Join(t.TempDir(), "hostile")
	writeRepo(t, src, map[string]string{"Dockerfile": dockerfile, "probe.sh": probeScript})
	l := buildChain(t, "it-hostile", "shop/hostile", src, "linux/amd64")
	l.Chains[0].Build.Rules[0].NoCache = true
	st := waitRun(t, startPush(t, l, "refs/heads/main", false).WorkflowID, 3*time.Minute)
	if st.Outcome != workflows.OutcomeSucceeded {
		t.Fatalf("hostile build: outcome %s: %s", st.Outcome, st.Message)
	}
	ref := stack.Endpoints.Registries["src"] + "/shop/hostile:latest"

	connect := fileInImage(t, ref, "linux/amd64", "probe/connect.txt")
	lines := strings.Split(connect, "\n")
	if len(lines) != len(targets) {
		t.Fatalf("probed %d of %d targets:\n%s", len(lines), len(targets), connect)
	}
	for _, line := range lines {
		if !strings.HasPrefix(line, "closed ") {
			t.Errorf("a RUN step reached %s", strings.TrimPrefix(line, "open "))
		}
	}
	if got := fileInImage(t, ref, "linux/amd64", "probe/terminate.txt"); got != "refused" {
		t.Errorf("the Web UI's terminate endpoint answered a RUN step: %q", got)
	}
	if got := fileInImage(t, ref, "linux/amd64", "probe/outside.txt"); got != token {
		t.Errorf("a RUN step did not reach the outside server %s: %q", outside.url, got)
	}
	if got := fileInImage(t, ref, "linux/amd64", "probe/buildkitd.txt"); got != "absent" {
		t.Errorf("buildkitd's socket %s is visible to a RUN step", sock)
	}
	// /proc/net/tcp of the RUN step's namespace: no listening socket at all
	// (state 0A), so none of the host's.
	for _, line := range strings.Split(fileInImage(t, ref, "linux/amd64", "probe/tcp.txt"), "\n") {
		if f := strings.Fields(line); len(f) > 3 && f[3] == "0A" {
			t.Errorf("a RUN step sees a listening socket: %s", line)
		}
	}
	// The victim ran to its end, untouched.
	if vst := waitRun(t, victim.WorkflowID, 3*time.Minute); vst.Outcome != workflows.OutcomeSucceeded {
		t.Errorf("victim run: %s: %s", vst.Outcome, vst.Message)
	}

	// network: none — a hermetic build reaches nothing, not even the outside.
	hermetic := filepath.Join(t.TempDir(), "hermetic")
	writeRepo(t, hermetic, map[string]string{"Dockerfile": fmt.Sprintf(
		"ARG BASE\nFROM ${BASE}\nRUN (printf 'GET / HTTP/1.0\\r\\n\\r\\n' | timeout 10 nc -w 5 %s %s > /outside.txt) || echo unreachable > /outside.txt\n", outside.host, outside.port)})
	lh := buildChain(t, "it-hermetic", "shop/hermetic", hermetic, "linux/amd64")
	lh.Chains[0].Build.Rules[0].Network = chain.NetworkNone
	lh.Chains[0].Build.Rules[0].NoCache = true
	if st := waitRun(t, startPush(t, lh, "refs/heads/main", false).WorkflowID, 3*time.Minute); st.Outcome != workflows.OutcomeSucceeded {
		t.Fatalf("hermetic build: %s: %s", st.Outcome, st.Message)
	}
	if got := fileInImage(t, stack.Endpoints.Registries["src"]+"/shop/hermetic:latest", "linux/amd64", "outside.txt"); got != "unreachable" {
		t.Errorf("a network: none build reached the outside: %q", got)
	}
}

// RUN --network=host and --security=insecure need entitlements that dchain
// never asks for and buildkitd never grants, and a "# syntax=" line may name
// Docker's own frontend only: such a build fails for good.
func TestBuildRefusesHostNetworkAndInsecure(t *testing.T) {
	for _, c := range []struct{ name, dockerfile, want string }{
		{"host", "ARG BASE\nFROM ${BASE}\nRUN --network=host true\n", "network.host is not allowed"},
		{"insecure", "ARG BASE\nFROM ${BASE}\nRUN --security=insecure true\n", "security.insecure is not allowed"},
		// A frontend of the pusher's choosing could ignore network: none.
		{"frontend", "# syntax=" + stack.Endpoints.Registries["src"] + "/evil/frontend:1\nFROM scratch\n", "is not an allowed gateway source"},
	} {
		src := filepath.Join(t.TempDir(), c.name)
		writeRepo(t, src, map[string]string{"Dockerfile": c.dockerfile})
		l := buildChain(t, "it-entitle-"+c.name, "shop/entitle-"+c.name, src, "linux/amd64")
		st := waitFailed(t, startPush(t, l, "refs/heads/main", false).WorkflowID)
		if st.FailedStage != workflows.StageBuild || !strings.Contains(st.Message, c.want) {
			t.Errorf("%s: failure %s: %s", c.name, st.FailedStage, st.Message)
		}
	}
}

// The build context of a chain resolves inside the checkout: a pushed
// repository whose context directory is a symlink to the worker host's
// files fails at once, naming the path, and builds nothing.
func TestBuildContextSymlinkOutsideFails(t *testing.T) {
	outsideDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(outsideDir, "Dockerfile"), []byte("ARG BASE\nFROM ${BASE}\nCOPY . /stolen\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(t.TempDir(), "escape")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outsideDir, filepath.Join(src, "app")); err != nil {
		t.Fatal(err)
	}
	writeRepo(t, src, map[string]string{"README": "escape\n"})
	l := buildChain(t, "it-escape", "shop/escape", src, "linux/amd64")
	l.Chains[0].Build.Rules[0].Context = "app"
	st := waitFailed(t, startPush(t, l, "refs/heads/main", false).WorkflowID)
	if st.FailedStage != workflows.StageBuild || !strings.Contains(st.Message, `context "app" leads outside the repository`) {
		t.Fatalf("failure %s: %s", st.FailedStage, st.Message)
	}
	r, _ := name.ParseReference(stack.Endpoints.Registries["src"]+"/shop/escape:latest", name.Insecure)
	if _, err := remote.Head(r); err == nil {
		t.Fatal("an image was pushed from a context outside the checkout")
	}
}

// A build secret reaches the RUN step that mounts it, and nowhere else: not
// the image's layers, the build log artifact (a RUN step that prints it is
// masked), the run's history, or any process's arguments while it builds.
func TestBuildSecretNeverLeaks(t *testing.T) {
	secret := "s3cret-" + randomHex(t)
	t.Setenv("DCHAIN_TEST_BUILD_SECRET", secret)
	src := filepath.Join(t.TempDir(), "secret")
	writeRepo(t, src, map[string]string{"Dockerfile": "ARG BASE\nFROM ${BASE}\n" +
		"RUN --mount=type=secret,id=npmrc sleep 2 && sha256sum /run/secrets/npmrc | cut -d' ' -f1 > /secret.sha256 && cat /run/secrets/npmrc\n"})
	l := buildChain(t, "it-secret", "shop/secret", src, "linux/amd64")
	l.Chains[0].Build.Rules[0].Secrets = map[string]chain.SecretRef{"npmrc": "env:DCHAIN_TEST_BUILD_SECRET"}
	l.Chains[0].Build.Rules[0].NoCache = true

	// Sample every process's arguments while the build runs.
	argv := watchArgv(secret)
	started := startPush(t, l, "refs/heads/main", false)
	st := waitRun(t, started.WorkflowID, 3*time.Minute)
	inArgv := argv()
	if st.Outcome != workflows.OutcomeSucceeded {
		t.Fatalf("outcome %s: %s", st.Outcome, st.Message)
	}
	if len(inArgv) > 0 {
		t.Errorf("the secret was in a process's arguments: %v", inArgv)
	}
	ref := stack.Endpoints.Registries["src"] + "/shop/secret:latest"
	if got := fileInImage(t, ref, "linux/amd64", "secret.sha256"); got != sha256Hex(secret) {
		t.Fatalf("the RUN step did not get the secret: sha256 %q", got)
	}
	// Every byte of every layer, the config and the manifest.
	r, _ := name.ParseReference(ref, name.Insecure)
	img, err := remote.Image(r)
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	for i, layer := range layers {
		rc, err := layer.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		if strings.Contains(string(b), secret) {
			t.Errorf("the secret is in layer %d of the image", i)
		}
	}
	cfg, _ := img.RawConfigFile()
	man, _ := img.RawManifest()
	if strings.Contains(string(cfg)+string(man), secret) {
		t.Error("the secret is in the image's config or manifest")
	}
	src0, _ := l.Config.Registry("src")
	log, err := (&activities.Activities{}).ReadBuildLog(context.Background(), src0, st.Build.Log)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(log), secret) || !strings.Contains(string(log), "  | ***") {
		t.Errorf("build log: the printed secret is not masked:\n%s", log)
	}
	h := historyText(t, started.WorkflowID)
	if strings.Contains(h, secret) || !strings.Contains(h, "env:DCHAIN_TEST_BUILD_SECRET") {
		t.Error("the run's history holds the secret's value (or not even its reference)")
	}

	// A secret the worker cannot read fails the build at once, naming it.
	l.Chains[0].Build.Rules[0].Secrets = map[string]chain.SecretRef{"npmrc": "env:DCHAIN_TEST_BUILD_SECRET_UNSET"}
	fst := waitFailed(t, startPush(t, l, "refs/heads/main", true).WorkflowID)
	if !strings.Contains(fst.Message, "build secret npmrc: secret env:DCHAIN_TEST_BUILD_SECRET_UNSET") {
		t.Errorf("unreadable secret: %s", fst.Message)
	}
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
