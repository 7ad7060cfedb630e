#!/bin/sh
# The network policy of build RUN steps (made by `dchain build-network`; see README, Build isolation).
# Bridge buildkit0, subnet 10.10.0.0/16.
set -eu
{ iptables -w -N DCHAIN-IN-buildkit0 2>/dev/null || iptables -w -F DCHAIN-IN-buildkit0; }
iptables -w -A DCHAIN-IN-buildkit0 -p tcp -j REJECT --reject-with tcp-reset
iptables -w -A DCHAIN-IN-buildkit0 -j REJECT --reject-with icmp-admin-prohibited
{ iptables -w -N DCHAIN-FWD-buildkit0 2>/dev/null || iptables -w -F DCHAIN-FWD-buildkit0; }
iptables -w -A DCHAIN-FWD-buildkit0 -d 10.10.0.0/16 -p tcp -j REJECT --reject-with tcp-reset
iptables -w -A DCHAIN-FWD-buildkit0 -d 10.10.0.0/16 -j REJECT --reject-with icmp-admin-prohibited
iptables -w -A DCHAIN-FWD-buildkit0 -d 0.0.0.0/8 -p tcp -j REJECT --reject-with tcp-reset
iptables -w -A DCHAIN-FWD-buildkit0 -d 0.0.0.0/8 -j REJECT --reject-with icmp-admin-prohibited
iptables -w -A DCHAIN-FWD-buildkit0 -d 10.0.0.0/8 -p tcp -j REJECT --reject-with tcp-reset
iptables -w -A DCHAIN-FWD-buildkit0 -d 10.0.0.0/8 -j REJECT --reject-with icmp-admin-prohibited
iptables -w -A DCHAIN-FWD-buildkit0 -d 100.64.0.0/10 -p tcp -j REJECT --reject-with tcp-reset
iptables -w -A DCHAIN-FWD-buildkit0 -d 100.64.0.0/10 -j REJECT --reject-with icmp-admin-prohibited
iptables -w -A DCHAIN-FWD-buildkit0 -d 127.0.0.0/8 -p tcp -j REJECT --reject-with tcp-reset
iptables -w -A DCHAIN-FWD-buildkit0 -d 127.0.0.0/8 -j REJECT --reject-with icmp-admin-prohibited
iptables -w -A DCHAIN-FWD-buildkit0 -d 169.254.0.0/16 -p tcp -j REJECT --reject-with tcp-reset
iptables -w -A DCHAIN-FWD-buildkit0 -d 169.254.0.0/16 -j REJECT --reject-with icmp-admin-prohibited
iptables -w -A DCHAIN-FWD-buildkit0 -d 172.16.0.0/12 -p tcp -j REJECT --reject-with tcp-reset
iptables -w -A DCHAIN-FWD-buildkit0 -d 172.16.0.0/12 -j REJECT --reject-with icmp-admin-prohibited
iptables -w -A DCHAIN-FWD-buildkit0 -d 192.0.0.0/24 -p tcp -j REJECT --reject-with tcp-reset
iptables -w -A DCHAIN-FWD-buildkit0 -d 192.0.0.0/24 -j REJECT --reject-with icmp-admin-prohibited
iptables -w -A DCHAIN-FWD-buildkit0 -d 192.168.0.0/16 -p tcp -j REJECT --reject-with tcp-reset
iptables -w -A DCHAIN-FWD-buildkit0 -d 192.168.0.0/16 -j REJECT --reject-with icmp-admin-prohibited
iptables -w -A DCHAIN-FWD-buildkit0 -d 224.0.0.0/4 -p tcp -j REJECT --reject-with tcp-reset
iptables -w -A DCHAIN-FWD-buildkit0 -d 224.0.0.0/4 -j REJECT --reject-with icmp-admin-prohibited
iptables -w -A DCHAIN-FWD-buildkit0 -d 240.0.0.0/4 -p tcp -j REJECT --reject-with tcp-reset
iptables -w -A DCHAIN-FWD-buildkit0 -d 240.0.0.0/4 -j REJECT --reject-with icmp-admin-prohibited
[ ! -e /proc/net/if_inet6 ] || { ip6tables -w -N DCHAIN6-buildkit0 2>/dev/null || ip6tables -w -F DCHAIN6-buildkit0; }
[ ! -e /proc/net/if_inet6 ] || ip6tables -w -A DCHAIN6-buildkit0 -j REJECT --reject-with icmp6-adm-prohibited
{ iptables -w -C INPUT -i buildkit0 -m comment --comment 'dchain build network' -j DCHAIN-IN-buildkit0 2>/dev/null || iptables -w -I INPUT 1 -i buildkit0 -m comment --comment 'dchain build network' -j DCHAIN-IN-buildkit0; }
{ iptables -w -C FORWARD -i buildkit0 -m comment --comment 'dchain build network' -j DCHAIN-FWD-buildkit0 2>/dev/null || iptables -w -I FORWARD 1 -i buildkit0 -m comment --comment 'dchain build network' -j DCHAIN-FWD-buildkit0; }
iptables -w -N CNI-ADMIN 2>/dev/null || true
{ iptables -w -C CNI-ADMIN -i buildkit0 -m comment --comment 'dchain build network' -j DCHAIN-FWD-buildkit0 2>/dev/null || iptables -w -I CNI-ADMIN 1 -i buildkit0 -m comment --comment 'dchain build network' -j DCHAIN-FWD-buildkit0; }
! iptables -w -S DOCKER-USER >/dev/null 2>&1 || { iptables -w -C DOCKER-USER -i buildkit0 -m comment --comment 'dchain build network' -j DCHAIN-FWD-buildkit0 2>/dev/null || iptables -w -I DOCKER-USER 1 -i buildkit0 -m comment --comment 'dchain build network' -j DCHAIN-FWD-buildkit0; }
[ ! -e /proc/net/if_inet6 ] || { ip6tables -w -C INPUT -i buildkit0 -m comment --comment 'dchain build network' -j DCHAIN6-buildkit0 2>/dev/null || ip6tables -w -I INPUT 1 -i buildkit0 -m comment --comment 'dchain build network' -j DCHAIN6-buildkit0; }
[ ! -e /proc/net/if_inet6 ] || { ip6tables -w -C FORWARD -i buildkit0 -m comment --comment 'dchain build network' -j DCHAIN6-buildkit0 2>/dev/null || ip6tables -w -I FORWARD 1 -i buildkit0 -m comment --comment 'dchain build network' -j DCHAIN6-buildkit0; }
# The resolvers of this host's resolv.conf (or systemd-resolved's upstream list), on port 53; BuildKit replaces loopback ones.
for ns in $(awk '$1 == "nameserver" && $2 ~ /^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$/ && $2 !~ /^127\./ {print $2}' /etc/resolv.conf /run/systemd/resolve/resolv.conf 2>/dev/null); do
  for chain in DCHAIN-IN-buildkit0 DCHAIN-FWD-buildkit0; do for proto in udp tcp; do
    iptables -w -I "$chain" 1 -d "$ns" -p "$proto" --dport 53 -j ACCEPT
  done; done
done
