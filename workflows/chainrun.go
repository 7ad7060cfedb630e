package workflows

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/dchain-dev/dchain/chain"
)

// ChainRun is one run of a delivery chain. It ends Succeeded (returns the
// RunStatus), Failed (an application error of type ErrTypeRunFailed whose
// details are the RunStatus) or Canceled (a canceled error with the RunStatus).
func ChainRun(ctx workflow.Context, in ChainRunInput) (*RunStatus, error) {
	r := newRun(ctx, in)
	if err := r.setup(ctx); err != nil {
		return nil, err
	}
	return r.run(ctx)
}

// Application error types a run ends with: failed, or blocked by the scan
// policy (the workflow fails either way; the DchainOutcome search
// attribute and the status in the details tell them apart).
const (
	ErrTypeRunFailed  = "ChainRunFailed"
	ErrTypeRunBlocked = "Blocked"
	// ErrTypeRunRejected: an approver or the approval's timeout said no.
	ErrTypeRunRejected = "Rejected"
)

// errSkipped marks a stage that had nothing to do; its text is the reason.
type errSkipped string

func (e errSkipped) Error() string { return string(e) }

type run struct {
	in     ChainRunInput
	status RunStatus
	attrs  attrs
	// pending is the approval the run waits for now (of the chain or of a
	// wave), and pendingCfg its settings; nil when it waits for none.
	pending    *ApprovalStatus
	pendingCfg *chain.Approval
	// missing are the destinations (indexes into status.Destinations) a
	// run retry leaves without the image: the replicate stage fails on them.
	missing []int
}

func newRun(ctx workflow.Context, in ChainRunInput) *run {
	if in.TaskQueue == "" {
		in.TaskQueue = DefaultTaskQueue
	}
	r := &run{in: in, attrs: attrs{batch: in.AttributesAtStart}, status: RunStatus{
		Chain: in.Chain.Name, Image: in.Image, Tags: []string{in.Image.Tag}, Outcome: OutcomeRunning,
		StartedAt: workflow.Now(ctx), Destinations: []DestinationStatus{}, Triggers: []TriggerStatus{},
	}}
	if in.Build != nil {
		r.status.Tags = in.Build.Tags
	}
	if in.Push != nil {
		r.status.Commit = string(in.Push.Commit)
	}
	for _, s := range Stages {
		if (s == StageApprove && in.Chain.Approval == nil) || (s == StageAccelerate && in.Chain.Accelerate == "") {
			continue
		}
		r.status.Stages = append(r.status.Stages, StageStatus{Name: s, State: StatePending})
	}
	return r
}

func (r *run) setup(ctx workflow.Context) error {
	if err := workflow.SetQueryHandler(ctx, QueryStatus, func() (RunStatus, error) { return r.status, nil }); err != nil {
		return err
	}
	if err := r.setApprovalHandler(ctx); err != nil {
		return err
	}
	if r.in.AttributesAtStart {
		return nil
	}
	return workflow.UpsertTypedSearchAttributes(ctx, startUpdates(r.in)...)
}

// run is the chain's story.
func (r *run) run(ctx workflow.Context) (*RunStatus, error) {
	stages := []string{StageBuild, StageResolve, StageScan, StageEvaluate, StageSign, StageReplicate, StageTrigger}
	steps := []func(workflow.Context) error{r.build, r.resolve, r.scan, r.evaluate, r.sign, r.replicate, r.trigger}
	// Runs started before the build stage existed resolved first.
	if workflow.GetVersion(ctx, "build-before-resolve", workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		stages[0], stages[1] = stages[1], stages[0]
		steps[0], steps[1] = steps[1], steps[0]
	}
	// Runs started before signing had no sign stage.
	if workflow.GetVersion(ctx, "sign-stage", workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		stages = slices.Delete(stages, 4, 5)
		steps = slices.Delete(steps, 4, 5)
		r.status.Stages = slices.DeleteFunc(r.status.Stages, func(s StageStatus) bool { return s.Name == StageSign })
	}
	// The accelerate and approve stages exist where the chain asks for them
	// (runs recorded before they existed had neither in their input).
	if r.in.Chain.Accelerate != "" {
		i := slices.Index(stages, StageReplicate)
		stages = slices.Insert(stages, i, StageAccelerate)
		steps = slices.Insert(steps, i, r.accelerate)
	}
	if r.in.Chain.Approval != nil {
		i := slices.Index(stages, StageReplicate)
		stages = slices.Insert(stages, i, StageApprove)
		steps = slices.Insert(steps, i, r.approve)
	}
	if r.in.Rerun != nil {
		stages, steps = r.reusedStages(ctx, stages, steps)
	}
	r.metrics(ctx).Counter(MetricRunsStarted).Inc(1)
	for i, step := range steps {
		if err := r.stage(ctx, stages[i], step); err != nil {
			return r.finish(ctx, stages[i], err)
		}
	}
	return r.finish(ctx, "", nil)
}

// stage runs one step, recording its state, the Stage search attribute and
// the workflow's current details (what the Web UI shows as running).
func (r *run) stage(ctx workflow.Context, name string, step func(workflow.Context) error) error {
	s := r.stageStatus(name)
	s.State, s.StartedAt = StateRunning, workflow.Now(ctx)
	r.publish(ctx, name)
	err := step(ctx)
	s.EndedAt = workflow.Now(ctx)
	var skipped errSkipped
	var blocked errBlocked
	var rejected errRejected
	switch {
	case err == nil:
		s.State = StateSucceeded
	case errors.As(err, &rejected):
		s.State, s.Message = StateRejected, rejected.Error()
	case errors.As(err, &blocked):
		s.State, s.Message = StateBlocked, blocked.Error()
	case errors.As(err, &skipped):
		s.State, s.Message, err = StateSkipped, skipped.Error(), nil
	case temporal.IsCanceledError(err):
		s.State, s.Message = StateCanceled, "canceled"
	default:
		s.State, s.Message = StateFailed, errorMessage(err)
	}
	if s.State != StateSkipped {
		r.metrics(ctx).WithTags(map[string]string{TagStage: name, TagState: string(s.State)}).Timer(MetricStageDuration).Record(s.EndedAt.Sub(s.StartedAt))
	}
	return err
}

func (r *run) stageStatus(name string) *StageStatus {
	if s := r.status.Stage(name); s != nil {
		return s
	}
	panic("unknown stage " + name)
}

// publish sets the Stage search attribute and the current details.
func (r *run) publish(ctx workflow.Context, stage string) {
	r.attrs.set(ctx, keyword(AttrStage, stage))
	workflow.SetCurrentDetails(ctx, currentDetails(&r.status))
}

// finish records the outcome and ends the workflow accordingly.
func (r *run) finish(ctx workflow.Context, stage string, err error) (*RunStatus, error) {
	r.status.EndedAt = workflow.Now(ctx)
	var blocked errBlocked
	var rejected errRejected
	switch {
	case err == nil:
		r.status.Outcome = OutcomeSucceeded
	case errors.As(err, &rejected):
		r.status.Outcome, r.status.FailedStage, r.status.Message = OutcomeRejected, stage, rejected.Error()
	case errors.As(err, &blocked):
		r.status.Outcome, r.status.FailedStage, r.status.Message = OutcomeBlocked, stage, "blocked by the "+blocked.by+": "+blocked.reason
	case temporal.IsCanceledError(err):
		r.status.Outcome, r.status.FailedStage, r.status.Message = OutcomeCanceled, stage, "canceled during "+stage
		// The run's context is canceled: record the outcome on one that is not.
		ctx, _ = workflow.NewDisconnectedContext(ctx)
	default:
		r.status.Outcome, r.status.FailedStage = OutcomeFailed, stage
		r.status.Message = fmt.Sprintf("%s failed: %s", stage, errorMessage(err))
	}
	for i := range r.status.Stages {
		if r.status.Stages[i].State == StatePending && err != nil {
			r.status.Stages[i].State, r.status.Stages[i].Message = StateSkipped, "not reached"
			switch r.status.Outcome {
			case OutcomeBlocked:
				r.status.Stages[i].Message = "blocked"
			case OutcomeRejected:
				r.status.Stages[i].Message = "rejected"
			}
		}
	}
	r.attrs.set(ctx, keyword(AttrOutcome, string(r.status.Outcome)))
	r.attrs.flush(ctx)
	workflow.SetCurrentDetails(ctx, currentDetails(&r.status))
	r.metrics(ctx).WithTags(map[string]string{TagOutcome: string(r.status.Outcome)}).Counter(MetricRunsEnded).Inc(1)
	switch r.status.Outcome {
	case OutcomeSucceeded:
		return &r.status, nil
	case OutcomeBlocked:
		// A blocked run fails, so that the Web UI shows it apart from a
		// delivered one where a person looks first (the list and the
		// header), with the policy's reason as the failure's message.
		// Runs recorded before completed with the status.
		if workflow.GetVersion(ctx, "blocked-fails", workflow.DefaultVersion, 1) == workflow.DefaultVersion {
			return &r.status, nil
		}
		return nil, temporal.NewApplicationErrorWithOptions(r.status.Message, ErrTypeRunBlocked,
			temporal.ApplicationErrorOptions{NonRetryable: true, Details: []any{r.status}})
	case OutcomeRejected:
		return nil, temporal.NewApplicationErrorWithOptions(r.status.Message, ErrTypeRunRejected,
			temporal.ApplicationErrorOptions{NonRetryable: true, Details: []any{r.status}})
	case OutcomeCanceled:
		return nil, temporal.NewCanceledError(r.status)
	default:
		return nil, temporal.NewApplicationErrorWithOptions(r.status.Message, ErrTypeRunFailed,
			temporal.ApplicationErrorOptions{NonRetryable: true, Details: []any{r.status}})
	}
}

// resolve confirms the triggering image's digest and reads its platforms.
func (r *run) resolve(ctx workflow.Context) error {
	src, err := r.registry(r.in.Image.Registry)
	if err != nil {
		return err
	}
	var info ImageInfo
	opts := r.activityOptions(r.in.TaskQueue, "resolve "+r.in.Image.String(), time.Minute, time.Hour)
	err = r.execute(workflow.WithActivityOptions(ctx, opts), ActivityResolveImage,
		ResolveImageInput{Registry: src, Image: r.in.Image}).Get(ctx, &info)
	if err != nil {
		return err
	}
	r.status.Image.Digest, r.status.MediaType, r.status.Platforms = info.Digest, info.MediaType, info.Platforms
	return nil
}

// registry returns a registry of the run's snapshot by name.
func (r *run) registry(name string) (chain.Registry, error) {
	for _, reg := range r.in.Registries {
		if reg.Name == name {
			return reg, nil
		}
	}
	return chain.Registry{}, temporal.NewNonRetryableApplicationError(
		fmt.Sprintf("registry %q is not in the run's configuration snapshot", name), "UnknownRegistry", nil)
}

// activityOptions are the options of one activity: transient failures retry
// with backoff until scheduleToClose; permanent ones are marked non-retryable
// by the activity itself.
func (r *run) activityOptions(queue, summary string, startToClose, scheduleToClose time.Duration) workflow.ActivityOptions {
	return workflow.ActivityOptions{
		TaskQueue:              queue,
		Summary:                summary,
		StartToCloseTimeout:    startToClose,
		ScheduleToCloseTimeout: scheduleToClose,
		WaitForCancellation:    true,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:    time.Second,
			BackoffCoefficient: 2,
			MaximumInterval:    r.in.Retry.MaxInterval.Or(2 * time.Minute),
		},
	}
}

// errorMessage is the innermost useful message of an activity error.
func errorMessage(err error) string {
	var app *temporal.ApplicationError
	if errors.As(err, &app) {
		return app.Message()
	}
	var timeout *temporal.TimeoutError
	if errors.As(err, &timeout) {
		if cause := errors.Unwrap(timeout); cause != nil {
			return "gave up after " + timeout.TimeoutType().String() + " timeout; last error: " + errorMessage(cause)
		}
		return timeout.Error()
	}
	return err.Error()
}

// heartbeatTimeout bounds the silence of a long activity (build, replicate).
// The SDK sends heartbeats at most every 80% of it, and a cancellation
// reaches an activity with a heartbeat's answer, so it also bounds how long
// a canceled run's build or copy goes on: keep it short.
const heartbeatTimeout = 10 * time.Second
