package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The client build links none of the server: no Temporal server, Web UI,
// registry, Trivy, BuildKit, KMS SDKs or dev stack (that is what made every
// command start in 0.13 s and 260 MiB).
func TestClientBuildLeavesOutTheServer(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-tags", "dchain_client", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 100 {
		t.Fatalf("go list listed %d packages: %q", len(deps), out)
	}
	for _, d := range deps {
		for _, heavy := range []string{"go.temporal.io/server/", "github.com/temporalio/ui-server", "github.com/aquasecurity/",
			"github.com/distribution/distribution", "github.com/moby/buildkit/", "github.com/dchain-dev/dchain/devstack", "github.com/dchain-dev/dchain/scanner",
			"github.com/dchain-dev/dchain/activities/buildkit", "github.com/sigstore/sigstore/pkg/signature/kms/aws",
			"github.com/sigstore/sigstore/pkg/signature/kms/gcp", "github.com/sigstore/sigstore/pkg/signature/kms/azure", "github.com/sigstore/sigstore/pkg/signature/kms/hashivault",
			"github.com/hashicorp/vault/"} {
			if strings.HasPrefix(d, heavy) || d == strings.TrimSuffix(heavy, "/") {
				t.Errorf("the client build links %s", d)
			}
		}
	}
}

// The client build hands dev and worker (their help and completions too),
// and a verification with a key in a KMS, over to dchain-server in its own place: same process, the arguments as
// given; everything else it runs itself.
func TestClientHandsServerRolesOver(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "dchain")
	if out, err := exec.Command("go", "build", "-tags", "dchain_client", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build the client: %v\n%s", err, out)
	}
	// A stand-in dchain-server that says who it is and what it was given.
	server := "#!/bin/sh\necho \"server pid=$$ args=$*\"\n"
	if err := os.WriteFile(filepath.Join(dir, "dchain-server"), []byte(server), 0o755); err != nil {
		t.Fatal(err)
	}
	env := []string{"PATH=/usr/bin:/bin", "HOME=" + dir}
	run := func(bin string, args ...string) (pid int, stdout, stderr string, err error) {
		cmd := exec.Command(bin, args...)
		cmd.Env, cmd.Dir = env, dir
		var o, e bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &e
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		err = cmd.Wait()
		return cmd.Process.Pid, o.String(), e.String(), err
	}
	for _, args := range [][]string{
		{"--config", "x.yaml", "--log-level", "debug", "worker", "--region", "eu"},
		{"dev", "--headless"},
		{"dev", "seed", "--image", "demo/app:v2"},
		{"worker", "--help"},
		{"help", "dev"},
		{"__complete", "worker", "--reg"},
		{"verify", "demo/app:v1", "--key", "awskms:///alias/ci"}, // a KMS key: the server build has the providers
	} {
		pid, out, errOut, err := run(bin, args...)
		want := fmt.Sprintf("server pid=%d args=%s\n", pid, strings.Join(args, " "))
		if err != nil || out != want {
			t.Errorf("dchain %s: %q %q (%v), want %q", strings.Join(args, " "), out, errOut, err, want)
		}
	}
	for _, args := range [][]string{{"--version"}, {"run", "list", "--help"}, {"help", "run"}, {"__complete", "run", ""}} {
		if _, out, errOut, err := run(bin, args...); err != nil || strings.Contains(out, "server pid") {
			t.Errorf("dchain %s ran in the server: %q %q (%v)", strings.Join(args, " "), out, errOut, err)
		}
	}
	// Through a symlink, the server is found beside the file it points to.
	links := t.TempDir()
	if err := os.Symlink(bin, filepath.Join(links, "dchain")); err != nil {
		t.Fatal(err)
	}
	if _, out, _, err := run(filepath.Join(links, "dchain"), "worker"); err != nil || !strings.HasPrefix(out, "server pid=") {
		t.Errorf("dchain worker through a symlink: %q (%v)", out, err)
	}
	// Pointed at itself as the server: refused, not an endless hand-over.
	env = append(env, "DCHAIN_SERVER="+bin)
	if _, out, errOut, err := run(bin, "worker"); err == nil || out != "" || !strings.Contains(errOut, "is this client build") {
		t.Errorf("DCHAIN_SERVER naming the client itself: %q %q (%v)", out, errOut, err)
	}
	env = env[:len(env)-1]
	// Without a server beside it or on PATH: a clear error, exit status 1.
	alone := t.TempDir()
	if out, err := exec.Command("cp", bin, alone).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	_, out, errOut, err := run(filepath.Join(alone, "dchain"), "worker")
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || out != "" || !strings.Contains(errOut, "dchain-server") || !strings.Contains(errOut, alone) {
		t.Errorf("dchain worker without dchain-server: %q %q (%v)", out, errOut, err)
	}
}
