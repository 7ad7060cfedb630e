package workflows

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/dchain-dev/dchain/chain"
)

// ActivityCheckHealth asks a wave's health URL whether its clusters are
// healthy (2xx), retrying until the check's timeout.
const ActivityCheckHealth = "CheckHealth"

// HealthInput is one health check of a wave.
type HealthInput struct {
	URL  string `json:"url"`
	Wave string `json:"wave"`
}

// HealthResult is a health check's answer.
type HealthResult struct {
	HTTPStatus int   `json:"httpStatus"`
	Attempts   int32 `json:"attempts"`
}

// WaveStatus is one wave of a run.
type WaveStatus struct {
	Name         string   `json:"name"`
	Destinations []string `json:"destinations"`
	State        State    `json:"state"`
	Message      string   `json:"message,omitempty"`
	// Approval is the wave's approval, when it has one.
	Approval *ApprovalStatus `json:"approval,omitempty"`
	// SoakUntil is when the soak after the wave ends.
	SoakUntil time.Time `json:"soakUntil,omitzero"`
	// Health is the last answer of the wave's health check.
	Health    *HealthResult `json:"health,omitempty"`
	StartedAt time.Time     `json:"startedAt,omitzero"`
	EndedAt   time.Time     `json:"endedAt,omitzero"`
}

// PendingApproval is the approval the run waits for now, and the wave that
// waits ("": the run's approval before any copy); nil when none.
func (s *RunStatus) PendingApproval() (*ApprovalStatus, string) {
	if s.Outcome != OutcomeRunning { // ended, whatever its record said last
		return nil, ""
	}
	if s.Approval.Waiting() {
		return s.Approval, ""
	}
	for _, w := range s.Waves {
		if w.Approval.Waiting() {
			return w.Approval, w.Name
		}
	}
	return nil, ""
}

// replicateInWaves copies wave after wave; a wave that fails (a copy, a
// trigger, its health check), is rejected or is canceled stops the waves
// after it, whose destinations are left uncopied and say why.
func (r *run) replicateInWaves(ctx workflow.Context, copies []aCopy) error {
	c := r.in.Chain
	r.status.Waves = make([]WaveStatus, len(c.Waves))
	for i, w := range c.Waves {
		r.status.Waves[i] = WaveStatus{Name: c.WaveName(i), Destinations: w.Destinations, State: StatePending}
	}
	for i := range c.Waves {
		w := &r.status.Waves[i]
		if earlier, ok := r.reusedWave(i); ok {
			*w = earlier
			continue
		}
		err := r.wave(ctx, i, copies)
		w.EndedAt = workflow.Now(ctx)
		if err == nil {
			w.State = StateSucceeded
			workflow.SetCurrentDetails(ctx, currentDetails(&r.status))
			continue
		}
		var rejected errRejected
		switch {
		case errors.As(err, &rejected):
			w.State, w.Message = StateRejected, rejected.Error()
		case temporal.IsCanceledError(err):
			w.State, w.Message = StateCanceled, "canceled"
		default:
			w.State, w.Message = StateFailed, errorMessage(err)
		}
		why := fmt.Sprintf("wave %s %s", w.Name, strings.ToLower(string(w.State)))
		for j := i + 1; j < len(r.status.Waves); j++ {
			r.status.Waves[j].State, r.status.Waves[j].Message = StateSkipped, "not started: "+why
		}
		for k := range r.status.Destinations {
			if d := &r.status.Destinations[k]; d.State == StatePending {
				d.State, d.Message = StateSkipped, notCopied+": "+why
			}
		}
		workflow.SetCurrentDetails(ctx, currentDetails(&r.status))
		if errors.As(err, &rejected) || temporal.IsCanceledError(err) {
			return err
		}
		return temporal.NewNonRetryableApplicationError(why+": "+w.Message, "WaveFailed", nil)
	}
	return r.replicationOutcome(ctx)
}

// reusedWave is the earlier run's wave i, where a run retry copies into
// none of its destinations and that wave succeeded: it is not run again
// (no approval, copy, trigger, soak or health check).
func (r *run) reusedWave(i int) (WaveStatus, bool) {
	rr := r.in.Rerun
	if rr == nil || len(rr.Destinations) == 0 || i >= len(rr.Earlier.Waves) {
		return WaveStatus{}, false
	}
	w := rr.Earlier.Waves[i]
	if w.Name != r.status.Waves[i].Name || w.State != StateSucceeded && w.State != StateReused ||
		slices.ContainsFunc(r.in.Chain.Waves[i].Destinations, r.retried) {
		return WaveStatus{}, false
	}
	w.State, w.Message = StateReused, "from run "+rr.Of
	return w, true
}

// wave runs wave i: its approval, its copies, its triggers, and (when a
// wave comes after it) its soak and health check.
func (r *run) wave(ctx workflow.Context, i int, copies []aCopy) error {
	cfg, w := r.in.Chain.Waves[i], &r.status.Waves[i]
	w.StartedAt = workflow.Now(ctx)
	stage := r.stageStatus(StageReplicate)
	if cfg.Approval != nil {
		w.Approval = r.newApproval(ctx, cfg.Approval)
		w.State, w.Message = StateWaiting, w.Approval.waitingFor()
		stage.State, stage.Message = StateWaiting, "wave "+w.Name+" "+w.Message
		d, err := r.awaitDecision(ctx, cfg.Approval, w.Approval, w.Name)
		stage.State, stage.Message = StateRunning, ""
		if err != nil {
			return err
		}
		w.Message = d.String()
	}
	w.State = StateRunning
	var mine []aCopy
	for _, c := range copies {
		if slices.Contains(cfg.Destinations, c.in.Destination.Name) {
			mine = append(mine, c)
		}
	}
	for k := range mine {
		mine[k].in.Alone = len(mine) == 1
	}
	workflow.SetCurrentDetails(ctx, currentDetails(&r.status))
	r.copyAll(ctx, mine)
	if _, err := r.copiesOutcome(ctx, w.Name); err != nil {
		return err
	}
	var triggers []chain.Trigger
	for _, t := range r.in.Chain.Triggers {
		if slices.Contains(cfg.Triggers, t.Name) {
			triggers = append(triggers, t)
		}
	}
	if len(triggers) > 0 {
		if err := r.fire(ctx, triggers, w.Name); err != nil {
			return err
		}
	}
	if i == len(r.in.Chain.Waves)-1 {
		return nil
	}
	if soak := time.Duration(cfg.Soak); soak > 0 {
		w.SoakUntil = workflow.Now(ctx).Add(soak)
		w.Message = "soaking until " + w.SoakUntil.UTC().Format(time.RFC3339)
		workflow.SetCurrentDetails(ctx, currentDetails(&r.status))
		if err := workflow.Sleep(ctx, soak); err != nil {
			return err
		}
	}
	if h := cfg.Health; h != nil {
		w.Message = "checking health at " + h.URL
		workflow.SetCurrentDetails(ctx, currentDetails(&r.status))
		opts := r.activityOptions(r.in.TaskQueue, "health of wave "+w.Name+" → "+h.URL, time.Minute, h.Timeout.Or(chain.DefaultHealthTimeout))
		opts.RetryPolicy.MaximumInterval = min(opts.RetryPolicy.MaximumInterval, 30*time.Second)
		var res HealthResult
		err := r.execute(workflow.WithActivityOptions(ctx, opts), ActivityCheckHealth, HealthInput{URL: h.URL, Wave: w.Name}).Get(ctx, &res)
		if d, ok := failureDetails[HealthResult](err); ok {
			res = d
		}
		w.Health = &res
		if err != nil {
			if temporal.IsCanceledError(err) {
				return err
			}
			return temporal.NewNonRetryableApplicationError("health check "+h.URL+": "+errorMessage(err), "HealthCheckFailed", nil)
		}
	}
	w.Message = ""
	return nil
}
