package devstack

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"syscall"

	"github.com/dchain-dev/dchain/buildnet"
)

// BuildNetwork is what the dev stack's builds may reach beyond the
// internet (Allow: an internal mirror) and what else they may not (Deny),
// on top of buildnet.DefaultDeny and the host's own addresses.
type BuildNetwork struct {
	Allow []buildnet.Allow
	Deny  []netip.Prefix
}

// buildNetSlots is how many dev stacks (and test stacks) can build on one
// machine at once: each holds a bridge dchainN with subnet 10.10.N.0/24.
const buildNetSlots = 200

// buildNet is a reserved bridge and subnet with its policy.
type buildNet struct {
	policy buildnet.Policy
	lock   *os.File
}

// reserveBuildNet takes the first bridge slot that no other stack on this
// machine holds (an flock per slot under /run/dchain, released when the
// process ends) and whose subnet overlaps no address of the host, and
// installs its policy before buildkitd starts.
func reserveBuildNet(bn BuildNetwork) (*buildNet, error) {
	used, err := hostPrefixes()
	if err != nil {
		return nil, err
	}
	// Slots are the machine's, whatever a process's TMPDIR: their locks
	// live in /run (root's; buildkitd runs as root anyway).
	lockDir := "/run/dchain/buildnet"
	if err := os.MkdirAll(lockDir, 0o700); err != nil {
		return nil, fmt.Errorf("build network: %w", err)
	}
	deny := append(append([]netip.Prefix{}, buildnet.DefaultDeny...), bn.Deny...)
	allow := append(buildnet.HostResolvers(buildnet.ResolvConfs...), bn.Allow...)
	for n := range buildNetSlots {
		p := buildnet.Policy{
			Bridge: fmt.Sprintf("dchain%d", n),
			Subnet: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 10, byte(n), 0}), 24),
			Deny:   deny,
			Allow:  allow,
		}
		if overlaps(used, p.Bridge, p.Subnet) {
			continue
		}
		lock, err := tryLock(filepath.Join(lockDir, p.Bridge+".lock"))
		if errors.Is(err, syscall.EWOULDBLOCK) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("build network: %w", err)
		}
		if err := buildnet.Apply(p); err != nil {
			lock.Close()
			return nil, err
		}
		return &buildNet{policy: p, lock: lock}, nil
	}
	return nil, fmt.Errorf("build network: all %d bridge slots (10.10.0.0/24 … 10.10.%d.0/24) are in use or overlap the host's addresses", buildNetSlots, buildNetSlots-1)
}

// release removes the policy (after buildkitd stopped) and frees the slot.
func (b *buildNet) release() error {
	err := buildnet.Remove(b.policy)
	b.lock.Close()
	return err
}

type ifacePrefix struct {
	iface  string
	prefix netip.Prefix
}

// hostPrefixes are the IPv4 addresses of the host's interfaces, with their networks.
func hostPrefixes() ([]ifacePrefix, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	var out []ifacePrefix
	for _, i := range ifs {
		addrs, _ := i.Addrs()
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				if p, err := netip.ParsePrefix(n.String()); err == nil && p.Addr().Is4() {
					out = append(out, ifacePrefix{i.Name, p})
				}
			}
		}
	}
	return out, nil
}

// overlaps reports whether subnet overlaps a network of an interface
// other than bridge (which a stack killed earlier may have left).
func overlaps(used []ifacePrefix, bridge string, subnet netip.Prefix) bool {
	for _, u := range used {
		if u.iface != bridge && u.prefix.Overlaps(subnet) {
			return true
		}
	}
	return false
}
