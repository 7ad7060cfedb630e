#!/usr/bin/env bash
# Installs what the build stage needs on a fresh machine, idempotently:
#  - runc, git, busybox-static, qemu-user-static, openssl, apache2-utils, the CNI plugins and
#    iptables that give build RUN steps a network of their own, chromium, the real browser
#    the tests look at the Web UI with, and PostgreSQL 15, wget and curl for the deployment
#    test (Debian packages);
#  - the arm64 busybox binary (bin/arm64/busybox), for the offline base image;
#  - qemu-aarch64 registered in binfmt_misc, so RUN steps of arm64 builds run;
#  - buildkitd and buildctl, built from tools/buildkit into bin/ (~3 min the first time);
#  - the cosign CLI at a pinned version, which the signing tests verify dchain's
#    signatures and attestations with (bin/cosign; ~5 min the first time).
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo

missing=()
command -v runc >/dev/null || missing+=(runc)
command -v git >/dev/null || missing+=(git)
[ -x /bin/busybox ] || missing+=(busybox-static)
[ -x /usr/bin/qemu-aarch64-static ] || missing+=(qemu-user-static)
command -v openssl >/dev/null || missing+=(openssl)        # scripts/deploy-init.sh (tested)
command -v htpasswd >/dev/null || missing+=(apache2-utils) # its bcrypt htpasswd line
[ -x /usr/lib/cni/bridge ] || missing+=(containernetworking-plugins) # BuildKit's bridge network for RUN steps
command -v iptables >/dev/null || missing+=(iptables)      # the build network's rules (package buildnet)
command -v ip >/dev/null || missing+=(iproute2)            # the isolation tests' network namespaces
command -v chromium >/dev/null || missing+=(chromium)      # the tests that look at the Web UI in a real browser
new_pg=""; [ -x /usr/lib/postgresql/15/bin/postgres ] || { missing+=(postgresql-15); new_pg=1; } # the deployment test's Temporal database
command -v wget >/dev/null || missing+=(wget)              # the registries' compose health check, run by the deployment test
command -v curl >/dev/null || missing+=(curl)              # the workers' and the API's
if [ ${#missing[@]} -gt 0 ]; then
  $SUDO apt-get update -q && $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# Debian's package creates and starts a cluster of its own (15/main on
# :5432); the test runs its own server, so that one goes again.
if [ -n "$new_pg" ] && command -v pg_lsclusters >/dev/null && pg_lsclusters -h 2>/dev/null | grep -q '^15 main '; then
  $SUDO pg_dropcluster --stop 15 main
fi

if [ ! -x bin/arm64/busybox ]; then
  dpkg --print-foreign-architectures | grep -qx arm64 || { $SUDO dpkg --add-architecture arm64 && $SUDO apt-get update -q; }
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download -q busybox-static:arm64 && dpkg-deb -x busybox-static_*_arm64.deb x)
  mkdir -p bin/arm64 && cp "$tmp/x/bin/busybox" bin/arm64/busybox && rm -rf "$tmp"
fi

if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
  [ -e /proc/sys/fs/binfmt_misc/register ] || $SUDO mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  conf=$(cat /usr/lib/binfmt.d/qemu-aarch64.conf)
  # Debian's line with the static interpreter and flags POCF (F: the kernel keeps
  # the interpreter open, so it also runs inside buildkitd's containers).
  reg="${conf%:*}:POCF"
  reg="${reg/\/usr\/libexec\/qemu-binfmt\/aarch64-binfmt-P//usr/bin/qemu-aarch64-static}"
  echo "$reg" | $SUDO tee /proc/sys/fs/binfmt_misc/register >/dev/null
fi

if [ ! -x bin/buildkitd ] || [ ! -x bin/buildctl ] || [ tools/buildkit/go.mod -nt bin/buildkitd ]; then
  echo "building buildkitd and buildctl (first time: ~3 min)"
  mkdir -p bin
  (cd tools/buildkit && go mod tidy -e >/dev/null 2>&1 || true
   GOBIN="$PWD/../../bin" go install -mod=mod github.com/moby/buildkit/cmd/buildkitd github.com/moby/buildkit/cmd/buildctl)
fi
cosign_version=v3.1.3 # devstack.CosignVersion
if [ ! -x bin/cosign ] || [ "$(cat bin/.cosign-version 2>/dev/null)" != "$cosign_version" ]; then
  echo "building cosign $cosign_version (first time: ~5 min)"
  mkdir -p bin
  GOBIN="$PWD/bin" GOFLAGS= GOEXPERIMENT= go install "github.com/sigstore/cosign/v3/cmd/cosign@$cosign_version"
  echo "$cosign_version" > bin/.cosign-version
fi
echo "build dependencies ready: buildkitd $(bin/buildkitd --version | awk '{print $3}'), $(runc --version | head -1), qemu-aarch64 $(head -1 /proc/sys/fs/binfmt_misc/qemu-aarch64), cosign $cosign_version"
