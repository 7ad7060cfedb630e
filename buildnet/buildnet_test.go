package buildnet

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func testPolicy(bridge string) Policy {
	return Policy{
		Bridge: bridge,
		Subnet: netip.MustParsePrefix("10.10.7.0/24"),
		Deny:   append(append([]netip.Prefix{}, DefaultDeny...), netip.MustParsePrefix("203.0.113.7/32")),
		Allow:  []Allow{{Prefix: netip.MustParsePrefix("10.0.5.7/32"), Port: 3128}, {Prefix: netip.MustParsePrefix("10.0.6.0/24")}},
	}
}

// The rules say what the package promises, in an order that keeps it:
// allowed destinations first, then nothing of the host, no other build and
// no denied range; IPv6 closed; every jump matched on the bridge.
func TestRules(t *testing.T) {
	p := testPolicy("dctest0")
	in, fwd, v6 := p.Chains()
	var got []string
	for _, r := range p.Rules() {
		prefix := ""
		if r.IPv6 {
			prefix = "6 "
		}
		if r.Jump {
			prefix += "jump "
		}
		got = append(got, prefix+r.Chain+" "+strings.Join(r.Spec, " "))
	}
	want := []string{
		in + " -d 10.0.5.7/32 -p tcp --dport 3128 -j ACCEPT",
		in + " -d 10.0.5.7/32 -p udp --dport 3128 -j ACCEPT",
		in + " -d 10.0.6.0/24 -j ACCEPT",
		in + " -p tcp -j REJECT --reject-with tcp-reset",
		in + " -j REJECT --reject-with icmp-admin-prohibited",
		fwd + " -d 10.0.5.7/32 -p tcp --dport 3128 -j ACCEPT",
		fwd + " -d 10.0.5.7/32 -p udp --dport 3128 -j ACCEPT",
		fwd + " -d 10.0.6.0/24 -j ACCEPT",
		fwd + " -d 10.10.7.0/24 -p tcp -j REJECT --reject-with tcp-reset",
		fwd + " -d 10.10.7.0/24 -j REJECT --reject-with icmp-admin-prohibited",
	}
	for _, d := range p.Deny {
		want = append(want, fwd+" -d "+d.String()+" -p tcp -j REJECT --reject-with tcp-reset",
			fwd+" -d "+d.String()+" -j REJECT --reject-with icmp-admin-prohibited")
	}
	want = append(want, "6 "+v6+" -j REJECT --reject-with icmp6-adm-prohibited",
		"jump INPUT -i dctest0 -m comment --comment dchain build network -j "+in,
		"jump FORWARD -i dctest0 -m comment --comment dchain build network -j "+fwd,
		"jump CNI-ADMIN -i dctest0 -m comment --comment dchain build network -j "+fwd,
		"jump DOCKER-USER -i dctest0 -m comment --comment dchain build network -j "+fwd,
		"6 jump INPUT -i dctest0 -m comment --comment dchain build network -j "+v6,
		"6 jump FORWARD -i dctest0 -m comment --comment dchain build network -j "+v6)
	if !slices.Equal(got, want) {
		t.Fatalf("rules:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, private := range []string{"10.1.2.3", "172.20.0.5", "192.168.1.1", "169.254.169.254", "100.100.100.200", "127.0.0.1"} {
		a := netip.MustParseAddr(private)
		if !slices.ContainsFunc(DefaultDeny, func(p netip.Prefix) bool { return p.Contains(a) }) {
			t.Errorf("%s is not denied by default", private)
		}
	}
}

func TestParseAllowAndPrefix(t *testing.T) {
	for in, want := range map[string]string{
		"10.0.5.7": "10.0.5.7/32", "10.0.5.7:3128": "10.0.5.7/32:3128", "10.0.5.9/24": "10.0.5.0/24", "10.0.5.0/24:443": "10.0.5.0/24:443",
	} {
		a, err := ParseAllow(in)
		if err != nil || a.String() != want {
			t.Errorf("ParseAllow(%q) = %s, %v; want %s", in, a, err, want)
		}
	}
	for _, bad := range []string{"", "mirror.internal", "10.0.5.7:0", "10.0.5.7:65536", "10.0.5.7:http", "::1", "[::1]:80", "fe80::/10",
		"10.0.5.7/33", "-j ACCEPT", "10.0.5.7 -j ACCEPT", "10.0.5.7:80:90"} {
		if a, err := ParseAllow(bad); err == nil {
			t.Errorf("ParseAllow(%q) = %s, want an error", bad, a)
		}
	}
	if _, err := ParsePrefix("2001:db8::/32"); err == nil || !strings.Contains(err.Error(), "IPv4 only") {
		t.Errorf("an IPv6 prefix: %v", err)
	}
	for _, p := range []Policy{{Bridge: "", Subnet: netip.MustParsePrefix("10.10.0.0/24")}, {Bridge: "a-very-long-bridge-name", Subnet: netip.MustParsePrefix("10.10.0.0/24")},
		{Bridge: "br;rm", Subnet: netip.MustParsePrefix("10.10.0.0/24")}, {Bridge: "br0"}, {Bridge: "br0", Subnet: netip.MustParsePrefix("10.10.0.0/31")}} {
		if err := p.Check(); err == nil {
			t.Errorf("policy %+v passed its check", p)
		}
	}
}

func TestHostResolvers(t *testing.T) {
	f := filepath.Join(t.TempDir(), "resolv.conf")
	os.WriteFile(f, []byte("# comment\nnameserver 127.0.0.53\nnameserver 10.255.255.53\nnameserver fd00::1\nsearch example\nnameserver bogus\n"), 0o644)
	resolved := filepath.Join(t.TempDir(), "resolved.conf")
	os.WriteFile(resolved, []byte("nameserver 10.255.255.53\nnameserver 172.31.0.2\n"), 0o644)
	got := HostResolvers(f, filepath.Join(t.TempDir(), "missing"), resolved)
	if len(got) != 2 || got[0].String() != "10.255.255.53/32:53" || got[1].String() != "172.31.0.2/32:53" {
		t.Fatalf("resolvers %v", got)
	}
	if HostResolvers(filepath.Join(t.TempDir(), "missing")) != nil {
		t.Fatal("a missing resolv.conf has resolvers")
	}
}

// netns runs a command in a fresh network namespace of the test's own (its
// own packet filter tables), removed at the end.
func netns(t *testing.T) func(args ...string) string {
	t.Helper()
	name := fmt.Sprintf("dchain-bn-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	return func(args ...string) string {
		t.Helper()
		out, err := exec.Command("ip", append([]string{"netns", "exec", name}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %v %s", args, err, out)
		}
		return string(out)
	}
}

// The script a deployment's buildkitd container runs, run by the real
// iptables in a namespace of its own, installs exactly Rules, and running
// it again changes nothing.
func TestScriptInstallsTheRules(t *testing.T) {
	p := testPolicy("dctest0")
	script := filepath.Join(t.TempDir(), "build-network.sh")
	if err := os.WriteFile(script, []byte(p.Script()), 0o755); err != nil {
		t.Fatal(err)
	}
	in := netns(t)
	in("sh", script)
	first := in("iptables", "-S") + in("ip6tables", "-S")
	in("sh", script)
	if again := in("iptables", "-S") + in("ip6tables", "-S"); again != first {
		t.Fatalf("a second run changed the rules:\n%s\nthen:\n%s", first, again)
	}
	if n := strings.Count(first, "dchain build network"); n != 5 {
		t.Fatalf("%d jumps without Docker, want 5:\n%s", n, first)
	}
	// On a Docker host (DOCKER-USER exists), its jump too.
	in("iptables", "-N", "DOCKER-USER")
	in("sh", script)
	for _, r := range p.Rules() {
		cmd := "iptables"
		if r.IPv6 {
			cmd = "ip6tables"
		}
		// iptables -C exits 0 when the rule is there.
		in(append([]string{cmd, "-C", r.Chain}, r.Spec...)...)
	}
}

// Apply (the dev stack's way, through go-iptables) installs the same rules
// once however often it runs, and Remove takes every one out again. The
// bridge named exists nowhere, so these rules match no packet of the host.
func TestApplyRemove(t *testing.T) {
	p := testPolicy(fmt.Sprintf("dct%d", os.Getpid()%100000))
	save := func() string {
		out, err := exec.Command("iptables", "-S").CombinedOutput()
		if err != nil {
			t.Fatalf("iptables -S: %v %s", err, out)
		}
		return string(out)
	}
	t.Cleanup(func() { _ = Remove(p) })
	for range 2 {
		if err := Apply(p); err != nil {
			t.Fatal(err)
		}
	}
	applied := save()
	in, fwd, _ := p.Chains()
	if n := strings.Count(applied, "-i "+p.Bridge+" "); n != 3 {
		t.Fatalf("%d IPv4 jumps for %s after two applies, want 3:\n%s", n, p.Bridge, applied)
	}
	if !strings.Contains(applied, "-A "+fwd+" -d 203.0.113.7/32 -p tcp -j REJECT --reject-with tcp-reset") || !strings.Contains(applied, "-N "+in) {
		t.Fatalf("rules missing:\n%s", applied)
	}
	if err := Remove(p); err != nil {
		t.Fatal(err)
	}
	if after := save(); strings.Contains(after, p.Bridge) {
		t.Fatalf("left behind:\n%s", after)
	}
	if err := Remove(p); err != nil {
		t.Fatalf("a second Remove: %v", err)
	}
}

func FuzzParseAllow(f *testing.F) {
	for _, s := range []string{"10.0.5.7", "10.0.5.7:3128", "10.0.5.0/24:443", "::1", "-j ACCEPT", "1.2.3.4/0:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseAllow(s)
		if err != nil {
			return
		}
		// What parses is a masked IPv4 prefix and a port, and prints back
		// as something that parses to the same.
		if !a.Prefix.Addr().Is4() || a.Prefix != a.Prefix.Masked() {
			t.Fatalf("%q parsed to %s", s, a)
		}
		b, err := ParseAllow(a.String())
		if err != nil || b != a {
			t.Fatalf("%q → %s → %s, %v", s, a, b, err)
		}
		if strings.ContainsAny(a.String(), " \t\n;'\"$`\\-") {
			t.Fatalf("%q → %q holds a character a shell or iptables would read", s, a)
		}
	})
}
