package api

import (
	"testing"
	"time"

	"github.com/dchain-dev/dchain/starter"
)

// A remembered delivery answers with its runs marked existing, until its
// time is up or newer ones push it out; answers without runs are not kept.
func TestRecentDeliveries(t *testing.T) {
	r := newRecentDeliveries(time.Minute, 2)
	now := time.Now()
	a, b, c := deliveryKey("gh", []byte("a")), deliveryKey("gh", []byte("b")), deliveryKey("gh", []byte("c"))
	if deliveryKey("gh", []byte("a")) == deliveryKey("gl", []byte("a")) {
		t.Fatal("the source is not part of the key")
	}
	r.put(a, []starter.Started{{WorkflowID: "demo:x", RunID: "r1"}}, nil, now)
	runs, _, ok := r.get(a, now.Add(time.Second))
	if !ok || len(runs) != 1 || runs[0].WorkflowID != "demo:x" || !runs[0].Existing {
		t.Fatalf("remembered: %+v %v", runs, ok)
	}
	if _, _, ok := r.get(a, now.Add(2*time.Minute)); ok {
		t.Fatal("an answer past its time was used")
	}
	r.put(b, []starter.Started{{WorkflowID: "demo:b"}}, nil, now)
	r.put(c, []starter.Started{{WorkflowID: "demo:c"}}, nil, now)
	if _, _, ok := r.get(a, now); ok {
		t.Fatal("the oldest answer was kept beyond the limit")
	}
	if _, _, ok := r.get(c, now); !ok {
		t.Fatal("the newest answer was dropped")
	}
	r.put(deliveryKey("gh", []byte("ignored")), nil, []string{"a deletion"}, now)
	if _, _, ok := r.get(deliveryKey("gh", []byte("ignored")), now); ok {
		t.Fatal("an answer without runs was kept (it costs nothing to ask again)")
	}
}
