# dchain — see README.md. Trivy (later) needs GOEXPERIMENT=jsonv2; every build and test sets it.
export GOEXPERIMENT := jsonv2

.PHONY: build test demo dev vet

build:
	go build -o bin/dchain ./cmd/dchain

vet:
	go vet ./...

# Unit tests (chain model, workflows on the SDK test suite, activities) and
# integration tests (embedded Temporal + real registries + real receiver).
test:
	go vet ./...
	go test -count=1 ./...

# Brings up the dev stack (or uses the one running), pushes a sample
# multi-arch image, runs the demo chain, and shows the image in every region.
demo: build
	scripts/demo.sh

dev: build
	bin/dchain dev
