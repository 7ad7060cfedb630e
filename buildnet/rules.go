package buildnet

import (
	"strconv"
	"strings"

	"al.essio.dev/pkg/shellescape"
)

// Rule is one packet filter rule of the filter table.
type Rule struct {
	// IPv6 marks an ip6tables rule.
	IPv6 bool
	// Chain is where the rule goes. One of the policy's own chains (made
	// afresh on every Apply, rules appended) or, with Jump, a chain that is
	// not the policy's (INPUT, FORWARD, CNI-ADMIN): inserted first, once.
	Chain string
	Jump  bool
	// IfChain marks a jump from a chain another program owns and makes:
	// inserted only where that chain exists. MakeChain, one from a chain
	// that is shared: made first where it is missing.
	IfChain, MakeChain bool
	Spec               []string
}

// resolversScript allows the resolvers of resolv.conf on port 53 in the
// chains {in} and {fwd} (replaced by the policy's); only dotted-quad values
// reach iptables.
const resolversScript = `# The resolvers of this host's resolv.conf (or systemd-resolved's upstream list), on port 53; BuildKit replaces loopback ones.
for ns in $(awk '$1 == "nameserver" && $2 ~ /^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$/ && $2 !~ /^127\./ {print $2}' /etc/resolv.conf /run/systemd/resolve/resolv.conf 2>/dev/null); do
  for chain in {in} {fwd}; do for proto in udp tcp; do
    iptables -w -I "$chain" 1 -d "$ns" -p "$proto" --dport 53 -j ACCEPT
  done; done
done
`

// cniAdmin is the chain the CNI firewall plugin (which BuildKit's bridge
// mode runs) jumps to before it accepts a container's traffic: the place
// for an administrator's rules, evaluated even when the plugin puts its
// own jump above ours in FORWARD.
const cniAdmin = "CNI-ADMIN"

const comment = "dchain build network"

const dockerUser = "DOCKER-USER"

// Chains returns the policy's own chains: IPv4 traffic to the host, IPv4
// traffic through it, and everything IPv6.
func (p Policy) Chains() (in, fwd, v6 string) {
	return "DCHAIN-IN-" + p.Bridge, "DCHAIN-FWD-" + p.Bridge, "DCHAIN6-" + p.Bridge
}

// Rules are the policy's rules, in order.
func (p Policy) Rules() []Rule {
	in, fwd, v6 := p.Chains()
	var rs []Rule
	add := func(ipv6 bool, chain string, spec ...string) {
		rs = append(rs, Rule{IPv6: ipv6, Chain: chain, Spec: spec})
	}
	allow := func(chain string) {
		for _, a := range p.Allow {
			if a.Port == 0 {
				add(false, chain, "-d", a.Prefix.String(), "-j", "ACCEPT")
				continue
			}
			for _, proto := range []string{"tcp", "udp"} {
				add(false, chain, "-d", a.Prefix.String(), "-p", proto, "--dport", strconv.Itoa(int(a.Port)), "-j", "ACCEPT")
			}
		}
	}
	reject := func(chain string, dst ...string) {
		add(false, chain, append(dst, "-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset")...)
		add(false, chain, append(dst, "-j", "REJECT", "--reject-with", "icmp-admin-prohibited")...)
	}

	// To the host (any of its addresses, the bridge's gateway included):
	// nothing but what is allowed.
	allow(in)
	reject(in)
	// Through the host: what is allowed, then no other build, then no
	// denied range; the rest (the internet) goes on to BuildKit's NAT.
	allow(fwd)
	reject(fwd, "-d", p.Subnet.Masked().String())
	for _, d := range p.Deny {
		reject(fwd, "-d", d.Masked().String())
	}
	// IPv6: none at all (the bridge has no IPv6 subnet, but link-local
	// addresses would reach the host's [::] listeners).
	add(true, v6, "-j", "REJECT", "--reject-with", "icmp6-adm-prohibited")

	// The jumps, matched on the bridge interface (a RUN step with
	// CAP_NET_RAW can forge its source address, not its interface).
	jump := func(r Rule, to string) {
		r.Jump, r.Spec = true, []string{"-i", p.Bridge, "-m", "comment", "--comment", comment, "-j", to}
		rs = append(rs, r)
	}
	jump(Rule{Chain: "INPUT"}, in)
	jump(Rule{Chain: "FORWARD"}, fwd)
	jump(Rule{Chain: cniAdmin, MakeChain: true}, fwd)
	// On a Docker host, Docker puts its chains above every other rule of
	// FORWARD (and accepts what its published ports DNAT to): DOCKER-USER
	// is where it evaluates an administrator's rules first.
	jump(Rule{Chain: dockerUser, IfChain: true}, fwd)
	jump(Rule{IPv6: true, Chain: "INPUT"}, v6)
	jump(Rule{IPv6: true, Chain: "FORWARD"}, v6)
	return rs
}

// Script is the policy as a POSIX shell script of iptables commands, for
// a buildkitd container to run before buildkitd starts (the deployment's
// buildkitd image has iptables but not dchain). It is idempotent, like
// Apply; the IPv6 part runs where the kernel has IPv6. It also allows the
// IPv4 resolvers of the resolv.conf of wherever it runs on port 53 (what
// HostResolvers gives Apply), read when it runs: BuildKit hands builds
// that resolv.conf, and a container's is not known before.
func (p Policy) Script() string {
	var b strings.Builder
	b.WriteString("#!/bin/sh\n# The network policy of build RUN steps (made by `dchain build-network`; see README, Build isolation).\n")
	b.WriteString("# Bridge " + p.Bridge + ", subnet " + p.Subnet.String() + ".\nset -eu\n")
	line := func(ipv6 bool, s string) {
		if ipv6 {
			b.WriteString("[ ! -e /proc/net/if_inet6 ] || ")
		}
		b.WriteString(s + "\n")
	}
	made := map[string]bool{}
	for _, r := range p.Rules() {
		cmd := "iptables -w"
		if r.IPv6 {
			cmd = "ip6tables -w"
		}
		spec := shellescape.QuoteCommand(r.Spec)
		switch {
		case r.Jump:
			if r.MakeChain {
				line(r.IPv6, cmd+" -N "+r.Chain+" 2>/dev/null || true")
			}
			insert := "{ " + cmd + " -C " + r.Chain + " " + spec + " 2>/dev/null || " + cmd + " -I " + r.Chain + " 1 " + spec + "; }"
			if r.IfChain {
				insert = "! " + cmd + " -S " + r.Chain + " >/dev/null 2>&1 || " + insert
			}
			line(r.IPv6, insert)
		default:
			if !made[r.Chain] {
				made[r.Chain] = true
				line(r.IPv6, "{ "+cmd+" -N "+r.Chain+" 2>/dev/null || "+cmd+" -F "+r.Chain+"; }")
			}
			line(r.IPv6, cmd+" -A "+r.Chain+" "+spec)
		}
	}
	in, fwd, _ := p.Chains()
	b.WriteString(strings.NewReplacer("{in}", in, "{fwd}", fwd).Replace(resolversScript))
	return b.String()
}
