package devstack

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/dchain-dev/dchain/starter"
	"github.com/dchain-dev/dchain/workflows"
)

// BenchmarkFanOutLarge copies a 200 MiB image of 8 random layers from
// the source registry into three regions at once — each iteration a new
// image (pushed outside the timer), so no tool finds a blob to skip or
// mount — with dchain (a recorded manual
// replication, the same activity as a chain's branches), and side by side
// with three parallel `crane copy`, `skopeo copy` and `regctl image copy`
// runs and one `crane copy` to a single region. The peers come from
// $DCHAIN_BENCH_CRANE, $DCHAIN_BENCH_SKOPEO and $DCHAIN_BENCH_REGCTL
// (`make bench-peers` builds crane from the go-containerregistry version
// dchain uses and regctl v0.9.2, and installs Debian's skopeo).
func BenchmarkFanOutLarge(b *testing.B) {
	regions := []string{"eu", "us", "ap"}
	l, _ := testChain("bench-large", "benchbig/app")
	s := &starter.Starter{Client: stack.Client, Config: l}
	n := 0
	// fresh pushes a new image (timer stopped) and returns its repository.
	fresh := func(b *testing.B) string {
		b.StopTimer()
		defer b.StartTimer()
		n++
		repo := fmt.Sprintf("benchbig/i%d-%d", n, time.Now().UnixNano())
		bigImage(b, repo, "v1", 8, 25)
		return repo
	}
	b.Run("dchain", func(b *testing.B) {
		b.SetBytes(200 << 20 * 3)
		for b.Loop() {
			repo := fresh(b)
			var to []string
			for _, r := range regions {
				to = append(to, r)
			}
			st, err := s.StartReplication(context.Background(), starter.ReplicationRequest{Source: "src/" + repo + ":v1", To: to, SourceField: "source", ToField: "to"})
			if err != nil {
				b.Fatal(err)
			}
			if run := waitRun(b, st.WorkflowID, 5*time.Minute); run.Outcome != workflows.OutcomeSucceeded {
				b.Fatalf("%s: %s", run.Outcome, run.Message)
			}
		}
	})
	peer := func(env string) string {
		bin := os.Getenv(env)
		if bin == "" {
			b.Fatalf("$%s is not set: `make bench-peers` builds the peers and runs this benchmark with them", env)
		}
		return bin
	}
	parallel := func(b *testing.B, regions []string, cmd func(src, dst string) *exec.Cmd) {
		b.SetBytes(200 << 20 * int64(len(regions)))
		for b.Loop() {
			repo := fresh(b)
			src := stack.Endpoints.Registries["src"] + "/" + repo + ":v1"
			var wg sync.WaitGroup
			for _, r := range regions {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c := cmd(src, stack.Endpoints.Registries[r]+"/"+repo+":v1")
					if out, err := c.CombinedOutput(); err != nil {
						b.Errorf("%v: %v\n%s", c.Args, err, out)
					}
				}()
			}
			wg.Wait()
		}
	}
	b.Run("crane-x3", func(b *testing.B) {
		crane := peer("DCHAIN_BENCH_CRANE")
		parallel(b, regions, func(src, dst string) *exec.Cmd { return exec.Command(crane, "copy", "--insecure", src, dst) })
	})
	b.Run("skopeo-x3", func(b *testing.B) {
		skopeo := peer("DCHAIN_BENCH_SKOPEO")
		parallel(b, regions, func(src, dst string) *exec.Cmd {
			return exec.Command(skopeo, "copy", "--quiet", "--src-tls-verify=false", "--dest-tls-verify=false", "docker://"+src, "docker://"+dst)
		})
	})
	b.Run("regctl-x3", func(b *testing.B) {
		regctl := peer("DCHAIN_BENCH_REGCTL")
		var hosts []string
		for _, r := range append([]string{"src"}, regions...) {
			hosts = append(hosts, "--host", "reg="+stack.Endpoints.Registries[r]+",tls=disabled")
		}
		parallel(b, regions, func(src, dst string) *exec.Cmd {
			return exec.Command(regctl, append(append([]string{"image", "copy"}, hosts...), src, dst)...)
		})
	})
	b.Run("crane-x1", func(b *testing.B) {
		crane := peer("DCHAIN_BENCH_CRANE")
		parallel(b, regions[:1], func(src, dst string) *exec.Cmd { return exec.Command(crane, "copy", "--insecure", src, dst) })
	})
}
