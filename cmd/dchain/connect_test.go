package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dchain-dev/dchain/devstack"
	"github.com/dchain-dev/dchain/worker"
)

// The CLI reaches an mTLS Temporal endpoint (the embedded server serving
// TLS with a CA of the test's own) with flags and with the temporal CLI's
// TEMPORAL_TLS_* variables, and fails clearly without a client
// certificate, in plaintext and with a wrong server name. `dchain setup`
// creates a namespace and its search attributes once; a worker refuses a
// namespace without them.
func TestMTLSTemporal(t *testing.T) {
	dir := t.TempDir()
	ca, err := devstack.NewCA(filepath.Join(dir, "ca"))
	if err != nil {
		t.Fatal(err)
	}
	server, err := ca.Issue("temporal", "127.0.0.1", "temporal.test")
	if err != nil {
		t.Fatal(err)
	}
	cl, err := ca.Issue("dchain-worker")
	if err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	tmp, err := devstack.StartTemporal(devstack.TemporalOptions{Port: port, DataDir: filepath.Join(dir, "temporal"), LogLevel: "error",
		TLS: &devstack.ServerTLS{Pair: server, ClientCAFile: ca.CertFile, ServerName: "temporal.test"}})
	if err != nil {
		t.Fatal(err)
	}
	defer tmp.Stop()
	addr := "127.0.0.1:" + strconv.Itoa(port)
	cfg := filepath.Join(dir, "dchain.yaml")
	if err := os.WriteFile(cfg, []byte("registries: [{name: hz, address: '127.0.0.1:5999', insecure: true}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tlsFlags := []string{"--address", addr, "--tls-cert-path", cl.CertFile, "--tls-key-path", cl.KeyFile, "--tls-ca-path", ca.CertFile}

	out, err := dchain(t, append([]string{"--config", cfg, "setup", "--namespace", "prod"}, tlsFlags...)...)
	if err != nil {
		t.Fatalf("setup over mTLS with flags: %v", err)
	}
	if !strings.Contains(out, "namespace prod: created") || !strings.Contains(out, "registered search attributes") || !strings.Contains(out, "DchainChain") {
		t.Fatalf("setup said:\n%s", out)
	}

	for k, v := range map[string]string{"TEMPORAL_ADDRESS": addr, "TEMPORAL_NAMESPACE": "prod",
		"TEMPORAL_TLS_CERT": cl.CertFile, "TEMPORAL_TLS_KEY": cl.KeyFile, "TEMPORAL_TLS_CA": ca.CertFile} {
		t.Setenv(k, v)
	}
	out, err = dchain(t, "--config", cfg, "setup")
	if err != nil || !strings.Contains(out, "namespace prod: ready (nothing to change)") {
		t.Fatalf("setup again, over mTLS from the environment: %v\n%s", err, out)
	}
	if _, err = dchain(t, "--config", cfg, "run", "list"); err != nil {
		t.Fatalf("run list over mTLS from the environment: %v", err)
	}

	// A namespace made without dchain's attributes: a worker refuses it,
	// naming what is missing and the fix; --register-search-attributes adds them.
	c, err := worker.Connection{}.Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := worker.EnsureNamespace(context.Background(), c, "bare", 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	workerArgs := []string{"--config", cfg, "--namespace", "bare", "worker", "--no-scan", "--work-dir", filepath.Join(dir, "work")}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		// (a new namespace reaches the frontend's cache within seconds)
		if _, err = dchain(t, workerArgs...); err == nil || !strings.Contains(err.Error(), "not found") || time.Now().After(deadline) {
			break
		}
	}
	if err == nil || !strings.Contains(err.Error(), "namespace bare lacks dchain's search attributes (missing DchainChain, ") || !strings.Contains(err.Error(), "dchain setup") {
		t.Fatalf("a worker on a bare namespace: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	out, err = dchainContext(ctx, t, append(workerArgs, "--register-search-attributes")...)
	if err != nil || !strings.Contains(out, "namespace bare: registered search attributes DchainChain, ") {
		t.Fatalf("worker --register-search-attributes: %v\n%s", err, out)
	}

	t.Setenv("TEMPORAL_TLS_CERT", "")
	t.Setenv("TEMPORAL_TLS_KEY", "")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no client certificate", []string{"run", "list"}, "if the server requires client certificates (mTLS), give --tls-cert-path and --tls-key-path"},
		{"plaintext", []string{"--tls=false", "run", "list"}, "plaintext"},
		{"wrong server name", []string{"--tls-cert-path", cl.CertFile, "--tls-key-path", cl.KeyFile, "--tls-server-name", "other.test", "run", "list"}, "other.test"},
	} {
		_, err := dchain(t, append([]string{"--config", cfg}, tc.args...)...)
		if err == nil || !strings.Contains(err.Error(), "connect to Temporal at "+addr) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want a connection error naming %s and %q", tc.name, err, addr, tc.want)
		}
	}
}

// dchain runs the CLI in this process and returns what it printed.
func dchain(t *testing.T, args ...string) (string, error) {
	return dchainContext(context.Background(), t, args...)
}

func dchainContext(ctx context.Context, t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	return out.String(), err
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// `dchain setup --wait` waits for a Temporal that is not up yet (as in a
// deployment starting: compose's dchain-setup), saying so, and sets it up
// once it answers; without --wait, or past it, it fails at once.
func TestSetupWaitsForTemporal(t *testing.T) {
	dir := t.TempDir()
	port := freePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	cfg := filepath.Join(dir, "dchain.yaml")
	if err := os.WriteFile(cfg, []byte("registries: [{name: hz, address: '127.0.0.1:5999', insecure: true}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := dchain(t, "--config", cfg, "--address", addr, "setup"); err == nil || !strings.Contains(err.Error(), "connect to Temporal at "+addr) || time.Since(start) > 20*time.Second {
		t.Fatalf("setup without --wait and without Temporal: %v after %s", err, time.Since(start))
	}

	up := make(chan *devstack.Temporal, 1)
	go func() {
		time.Sleep(4 * time.Second)
		tmp, err := devstack.StartTemporal(devstack.TemporalOptions{Port: port, DataDir: filepath.Join(dir, "temporal"), LogLevel: "error"})
		if err != nil {
			t.Error(err)
		}
		up <- tmp
	}()
	root := newRoot()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs([]string{"--config", cfg, "--address", addr, "setup", "--wait", "2m"})
	err := root.Execute()
	if tmp := <-up; tmp != nil {
		defer tmp.Stop()
	}
	if err != nil || !strings.Contains(out.String(), "namespace default: ") {
		t.Fatalf("setup --wait: %v\n%s", err, out.String())
	}
	if !strings.Contains(errOut.String(), "waiting for Temporal (") {
		t.Errorf("setup --wait did not say it was waiting:\n%s", errOut.String())
	}
}
