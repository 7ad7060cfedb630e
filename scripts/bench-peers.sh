#!/usr/bin/env bash
# Side-by-side benchmarks: dchain against the tools users would pick instead,
# on the same images, registries and buildkitd of one embedded stack
# (docs/benchmarks.md). Builds the peers at pinned versions into bin/:
#   crane    go-containerregistry at the version dchain links
#   regctl   v0.9.2
#   skopeo   Debian's package
#   trivy    the trivy CLI at the version dchain links (its own go.mod)
#   buildctl tools/buildkit (make deps)
# and a Debian bookworm rootfs (debootstrap minbase) to scan. Each benchmark
# runs COUNT times (default 3), the tools alternating within each count;
# the table at the end gives the median of each.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOEXPERIMENT=jsonv2 DCHAIN_BIN_DIR="$PWD/bin"
COUNT=${COUNT:-3}

version() { go list -m -f '{{.Version}}' "$1"; }
[ -x bin/crane ] || go build -o bin/crane github.com/google/go-containerregistry/cmd/crane
[ -x bin/regctl ] || GOBIN="$PWD/bin" GOFLAGS= GOEXPERIMENT= go install github.com/regclient/regclient/cmd/regctl@v0.9.2
trivy_version=$(version github.com/aquasecurity/trivy)
if ! { [ -x bin/trivy ] && bin/trivy --version 2>/dev/null | grep -q "${trivy_version#v}"; }; then
  echo "building the trivy CLI $trivy_version (first time: several minutes)"
  GOBIN="$PWD/bin" GOFLAGS= go install "github.com/aquasecurity/trivy/cmd/trivy@$trivy_version"
fi
command -v skopeo >/dev/null || { apt-get update -q && apt-get install -y -q skopeo; }
if [ ! -f bin/debian-rootfs/etc/debian_version ]; then
  command -v debootstrap >/dev/null || { apt-get update -q && apt-get install -y -q debootstrap; }
  echo "debootstrap bookworm minbase into bin/debian-rootfs (~2 min)"
  rm -rf bin/debian-rootfs.tmp
  debootstrap --variant=minbase bookworm bin/debian-rootfs.tmp http://deb.debian.org/debian >/dev/null
  mv bin/debian-rootfs.tmp bin/debian-rootfs
fi

export DCHAIN_BENCH_CRANE="$PWD/bin/crane" DCHAIN_BENCH_SKOPEO=$(command -v skopeo) DCHAIN_BENCH_REGCTL="$PWD/bin/regctl" \
  DCHAIN_BENCH_TRIVY="$PWD/bin/trivy" DCHAIN_BENCH_BUILDCTL="$PWD/bin/buildctl" DCHAIN_BENCH_ROOTFS="$PWD/bin/debian-rootfs"
out=$(mktemp)
bench() { go test -run '^$' -bench "$1" -benchtime "$2" -count "$COUNT" -timeout 60m ./devstack/ | tee -a "$out"; }
bench "${BENCH:-FanOutLarge|ScanDebian|BuildPeers}" 3x
bench WebhookImagePush 200x # 200 signed pushes from 8 senders per sample
bench Burst100 1x           # 100 runs at once per sample

echo
echo "medians over $COUNT runs ($(nproc) cores, $(uname -m)):"
awk '/^Benchmark/ {
  name=$1; sub(/-[0-9]+$/, "", name)
  for (i = 3; i < NF; i += 2) { key = name "\t" $(i+1); vals[key] = vals[key] " " $i; if (!(key in seen)) { seen[key] = 1; order[n++] = key } }
}
END {
  for (k = 0; k < n; k++) {
    m = split(substr(vals[order[k]], 2), v, " ")
    for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (v[j] + 0 < v[i] + 0) { t = v[i]; v[i] = v[j]; v[j] = t }
    med = (m % 2) ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2
    split(order[k], parts, "\t")
    if (parts[2] == "ns/op") printf "  %-48s %10.3f s/op\n", parts[1], med / 1e9
    else if (parts[2] != "B/op" && parts[2] != "allocs/op" && parts[2] != "MB/s") printf "  %-48s %10.2f %s\n", parts[1], med, parts[2]
  }
}' "$out"
rm -f "$out"
