package buildnet

import (
	"errors"
	"fmt"
	"os"

	"github.com/coreos/go-iptables/iptables"
)

const table = "filter"

// Apply installs the policy's rules (iptables, as root), replacing what an
// earlier Apply of the same bridge left. Run it before buildkitd starts.
func Apply(p Policy) error {
	if err := p.Check(); err != nil {
		return err
	}
	return each(p, func(ipt *iptables.IPTables, r Rule, first bool) error {
		switch {
		case r.Jump:
			if r.IfChain {
				if ok, err := ipt.ChainExists(table, r.Chain); err != nil || !ok {
					return err
				}
			}
			if r.MakeChain {
				if err := ensureChain(ipt, r.Chain); err != nil {
					return err
				}
			}
			return ipt.InsertUnique(table, r.Chain, 1, r.Spec...)
		case first:
			if err := ipt.ClearChain(table, r.Chain); err != nil {
				return err
			}
		}
		return ipt.Append(table, r.Chain, r.Spec...)
	})
}

// ensureChain makes a chain that other processes share (another stack's
// Apply, the CNI firewall plugin) unless it is there; losing a race to
// make it is no error.
func ensureChain(ipt *iptables.IPTables, chain string) error {
	if ok, err := ipt.ChainExists(table, chain); err != nil || ok {
		return err
	}
	if err := ipt.NewChain(table, chain); err != nil {
		if ok, _ := ipt.ChainExists(table, chain); !ok {
			return err
		}
	}
	return nil
}

// Remove takes the policy's rules out again; what is not there is skipped.
func Remove(p Policy) error {
	var owned []struct {
		ipt   *iptables.IPTables
		chain string
	}
	err := each(p, func(ipt *iptables.IPTables, r Rule, first bool) error {
		if r.Jump {
			// (iptables cannot even look for a jump to a chain that is gone)
			from, _ := ipt.ChainExists(table, r.Chain)
			to, _ := ipt.ChainExists(table, r.Spec[len(r.Spec)-1])
			if !from || !to {
				return nil
			}
			return ipt.DeleteIfExists(table, r.Chain, r.Spec...)
		}
		if first {
			owned = append(owned, struct {
				ipt   *iptables.IPTables
				chain string
			}{ipt, r.Chain})
		}
		return nil
	})
	for _, o := range owned { // after the jumps to them are gone
		if ok, _ := o.ipt.ChainExists(table, o.chain); ok {
			err = errors.Join(err, o.ipt.ClearAndDeleteChain(table, o.chain))
		}
	}
	return err
}

// each calls f for every rule with the iptables of its family; first is
// true for the first rule of each of the policy's own chains. IPv6 rules
// are skipped where the kernel has no IPv6.
func each(p Policy, f func(ipt *iptables.IPTables, r Rule, first bool) error) error {
	v4, err := iptables.NewWithProtocol(iptables.ProtocolIPv4)
	if err != nil {
		return fmt.Errorf("iptables (install Debian's iptables package): %w", err)
	}
	var v6 *iptables.IPTables
	if _, err := os.Stat("/proc/net/if_inet6"); err == nil {
		if v6, err = iptables.NewWithProtocol(iptables.ProtocolIPv6); err != nil {
			return fmt.Errorf("ip6tables: %w", err)
		}
	}
	seen := map[string]bool{}
	for _, r := range p.Rules() {
		ipt := v4
		if r.IPv6 {
			if ipt = v6; ipt == nil {
				continue
			}
		}
		first := !r.Jump && !seen[r.Chain]
		seen[r.Chain] = true
		if err := f(ipt, r, first); err != nil {
			return fmt.Errorf("build network %s: %s %v: %w", p.Bridge, r.Chain, r.Spec, err)
		}
	}
	return nil
}
