// Package buildnet is the network a build's RUN steps get. A build is the
// pusher's code: BuildKit's bridge network mode gives every RUN step a
// network namespace of its own (a veth on a bridge, egress through the
// host's NAT), and the packet filter rules made here close the platform to
// it: nothing addressed to the host that runs buildkitd (its loopback
// services are already out of reach in another namespace; its other
// addresses, the bridge's gateway among them, are refused here), no
// private or special-purpose range (where Temporal, the API, the
// registries and the receiver live in a deployment), no other build, and
// any range a Policy adds — except what the Policy allows (an internal
// package mirror, the host's DNS resolvers). The rest, the internet, stays
// reachable, so package managers keep working. IPv6 is closed entirely.
//
// The rules are one list (Rules): applied in-process for the dev stack
// (Apply, Remove) and written as a shell script of iptables commands for a
// deployment's buildkitd container (Script).
package buildnet
