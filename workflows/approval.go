package workflows

import (
	"fmt"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/dchain-dev/dchain/chain"
)

// UpdateApproval is the Temporal Update that decides a run waiting for
// approval. Its argument is an ApprovalDecision; its result the decision as
// recorded. `dchain run approve|reject`, POST /api/v1/runs/<id>/approval and
// any Temporal client send it.
const UpdateApproval = "approval"

// Reasons an approval decision is refused (application error types of the
// update's validator, so callers tell them apart without reading text).
const (
	ErrTypeNotWaiting    = "NotWaitingForApproval"
	ErrTypeNotAnApprover = "NotAnApprover"
	ErrTypeBadDecision   = "BadDecision"
)

// Who decides when nobody did: Via of a decision the timeout made.
const ViaTimeout = "timeout"

// maxDecisionVia bounds a decision's Via.
const maxDecisionVia = 32

// ApprovalStatus is a run's approval: the request and, once made, the
// decision.
type ApprovalStatus struct {
	Approvers   []string  `json:"approvers"`
	RequestedAt time.Time `json:"requestedAt"`
	// Deadline is when the timeout decides, as OnTimeout says.
	Deadline  time.Time `json:"deadline"`
	OnTimeout string    `json:"onTimeout"`
	// Notify is the delivery of the request to approval.notify.
	Notify   *TriggerStatus    `json:"notify,omitempty"`
	Decision *ApprovalDecision `json:"decision,omitempty"`
	// Canceled says the run was canceled while it waited: nobody decided.
	Canceled bool `json:"canceled,omitempty"`
}

// ApprovalDecision is an approver's answer (the update's argument), or the
// timeout's.
type ApprovalDecision struct {
	Approve bool `json:"approve"`
	// By is who decided: an API token's name, a CLI identity ("timeout"
	// when nobody did).
	By string `json:"by"`
	// Via is how: "api", "cli", another client's name, or "timeout".
	Via string `json:"via,omitempty"`
	// Comment is the approver's comment, or a rejection's reason.
	Comment string `json:"comment,omitempty"`
	// At is when the run took the decision (set by the run).
	At time.Time `json:"at,omitzero"`
}

// String is "approved by alice via cli: looks good".
func (d ApprovalDecision) String() string {
	verb := "rejected"
	if d.Approve {
		verb = "approved"
	}
	s := verb + " by " + d.By
	if d.Via != "" && d.Via != ViaTimeout {
		s += " via " + d.Via
	}
	if d.Comment != "" {
		s += ": " + d.Comment
	}
	return s
}

// ApprovalRequest is what approval.notify is told.
type ApprovalRequest struct {
	Approvers []string  `json:"approvers"`
	Deadline  time.Time `json:"deadline"`
	OnTimeout string    `json:"onTimeout"`
	// Wave is the wave that waits ("": the run, before any copy).
	Wave string `json:"wave,omitempty"`
}

// TimeoutOutcome is what the deadline makes of the run: "approved" or "rejected".
func (a *ApprovalStatus) TimeoutOutcome() string {
	if a.OnTimeout == chain.OnTimeoutApprove {
		return "approved"
	}
	return "rejected"
}

// Waiting says whether the run waits for a decision now.
func (a *ApprovalStatus) Waiting() bool { return a != nil && a.Decision == nil && !a.Canceled }

// errRejected ends a run whose approval (of the run, or of a wave) said no.
type errRejected struct {
	d    ApprovalDecision
	wave string
}

func (e errRejected) Error() string {
	if e.wave != "" {
		return "wave " + e.wave + " " + e.d.String()
	}
	return e.d.String()
}

// approve is the approve stage: the chain's approval before any copy.
func (r *run) approve(ctx workflow.Context) error {
	r.status.Approval = r.newApproval(ctx, r.in.Chain.Approval)
	s := r.stageStatus(StageApprove)
	s.State, s.Message = StateWaiting, r.status.Approval.waitingFor()
	r.publish(ctx, StageApprove)
	d, err := r.awaitDecision(ctx, r.in.Chain.Approval, r.status.Approval, "")
	if err != nil {
		return err
	}
	s.Message = d.String()
	return nil
}

// newApproval is a request of cfg made now.
func (r *run) newApproval(ctx workflow.Context, cfg *chain.Approval) *ApprovalStatus {
	now := workflow.Now(ctx)
	onTimeout := cfg.OnTimeout
	if onTimeout == "" {
		onTimeout = chain.OnTimeoutReject
	}
	return &ApprovalStatus{Approvers: cfg.Approvers, RequestedAt: now, Deadline: now.Add(cfg.TimeoutOr()), OnTimeout: onTimeout}
}

// waitingFor is a waiting approval's note: "waiting for alice or bob until … (then rejected)".
func (a *ApprovalStatus) waitingFor() string {
	return fmt.Sprintf("waiting for %s until %s (then %s)", strings.Join(a.Approvers, " or "),
		a.Deadline.UTC().Format(time.RFC3339), a.TimeoutOutcome())
}

// awaitDecision asks for the decision st stands for (of the chain, or of
// wave) and waits for it, or for the deadline; a rejection is errRejected.
// The run is listed as waiting (Stage = approve) meanwhile.
func (r *run) awaitDecision(ctx workflow.Context, cfg *chain.Approval, st *ApprovalStatus, wave string) (*ApprovalDecision, error) {
	r.pending, r.pendingCfg = st, cfg
	defer func() { r.pending, r.pendingCfg = nil, nil }()
	if wave != "" {
		r.attrs.set(ctx, keyword(AttrStage, StageApprove))
		workflow.SetCurrentDetails(ctx, currentDetails(&r.status))
	}
	r.attrs.flush(ctx)

	notifyCtx, stopNotify := workflow.WithCancel(ctx)
	notified := r.notifyApprovers(notifyCtx, cfg, st, wave)
	timeout := cfg.TimeoutOr()
	ok, err := workflow.AwaitWithTimeout(ctx, timeout, func() bool { return st.Decision != nil })
	stopNotify()
	notified.Wait(ctx)
	if wave != "" {
		r.attrs.set(ctx, keyword(AttrStage, StageReplicate))
	}
	if err != nil {
		st.Canceled = true
		return nil, err // canceled
	}
	if !ok && st.Decision == nil {
		st.Decision = &ApprovalDecision{Approve: st.OnTimeout == chain.OnTimeoutApprove, By: ViaTimeout, Via: ViaTimeout, At: workflow.Now(ctx),
			Comment: fmt.Sprintf("no decision within %s", timeout)}
	}
	if !st.Decision.Approve {
		return st.Decision, errRejected{*st.Decision, wave}
	}
	return st.Decision, nil
}

// notifyApprovers delivers the approval request to cfg.notify, if set,
// while the run waits; a decision cancels a delivery still retrying.
func (r *run) notifyApprovers(ctx workflow.Context, cfg *chain.Approval, st *ApprovalStatus, wave string) workflow.WaitGroup {
	wg := workflow.NewWaitGroup(ctx)
	if cfg.Notify == nil {
		return wg
	}
	t := cfg.NotifyTrigger()
	src, err := r.registry(r.in.Image.Registry)
	if err != nil {
		return wg
	}
	st.Notify = &TriggerStatus{Name: t.Name, URL: t.URL, State: StateRunning, Wave: wave}
	ev := r.event(ctx, src, wave)
	ev.Approval = &ApprovalRequest{Approvers: cfg.Approvers, Deadline: st.Deadline, OnTimeout: st.OnTimeout, Wave: wave}
	in := DeliverInput{Trigger: t, Event: ev, IdempotencyKey: idempotencyKey(workflow.GetInfo(ctx).WorkflowExecution.RunID, waveKey("\x00approval", wave))}
	opts := r.activityOptions(r.in.TaskQueue, "approval requested → "+t.URL, time.Minute, r.in.Retry.TriggerTimeout.Or(time.Hour))
	opts.WaitForCancellation = false // a decision ends the wait for it
	wg.Add(1)
	workflow.Go(ctx, func(ctx workflow.Context) {
		defer wg.Done()
		// A cancel comes when the wait ends: a decision, the deadline or the run's cancel.
		r.deliver(workflow.WithActivityOptions(ctx, opts), st.Notify, in, func() string {
			if st.Decision != nil {
				return "decided before the request was delivered"
			}
			return "the wait ended before the request was delivered"
		})
	})
	return wg
}

// waveKey is what makes a wave's delivery key differ from another wave's
// (the name alone outside waves, as before waves).
func waveKey(name, wave string) string {
	if wave == "" {
		return name
	}
	return name + "\x00" + wave
}

// setApprovalHandler lets approvers decide while the run waits: the
// validator refuses a decision the run cannot take (not waiting, not an
// approver, no reason for a rejection) before anything is recorded.
func (r *run) setApprovalHandler(ctx workflow.Context) error {
	return workflow.SetUpdateHandlerWithOptions(ctx, UpdateApproval,
		func(ctx workflow.Context, d ApprovalDecision) (ApprovalDecision, error) {
			d.At = workflow.Now(ctx)
			r.pending.Decision = &d
			return d, nil
		},
		workflow.UpdateHandlerOptions{Validator: r.validateDecision})
}

func (r *run) validateDecision(d ApprovalDecision) error {
	a := r.pendingCfg
	refuse := func(typ, format string, args ...any) error {
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf(format, args...), typ, nil)
	}
	switch {
	case !r.in.Chain.AsksApproval():
		return refuse(ErrTypeNotWaiting, "chain %s asks for no approval: the run has nothing to decide", r.in.Chain.Name)
	case r.pending == nil:
		if last := r.lastDecision(); last != nil {
			return refuse(ErrTypeNotWaiting, "the run is not waiting for approval: already %s (it is at %s)", last, r.currentStage())
		}
		return refuse(ErrTypeNotWaiting, "the run is not waiting for approval yet (it is at %s)", r.currentStage())
	case r.pending.Decision != nil:
		return refuse(ErrTypeNotWaiting, "the run is not waiting for approval: already %s", r.pending.Decision)
	case len(d.Via) > maxDecisionVia || d.Via == ViaTimeout:
		return refuse(ErrTypeBadDecision, "via: %q is not a client's name", d.Via)
	}
	// Any Temporal client may send the update: the same checks as the CLI's and the API's.
	if _, err := CheckDecision(d, func(f string) string { return f }); err != nil {
		return refuse(ErrTypeBadDecision, "%v", err)
	}
	if !a.MayApprove(d.By) {
		return refuse(ErrTypeNotAnApprover, "%s may not decide this run; the approvers are %s", d.By, strings.Join(a.Approvers, ", "))
	}
	return nil
}

// CheckDecision checks a decision from outside (CLI flags, a REST body, any
// Temporal client's update) with the shared validator; name gives each
// field's outside name ("by", "comment") for errors. A rejection needs its
// reason in comment.
func CheckDecision(d ApprovalDecision, name func(field string) string) (ApprovalDecision, error) {
	var err error
	if d.By, err = chain.ParseIdentity(name("by"), d.By); err != nil {
		return d, err
	}
	reason := ""
	if !d.Approve {
		reason = "a rejection needs its reason"
	}
	if d.Comment, err = chain.ParseComment(name("comment"), d.Comment, reason); err != nil {
		return d, err
	}
	return d, nil
}

// lastDecision is the run's latest approval decision (nil: none yet).
func (r *run) lastDecision() *ApprovalDecision {
	var d *ApprovalDecision
	if r.status.Approval != nil {
		d = r.status.Approval.Decision
	}
	for _, w := range r.status.Waves {
		if w.Approval != nil && w.Approval.Decision != nil {
			d = w.Approval.Decision
		}
	}
	return d
}

// currentStage names the stage under way ("the end" once none is).
func (r *run) currentStage() string {
	for _, s := range r.status.Stages {
		if s.State == StateRunning || s.State == StateWaiting {
			return "stage " + s.Name
		}
	}
	if r.status.Outcome != OutcomeRunning {
		return "its end (" + string(r.status.Outcome) + ")"
	}
	return "its start"
}
