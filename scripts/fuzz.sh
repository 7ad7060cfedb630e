#!/usr/bin/env bash
# Runs every fuzz target of the module for FUZZTIME each (default 20000x:
# 20,000 inputs on top of its seed corpus and testdata/fuzz, where crashers
# found earlier stay and run as regular tests too). A count, not a duration:
# Go 1.26's fuzz coordinator can report a spurious "context deadline
# exceeded" when a duration runs out (go.dev/issue/75804). Targets: every parser of outside input (webhook
# payloads, refs, commits, digests, images, chain files, signature bundles,
# referrers tags' indexes and
# BuildKit provenance read from registries) and the visibility query builder.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOEXPERIMENT=jsonv2
fuzztime=${FUZZTIME:-20000x}
n=0
for file in $(git ls-files '*_test.go'); do
  pkg=./$(dirname "$file")
  for target in $(grep -oE '^func Fuzz[A-Za-z0-9_]+' "$file" | cut -d' ' -f2); do
    echo "fuzz $pkg $target ($fuzztime)"
    go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg" >/tmp/dchain-fuzz.log 2>&1 || { cat /tmp/dchain-fuzz.log; exit 1; }
    n=$((n + 1))
  done
done
echo "fuzzed $n targets for $fuzztime each: no failures"
