package devstack

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dchain-dev/dchain/workflows"
)

// BenchmarkBuildPeers builds a small app (the seeded base, one RUN, one
// COPY; linux/amd64) on the stack's buildkitd and pushes it to the source
// registry, with dchain (a push to branch main: the chain's build stage,
// then resolve; no replication, no trigger) and with buildctl
// ($DCHAIN_BENCH_BUILDCTL, from tools/buildkit) on the same buildkitd,
// context and registry. "cold": BuildKit's cache off (the rule's noCache,
// `buildctl --no-cache`); "cached": every step cached (each iteration
// commits a file the build does not use, so dchain builds a new commit).
func BenchmarkBuildPeers(b *testing.B) {
	buildctl := peerEnv(b, "DCHAIN_BENCH_BUILDCTL")
	for _, cold := range []bool{true, false} {
		kind := map[bool]string{true: "cold", false: "cached"}[cold]
		src := filepath.Join(b.TempDir(), "app")
		writeRepo(b, src, map[string]string{
			"Dockerfile": "ARG BASE\nFROM ${BASE}\nRUN echo built > /built\nCOPY app.txt /app.txt\n",
			"app.txt":    "hello " + kind + "\n", "notes.txt": "0\n",
		})
		n := 0
		next := func(b *testing.B) {
			b.StopTimer()
			n++
			commit(b, src, map[string]string{"notes.txt": fmt.Sprint(n, "\n")})
			b.StartTimer()
		}
		b.Run("dchain-"+kind, func(b *testing.B) {
			repo := "benchbuild/dchain-" + kind
			l := buildChain(b, "bench-build-"+kind, repo, src, "linux/amd64")
			l.Chains[0].Build.Rules[0].NoCache = cold
			l.Chains[0].Replication, l.Chains[0].Triggers = nil, nil
			for b.Loop() {
				next(b)
				id := startPush(b, l, "refs/heads/main", false).WorkflowID
				if st := waitRun(b, id, 5*time.Minute); st.Outcome != workflows.OutcomeSucceeded || st.Build == nil || st.Build.ReusedFrom != "" {
					b.Fatalf("run %s: %s %s (build %+v)", id, st.Outcome, st.Message, st.Build)
				}
			}
		})
		b.Run("buildctl-"+kind, func(b *testing.B) {
			ref := stack.Endpoints.Registries["src"] + "/benchbuild/buildctl-" + kind + ":latest"
			for b.Loop() {
				next(b)
				args := []string{"--addr", stack.Endpoints.BuildKit, "build", "--frontend", "dockerfile.v0",
					"--local", "context=" + src, "--local", "dockerfile=" + src,
					"--opt", "platform=linux/amd64", "--opt", "build-arg:BASE=" + stack.Endpoints.BaseImage,
					"--output", "type=image,name=" + ref + ",push=true,registry.insecure=true"}
				if cold {
					args = append(args, "--no-cache")
				}
				if out, err := exec.Command(buildctl, args...).CombinedOutput(); err != nil {
					b.Fatalf("buildctl %s: %v\n%s", strings.Join(args, " "), err, out)
				}
			}
		})
	}
}
