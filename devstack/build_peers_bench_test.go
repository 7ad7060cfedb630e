package devstack

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// BenchmarkBuildPeers builds a small app (the seeded base, one RUN, one
// COPY; linux/amd64) on the stack's buildkitd and pushes it to the source
// registry, with dchain (`dchain run start --ref refs/heads/main --watch`,
// what a user runs: the chain's build stage, then resolve; no replication,
// no trigger) and with buildctl
// ($DCHAIN_BENCH_BUILDCTL, from tools/buildkit) on the same buildkitd,
// context and registry, with the registry build cache dchain uses
// (imported, and exported in max mode, OCI media types) and a
// .dockerignore that leaves .git out of buildctl's context (dchain's
// checkout has none). "cold": BuildKit's cache off (the rule's noCache,
// `buildctl --no-cache`, no cache import or export); "cached": every step
// cached (each iteration commits a file the build does not use, so dchain
// builds a new commit).
func BenchmarkBuildPeers(b *testing.B) {
	buildctl := peerEnv(b, "DCHAIN_BENCH_BUILDCTL")
	for _, cold := range []bool{true, false} {
		kind := map[bool]string{true: "cold", false: "cached"}[cold]
		src := filepath.Join(b.TempDir(), "app")
		writeRepo(b, src, map[string]string{
			"Dockerfile": "ARG BASE\nFROM ${BASE}\nRUN echo built > /built\nCOPY app.txt /app.txt\n",
			"app.txt":    "hello " + kind + "\n", "notes.txt": "0\n", ".dockerignore": ".git\n",
		})
		n := 0
		next := func(b *testing.B) {
			b.StopTimer()
			n++
			commit(b, src, map[string]string{"notes.txt": fmt.Sprint(n, "\n")})
			b.StartTimer()
		}
		runInTurn(b, []tool{{"dchain-" + kind, func(b *testing.B) {
			// As a user starts a build: `dchain run start --ref … --watch`.
			name := "bench-build-" + kind
			cliChain(b, name, fmt.Sprintf(`name: %s
scope: {registry: src, namespace: benchbuild, repository: dchain-%s}
build:
  source: {url: %q}
  rules:
    - {name: main, type: branch, match: main, tags: [{tag: latest}], platforms: [linux/amd64], noCache: %v, buildArgs: {BASE: %q}}
`, name, kind, src, cold, stack.Endpoints.BaseImage))
			for b.Loop() {
				next(b)
				dchainCLI(b, "run", "start", "--chain", name, "--ref", "refs/heads/main", "--watch")
			}
		}}, {"buildctl-" + kind, func(b *testing.B) {
			ref := stack.Endpoints.Registries["src"] + "/benchbuild/buildctl-" + kind + ":latest"
			for b.Loop() {
				next(b)
				args := []string{"--addr", stack.Endpoints.BuildKit, "build", "--frontend", "dockerfile.v0",
					"--local", "context=" + src, "--local", "dockerfile=" + src,
					"--opt", "platform=linux/amd64", "--opt", "build-arg:BASE=" + stack.Endpoints.BaseImage,
					"--output", "type=image,name=" + ref + ",push=true,registry.insecure=true,oci-mediatypes=true"}
				if cold {
					args = append(args, "--no-cache")
				} else {
					cache := stack.Endpoints.Registries["src"] + "/dchain-cache/benchbuild/buildctl-" + kind + ":main"
					args = append(args, "--import-cache", "type=registry,ref="+cache+",registry.insecure=true",
						"--export-cache", "type=registry,ref="+cache+",mode=max,registry.insecure=true,oci-mediatypes=true,image-manifest=true")
				}
				if out, err := exec.Command(buildctl, args...).CombinedOutput(); err != nil {
					b.Fatalf("buildctl %s: %v\n%s", strings.Join(args, " "), err, out)
				}
			}
		}}})
	}
}
