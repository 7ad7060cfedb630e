package deploy

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// proc is a process running on one of the hosts.
type proc struct {
	name, host string
	cmd        *exec.Cmd
	log        string
	done       chan struct{}
}

// spawn starts args on host (in its namespace) with env; its output goes
// to logs/NAME.log, shown when the test fails.
func (d *deployment) spawn(t *testing.T, host, name string, env []string, args ...string) *proc {
	t.Helper()
	logPath := filepath.Join(d.root, "logs", name+".log")
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", d.net.ns(host)}, args...)...)
	cmd.Env, cmd.Stdout, cmd.Stderr = env, f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{name: name, host: host, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); f.Close(); close(p.done) }()
	d.procs = append(d.procs, p)
	return p
}

// kill sends sig to the process's group and waits for it to end.
func (p *proc) kill(sig syscall.Signal) {
	_ = syscall.Kill(-p.cmd.Process.Pid, sig)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// exited says whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// tail is the end of the process's log.
func (p *proc) tail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}

// exec runs args on host to the end and returns its standard output.
func (d *deployment) exec(ctx context.Context, host string, env []string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", d.net.ns(host)}, args...)...)
	var out, errOut bytes.Buffer
	cmd.Env, cmd.Stdout, cmd.Stderr = env, &out, &errOut
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errOut.String()))
	}
	return out.String(), nil
}

// healthy runs the service's own compose health check on host until it
// passes; p is the service's process, whose log a failure shows.
func (d *deployment) healthy(t *testing.T, host string, s *service, p *proc, within time.Duration) {
	t.Helper()
	if len(s.healthcheck) == 0 {
		t.Fatalf("%s has no health check in docker-compose.yml", s.name)
	}
	d.ready(t, host, p, within, s.environ(), s.healthcheck...)
}

// ready runs probe on host until it passes, and fails the test when p
// exits first or within has passed, showing p's log.
func (d *deployment) ready(t *testing.T, host string, p *proc, within time.Duration, env []string, probe ...string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := d.exec(ctx, host, env, probe...)
		cancel()
		if err == nil {
			// Ready, and itself: a process that failed to start while
			// another answers the same probe is not.
			time.Sleep(time.Second)
			if p.exited() {
				t.Fatalf("%s passed %q but has exited; its log:\n%s", p.name, probe, p.tail())
			}
			return
		}
		if p.exited() || time.Now().After(deadline) {
			t.Fatalf("%s is not ready (%q: %v); its log:\n%s", p.name, probe, err, p.tail())
		}
		time.Sleep(time.Second)
	}
}
