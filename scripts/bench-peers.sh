#!/usr/bin/env bash
# Side-by-side benchmarks: dchain against the tools users would pick instead,
# on the same images, registries and buildkitd of one embedded stack
# (docs/benchmarks.md). dchain runs as a user runs it (bin/dchain, the client
# build: a process that connects, starts a recorded run and waits for it),
# as the peers do. Builds the peers at pinned versions into bin/:
#   crane    go-containerregistry at the version dchain links
#   regctl   v0.9.2
#   skopeo   Debian's package
#   buildctl tools/buildkit (make deps)
#   trivy    the trivy CLI at the version dchain links (its own go.mod; ~35 min
#            on 2 cores the first time, so only with TRIVY=1 or once built)
# and, with the trivy CLI, a Debian bookworm rootfs (debootstrap minbase) to
# scan. COUNT rounds (default 3) of one sample of each benchmark; inside a
# round dchain and its peers take turns going first (odd rounds dchain, even
# rounds the peers); the table at the end gives the median of each. The
# intake rows give the engine's own start rate in the same harness (the
# starter called in-process, the runs executing meanwhile) next to signed
# webhook pushes, and the first-task latency of bursts.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOEXPERIMENT=jsonv2 DCHAIN_BIN_DIR="$PWD/bin"
COUNT=${COUNT:-3}
# go test vets every package it builds first (~3,700 with Trivy's): the
# benchmarks are not where vet runs (make vet, CI).
GOTEST=(go test -vet=off -run '^$')

version() { go list -m -f '{{.Version}}' "$1"; }
make build >/dev/null # bin/dchain, the client a user runs
[ -x bin/crane ] || go build -o bin/crane github.com/google/go-containerregistry/cmd/crane
[ -x bin/regctl ] || GOBIN="$PWD/bin" GOFLAGS= GOEXPERIMENT= go install github.com/regclient/regclient/cmd/regctl@v0.9.2
trivy_version=$(version github.com/aquasecurity/trivy)
if [ "${TRIVY:-0}" = 1 ] && { [ ! -x bin/trivy ] || [ "$(cat bin/trivy.version 2>/dev/null)" != "$trivy_version" ]; }; then
  echo "building the trivy CLI $trivy_version with its own go.mod (first time: ~35 min on 2 cores)"
  GOBIN="$PWD/bin" GOFLAGS= go install "github.com/aquasecurity/trivy/cmd/trivy@$trivy_version"
  echo "$trivy_version" > bin/trivy.version
fi
command -v skopeo >/dev/null || { apt-get update -q && apt-get install -y -q skopeo; }
BENCH=${BENCH:-FanOutLarge|BuildPeers}
if [ -x bin/trivy ] && [ "$(cat bin/trivy.version 2>/dev/null)" = "$trivy_version" ]; then
  BENCH="$BENCH|ScanDebian"
  if [ ! -f bin/debian-rootfs/etc/debian_version ]; then
    command -v debootstrap >/dev/null || { apt-get update -q && apt-get install -y -q debootstrap; }
    echo "debootstrap bookworm minbase into bin/debian-rootfs (~2 min)"
    rm -rf bin/debian-rootfs.tmp
    debootstrap --variant=minbase bookworm bin/debian-rootfs.tmp http://deb.debian.org/debian >/dev/null
    mv bin/debian-rootfs.tmp bin/debian-rootfs
  fi
else
  echo "no trivy CLI at $trivy_version in bin/: the scan rows are left out (TRIVY=1 builds it, ~35 min the first time)"
fi

export DCHAIN_BENCH_CRANE="$PWD/bin/crane" DCHAIN_BENCH_SKOPEO=$(command -v skopeo) DCHAIN_BENCH_REGCTL="$PWD/bin/regctl" \
  DCHAIN_BENCH_TRIVY="$PWD/bin/trivy" DCHAIN_BENCH_BUILDCTL="$PWD/bin/buildctl" DCHAIN_BENCH_ROOTFS="$PWD/bin/debian-rootfs" \
  DCHAIN_BENCH_DCHAIN="$PWD/bin/dchain"
out=$(mktemp)
# One sample of everything per round, COUNT rounds: dchain and its peers
# alternate (go test's own -count would take a benchmark's samples in a row).
for round in $(seq "$COUNT"); do
  echo "round $round of $COUNT"
  export DCHAIN_BENCH_PEERS_FIRST=$((1 - round % 2))
  "${GOTEST[@]}" -bench "$BENCH" -benchtime 3x -timeout 60m ./devstack/ | tee -a "$out"
  "${GOTEST[@]}" -bench 'Intake/(start|github)/8$' -benchtime 300x -timeout 60m ./devstack/ | tee -a "$out" # 300 pushes, 8 senders
  "${GOTEST[@]}" -bench 'Intake/github/burst' -benchtime 100x -timeout 60m ./devstack/ | tee -a "$out"      # 100 pushes at once
  "${GOTEST[@]}" -bench Burst100 -benchtime 1x -timeout 60m ./devstack/ | tee -a "$out"                       # 100 runs at once
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
