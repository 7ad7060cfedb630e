package buildnet

import (
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// DefaultDeny are the destinations a build never reaches unless allowed:
// "this" network, the private ranges (RFC 1918), shared address space
// (carrier-grade NAT), loopback, link-local (cloud metadata services),
// the IETF protocol assignments block, multicast and the reserved block.
var DefaultDeny = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("224.0.0.0/4"),
	netip.MustParsePrefix("240.0.0.0/4"),
}

// AllowedFrontend is the one frontend image a Dockerfile's "# syntax="
// line may name (buildkitd's [frontend."gateway.v0"] allowedRepositories):
// Docker's own, which keeps a rule's network: none; another frontend could
// run its RUN steps on the sandbox network regardless.
const AllowedFrontend = "docker.io/docker/dockerfile"

// Deployment defaults: BuildKit's own bridge name and subnet.
const (
	DefaultBridge = "buildkit0"
	DefaultSubnet = "10.10.0.0/16"
)

// Policy is what RUN steps on one BuildKit bridge may reach.
type Policy struct {
	// Bridge is the bridge's interface name (buildkitd's bridgeName).
	Bridge string
	// Subnet is the bridge's IPv4 subnet (buildkitd's bridgeSubnet).
	Subnet netip.Prefix
	// Deny are the destinations refused (DefaultDeny and the caller's own:
	// the public addresses of the control plane, if it has any).
	Deny []netip.Prefix
	// Allow are the destinations allowed before anything is refused: an
	// internal package mirror or proxy, the host's DNS resolvers.
	Allow []Allow
}

// Allow is a destination a build may reach: an IPv4 prefix, on every
// port or (Port > 0) on one TCP and UDP port.
type Allow struct {
	Prefix netip.Prefix
	Port   uint16
}

func (a Allow) String() string {
	if a.Port == 0 {
		return a.Prefix.String()
	}
	return a.Prefix.String() + ":" + strconv.Itoa(int(a.Port))
}

// ParseAllow reads an allowed destination: an IPv4 address or prefix,
// optionally with ":PORT" (10.0.5.7, 10.0.5.0/24, 10.0.5.7:3128,
// 10.0.5.0/24:443).
func ParseAllow(s string) (Allow, error) {
	addr, port, hasPort := strings.Cut(s, ":")
	p, err := ParsePrefix(addr)
	if err != nil {
		return Allow{}, err
	}
	a := Allow{Prefix: p}
	if hasPort {
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil || n == 0 {
			return Allow{}, fmt.Errorf("%q: the port after ':' must be 1 to 65535", s)
		}
		a.Port = uint16(n)
	}
	return a, nil
}

// ParsePrefix reads an IPv4 address (a /32) or prefix, masked.
func ParsePrefix(s string) (netip.Prefix, error) {
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return p, fmt.Errorf("%q is not an IPv4 address or prefix (10.0.5.7, 10.0.5.0/24)", s)
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return p, fmt.Errorf("%q is not an IPv4 address or prefix (10.0.5.7, 10.0.5.0/24)", s)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if !p.Addr().Is4() {
		return p, fmt.Errorf("%q: builds have IPv4 only (IPv6 is closed to them)", s)
	}
	return p.Masked(), nil
}

var bridgeName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$`)

// Check reports what is wrong with the policy, or nil.
func (p Policy) Check() error {
	if !bridgeName.MatchString(p.Bridge) {
		return fmt.Errorf("bridge %q: 1 to 15 letters, digits, '_', '.', '-'", p.Bridge)
	}
	if !p.Subnet.IsValid() || !p.Subnet.Addr().Is4() || p.Subnet.Bits() > 30 {
		return fmt.Errorf("subnet %q: an IPv4 prefix of /30 or wider", p.Subnet)
	}
	for _, d := range p.Deny {
		if !d.IsValid() || !d.Addr().Is4() {
			return fmt.Errorf("deny %q: an IPv4 prefix", d)
		}
	}
	for _, a := range p.Allow {
		if !a.Prefix.IsValid() || !a.Prefix.Addr().Is4() {
			return fmt.Errorf("allow %q: an IPv4 prefix", a.Prefix)
		}
	}
	return nil
}

// ResolvConfs are the files BuildKit takes a build's resolv.conf from:
// the host's, or systemd-resolved's list of its upstream servers where the
// host's names only its local stub.
var ResolvConfs = []string{"/etc/resolv.conf", "/run/systemd/resolve/resolv.conf"}

// HostResolvers are the DNS resolvers of the given resolv.conf files that
// a build may reach on port 53 (BuildKit hands a build the host's,
// loopback resolvers replaced by public ones): the IPv4, non-loopback ones.
func HostResolvers(resolvConfs ...string) []Allow {
	var out []Allow
	for _, path := range resolvConfs {
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			fields := strings.Fields(line)
			if len(fields) < 2 || fields[0] != "nameserver" {
				continue
			}
			a, err := netip.ParseAddr(fields[1])
			if err != nil || !a.Is4() || a.IsLoopback() {
				continue
			}
			if r := (Allow{Prefix: netip.PrefixFrom(a, 32), Port: 53}); !slices.Contains(out, r) {
				out = append(out, r)
			}
		}
	}
	return out
}
