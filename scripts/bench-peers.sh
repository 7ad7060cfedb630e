#!/usr/bin/env bash
# Side-by-side benchmarks: dchain against the tools users would pick instead,
# on the same images, registries and buildkitd of one embedded stack
# (docs/benchmarks.md). Builds the peers at pinned versions into bin/:
#   crane    go-containerregistry at the version dchain links
#   regctl   v0.9.2
#   skopeo   Debian's package
#   trivy    the trivy CLI at the version dchain links (its own go.mod)
#   buildctl tools/buildkit (make deps)
# and a Debian bookworm rootfs (debootstrap minbase) to scan. COUNT rounds
# (default 3) of one sample of each benchmark, so the tools alternate; the
# table at the end gives the median of each.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOEXPERIMENT=jsonv2 DCHAIN_BIN_DIR="$PWD/bin"
COUNT=${COUNT:-3}

version() { go list -m -f '{{.Version}}' "$1"; }
[ -x bin/crane ] || go build -o bin/crane github.com/google/go-containerregistry/cmd/crane
[ -x bin/regctl ] || GOBIN="$PWD/bin" GOFLAGS= GOEXPERIMENT= go install github.com/regclient/regclient/cmd/regctl@v0.9.2
trivy_version=$(version github.com/aquasecurity/trivy)
if [ ! -x bin/trivy ] || [ "$(cat bin/trivy.version 2>/dev/null)" != "$trivy_version" ]; then
  echo "building the trivy CLI $trivy_version with its own go.mod (first time: ~35 min on 2 cores)"
  GOBIN="$PWD/bin" GOFLAGS= go install "github.com/aquasecurity/trivy/cmd/trivy@$trivy_version"
  echo "$trivy_version" > bin/trivy.version
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
# One sample of everything per round, COUNT rounds: dchain and its peers
# alternate (go test's own -count would take a benchmark's samples in a row).
for round in $(seq "$COUNT"); do
  echo "round $round of $COUNT"
  go test -run '^$' -bench "${BENCH:-FanOutLarge|ScanDebian|BuildPeers}" -benchtime 3x -timeout 60m ./devstack/ | tee -a "$out"
  go test -run '^$' -bench WebhookImagePush -benchtime 200x ./devstack/ | tee -a "$out" # 200 signed pushes from 8 senders
  go test -run '^$' -bench Burst100 -benchtime 1x ./devstack/ | tee -a "$out"            # 100 runs at once
done

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
