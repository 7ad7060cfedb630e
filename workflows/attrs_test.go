package workflows

import (
	"errors"
	"slices"
	"testing"

	"github.com/dchain-dev/dchain/chain"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
)

// upserts runs in and returns the search attribute upserts it made, in order.
func upserts(t *testing.T, in ChainRunInput, f *fakes) []temporal.SearchAttributes {
	t.Helper()
	var got []temporal.SearchAttributes
	_, err := runWorkflow(t, in, f, func(env *testsuite.TestWorkflowEnvironment) {
		if in.AttributesAtStart {
			if err := env.SetTypedSearchAttributesOnStart(StartAttributes(in)); err != nil {
				t.Fatal(err)
			}
		}
		env.OnUpsertTypedSearchAttributes(mock.Anything).Return(nil).Run(func(args mock.Arguments) {
			got = append(got, args.Get(0).(temporal.SearchAttributes))
		})
	})
	var app *temporal.ApplicationError
	if err != nil && !(errors.As(err, &app) && app.Type() == ErrTypeRunBlocked) {
		t.Fatal(err)
	}
	return got
}

// A run whose attributes were set at start upserts once per workflow task
// that schedules work (resolve; the replication branches; the triggers) and
// once at the end — not once per stage, skipped ones included.
func TestChainRunBatchesSearchAttributes(t *testing.T) {
	in := testInput()
	if n := len(upserts(t, in, &fakes{})); n != 9 {
		t.Fatalf("a run started without attributes upserted %d times, want 9 (start, 7 stages, outcome)", n)
	}
	in.AttributesAtStart = true
	got := upserts(t, in, &fakes{})
	if len(got) != 4 {
		t.Fatalf("a batched run upserted %d times, want 4", len(got))
	}
	for i, want := range []string{StageResolve, StageReplicate, StageTrigger} {
		if s, _ := got[i].GetKeyword(AttrStage); s != want || got[i].Size() != 1 {
			t.Errorf("upsert %d: stage %q (%d attributes), want %q alone", i, s, got[i].Size(), want)
		}
	}
	if o, _ := got[3].GetKeyword(AttrOutcome); o != string(OutcomeSucceeded) {
		t.Errorf("last upsert: outcome %q", o)
	}
}

// The scan's counts wait for the next upsert: a blocked run writes them with
// the evaluate stage.
func TestBatchedScanCountsGoWithTheNextUpsert(t *testing.T) {
	in := testInput()
	in.AttributesAtStart = true
	in.Chain.Scan = scanPolicy(chain.ModeBlocking)
	got := upserts(t, in, &fakes{counts: map[string]int{"CRITICAL": 2, "HIGH": 1}})
	if len(got) != 4 {
		t.Fatalf("%d upserts, want 4 (resolve, scan, evaluate with the counts, outcome)", len(got))
	}
	stage, _ := got[2].GetKeyword(AttrStage)
	critical, _ := got[2].GetInt64(AttrCritical)
	high, _ := got[2].GetInt64(AttrHigh)
	if stage != StageEvaluate || critical != 2 || high != 1 {
		t.Errorf("third upsert: stage %q critical %d high %d", stage, critical, high)
	}
	if o, _ := got[3].GetKeyword(AttrOutcome); o != string(OutcomeBlocked) {
		t.Errorf("last upsert: outcome %q", o)
	}
}

// An inventory says what a platform's scan could look at; one with
// neither an OS nor packages was not analysed at all.
func TestScanInventory(t *testing.T) {
	inv := []ScanInventory{
		{Platform: "linux/amd64", OS: "alpine 3.18.4", Packages: map[string]int{"node-pkg": 2, "alpine": 2}},
		{Platform: "linux/arm64", Packages: map[string]int{}},
		{Packages: map[string]int{"gobinary": 1}},
	}
	want := []string{"linux/amd64: alpine 3.18.4: alpine 2, node-pkg 2", "linux/arm64: no OS detected, no packages", "image: no OS detected: gobinary 1"}
	if got := InventoryLines(inv); !slices.Equal(got, want) {
		t.Fatalf("lines %q, want %q", got, want)
	}
	if got := Unanalysed(inv); !slices.Equal(got, []string{"linux/arm64"}) {
		t.Fatalf("unanalysed %v", got)
	}
}
