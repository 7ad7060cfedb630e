package devstack

import (
	"fmt"
	"os/exec"
	"sync"
	"testing"
	"time"
)

// BenchmarkFanOutLarge copies a 200 MiB image of 8 random layers from
// the source registry into three regions at once ("x3") and into one
// ("x1") — each iteration a new image (pushed outside the timer), so no
// tool finds a blob to skip or mount — and copies one image again and again
// into one region and into three ("x1-again", "x3-again": re-replication,
// everything already there). dchain runs as a user runs it, `dchain
// replicate … --watch` ($DCHAIN_BENCH_DCHAIN: a process that connects,
// starts a recorded replication — the same activity as a chain's branches
// — and waits for its end), side by side with parallel `crane copy` runs,
// and for the 3-region fan-out `skopeo copy` and `regctl image copy`. The
// peers come from $DCHAIN_BENCH_CRANE, $DCHAIN_BENCH_SKOPEO and
// $DCHAIN_BENCH_REGCTL (`make bench-peers` builds crane from the
// go-containerregistry version dchain uses and regctl v0.9.2, and installs
// Debian's skopeo).
func BenchmarkFanOutLarge(b *testing.B) {
	regions := []string{"eu", "us", "ap"}
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
	// each copies the image of repo into regions, with dchain or a peer.
	type copier func(b *testing.B, repo string, regions []string)
	// dchain is what a user runs: `dchain replicate … --watch`, a process
	// that connects, starts the recorded replication and waits for it.
	dchain := func(b *testing.B, repo string, regions []string) {
		args := []string{"replicate", "src/" + repo + ":v1", "--watch"}
		for _, r := range regions {
			args = append(args, "--to", r)
		}
		dchainCLI(b, args...)
	}
	parallel := func(cmd func(src, dst string) *exec.Cmd) copier {
		return func(b *testing.B, repo string, regions []string) {
			src := stack.Endpoints.Registries["src"] + "/" + repo + ":v1"
			var wg sync.WaitGroup
			for _, r := range regions {
				wg.Go(func() {
					c := cmd(src, stack.Endpoints.Registries[r]+"/"+repo+":v1")
					if out, err := c.CombinedOutput(); err != nil {
						b.Errorf("%v: %v\n%s", c.Args, err, out)
					}
				})
			}
			wg.Wait()
		}
	}
	// copies measures a fresh image into regions each iteration; again,
	// one image copied once (untimed), then again and again (re-replication:
	// every blob and the manifest are there).
	copies := func(b *testing.B, regions []string, again bool, copy copier) {
		b.SetBytes(200 << 20 * int64(len(regions)))
		repo := ""
		if again {
			repo = fresh(b)
			copy(b, repo, regions)
		}
		for b.Loop() {
			if !again {
				repo = fresh(b)
			}
			copy(b, repo, regions)
		}
	}
	for _, c := range []struct {
		name    string
		regions []string
		again   bool
	}{{"x3", regions, false}, {"x1", regions[:1], false}, {"x1-again", regions[:1], true}, {"x3-again", regions, true}} {
		tools := []tool{{"dchain-" + c.name, func(b *testing.B) { copies(b, c.regions, c.again, dchain) }},
			{"crane-" + c.name, func(b *testing.B) {
				crane := peerEnv(b, "DCHAIN_BENCH_CRANE")
				copies(b, c.regions, c.again, parallel(func(src, dst string) *exec.Cmd { return exec.Command(crane, "copy", "--insecure", src, dst) }))
			}}}
		if c.name == "x3" { // skopeo and regctl: the 3-region fan-out only
			tools = append(tools, tool{"skopeo-x3", func(b *testing.B) {
				skopeo := peerEnv(b, "DCHAIN_BENCH_SKOPEO")
				copies(b, regions, false, parallel(func(src, dst string) *exec.Cmd {
					return exec.Command(skopeo, "copy", "--quiet", "--src-tls-verify=false", "--dest-tls-verify=false", "docker://"+src, "docker://"+dst)
				}))
			}}, tool{"regctl-x3", func(b *testing.B) {
				regctl := peerEnv(b, "DCHAIN_BENCH_REGCTL")
				var hosts []string
				for _, r := range append([]string{"src"}, regions...) {
					hosts = append(hosts, "--host", "reg="+stack.Endpoints.Registries[r]+",tls=disabled")
				}
				copies(b, regions, false, parallel(func(src, dst string) *exec.Cmd {
					return exec.Command(regctl, append(append([]string{"image", "copy"}, hosts...), src, dst)...)
				}))
			}})
		}
		runInTurn(b, tools)
	}
}
