package workflows

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/dchain-dev/dchain/chain"
)

// trigger fires every trigger whose filter matches the tag, in parallel
// (with waves: those no wave fired).
func (r *run) trigger(ctx workflow.Context) error {
	if len(r.in.Chain.Triggers) == 0 {
		return errSkipped("no triggers")
	}
	triggers := r.in.Chain.Triggers
	// With waves, a wave's triggers fired with it (a rerun from trigger
	// runs no wave: it fires them all here).
	if len(r.in.Chain.Waves) > 0 && (r.in.Rerun == nil || r.in.Rerun.From != StageTrigger) {
		triggers = slices.DeleteFunc(slices.Clone(triggers), func(t chain.Trigger) bool { return r.in.Chain.TriggerWave(t.Name) >= 0 })
		if len(triggers) == 0 {
			return errSkipped("every trigger fired with its wave")
		}
	} else {
		r.status.Triggers = make([]TriggerStatus, 0, len(triggers))
	}
	return r.fire(ctx, triggers, "")
}

// fire delivers triggers in parallel and waits for them: after every copy
// (wave ""), or after wave's copies, with the regions they reached.
func (r *run) fire(ctx workflow.Context, triggers []chain.Trigger, wave string) error {
	src, err := r.registry(r.in.Image.Registry)
	if err != nil {
		return err
	}
	event := r.event(ctx, src, wave)
	for _, d := range r.status.Destinations {
		if d.State == StateSucceeded && (wave == "" || d.Wave == wave) {
			event.Regions = append(event.Regions, d.Region)
		}
	}
	// Branches keep pointers into the slice: give it its capacity first.
	r.status.Triggers = slices.Grow(r.status.Triggers, len(triggers))
	wg := workflow.NewWaitGroup(ctx)
	for _, t := range triggers {
		i := len(r.status.Triggers)
		r.status.Triggers = append(r.status.Triggers, TriggerStatus{Name: t.Name, URL: t.URL, State: StatePending, Wave: wave})
		ev, ok := event, false
		for _, tag := range r.status.Tags {
			if ok = t.Matches(tag); ok {
				ev.Tag = tag
				break
			}
		}
		if !ok {
			r.status.Triggers[i].State, r.status.Triggers[i].Message = StateSkipped, fmt.Sprintf("no tag of %v matches (mode %s)", r.status.Tags, t.Mode)
			continue
		}
		in := DeliverInput{Trigger: t, Event: ev, IdempotencyKey: idempotencyKey(workflow.GetInfo(ctx).WorkflowExecution.RunID, waveKey(t.Name, wave))}
		opts := r.activityOptions(r.in.TaskQueue, fmt.Sprintf("trigger %s → %s", t.Name, t.URL), time.Minute, r.in.Retry.TriggerTimeout.Or(time.Hour))
		wg.Add(1)
		workflow.Go(ctx, func(ctx workflow.Context) {
			defer wg.Done()
			r.deliver(workflow.WithActivityOptions(ctx, opts), &r.status.Triggers[i], in, func() string { return "canceled" })
		})
	}
	wg.Wait(ctx)
	return r.triggerOutcome(ctx, wave)
}

// event is what a delivery tells its receiver of the run's image (after
// wave's copies, or, wave "", after every copy).
func (r *run) event(ctx workflow.Context, src chain.Registry, wave string) TriggerEvent {
	return TriggerEvent{
		Chain: r.in.Chain.Name, RunID: workflow.GetInfo(ctx).WorkflowExecution.ID,
		Registry: src.Address, Region: src.RegionName(), Repository: r.status.Image.Repository,
		Tag: r.status.Image.Tag, Digest: r.status.Image.Digest, PushedAt: r.in.Cause.At,
		Signing: r.status.Signing.Ref(), Wave: wave,
	}
}

// deliver runs one delivery (a trigger's, an approval request) and records
// it in t; canceled says, when the delivery is canceled, why.
func (r *run) deliver(ctx workflow.Context, t *TriggerStatus, in DeliverInput, canceled func() string) {
	t.State = StateRunning
	var res DeliverResult
	err := r.execute(ctx, ActivityDeliverTrigger, in).Get(ctx, &res)
	switch {
	case err == nil:
		t.State, t.HTTPStatus, t.Attempts = StateSucceeded, res.HTTPStatus, res.Attempts
	case temporal.IsCanceledError(err):
		t.State, t.Message = StateCanceled, canceled()
	default:
		t.State, t.Message = StateFailed, errorMessage(err)
		if d, ok := failureDetails[DeliverResult](err); ok {
			t.HTTPStatus, t.Attempts = d.HTTPStatus, d.Attempts
		}
	}
	workflow.SetCurrentDetails(ctx, currentDetails(&r.status))
}

// failureDetails reads the result an activity attached to its failure.
func failureDetails[T any](err error) (T, bool) {
	var d T
	var app *temporal.ApplicationError
	var canceled *temporal.CanceledError
	switch {
	case errors.As(err, &app) && app.HasDetails():
		return d, app.Details(&d) == nil
	case errors.As(err, &canceled) && canceled.HasDetails():
		return d, canceled.Details(&d) == nil
	}
	return d, false
}

// triggerOutcome is the result of the deliveries after wave ("": after every copy).
func (r *run) triggerOutcome(ctx workflow.Context, wave string) error {
	var failed []string
	total := 0
	for _, t := range r.status.Triggers {
		if t.Wave != wave {
			continue
		}
		total++
		if t.State == StateFailed {
			failed = append(failed, fmt.Sprintf("%s: %s", t.Name, t.Message))
		}
	}
	return branchesOutcome(ctx, "triggers", "TriggerFailed", failed, total)
}

// idempotencyKey is stable for one trigger of one run: the same on every
// retry of the delivery, different for a re-run.
func idempotencyKey(runID, trigger string) string {
	sum := sha256.Sum256([]byte(runID + "\x00" + trigger))
	return hex.EncodeToString(sum[:16])
}
