package main

import (
	"fmt"
	"net/netip"

	"github.com/spf13/cobra"

	"github.com/dchain-dev/dchain/buildnet"
)

// newBuildNetworkCmd prints the build network's rules for a deployment's
// buildkitd (docker-compose.yml runs deploy/build-network.sh, made by it).
func newBuildNetworkCmd() *cobra.Command {
	var bridge, subnet string
	var allow, deny []string
	cmd := &cobra.Command{
		Use:   "build-network",
		Short: "Print the network policy of build RUN steps as a shell script for buildkitd's host or container",
		Long: `Prints, as a POSIX shell script of iptables commands, the rules that close the platform to the
RUN steps of builds on BuildKit's bridge network (buildkitd.toml: [worker.oci] networkMode = "bridge",
bridgeName, bridgeSubnet): nothing addressed to buildkitd's host, no private or special-purpose range,
no other build, no IPv6; the internet stays reachable. Run the script as root where buildkitd runs
(its container, with NET_ADMIN), before buildkitd starts; it is idempotent. The DNS resolvers of that
host's /etc/resolv.conf stay reachable on port 53. --allow opens a private destination (an internal
package mirror); --deny closes a public one (the control plane's public addresses).`,
		Example: `  dchain build-network > deploy/build-network.sh
  dchain build-network --allow 10.0.5.7:3128 --deny 203.0.113.10 > deploy/build-network.sh`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p := buildnet.Policy{Bridge: bridge, Deny: append([]netip.Prefix{}, buildnet.DefaultDeny...)}
			var err error
			if p.Subnet, err = buildnet.ParsePrefix(subnet); err != nil {
				return fmt.Errorf("--subnet: %w", err)
			}
			allows, denies, err := parseBuildNetwork("", allow, deny)
			if err != nil {
				return err
			}
			p.Allow, p.Deny = allows, append(p.Deny, denies...)
			if err := p.Check(); err != nil {
				return fmt.Errorf("--bridge/--subnet: %w", err)
			}
			_, err = fmt.Fprint(cmd.OutOrStdout(), p.Script())
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&bridge, "bridge", buildnet.DefaultBridge, "buildkitd's bridgeName")
	f.StringVar(&subnet, "subnet", buildnet.DefaultSubnet, "buildkitd's bridgeSubnet")
	f.StringSliceVar(&allow, "allow", nil, "a destination builds may reach although it is private (an internal package mirror): IP or CIDR, optionally :PORT (repeatable)")
	f.StringSliceVar(&deny, "deny", nil, "a destination builds may not reach, besides buildkitd's host and the private ranges: IP or CIDR (repeatable)")
	return cmd
}

// parseBuildNetwork reads the allow and deny lists of a build network;
// errors name the flag (--<prefix>allow, --<prefix>deny).
func parseBuildNetwork(prefix string, allow, deny []string) ([]buildnet.Allow, []netip.Prefix, error) {
	var allows []buildnet.Allow
	var denies []netip.Prefix
	for _, s := range allow {
		a, err := buildnet.ParseAllow(s)
		if err != nil {
			return nil, nil, fmt.Errorf("--%sallow: %w", prefix, err)
		}
		allows = append(allows, a)
	}
	for _, s := range deny {
		p, err := buildnet.ParsePrefix(s)
		if err != nil {
			return nil, nil, fmt.Errorf("--%sdeny: %w", prefix, err)
		}
		denies = append(denies, p)
	}
	return allows, denies, nil
}
