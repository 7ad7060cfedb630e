package devstack

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"
)

// BenchmarkWebhookImagePush sends signed registry push notifications
// (CNCF distribution format), one new tag each, to the API on the embedded
// stack, from 8 concurrent senders, and reports accepted events per second
// and the p50/p99 latency from request to the answer — which comes once the
// run's workflow has started.
func BenchmarkWebhookImagePush(b *testing.B) {
	l, ch := testChain("bench-hooks", "bench/hooks")
	ch.Replication, ch.Triggers = nil, nil // measure starting runs, not copying images
	l.Chains[0] = ch
	srv, _ := apiServer(b, l, stack.Client)
	digest, err := PushSample(context.Background(), stack.Endpoints.Registries["src"], "bench/hooks", "base")
	if err != nil {
		b.Fatal(err)
	}
	const senders = 8
	lat := make(chan time.Duration, b.N)
	work := make(chan int, b.N)
	for i := range b.N {
		work <- i
	}
	close(work)
	run := time.Now().UnixNano()
	b.ResetTimer()
	start := time.Now()
	errs := make(chan error, senders)
	for range senders {
		go func() {
			for i := range work {
				body := distributionEvent("bench/hooks", fmt.Sprintf("b%d-%d", run, i), digest)
				t0 := time.Now()
				code, _, raw := deliver(b, srv.URL, "registry", "distribution", "hook-secret", body)
				if code != http.StatusAccepted {
					errs <- fmt.Errorf("event %d: %d %s", i, code, raw)
					return
				}
				lat <- time.Since(t0)
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
	close(lat)
	var ds []time.Duration
	for d := range lat {
		ds = append(ds, d)
	}
	slices.Sort(ds)
	b.ReportMetric(float64(len(ds))/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(ds[len(ds)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(ds[min(len(ds)-1, len(ds)*99/100)].Microseconds())/1000, "p99-ms")
}
