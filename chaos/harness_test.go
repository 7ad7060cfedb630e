package chaos

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	taskqueuepb "go.temporal.io/api/taskqueue/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/dchain-dev/dchain/activities"
	"github.com/dchain-dev/dchain/devstack"
	"github.com/dchain-dev/dchain/worker"
	"github.com/dchain-dev/dchain/workflows"
)

// Secrets the processes read from their environment.
const (
	apiToken    = "chaos-api-token"
	hookSecret  = "chaos-hook-secret"
	triggerKey  = "chaos-trigger-secret"
	secretsEnv  = "DCHAIN_CHAOS_API_TOKEN=" + apiToken
	hookEnv     = "DCHAIN_CHAOS_HOOK_SECRET=" + hookSecret
	triggerEnv  = "DCHAIN_CHAOS_TRIGGER_SECRET=" + triggerKey
	temporalLog = "temporal.log"
)

// world is the suite's deployment: processes of the real binary, the
// registries (src direct, eu and us behind proxies), the receiver.
type world struct {
	dir, bin, config string
	temporalPort     int
	temporal         *process
	workers          map[string]*process
	apis             []*process
	apiURLs          []string
	src, eu, us      *devstack.Registry
	euProxy, usProxy *proxy
	receiver         *receiver
	client           client.Client
	kills            int
}

var w *world

func TestMain(m *testing.M) {
	code, err := run(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func run(m *testing.M) (int, error) {
	dir, err := os.MkdirTemp("", "dchain-chaos-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	w = &world{dir: dir, bin: filepath.Join(dir, "dchain"), workers: map[string]*process{}}
	// The two builds as make build makes them: every process starts as the
	// client build, which hands dev and worker over to dchain-server (the
	// same process, so kills land where they would in a deployment).
	for bin, tags := range map[string]string{w.bin: "dchain_client", filepath.Join(dir, "dchain-server"): ""} {
		if out, err := exec.Command("go", "build", "-tags", tags, "-o", bin, "../cmd/dchain").CombinedOutput(); err != nil {
			return 0, fmt.Errorf("build %s: %v\n%s", bin, err, out)
		}
	}
	defer w.stop()
	return w.start(m)
}

func (w *world) start(m *testing.M) (int, error) {
	var err error
	for name, r := range map[string]**devstack.Registry{"src": &w.src, "eu": &w.eu, "us": &w.us} {
		if *r, err = devstack.StartRegistry(name, "127.0.0.1:0", filepath.Join(w.dir, "registries", name)); err != nil {
			return 0, err
		}
	}
	w.euProxy, err = startProxy(w.eu.Addr)
	if err != nil {
		return 0, err
	}
	w.usProxy, err = startProxy(w.us.Addr)
	if err != nil {
		return 0, err
	}
	w.receiver = newReceiver()
	if err := w.writeConfig(); err != nil {
		return 0, err
	}
	if w.temporalPort, err = devstack.FreePort("127.0.0.1"); err != nil {
		return 0, err
	}
	if err := w.startTemporal(); err != nil {
		return 0, err
	}
	if w.client, err = (worker.Connection{Address: w.temporalAddr()}).Dial(context.Background()); err != nil {
		return 0, err
	}
	for _, name := range []string{"chains", "eu", "us-1", "us-2"} {
		if err := w.startWorker(name); err != nil {
			return 0, err
		}
	}
	for i := range 2 {
		port, err := devstack.FreePort("127.0.0.1")
		if err != nil {
			return 0, err
		}
		w.apis, w.apiURLs = append(w.apis, nil), append(w.apiURLs, fmt.Sprintf("http://127.0.0.1:%d", port))
		if err := w.startAPI(i); err != nil {
			return 0, err
		}
	}
	for _, q := range []string{workflows.DefaultTaskQueue, workflows.ReplicationQueue(workflows.DefaultTaskQueue, "eu"), workflows.ReplicationQueue(workflows.DefaultTaskQueue, "us")} {
		if err := w.waitPollers(q, 1, 30*time.Second); err != nil {
			return 0, err
		}
	}
	code := m.Run()
	fmt.Printf("chaos: %d processes killed\n", w.kills)
	return code, nil
}

// writeConfig writes dchain.yaml and the chains the tests use.
func (w *world) writeConfig() error {
	w.config = filepath.Join(w.dir, "dchain.yaml")
	cfg := fmt.Sprintf(`registries:
  - {name: src, address: %q, insecure: true}
  - {name: eu, address: %q, insecure: true}
  - {name: us, address: %q, insecure: true}
chains: [chains/*.yaml]
retry: {maxInterval: 1s}
api: {token: env:DCHAIN_CHAOS_API_TOKEN}
sources:
  - {name: registry, provider: distribution, registry: src, secret: env:DCHAIN_CHAOS_HOOK_SECRET}
`, w.src.Addr, w.euProxy.Addr, w.usProxy.Addr)
	chains := map[string]string{
		"big.yaml": `name: big
scope: {registry: src, namespace: chaos, repository: big}
replication:
  - {name: to-eu, destination: eu, level: repository}
  - {name: to-us, destination: us, level: repository}
`,
		"us.yaml": `name: us
scope: {registry: src, namespace: chaos, repository: us}
replication:
  - {name: to-us, destination: us, level: repository}
`,
		"eu.yaml": `name: eu
scope: {registry: src, namespace: chaos, repository: eu}
replication:
  - {name: to-eu, destination: eu, level: repository}
`,
		"hook.yaml": fmt.Sprintf(`name: hook
scope: {registry: src, namespace: chaos, repository: hook}
triggers:
  - {name: redeploy, url: %q, mode: all, secret: env:DCHAIN_CHAOS_TRIGGER_SECRET}
`, w.receiver.URL+"/redeploy"),
		"gate.yaml": `name: gate
scope: {registry: src, namespace: chaos, repository: gate}
replication:
  - {name: to-us, destination: us, level: repository}
approval: {approvers: [alice], timeout: 720h}
`,
		"intake.yaml": `name: intake
scope: {registry: src, namespace: chaos, repository: intake}
replication:
  - {name: to-us, destination: us, level: repository}
`,
	}
	if err := os.MkdirAll(filepath.Join(w.dir, "chains"), 0o755); err != nil {
		return err
	}
	for f, doc := range chains {
		if err := os.WriteFile(filepath.Join(w.dir, "chains", f), []byte(doc), 0o644); err != nil {
			return err
		}
	}
	if err := os.WriteFile(w.config, []byte(cfg), 0o644); err != nil {
		return err
	}
	out, err := exec.Command(w.bin, "--config", w.config, "chain", "validate").CombinedOutput()
	if err != nil {
		return fmt.Errorf("chain validate: %v\n%s", err, out)
	}
	return nil
}

func (w *world) temporalAddr() string { return fmt.Sprintf("127.0.0.1:%d", w.temporalPort) }

// startTemporal runs `dchain dev` as the Temporal server (and UI) alone.
func (w *world) startTemporal() error {
	uiPort, err := devstack.FreePort("127.0.0.1")
	if err != nil {
		return err
	}
	p, err := w.spawn("temporal", "dev", "--data-dir", filepath.Join(w.dir, "temporal"), "--temporal-port", fmt.Sprint(w.temporalPort),
		"--ui-port", fmt.Sprint(uiPort), "--no-worker", "--no-api", "--no-registries", "--no-receiver")
	if err != nil {
		return err
	}
	w.temporal = p
	if err := devstack.WaitListening(w.temporalAddr(), 60*time.Second); err != nil {
		return fmt.Errorf("temporal: %w (log: %s)", err, p.tail())
	}
	return nil
}

// startAPI runs API replica i on its address.
func (w *world) startAPI(i int) error {
	listen := strings.TrimPrefix(w.apiURLs[i], "http://")
	p, err := w.spawn(fmt.Sprintf("api-%d", i+1), "api", "--listen", listen)
	if err != nil {
		return err
	}
	w.apis[i] = p
	if err := waitHTTP(w.apiURLs[i]+"/healthz", 30*time.Second); err != nil {
		return fmt.Errorf("api %s: %w (log: %s)", listen, err, p.tail())
	}
	return nil
}

// startWorker runs a worker process: "chains" serves the chain queue, a
// region name (or region-N) that region's replication.
func (w *world) startWorker(name string) error {
	args := []string{"worker", "--no-scan", "--work-dir", filepath.Join(w.dir, "work", name)}
	if name == "chains" {
		args = append(args, "--chains-only")
	} else {
		region, _, _ := strings.Cut(name, "-")
		args = append(args, "--region", region)
	}
	p, err := w.spawn("worker-"+name, args...)
	if err != nil {
		return err
	}
	w.workers[name] = p
	return nil
}

// spawn starts the binary with the suite's config, Temporal address and secrets.
func (w *world) spawn(name string, args ...string) (*process, error) {
	logPath := filepath.Join(w.dir, "logs", name+".log")
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return nil, err
	}
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(w.bin, append([]string{"--config", w.config, "--address", w.temporalAddr()}, args...)...)
	cmd.Env = append(os.Environ(), secretsEnv, hookEnv, triggerEnv)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, err
	}
	p := &process{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() { cmd.Wait(); log.Close(); close(p.done) }()
	return p, nil
}

// kill SIGKILLs a process (no clean shutdown) and waits for it.
func (w *world) kill(p *process) {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
	w.kills++
}

func (w *world) stop() {
	for _, p := range w.apis {
		p.stop()
	}
	for _, p := range w.workers {
		p.stop()
	}
	if w.client != nil {
		w.client.Close()
	}
	if w.temporal != nil {
		w.temporal.stop()
	}
	for _, r := range []*devstack.Registry{w.src, w.eu, w.us} {
		if r != nil {
			r.Stop()
		}
	}
	if w.receiver != nil {
		w.receiver.Close()
	}
}

// waitPollers waits until n workers poll queue (activity or workflow).
func (w *world) waitPollers(queue string, n int, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		got := 0
		for _, typ := range []enumspb.TaskQueueType{enumspb.TASK_QUEUE_TYPE_ACTIVITY, enumspb.TASK_QUEUE_TYPE_WORKFLOW} {
			resp, err := w.client.WorkflowService().DescribeTaskQueue(context.Background(), &workflowservice.DescribeTaskQueueRequest{
				Namespace: "default", TaskQueue: &taskqueuepb.TaskQueue{Name: queue, Kind: enumspb.TASK_QUEUE_KIND_NORMAL}, TaskQueueType: typ})
			if err == nil {
				got = max(got, len(resp.Pollers))
			}
		}
		if got >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("task queue %s: %d pollers after %s, want %d", queue, got, d, n)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// process is one running dchain process.
type process struct {
	name, logPath string
	cmd           *exec.Cmd
	done          chan struct{}
}

func (p *process) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// tail is the end of the process's log, for failure messages.
func (p *process) tail() string {
	b, _ := os.ReadFile(p.logPath)
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}

// receiver stands in for a cluster's redeploy hook that fails: it answers
// 500 to the first Fail deliveries, then 202, and records them all.
type receiver struct {
	*httptest.Server
	mu         sync.Mutex
	fail       int
	deliveries []delivery
}

type delivery struct {
	key, run string
	status   int
	signed   bool
}

func newReceiver() *receiver {
	r := &receiver{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		var body bytes.Buffer
		body.ReadFrom(req.Body)
		d := delivery{key: req.Header.Get(activities.HeaderIdempotency), run: req.Header.Get(activities.HeaderRun),
			signed: activities.VerifySignature(triggerKey, body.Bytes(), req.Header.Get(activities.HeaderSignature)), status: http.StatusAccepted}
		r.mu.Lock()
		if r.fail > 0 {
			r.fail--
			d.status = http.StatusInternalServerError
		}
		r.deliveries = append(r.deliveries, d)
		r.mu.Unlock()
		rw.WriteHeader(d.status)
	}))
	return r
}

func (r *receiver) failNext(n int) {
	r.mu.Lock()
	r.fail = n
	r.mu.Unlock()
}

func (r *receiver) of(run string) []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []delivery
	for _, d := range r.deliveries {
		if d.run == run {
			out = append(out, d)
		}
	}
	return out
}

func waitHTTP(url string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("%s: %s", url, resp.Status)
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}
