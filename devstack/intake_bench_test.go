package devstack

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dchain-dev/dchain/chain"
	"github.com/dchain-dev/dchain/starter"
	"github.com/dchain-dev/dchain/workflows"
)

// BenchmarkIntake measures how fast pushes of new commits become started
// build runs while the runs execute, on the embedded stack (Temporal, the
// registries, buildkitd and the worker in one process). Each iteration is
// one push of a new commit of the sample app (a changed file under app/,
// so the build's COPY runs again); the chain builds it for linux/amd64.
//
//   - start/8: the engine's limit in this harness: 8 goroutines call the
//     starter (StartPush with the commit: ExecuteWorkflow with dchain's
//     search attributes and input), no HTTP;
//   - github/8: 8 senders POST signed GitHub push events to the API;
//   - github/burst: every push POSTed at once.
//
// It reports accepted events/s (first request to last answer), the p50
// and p99 of the answers, the deliveries not answered 202 (a 503: the
// start did not make the API's deadline), and, once every run ended, the
// runs' first workflow task latency to its start and to its end (p50,
// p99) and their workflow task timeouts.
func BenchmarkIntake(b *testing.B) {
	for _, c := range []struct {
		name    string
		senders int // 0: one per push
		webhook bool
	}{{"start/8", 8, false}, {"github/8", 8, true}, {"github/burst", 0, true}} {
		b.Run(c.name, func(b *testing.B) {
			name := "bench-intake-" + strings.ReplaceAll(c.name, "/", "-")
			src := filepath.Join(b.TempDir(), "app")
			if err := SampleRepo(context.Background(), src, ""); err != nil {
				b.Fatal(err)
			}
			l := buildChain(b, name, "bench/"+name, src, "linux/amd64")
			l.Chains[0].Replication, l.Chains[0].Triggers = nil, nil
			srv, _ := apiServer(b, l, stack.Client)
			commits := newCommits(b, src, b.N)
			s := &starter.Starter{Client: stack.Client, Config: l}
			var (
				mu       sync.Mutex
				lat      []time.Duration
				ids      []string
				refused  atomic.Int64
				refusals = map[string]int{}
			)
			send := func(i int) error {
				t0 := time.Now()
				var started []string
				if c.webhook {
					payload := fmt.Sprintf(`{"ref":"refs/heads/main","after":"%s","deleted":false,"repository":{"full_name":"acme/app","clone_url":%q},"pusher":{"name":"alice"},"head_commit":{"timestamp":%q}}`,
						commits[i], src, time.Now().UTC().Format(time.RFC3339))
					code, ans, raw := deliver(b, srv.URL, "gh", "github", "hook-secret", []byte(payload))
					if code != http.StatusAccepted {
						refused.Add(1)
						mu.Lock()
						refusals[fmt.Sprintf("%d %s", code, strings.TrimSpace(raw))]++
						mu.Unlock()
						return nil
					}
					for _, r := range ans.Runs {
						started = append(started, r.WorkflowID)
					}
				} else {
					runs, err := s.StartPush(context.Background(), starter.PushRequest{Chain: name, Ref: "refs/heads/main", Commit: commits[i],
						At: time.Now(), Pusher: "alice", Cause: workflows.Cause{Kind: "push", Actor: "alice", At: time.Now().UTC()}})
					if err != nil {
						return err
					}
					for _, r := range runs {
						started = append(started, r.WorkflowID)
					}
				}
				d := time.Since(t0)
				mu.Lock()
				lat, ids = append(lat, d), append(ids, started...)
				mu.Unlock()
				return nil
			}
			senders := c.senders
			if senders == 0 {
				senders = b.N
			}
			elapsed := sendFrom(b, senders, send)
			for _, id := range ids {
				if st := waitRun(b, id, 15*time.Minute); st.Outcome != workflows.OutcomeSucceeded {
					b.Errorf("run %s: %s %s", id, st.Outcome, st.Message)
				}
			}
			var tasks firstTasks
			for _, id := range ids {
				tasks.add(b, id)
			}
			for why, n := range refusals {
				b.Logf("%d deliveries answered %s", n, why)
			}
			b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "events/s")
			reportLatency(b, "", lat)
			b.ReportMetric(float64(refused.Load()), "refused")
			tasks.report(b)
		})
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// reportLatency reports the p50 and p99 of ds as <prefix>p50-ms and
// <prefix>p99-ms (0 when there are none).
func reportLatency(b *testing.B, prefix string, ds []time.Duration) {
	ds = slices.Sorted(slices.Values(ds))
	for _, p := range []int{50, 99} {
		v := 0.0
		if len(ds) > 0 {
			v = ms(ds[min(len(ds)-1, len(ds)*p/100)])
		}
		b.ReportMetric(v, fmt.Sprintf("%sp%d-ms", prefix, p))
	}
}

// sendFrom calls send for 0 … b.N-1 from senders goroutines, timed (the
// timer is reset before and stopped after), and fails on the first error.
func sendFrom(b *testing.B, senders int, send func(i int) error) time.Duration {
	work := make(chan int, b.N)
	for i := range b.N {
		work <- i
	}
	close(work)
	b.ResetTimer()
	start := time.Now()
	errs := make(chan error, senders)
	for range senders {
		go func() {
			for i := range work {
				if err := send(i); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range senders {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	return elapsed
}

// newCommits adds n commits to branch main of the repository at dir, each
// changing app/pushed.txt, in one git fast-import, and returns them.
func newCommits(b *testing.B, dir string, n int) []chain.Commit {
	b.Helper()
	var in bytes.Buffer
	now := time.Now().Unix()
	for i := range n {
		msg := fmt.Sprintf("push %d", i)
		content := fmt.Sprintf("%d-%d\n", time.Now().UnixNano(), i)
		fmt.Fprintf(&in, "commit refs/heads/main\nmark :%d\ncommitter bench <bench@example.invalid> %d +0000\ndata %d\n%s\n", i+1, now+int64(i), len(msg), msg)
		if i == 0 {
			in.WriteString("from refs/heads/main^0\n")
		}
		fmt.Fprintf(&in, "M 100644 inline app/pushed.txt\ndata %d\n%s\n", len(content), content)
	}
	marks := filepath.Join(b.TempDir(), "marks")
	cmd := exec.Command("git", "fast-import", "--quiet", "--export-marks="+marks)
	cmd.Dir, cmd.Stdin = dir, &in
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("fast-import: %v: %s", err, out)
	}
	raw, err := os.ReadFile(marks)
	if err != nil {
		b.Fatal(err)
	}
	out := make([]chain.Commit, n)
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		var mark int
		var sha string
		if _, err := fmt.Sscanf(line, ":%d %s", &mark, &sha); err != nil || mark < 1 || mark > n {
			b.Fatalf("marks: %q", line)
		}
		out[mark-1] = chain.Commit(sha)
	}
	return out
}
