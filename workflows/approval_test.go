package workflows

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/dchain-dev/dchain/chain"
)

func approvalInput(a chain.Approval) ChainRunInput {
	in := testInput()
	in.Chain.Approval = &a
	return in
}

// decision is what an update returned or why it was refused.
type decision struct {
	got      ApprovalDecision
	accepted bool
	refused  string // the validator's error type
	message  string
}

// decide sends an approval update at the test clock's at and records the answer in out.
func decide(env *testsuite.TestWorkflowEnvironment, at time.Duration, d ApprovalDecision, out *decision) {
	env.RegisterDelayedCallback(func() {
		env.UpdateWorkflow(UpdateApproval, "", &testsuite.TestUpdateCallback{
			OnAccept: func() { out.accepted = true },
			OnReject: func(err error) {
				var app *temporal.ApplicationError
				if errors.As(err, &app) {
					out.refused, out.message = app.Type(), app.Message()
				}
			},
			OnComplete: func(v any, err error) {
				if got, ok := v.(ApprovalDecision); ok {
					out.got = got
				}
			},
		}, d)
	}, at)
}

// An approver's approval lets the run go on; others are refused before
// anything is recorded; the status says who decided, when and why.
func TestApprovalApproved(t *testing.T) {
	f := &fakes{}
	var mallory, noReason, alice, again decision
	var waiting RunStatus
	st, err := runWorkflow(t, approvalInput(chain.Approval{Approvers: []string{"alice", "bob"}}), f, func(env *testsuite.TestWorkflowEnvironment) {
		env.RegisterDelayedCallback(func() {
			v, err := env.QueryWorkflow(QueryStatus)
			if err != nil {
				t.Error(err)
				return
			}
			_ = v.Get(&waiting)
		}, 10*time.Minute)
		decide(env, 20*time.Minute, ApprovalDecision{Approve: true, By: "mallory", Via: "cli"}, &mallory)
		decide(env, 30*time.Minute, ApprovalDecision{Approve: false, By: "bob", Via: "api"}, &noReason)
		decide(env, time.Hour, ApprovalDecision{Approve: true, By: "alice", Via: "cli", Comment: "canary looked fine"}, &alice)
		decide(env, time.Hour, ApprovalDecision{Approve: false, By: "bob", Via: "cli", Comment: "too late"}, &again)
	})
	if err != nil {
		t.Fatal(err)
	}
	if st.Outcome != OutcomeSucceeded || len(f.replicated) != 2 {
		t.Fatalf("outcome %s %s, replicated %v", st.Outcome, st.Message, f.replicated)
	}
	// While it waited: the stage, who may decide, and nothing copied.
	if s := waiting.Stage(StageApprove); s == nil || s.State != StateWaiting || !waiting.Approval.Waiting() ||
		strings.Join(waiting.Approval.Approvers, ",") != "alice,bob" || waiting.Stage(StageReplicate).State != StatePending {
		t.Fatalf("while waiting: %+v %+v", s, waiting.Approval)
	}
	if want := waiting.Approval.RequestedAt.Add(chain.DefaultApprovalTimeout); !waiting.Approval.Deadline.Equal(want) || waiting.Approval.OnTimeout != chain.OnTimeoutReject {
		t.Fatalf("deadline %s (want %s), on timeout %s", waiting.Approval.Deadline, want, waiting.Approval.OnTimeout)
	}
	if mallory.accepted || mallory.refused != ErrTypeNotAnApprover || !strings.Contains(mallory.message, "alice, bob") {
		t.Fatalf("mallory: %+v", mallory)
	}
	if noReason.accepted || noReason.refused != ErrTypeBadDecision || !strings.Contains(noReason.message, "comment") {
		t.Fatalf("a rejection without a reason: %+v", noReason)
	}
	if !alice.accepted || alice.got.By != "alice" || alice.got.At.IsZero() {
		t.Fatalf("alice: %+v", alice)
	}
	if again.accepted || again.refused != ErrTypeNotWaiting || !strings.Contains(again.message, "already approved by alice") {
		t.Fatalf("a second decision: %+v", again)
	}
	d := st.Approval.Decision
	if d == nil || !d.Approve || d.By != "alice" || d.Via != "cli" || d.Comment != "canary looked fine" ||
		d.At.Sub(st.Approval.RequestedAt) != time.Hour {
		t.Fatalf("decision %+v (requested %s)", d, st.Approval.RequestedAt)
	}
	if s := st.Stage(StageApprove); s.State != StateSucceeded || s.Message != "approved by alice via cli: canary looked fine" {
		t.Fatalf("approve stage %+v", s)
	}
	// The stages in order: approval after signing, before any copy.
	var names []string
	for _, s := range st.Stages {
		names = append(names, s.Name)
	}
	if got := strings.Join(names, ","); got != "build,resolve,scan,evaluate,sign,approve,replicate,trigger" {
		t.Fatalf("stages %s", got)
	}
}

// A rejection ends the run Rejected: nothing copied, no trigger fired.
func TestApprovalRejected(t *testing.T) {
	f := &fakes{}
	var bob decision
	st, err := runWorkflow(t, approvalInput(chain.Approval{Approvers: []string{"alice", "bob"}}), f, func(env *testsuite.TestWorkflowEnvironment) {
		decide(env, 2*time.Hour, ApprovalDecision{Approve: false, By: "bob", Via: "api", Comment: "CVE-2026-1 is not triaged"}, &bob)
	})
	var app *temporal.ApplicationError
	if !errors.As(err, &app) || app.Type() != ErrTypeRunRejected {
		t.Fatalf("want the run rejected, got %v", err)
	}
	if st.Outcome != OutcomeRejected || st.FailedStage != StageApprove || st.Message != "rejected by bob via api: CVE-2026-1 is not triaged" {
		t.Fatalf("outcome %s at %s: %s", st.Outcome, st.FailedStage, st.Message)
	}
	if len(f.replicated) != 0 || len(f.delivered) != 0 {
		t.Fatalf("copied %v, delivered %v after a rejection", f.replicated, f.delivered)
	}
	states := stageStates(st)
	if states[StageApprove] != StateRejected || states[StageReplicate] != StateSkipped || states[StageTrigger] != StateSkipped {
		t.Fatalf("stages %v", states)
	}
}

// Nobody decides: the timeout does, as the chain says (reject by default),
// on the test clock.
func TestApprovalTimeout(t *testing.T) {
	for _, tc := range []struct {
		onTimeout string
		want      Outcome
	}{{"", OutcomeRejected}, {chain.OnTimeoutApprove, OutcomeSucceeded}} {
		f := &fakes{}
		st, _ := runWorkflow(t, approvalInput(chain.Approval{Approvers: []string{"alice"}, Timeout: chain.Duration(6 * time.Hour), OnTimeout: tc.onTimeout}), f, nil)
		d := st.Approval.Decision
		if st.Outcome != tc.want || d == nil || d.By != ViaTimeout || d.Comment != "no decision within 6h0m0s" ||
			d.At.Sub(st.Approval.RequestedAt) != 6*time.Hour {
			t.Fatalf("onTimeout %q: %s %s, decision %+v", tc.onTimeout, st.Outcome, st.Message, d)
		}
		if copied := len(f.replicated) > 0; copied != (tc.want == OutcomeSucceeded) {
			t.Fatalf("onTimeout %q: copied %v", tc.onTimeout, f.replicated)
		}
	}
}

// A chain without approval has no approve stage, and refuses a decision.
func TestApprovalNotAsked(t *testing.T) {
	var d decision
	st, err := runWorkflow(t, testInput(), &fakes{replicate: func(ctx context.Context, in ReplicateInput) (ReplicateResult, error) {
		return ReplicateResult{Digest: in.Digest}, nil
	}}, func(env *testsuite.TestWorkflowEnvironment) {
		decide(env, 0, ApprovalDecision{Approve: true, By: "alice"}, &d)
	})
	if err != nil || st.Stage(StageApprove) != nil || st.Approval != nil {
		t.Fatalf("%v %+v", err, st.Stages)
	}
	if d.accepted || d.refused != ErrTypeNotWaiting {
		t.Fatalf("decision on a run without approval: %+v", d)
	}
}

// The approval request goes to approval.notify as a signed CloudEvent; a
// decision cancels a delivery still retrying, and the run goes on.
func TestApprovalNotify(t *testing.T) {
	in := approvalInput(chain.Approval{Approvers: []string{"alice"}, Notify: &chain.ApprovalNotify{URL: "http://pager/approvals", Secret: "env:X"}})
	in.Chain.Triggers = nil
	f := &fakes{deliver: func(ctx context.Context, in DeliverInput) (DeliverResult, error) {
		return DeliverResult{HTTPStatus: 503}, temporal.NewApplicationError("HTTP 503 (will retry)", "TriggerFailed")
	}}
	var alice decision
	st, err := runWorkflow(t, in, f, func(env *testsuite.TestWorkflowEnvironment) {
		decide(env, 90*time.Second, ApprovalDecision{Approve: true, By: "alice", Via: "api"}, &alice)
	})
	if err != nil || st.Outcome != OutcomeSucceeded {
		t.Fatalf("%v %s", err, st.Outcome)
	}
	if len(f.events) == 0 || f.events[0].Approval == nil || f.events[0].Approval.Approvers[0] != "alice" || f.delivered[0] != "approval" {
		t.Fatalf("events %+v", f.events)
	}
	if n := st.Approval.Notify; n == nil || n.State != StateCanceled || n.URL != "http://pager/approvals" {
		t.Fatalf("notify %+v", n)
	}
}

// Canceled while waiting: the run ends Canceled at the approve stage.
func TestApprovalCanceledWhileWaiting(t *testing.T) {
	f := &fakes{}
	st, err := runWorkflow(t, approvalInput(chain.Approval{Approvers: []string{"alice"}}), f, func(env *testsuite.TestWorkflowEnvironment) {
		env.RegisterDelayedCallback(env.CancelWorkflow, 3*time.Hour)
	})
	if !temporal.IsCanceledError(err) || st.Outcome != OutcomeCanceled || st.FailedStage != StageApprove || len(f.replicated) != 0 {
		t.Fatalf("%v %s at %s, copied %v", err, st.Outcome, st.FailedStage, f.replicated)
	}
	if a, _ := st.PendingApproval(); a != nil || !st.Approval.Canceled || st.Approval.Waiting() || strings.Contains(currentDetails(st), "WAITING") {
		t.Fatalf("a canceled run still waits: %+v", st.Approval)
	}
}

func TestApprovalDetails(t *testing.T) {
	at := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	st := RunStatus{Chain: "demo", Outcome: OutcomeRunning, Approval: &ApprovalStatus{Approvers: []string{"alice", "bob"},
		RequestedAt: at, Deadline: at.Add(72 * time.Hour), OnTimeout: "reject"}}
	if got := currentDetails(&st); !strings.HasPrefix(got, "**WAITING FOR APPROVAL** since 2026-12-07T09:00:00Z by alice or bob; at 2026-12-10T09:00:00Z the run is rejected") {
		t.Fatalf("details:\n%s", got)
	}
	st.Approval.Decision = &ApprovalDecision{Approve: true, By: "alice", Via: "api", At: at.Add(time.Hour)}
	if got := currentDetails(&st); !strings.HasPrefix(got, "Approval: approved by alice via api at 2026-12-07T10:00:00Z") {
		t.Fatalf("details:\n%s", got)
	}
}
