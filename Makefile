# dchain — see README.md. Every build and test sets GOEXPERIMENT=jsonv2
# (Trivy needs it); DCHAIN_BIN_DIR tells the dev stack and the tests where
# scripts/install-build-deps.sh put buildkitd and the arm64 busybox.
export GOEXPERIMENT := jsonv2
export DCHAIN_BIN_DIR := $(CURDIR)/bin

.PHONY: build deps test fuzz demo dev vet bench bench-peers chaos deploy-test

# Two builds of cmd/dchain: bin/dchain-server, everything; bin/dchain, the
# client build (starts in ~25 ms, not ~130 ms), which hands `dev` and
# `worker` over to the dchain-server beside it.
build:
	go build -buildvcs=true -tags dchain_client -o bin/dchain ./cmd/dchain
	go build -buildvcs=true -o bin/dchain-server ./cmd/dchain

# runc, git, busybox-static, qemu-user-static + binfmt (arm64 builds), buildkitd.
deps:
	scripts/install-build-deps.sh

vet:
	go vet ./...

# Unit tests (chain model, workflows on the SDK test suite, activities) and
# integration tests (embedded Temporal + real registries + real buildkitd +
# real receiver).
test: deps
	go vet ./...
	go test -count=1 -timeout 20m ./...
	scripts/fuzz.sh

# The chaos suite alone (also part of `make test`): the deployment's shape as
# processes of the real binary; workers, an API replica and the Temporal
# server are killed mid-run (docs/reliability.md).
chaos:
	go test -count=1 -v -timeout 15m ./chaos/

# The deployment test alone (also part of `make test`): README's Deploy
# topology for real on this machine (root: network namespaces as hosts):
# Temporal on PostgreSQL 15 with mTLS, TLS registries with sign-in and
# notifications, region workers on hosts of their own; an image push to
# every region, a replicate, a link cut for 60 s mid-copy and a SIGKILLed
# Temporal server mid-run (deploy/deploy_test.go).
deploy-test: deps
	go test -count=1 -v -timeout 20m ./deploy/

# Every fuzz target (webhook payloads, refs, commits, digests, images, chain
# files, visibility queries) for FUZZTIME each (default 20000x) over its corpus.
fuzz:
	scripts/fuzz.sh

# Brings up the dev stack (or uses the one running), builds the sample app
# for two platforms from a Git push, replicates it to every region, fires the
# triggers, and shows the result.
demo: deps build
	scripts/demo.sh

dev: deps build
	bin/dchain dev

bench:
	go test -run '^$$' -bench 'FanOut3|WebhookImagePush' -benchtime 10x -count 3 ./devstack/

# dchain side by side with the tools users would pick instead (crane,
# skopeo, regctl, the trivy CLI, buildctl) on the same images, registries and
# buildkitd: replication, scans of a Debian rootfs, builds, webhook intake
# and 100 concurrent runs (docs/benchmarks.md).
bench-peers: deps
	scripts/bench-peers.sh
