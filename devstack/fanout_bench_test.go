package devstack

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/dchain-dev/dchain/chain"
	"github.com/dchain-dev/dchain/workflows"
)

// BenchmarkFanOut3 measures one chain run that replicates a fresh
// multi-arch image (2 platforms × 3 layers × 1 MiB) to three destination
// registries in parallel and fires one trigger, on the embedded stack:
// from start request to workflow completion.
func BenchmarkFanOut3(b *testing.B) {
	l, ch := testChain("bench-fanout", "bench/app")
	ch.Replication = append(ch.Replication, chain.ReplicationRule{Name: "to-ap", Destination: "ap", Level: chain.LevelNamespace})
	ch.Triggers = ch.Triggers[1:]
	l.Chains[0] = ch
	const layer, layers, platforms = 1 << 20, 3, 2
	b.SetBytes(layer * layers * platforms * 3)
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		idx, err := random.Index(layer, layers, platforms)
		if err != nil {
			b.Fatal(err)
		}
		tag := fmt.Sprintf("b%d-%d", i, time.Now().UnixNano())
		ref, _ := name.ParseReference(stack.Endpoints.Registries["src"]+"/bench/app:"+tag, name.Insecure)
		if err := remote.WriteIndex(ref, idx, remote.WithContext(context.Background())); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		started := startRun(b, l, "bench/app:"+tag)
		st := waitRun(b, started.WorkflowID, time.Minute)
		if st.Outcome != workflows.OutcomeSucceeded || len(st.Destinations) != 3 {
			b.Fatalf("outcome %s: %s", st.Outcome, st.Message)
		}
	}
}
