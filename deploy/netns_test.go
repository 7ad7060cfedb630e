package deploy

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// network is the deployment's network: one namespace per host, each with
// an eth0 cabled to a switch (a bridge in a namespace of its own), and
// the compose service names resolved to the hosts that run them (the
// /etc/netns/NS/hosts that `ip netns exec` shows a process as /etc/hosts).
// Every address lives inside these namespaces; the machine's own network
// is not touched.
type network struct {
	prefix  string
	hosts   map[string]string // host name → address
	madeEtc bool              // /etc/netns did not exist before
}

// hubNS is the namespace of the switch.
func (n *network) hubNS() string { return n.prefix + "hub" }

// ns is the namespace of host h.
func (n *network) ns(h string) string { return n.prefix + h }

// port is the switch's port cabled to host h.
func (n *network) port(h string) string { return "p-" + h }

// newNetwork builds the namespaces; names maps each host to the service
// names it answers to. t.Cleanup removes everything.
func newNetwork(t *testing.T, names map[string][]string) *network {
	t.Helper()
	removeStale()
	n := &network{prefix: fmt.Sprintf("dct%d-", os.Getpid()), hosts: map[string]string{}}
	t.Cleanup(n.remove)
	ipRun(t, "netns", "add", n.hubNS())
	ipRun(t, "-n", n.hubNS(), "link", "add", "sw", "type", "bridge")
	ipRun(t, "-n", n.hubNS(), "link", "set", "sw", "up")
	var hosts strings.Builder
	hosts.WriteString("127.0.0.1 localhost\n")
	i := 1
	for _, h := range sortedKeys(names) {
		addr := fmt.Sprintf("10.77.0.%d", i)
		i++
		n.hosts[h] = addr
		ipRun(t, "netns", "add", n.ns(h))
		ipRun(t, "-n", n.hubNS(), "link", "add", n.port(h), "type", "veth", "peer", "name", "eth0", "netns", n.ns(h))
		ipRun(t, "-n", n.hubNS(), "link", "set", n.port(h), "master", "sw", "up")
		ipRun(t, "-n", n.ns(h), "addr", "add", addr+"/24", "dev", "eth0")
		ipRun(t, "-n", n.ns(h), "link", "set", "eth0", "up")
		ipRun(t, "-n", n.ns(h), "link", "set", "lo", "up")
		fmt.Fprintf(&hosts, "%s %s %s\n", addr, h, strings.Join(names[h], " "))
	}
	if _, err := os.Stat("/etc/netns"); os.IsNotExist(err) {
		n.madeEtc = true // removed again with the namespaces
	}
	for h := range names {
		dir := filepath.Join("/etc/netns", n.ns(h))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "hosts"), []byte(hosts.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return n
}

// cut unplugs host h's cable (true) or plugs it back (false).
func (n *network) cut(t *testing.T, h string, down bool) {
	t.Helper()
	state := "up"
	if down {
		state = "down"
	}
	ipRun(t, "-n", n.hubNS(), "link", "set", n.port(h), state)
}

// limit makes the switch send to host h at rate (tc's tbf), so that a
// copy into h's region takes long enough to be cut in the middle.
func (n *network) limit(t *testing.T, h, rate string) {
	t.Helper()
	if out, err := exec.Command("tc", "-n", n.hubNS(), "qdisc", "replace", "dev", n.port(h), "root", "tbf", "rate", rate, "burst", "64kb", "latency", "400ms").CombinedOutput(); err != nil {
		t.Fatalf("tc: %v: %s", err, out)
	}
}

func (n *network) remove() {
	for h := range n.hosts {
		_ = exec.Command("ip", "netns", "del", n.ns(h)).Run()
		_ = os.RemoveAll(filepath.Join("/etc/netns", n.ns(h)))
	}
	_ = exec.Command("ip", "netns", "del", n.hubNS()).Run()
	if n.madeEtc {
		_ = os.Remove("/etc/netns") // only if empty: another run's may be there
	}
}

// removeStale removes what a killed run of this test left: the
// namespaces (and their hosts files) of a process that is gone.
func removeStale() {
	out, _ := exec.Command("ip", "netns", "list").Output()
	for _, m := range regexp.MustCompile(`(?m)^(dct(\d+)-\S+)`).FindAllStringSubmatch(string(out), -1) {
		if _, err := os.Stat("/proc/" + m[2]); err == nil {
			continue
		}
		_ = exec.Command("ip", "netns", "del", m[1]).Run()
		_ = os.RemoveAll(filepath.Join("/etc/netns", m[1]))
	}
}

func ipRun(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}
