package devstack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/dchain-dev/dchain/buildnet"
)

// BuildKit is a buildkitd child process: OCI worker (runc), its own state
// directory, trusting the dev registries over plain HTTP, RUN steps on a
// bridge network of their own (package buildnet).
type BuildKit struct {
	Addr string
	// Network is the policy of its builds' network.
	Network buildnet.Policy
	cmd     *exec.Cmd
	done    chan error
	net     *buildNet
}

// binDirs are where the dev stack looks for the tools that
// scripts/install-build-deps.sh puts in bin/: $DCHAIN_BIN_DIR, the dchain
// binary's own directory, and ./bin.
func binDirs() []string {
	var dirs []string
	if d := os.Getenv("DCHAIN_BIN_DIR"); d != "" {
		dirs = append(dirs, d)
	}
	if exe, err := os.Executable(); err == nil {
		dirs = append(dirs, filepath.Dir(exe))
	}
	return append(dirs, "bin")
}

// findTool returns the first regular file rel below one of binDirs.
func findTool(rel string) (string, bool) {
	for _, d := range binDirs() {
		p := filepath.Join(d, rel)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			abs, err := filepath.Abs(p)
			return abs, err == nil
		}
	}
	return "", false
}

// FindBuildKitd returns the buildkitd to run: from binDirs, else PATH.
func FindBuildKitd() (string, error) {
	if p, ok := findTool("buildkitd"); ok {
		return p, nil
	}
	if p, err := exec.LookPath("buildkitd"); err == nil {
		return p, nil
	}
	return "", errors.New("buildkitd not found (run scripts/install-build-deps.sh to build it into bin/, or put it on PATH)")
}

// BuildKitRegistry is a registry buildkitd talks to: over TLS verified by
// CAFile, or (no CAFile) over plain HTTP.
type BuildKitRegistry struct{ Addr, CAFile string }

// cniDirs are where Debian (containernetworking-plugins) and upstream put
// the CNI plugins that BuildKit's bridge mode runs.
var cniDirs = []string{"/usr/lib/cni", "/opt/cni/bin"}

// StartBuildKit runs buildkitd with state under dir, trusting the given
// registries, and waits until it answers. Its RUN steps get a network
// namespace on a bridge of this stack's own, closed to the host and the
// private ranges by the rules of package buildnet (installed first,
// removed by Stop); network.host and security.insecure are not granted.
func StartBuildKit(binary, dir string, registries []BuildKitRegistry, network BuildNetwork, logFile string) (b *BuildKit, err error) {
	dir, err = filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	cni := ""
	for _, d := range cniDirs {
		if _, err := os.Stat(filepath.Join(d, "bridge")); err == nil {
			cni = d
			break
		}
	}
	if cni == "" {
		return nil, fmt.Errorf("the CNI plugins that isolate builds are not in %s (apt-get install containernetworking-plugins; scripts/install-build-deps.sh does)", strings.Join(cniDirs, " or "))
	}
	bn, err := reserveBuildNet(network)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = bn.release()
		}
	}()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	// A buildkitd killed mid-build (SIGKILL of the stack) leaves its
	// snapshot and runc mounts behind: release them before starting again.
	unmountBelow(filepath.Join(dir, "state"))
	sock := filepath.Join(dir, "buildkitd.sock")
	if len(sock) > 100 { // unix socket paths are limited to ~108 bytes
		sock = filepath.Join(os.TempDir(), fmt.Sprintf("dchain-buildkitd-%d.sock", os.Getpid()))
	}
	os.Remove(sock)
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "root = %q\n\n[grpc]\n  address = [%q]\n\n[worker.oci]\n  enabled = true\n  snapshotter = \"overlayfs\"\n  gc = true\n"+
		"  networkMode = \"bridge\"\n  cniBinaryPath = %q\n  bridgeName = %q\n  bridgeSubnet = %q\n  cniPoolSize = 4\n\n[worker.containerd]\n  enabled = false\n\n"+
		"# A Dockerfile's \"# syntax=\" may name Docker's own frontend only: another could ignore network: none.\n"+
		"[frontend.\"gateway.v0\"]\n  allowedRepositories = [%q]\n",
		filepath.Join(dir, "state"), "unix://"+sock, cni, bn.policy.Bridge, bn.policy.Subnet, buildnet.AllowedFrontend)
	for _, r := range registries {
		if r.CAFile != "" {
			fmt.Fprintf(&cfg, "\n[registry.%q]\n  http = false\n  ca = [%q]\n", r.Addr, r.CAFile)
		} else {
			fmt.Fprintf(&cfg, "\n[registry.%q]\n  http = true\n  insecure = true\n", r.Addr)
		}
	}
	cfgPath := filepath.Join(dir, "buildkitd.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg.String()), 0o644); err != nil {
		return nil, err
	}
	out, err := os.OpenFile(logFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(binary, "--config", cfgPath)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		out.Close()
		return nil, fmt.Errorf("start buildkitd: %w", err)
	}
	b = &BuildKit{Addr: "unix://" + sock, Network: bn.policy, cmd: cmd, done: make(chan error, 1), net: bn}
	go func() { b.done <- cmd.Wait(); out.Close() }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if c, err := net.DialTimeout("unix", sock, time.Second); err == nil {
			c.Close()
			return b, nil
		}
		select {
		case werr := <-b.done:
			return nil, fmt.Errorf("buildkitd exited at start (%v); see %s", werr, logFile)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			b.Stop()
			return nil, fmt.Errorf("buildkitd did not listen on %s within 30s; see %s", sock, logFile)
		}
	}
}

// Stop asks buildkitd to exit and waits for it (killing it after 10 s),
// then removes its builds' network rules.
func (b *BuildKit) Stop() {
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	select {
	case <-b.done:
	case <-ctx.Done():
		_ = syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
		<-b.done
	}
	_ = b.net.release()
}

// unmountBelow detaches every mount at or below dir (deepest first).
func unmountBelow(dir string) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var points []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			points = append(points, f[4])
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(points)))
	for _, p := range points {
		_ = syscall.Unmount(p, syscall.MNT_DETACH)
	}
}
