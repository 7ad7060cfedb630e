package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// `dchain dev` whose API port is taken says so and exits non-zero before
// it starts anything (it used to go on without an API).
func TestDevRefusesATakenAPIPort(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "dchain.yaml")
	doc := "registries: [{name: hz, address: '127.0.0.1:5999', insecure: true}]\napi: {listen: '" + busy.Addr().String() + "'}\n"
	if err := os.WriteFile(cfg, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	root := newRoot()
	root.SetArgs([]string{"--config", cfg, "dev", "--data-dir", filepath.Join(dir, "data"), "--headless", "--no-buildkit", "--no-scan"})
	root.SilenceUsage, root.SilenceErrors = true, true
	err = root.Execute()
	if err == nil || !strings.Contains(err.Error(), busy.Addr().String()) || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("dev with a taken API port: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "temporal")); !os.IsNotExist(err) {
		t.Fatalf("something started before the API port was checked (%v)", err)
	}
}

// `run start` checks its flags with the shared validator before it reads
// the config or dials Temporal: an option-shaped commit or ref never gets
// further (it used to reach `git fetch` on the worker).
func TestRunStartRefusesHostileFlags(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "pwned")
	for _, tc := range []struct {
		args  []string
		field string
	}{
		{[]string{"--ref", "refs/heads/main", "--commit", "--upload-pack=touch " + marker}, "--commit"},
		{[]string{"--ref", "refs/heads/--upload-pack=touch " + marker}, "--ref"},
		{[]string{"--ref", `refs/heads/a\' OR WorkflowType = "ChainRun" -- `}, "--ref"},
		{[]string{"--ref", "main"}, "--ref"},
		{[]string{"--ref", "refs/heads/main", "--commit", "abc1234"}, "--commit"},
		{[]string{"--image", "Demo/App:v1"}, "--image"},
		{[]string{"--image", "demo/app:sha256:abc"}, "--image"},
	} {
		root := newRoot()
		root.SetArgs(append([]string{"--config", "/nonexistent/dchain.yaml", "run", "start", "--chain", "demo"}, tc.args...))
		root.SilenceUsage, root.SilenceErrors = true, true
		err := root.Execute()
		if err == nil || !strings.HasPrefix(err.Error(), tc.field+": ") {
			t.Errorf("%v: %v, want an error naming %s", tc.args, err, tc.field)
		}
	}
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Fatal("the injected command ran")
	}
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 200 << 20: "200.0 MiB", 3 << 30: "3.0 GiB", 5 << 40: "5120.0 GiB"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestParseSeverities(t *testing.T) {
	got, err := parseSeverities([]string{"critical", " High "})
	if err != nil || strings.Join(got, ",") != "CRITICAL,HIGH" {
		t.Fatalf("%v %v", got, err)
	}
	if _, err := parseSeverities([]string{"severe"}); err == nil || !strings.HasPrefix(err.Error(), "--severity: ") {
		t.Fatalf("an unknown severity: %v", err)
	}
}

func TestVersion(t *testing.T) {
	if v := version(); !strings.Contains(v, "go1.") || !strings.Contains(v, "commit ") {
		t.Fatalf("version %q", v)
	}
}

// `dchain dev` watches its config: a webhook source added to the file
// answers without a restart.
func TestDevReloadsItsConfig(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("DCHAIN_TEST_HOOK_SECRET", "s3cret")
	api := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	hz, fr := freePort(t), freePort(t)
	cfg := filepath.Join(dir, "dchain.yaml")
	doc := fmt.Sprintf("registries:\n  - {name: hz, address: '127.0.0.1:%d', insecure: true}\n  - {name: fr, address: '127.0.0.1:%d', insecure: true}\napi: {listen: %q, token: env:DCHAIN_TEST_HOOK_SECRET}\n", hz, fr, api)
	if err := os.WriteFile(cfg, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := dchainContext(ctx, t, "--config", cfg, "--log-level", "warn", "dev", "--data-dir", filepath.Join(dir, "data"), "--headless", "--no-buildkit", "--no-scan",
			"--temporal-port", fmt.Sprint(freePort(t)), "--receiver-port", fmt.Sprint(freePort(t)), "--region", fmt.Sprintf("hz=%d", hz), "--region", fmt.Sprintf("fr=%d", fr))
		done <- err
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("dev: %v", err)
		}
	}()
	status := func() int {
		resp, err := http.Post("http://"+api+"/webhooks/late", "application/json", strings.NewReader("{}"))
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	waitUntil(t, "the dev API answers", func() bool { return status() == http.StatusNotFound })
	doc += "sources:\n  - {name: late, provider: distribution, registry: hz, secret: env:DCHAIN_TEST_HOOK_SECRET}\n"
	if err := os.WriteFile(cfg, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the added source answers (401: it exists, the delivery is unsigned)", func() bool { return status() == http.StatusUnauthorized })
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 30 s", what)
		}
	}
}

// Worker flags outside their range are refused, naming the flag, before
// anything starts.
func TestWorkerRefusesBadConcurrency(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "dchain.yaml")
	if err := os.WriteFile(cfg, []byte("registries: [{name: hz, address: '127.0.0.1:5999', insecure: true}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, flag := range []string{"--max-concurrent-copies", "--max-concurrent-activities", "--max-concurrent-workflow-tasks",
		"--workflow-task-pollers", "--activity-task-pollers"} {
		_, err := dchain(t, "--config", cfg, "worker", "--no-scan", flag, "0")
		if err == nil || !strings.HasPrefix(err.Error(), flag+" 0: ") {
			t.Errorf("%s 0: %v", flag, err)
		}
	}
}

// Hostile build-network flags are refused naming the flag, before anything
// starts; a good one reaches the script.
func TestBuildNetworkFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"dev", "--data-dir", t.TempDir(), "--build-allow", "mirror.internal"}, "--build-allow: "},
		{[]string{"dev", "--data-dir", t.TempDir(), "--build-deny", "10.0.0.0/8 -j ACCEPT"}, "--build-deny: "},
		{[]string{"build-network", "--allow", "10.0.5.7:0"}, "--allow: "},
		{[]string{"build-network", "--deny", "::1"}, "--deny: "},
		{[]string{"build-network", "--subnet", "10.10.0.0/31"}, "--bridge/--subnet: subnet"},
		{[]string{"build-network", "--subnet", "fd00::/64"}, "--subnet: "},
		{[]string{"build-network", "--bridge", "br0;reboot"}, "--bridge/--subnet: bridge"},
	} {
		if _, err := dchain(t, c.args...); err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q…", c.args, err, c.want)
		}
	}
	out, err := dchain(t, "build-network", "--allow", "10.0.5.7:3128", "--deny", "203.0.113.10")
	if err != nil || !strings.Contains(out, "-d 10.0.5.7/32 -p tcp --dport 3128 -j ACCEPT") || !strings.Contains(out, "-d 203.0.113.10/32 -p tcp -j REJECT") {
		t.Fatalf("script (%v):\n%s", err, out)
	}
}
