package workflows

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/dchain-dev/dchain/chain"
)

// earlierRun is a run of testInput that copied into frankfurt and failed
// into virginia, after a scan and an approval.
func earlierRun(t *testing.T) (ChainRunInput, RunStatus) {
	in := testInput()
	in.Chain.Scan = scanPolicy("block")
	in.Chain.Approval = &chain.Approval{Approvers: []string{"alice"}, OnTimeout: chain.OnTimeoutApprove}
	f := &fakes{counts: map[string]int{"LOW": 1}, replicate: func(ctx context.Context, in ReplicateInput) (ReplicateResult, error) {
		if in.Destination.Name == "virginia" {
			return ReplicateResult{}, temporal.NewNonRetryableApplicationError("denied", "AccessDenied", nil)
		}
		return ReplicateResult{Digest: in.Digest}, nil
	}}
	st, _ := runWorkflow(t, in, f, nil)
	if st.Outcome != OutcomeFailed || st.FailedStage != StageReplicate || st.Scan == nil {
		t.Fatalf("the earlier run: %s at %s %s", st.Outcome, st.FailedStage, st.Message)
	}
	return in, *st
}

// A rerun from replicate copies without resolving, scanning or asking for
// approval again; the reused stages say where their results came from.
func TestRerunFromReplicate(t *testing.T) {
	in, earlier := earlierRun(t)
	in.Rerun = &Rerun{Of: "demo:demo/app:v1@sha256:0123456789abcdef", OfRun: "run-1", From: StageReplicate, Earlier: earlier}
	f := &fakes{}
	st, err := runWorkflow(t, in, f, nil)
	if err != nil || st.Outcome != OutcomeSucceeded {
		t.Fatalf("%v %s %s", err, st.Outcome, st.Message)
	}
	slices.Sort(f.replicated) // the two copies run at once
	if len(f.scanned) != 0 || strings.Join(f.replicated, ",") != "frankfurt,virginia" {
		t.Fatalf("scanned %v, copied %v", f.scanned, f.replicated)
	}
	for _, name := range []string{StageResolve, StageScan, StageEvaluate, StageApprove} {
		if s := st.Stage(name); s.State != StateReused || !strings.HasPrefix(s.Message, "from run demo:demo/app:v1") {
			t.Fatalf("%s: %+v", name, s)
		}
	}
	if st.RerunOf == nil || st.RerunOf.From != StageReplicate || st.Scan == nil || st.Approval == nil || st.Approval.Decision == nil || st.Image.Digest != digest {
		t.Fatalf("status %+v", st)
	}
}

// run retry: only the named destination is copied again; the other keeps
// the earlier result; the triggers say both regions have the image.
func TestRetryOneDestination(t *testing.T) {
	in, earlier := earlierRun(t)
	in.Rerun = &Rerun{Of: "demo:x", OfRun: "run-1", From: StageReplicate, Destinations: []string{"virginia"}, Earlier: earlier}
	f := &fakes{}
	st, err := runWorkflow(t, in, f, nil)
	if err != nil || strings.Join(f.replicated, ",") != "virginia" {
		t.Fatalf("%v: copied %v", err, f.replicated)
	}
	for _, d := range st.Destinations {
		if d.State != StateSucceeded || (d.Registry == "frankfurt" && d.Message != "(run demo:x)") {
			t.Fatalf("destination %+v", d)
		}
	}
	if len(f.events) == 0 || strings.Join(f.events[0].Regions, ",") != "eu-central-1,us-east-1" {
		t.Fatalf("events %+v", f.events)
	}
}

// A rerun from trigger fires the triggers again, copying nothing; a rerun
// from scan scans again and asks for approval again.
func TestRerunFromTriggerAndScan(t *testing.T) {
	in, earlier := earlierRun(t)
	earlier.Stage(StageReplicate).State = StateSucceeded // as if every copy had succeeded
	in.Rerun = &Rerun{Of: "demo:x", OfRun: "run-1", From: StageTrigger, Earlier: earlier}
	f := &fakes{}
	st, err := runWorkflow(t, in, f, nil)
	if err != nil || len(f.replicated) != 0 || len(f.delivered) == 0 || st.Stage(StageReplicate).State != StateReused {
		t.Fatalf("from trigger: %v copied %v delivered %v", err, f.replicated, f.delivered)
	}
	in.Rerun = &Rerun{Of: "demo:x", OfRun: "run-1", From: StageScan, Earlier: earlier}
	f = &fakes{counts: map[string]int{}}
	st, err = runWorkflow(t, in, f, nil)
	if err != nil || len(f.scanned) != 1 || st.Stage(StageApprove).State != StateSucceeded || st.Stage(StageResolve).State != StateReused {
		t.Fatalf("from scan: %v scanned %v, stages %+v", err, f.scanned, st.Stages)
	}
}

func TestRerunWorkflowID(t *testing.T) {
	a := RerunWorkflowID("demo:app:v1@sha256:0123", "run-1", StageReplicate, nil)
	if a != RerunWorkflowID("demo:app:v1@sha256:0123", "run-1", StageReplicate, nil) || !strings.HasPrefix(a, "demo:app:v1@sha256:0123~replicate-") {
		t.Fatal(a)
	}
	if a == RerunWorkflowID("demo:app:v1@sha256:0123", "run-2", StageReplicate, nil) || a == RerunWorkflowID("demo:app:v1@sha256:0123", "run-1", StageReplicate, []string{"us"}) {
		t.Fatal("different reruns share an ID")
	}
	if q := RerunsQuery("a'b").String(); q != `WorkflowType = 'ChainRun' AND WorkflowId STARTS_WITH 'a\'b~'` {
		t.Fatal(q)
	}
}

// A retry that leaves out a destination still without the image does not
// end Succeeded: the run says which one still lacks it.
func TestRetryLeavesAMissingDestination(t *testing.T) {
	in, earlier := earlierRun(t)
	for i := range earlier.Destinations {
		earlier.Destinations[i].State, earlier.Destinations[i].Message = StateFailed, "denied"
	}
	in.Rerun = &Rerun{Of: "demo:x", OfRun: "run-1", From: StageReplicate, Destinations: []string{"frankfurt"}, Earlier: earlier}
	f := &fakes{}
	st, err := runWorkflow(t, in, f, nil)
	if err == nil || st.Outcome != OutcomeFailed || !strings.Contains(st.Message, "virginia: not copied: not retried, still without the image (run demo:x: Failed: denied)") {
		t.Fatalf("%v: %s %s", err, st.Outcome, st.Message)
	}
	if strings.Join(f.replicated, ",") != "frankfurt" || len(f.delivered) != 0 {
		t.Fatalf("copied %v, delivered %v", f.replicated, f.delivered)
	}
}

// A retry of the second wave's destination does not run the canary again:
// no copy, no trigger, no soak there; the canary says it is the earlier run's.
func TestRetryInWavesReusesTheWavesBefore(t *testing.T) {
	in := wavesInput(chain.Wave{Soak: chain.Duration(time.Hour)})
	f := &fakes{replicate: func(ctx context.Context, in ReplicateInput) (ReplicateResult, error) {
		if in.Destination.Name == "virginia" {
			return ReplicateResult{}, temporal.NewNonRetryableApplicationError("denied", "AccessDenied", nil)
		}
		return ReplicateResult{Digest: in.Digest}, nil
	}}
	earlier, _ := runWorkflow(t, in, f, nil)
	if earlier.Waves[0].State != StateSucceeded || earlier.Waves[1].State != StateFailed {
		t.Fatalf("earlier waves %+v", earlier.Waves)
	}
	in.Rerun = &Rerun{Of: "demo:x", OfRun: "run-1", From: StageReplicate, Destinations: []string{"virginia"}, Earlier: *earlier}
	f = &fakes{}
	st, err := runWorkflow(t, in, f, nil)
	if err != nil || strings.Join(f.replicated, ",") != "virginia" || st.Waves[0].State != StateReused || st.Waves[1].State != StateSucceeded {
		t.Fatalf("%v: copied %v, waves %+v", err, f.replicated, st.Waves)
	}
	for _, ev := range f.events {
		if ev.Wave == "canary" {
			t.Fatalf("the canary's trigger fired again: %+v", ev)
		}
	}
	if d := st.EndedAt.Sub(st.StartedAt); d >= time.Hour {
		t.Fatalf("the canary soaked again: the run took %s", d)
	}
}
