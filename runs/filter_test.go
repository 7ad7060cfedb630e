package runs

import (
	"errors"
	"testing"
	"time"

	taskqueuepb "go.temporal.io/api/taskqueue/v1"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/dchain-dev/dchain/chain"
)

// Filters from outside are checked once: an outcome in any case is the
// run's own spelling, unknown values are refused naming the field, and
// quotes or backslashes never get near the query.
func TestFilterCheck(t *testing.T) {
	flag := func(f string) string { return "--" + f }
	f, err := Filter{Kind: "Chain", Chain: "demo", Outcome: "blocked", Repository: "demo/app", Tag: "v1", Limit: 10}.Check(flag)
	if err != nil || f.Outcome != "Blocked" || f.Kind != KindChain {
		t.Fatalf("%+v %v", f, err)
	}
	if q := f.Query(); q != "WorkflowType IN ('ChainRun') AND DchainChain = 'demo' AND DchainOutcome = 'Blocked' AND DchainRepository = 'demo/app' AND DchainTag = 'v1'" {
		t.Fatalf("query %s", q)
	}
	// A sync's outcome is its execution status.
	if q := (Filter{Kind: KindSync, Outcome: "Failed"}).Query(); q != "WorkflowType IN ('ChainSync') AND ExecutionStatus = 'Failed'" {
		t.Fatalf("query %s", q)
	}
	// Every kind by default: chain runs, replications, syncs, scans.
	if q := (Filter{}).Query(); q != "WorkflowType IN ('ChainRun', 'Replicate', 'ChainSync', 'ManualScan', 'ScanRepository')" {
		t.Fatalf("query %s", q)
	}
	for _, bad := range []struct {
		f     Filter
		field string
	}{
		{Filter{Outcome: "blockd"}, "--outcome"},
		{Filter{Kind: "build"}, "--kind"},
		{Filter{Chain: `demo' OR '1'='1`}, "--chain"},
		{Filter{Repository: `demo/app\`}, "--repository"},
		{Filter{Tag: "-v1"}, "--tag"},
		{Filter{Limit: 5000}, "--limit"},
	} {
		_, err := bad.f.Check(flag)
		var in *chain.InputError
		if !errors.As(err, &in) || in.Field != bad.field {
			t.Errorf("%+v: %v, want a refused %s", bad.f, err, bad.field)
		}
	}
}

// A poller that has not polled for longer than a long poll lasts is gone,
// although Temporal lists it for minutes more.
func TestLivePollers(t *testing.T) {
	now := time.Now()
	ps := []*taskqueuepb.PollerInfo{
		{LastAccessTime: timestamppb.New(now.Add(-10 * time.Second))},
		{LastAccessTime: timestamppb.New(now.Add(-4 * time.Minute))},
		{},
	}
	if n := livePollers(ps, now); n != 2 {
		t.Fatalf("%d live pollers, want 2", n)
	}
}

// --waiting selects the chain runs at the approve stage; another kind is refused.
func TestFilterWaiting(t *testing.T) {
	f, err := Filter{Waiting: true, Chain: "demo"}.Check(func(f string) string { return "--" + f })
	if err != nil {
		t.Fatal(err)
	}
	if q := f.Query(); q != "WorkflowType IN ('ChainRun') AND ExecutionStatus = 'Running' AND DchainStage = 'approve' AND DchainChain = 'demo'" {
		t.Fatalf("query %s", q)
	}
	var in *chain.InputError
	if _, err := (Filter{Waiting: true, Kind: "sync"}).Check(func(f string) string { return "--" + f }); !errors.As(err, &in) || in.Field != "--waiting" {
		t.Fatalf("--waiting --kind sync: %v", err)
	}
}
