package workflows

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/dchain-dev/dchain/chain"
)

// wavesInput stages testInput's destinations: frankfurt (the canary, with
// the "all" trigger), then virginia.
func wavesInput(canary chain.Wave) ChainRunInput {
	in := testInput()
	canary.Name, canary.Destinations, canary.Triggers = "canary", []string{"frankfurt"}, []string{"all"}
	in.Chain.Waves = []chain.Wave{canary, {Destinations: []string{"virginia"}}}
	return in
}

// The canary wave copies and fires its trigger (with its region) first;
// the next wave copies after its soak, on the test clock; the triggers no
// wave names fire at the end with every region.
func TestWavesInOrderWithSoak(t *testing.T) {
	f := &fakes{}
	st, err := runWorkflow(t, wavesInput(chain.Wave{Soak: chain.Duration(30 * time.Minute)}), f, nil)
	if err != nil || st.Outcome != OutcomeSucceeded {
		t.Fatalf("%v %s %s", err, st.Outcome, st.Message)
	}
	if strings.Join(f.replicated, ",") != "frankfurt,virginia" {
		t.Fatalf("copied in order %v", f.replicated)
	}
	canary, rest := st.Waves[0], st.Waves[1]
	if canary.Name != "canary" || rest.Name != "wave-2" || canary.State != StateSucceeded || rest.State != StateSucceeded {
		t.Fatalf("waves %+v", st.Waves)
	}
	if canary.SoakUntil.Sub(canary.StartedAt) < 30*time.Minute || rest.StartedAt.Before(canary.SoakUntil) {
		t.Fatalf("the second wave started %s, the canary's soak ended %s", rest.StartedAt, canary.SoakUntil)
	}
	// "all" fired after the canary, with the canary's region only; the others at the end with both.
	if f.delivered[0] != "all" || f.events[0].Wave != "canary" || strings.Join(f.events[0].Regions, ",") != "eu-central-1" {
		t.Fatalf("first delivery %s %+v", f.delivered[0], f.events[0])
	}
	for i, ev := range f.events[1:] {
		if ev.Wave != "" || strings.Join(ev.Regions, ",") != "eu-central-1,us-east-1" {
			t.Fatalf("delivery %d after the waves: %+v", i+1, ev)
		}
	}
	if f.keys[0] == idempotencyKey("default-test-run-id", "all") {
		t.Fatal("a wave's delivery has the key a delivery after every copy would")
	}
	for _, d := range st.Destinations {
		if want := map[string]string{"frankfurt": "canary", "virginia": "wave-2"}[d.Registry]; d.Wave != want {
			t.Fatalf("%s in wave %q, want %q", d.Registry, d.Wave, want)
		}
	}
}

// A failed wave stops the later ones and says why; nothing after it is
// copied or fired.
func TestWavesFailedWaveStopsTheRest(t *testing.T) {
	f := &fakes{replicate: func(ctx context.Context, in ReplicateInput) (ReplicateResult, error) {
		if in.Destination.Name == "frankfurt" {
			return ReplicateResult{}, temporal.NewNonRetryableApplicationError("denied", "AccessDenied", nil)
		}
		return ReplicateResult{Digest: in.Digest}, nil
	}}
	st, err := runWorkflow(t, wavesInput(chain.Wave{}), f, nil)
	if err == nil || st.Outcome != OutcomeFailed || st.FailedStage != StageReplicate || !strings.HasPrefix(st.Message, "replicate failed: wave canary failed: 1 of 1 destinations failed: frankfurt: denied") {
		t.Fatalf("%v: %s at %s: %s", err, st.Outcome, st.FailedStage, st.Message)
	}
	if strings.Join(f.replicated, ",") != "frankfurt" || len(f.delivered) != 0 {
		t.Fatalf("copied %v, delivered %v", f.replicated, f.delivered)
	}
	if st.Waves[0].State != StateFailed || st.Waves[1].State != StateSkipped || st.Waves[1].Message != "not started: wave canary failed" {
		t.Fatalf("waves %+v", st.Waves)
	}
	for _, d := range st.Destinations {
		if d.Registry == "virginia" && (d.State != StateSkipped || d.Message != "not copied: wave canary failed") {
			t.Fatalf("virginia %+v", d)
		}
	}
}

// A health check that never answers 2xx fails its wave at its timeout;
// one that recovers lets the next wave go.
func TestWavesHealthCheck(t *testing.T) {
	in := wavesInput(chain.Wave{Health: &chain.HealthCheck{URL: "http://canary/healthz", Timeout: chain.Duration(5 * time.Minute)}})
	f := &fakes{health: func(ctx context.Context, in HealthInput) (HealthResult, error) {
		res := HealthResult{HTTPStatus: 503, Attempts: activity.GetInfo(ctx).Attempt}
		return res, temporal.NewApplicationError("HTTP 503 (will retry)", "HealthCheckFailed", res)
	}}
	st, err := runWorkflow(t, in, f, nil)
	var app *temporal.ApplicationError
	if !errors.As(err, &app) || st.Waves[0].State != StateFailed || !strings.Contains(st.Waves[0].Message, "health check http://canary/healthz") ||
		st.Waves[0].Health == nil || st.Waves[0].Health.HTTPStatus != 503 || st.Waves[1].State != StateSkipped {
		t.Fatalf("%v: waves %+v", err, st.Waves)
	}
	if strings.Join(f.replicated, ",") != "frankfurt" {
		t.Fatalf("copied %v past a failed health check", f.replicated)
	}

	f = &fakes{health: func(ctx context.Context, in HealthInput) (HealthResult, error) {
		n := activity.GetInfo(ctx).Attempt
		if n < 3 {
			return HealthResult{HTTPStatus: 502, Attempts: n}, temporal.NewApplicationError("HTTP 502 (will retry)", "HealthCheckFailed", HealthResult{HTTPStatus: 502, Attempts: n})
		}
		return HealthResult{HTTPStatus: 200, Attempts: n}, nil
	}}
	st, err = runWorkflow(t, in, f, nil)
	if err != nil || st.Waves[0].Health.HTTPStatus != 200 || st.Waves[0].Health.Attempts != 3 || len(f.replicated) != 2 {
		t.Fatalf("%v: waves %+v, copied %v", err, st.Waves, f.replicated)
	}
}

// A wave with its own approval waits after the canary; the run is listed
// as waiting meanwhile; a rejection stops it there.
func TestWavesApproval(t *testing.T) {
	in := wavesInput(chain.Wave{})
	in.Chain.Waves[1].Approval = &chain.Approval{Approvers: []string{"alice"}}
	for _, approve := range []bool{true, false} {
		f := &fakes{}
		var waiting RunStatus
		var d decision
		st, err := runWorkflow(t, in, f, func(env *testsuite.TestWorkflowEnvironment) {
			env.RegisterDelayedCallback(func() {
				v, _ := env.QueryWorkflow(QueryStatus)
				_ = v.Get(&waiting)
			}, time.Hour)
			decide(env, 2*time.Hour, ApprovalDecision{Approve: approve, By: "alice", Via: "cli", Comment: "region by region"}, &d)
		})
		if a, wave := waiting.PendingApproval(); a == nil || wave != "wave-2" || waiting.Stage(StageReplicate).State != StateWaiting ||
			strings.Join(f.replicated[:1], ",") != "frankfurt" {
			t.Fatalf("while waiting: %+v %q %+v", a, wave, waiting.Stages)
		}
		if !d.accepted {
			t.Fatalf("decision %+v", d)
		}
		switch {
		case approve && (err != nil || len(f.replicated) != 2 || st.Waves[1].Approval.Decision.By != "alice"):
			t.Fatalf("approved: %v %v %+v", err, f.replicated, st.Waves[1])
		case !approve && (st.Outcome != OutcomeRejected || len(f.replicated) != 1 || st.Waves[1].State != StateRejected ||
			st.Message != "wave wave-2 rejected by alice via cli: region by region"):
			t.Fatalf("rejected: %s %s %v %+v", st.Outcome, st.Message, f.replicated, st.Waves[1])
		}
	}
}
