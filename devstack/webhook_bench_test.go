package devstack

import (
	"context"
	"fmt"
	"net/http"
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
	lat := make(chan time.Duration, b.N)
	run := time.Now().UnixNano()
	elapsed := sendFrom(b, 8, func(i int) error {
		body := distributionEvent("bench/hooks", fmt.Sprintf("b%d-%d", run, i), digest)
		t0 := time.Now()
		code, _, raw := deliver(b, srv.URL, "registry", "distribution", "hook-secret", body)
		if code != http.StatusAccepted {
			return fmt.Errorf("event %d: %d %s", i, code, raw)
		}
		lat <- time.Since(t0)
		return nil
	})
	close(lat)
	var ds []time.Duration
	for d := range lat {
		ds = append(ds, d)
	}
	b.ReportMetric(float64(len(ds))/elapsed.Seconds(), "events/s")
	reportLatency(b, "", ds)
}

// BenchmarkWebhookDuplicate sends the same signed push notification again
// and again (a sender's redeliveries) from 8 concurrent senders: every
// answer is 200 with the existing run.
func BenchmarkWebhookDuplicate(b *testing.B) {
	l, ch := testChain("bench-dups", "bench/dups")
	ch.Replication, ch.Triggers = nil, nil
	l.Chains[0] = ch
	srv, _ := apiServer(b, l, stack.Client)
	digest, err := PushSample(context.Background(), stack.Endpoints.Registries["src"], "bench/dups", "v1")
	if err != nil {
		b.Fatal(err)
	}
	body := distributionEvent("bench/dups", "v1", digest)
	if code, _, raw := deliver(b, srv.URL, "registry", "distribution", "hook-secret", body); code != http.StatusAccepted && code != http.StatusOK {
		b.Fatalf("first delivery: %d %s", code, raw)
	}
	elapsed := sendFrom(b, 8, func(i int) error {
		if code, ans, raw := deliver(b, srv.URL, "registry", "distribution", "hook-secret", body); code != http.StatusOK || len(ans.Runs) != 1 || !ans.Runs[0].Existing {
			return fmt.Errorf("redelivery %d: %d %s", i, code, raw)
		}
		return nil
	})
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
}
