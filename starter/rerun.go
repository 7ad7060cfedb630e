package starter

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/dchain-dev/dchain/chain"
	"github.com/dchain-dev/dchain/runs"
	"github.com/dchain-dev/dchain/workflows"
)

// RerunRequest asks to run an ended chain run again from a stage (run
// rerun), or to copy into some of its destinations again (run retry:
// From replicate with Destinations).
type RerunRequest struct {
	Run          string
	From         string
	Destinations []string
	Cause        workflows.Cause
}

// CheckRerun checks a rerun request from outside with the shared
// validator; name gives each field's outside name ("from", "destination").
func CheckRerun(req RerunRequest, name func(field string) string) (RerunRequest, error) {
	if !slices.Contains(workflows.RerunStages, req.From) {
		return req, &chain.InputError{Field: name("from"), Reason: fmt.Sprintf("%q: a rerun starts from %s", req.From, strings.Join(workflows.RerunStages, ", "))}
	}
	for i, d := range req.Destinations {
		var err error
		if req.Destinations[i], err = chain.ParseName(name("destination"), d); err != nil {
			return req, err
		}
	}
	if len(req.Destinations) > 0 && req.From != workflows.StageReplicate {
		return req, &chain.InputError{Field: name("destination"), Reason: "only a rerun from replicate copies into chosen destinations"}
	}
	return req, nil
}

// reuses says whether the rerun takes stage's result from the earlier run
// (the stage comes before req.From).
func (req RerunRequest) reuses(stage string) bool {
	return slices.Index(workflows.Stages, stage) < slices.Index(workflows.Stages, req.From)
}

// RerunError is why a run cannot be re-run as asked (a 409: the request
// is well-formed, the run's record says no).
type RerunError struct{ Reason string }

func (e *RerunError) Error() string { return e.Reason }

// StartRerun starts a new run of the earlier run's chain (its current
// configuration) on the earlier run's image, from req.From on: the stages
// before it are the earlier run's. The same request twice is one rerun.
func (s *Starter) StartRerun(ctx context.Context, req RerunRequest) (Started, error) {
	earlier, err := runs.Status(ctx, s.Client, req.Run)
	if err != nil {
		return Started{}, err
	}
	in0, runID, err := runs.Input(ctx, s.Client, req.Run)
	if errors.Is(err, runs.ErrNotAChainRun) {
		return Started{}, &RerunError{Reason: err.Error()}
	}
	if err != nil {
		return Started{}, err
	}
	ch, err := s.Config.Chain(in0.Chain.Name)
	if err != nil {
		return Started{}, &RerunError{Reason: fmt.Sprintf("run %s: its chain %s is not in the configuration any more", req.Run, in0.Chain.Name)}
	}
	if err := rerunnable(ch, earlier, req); err != nil {
		return Started{}, err
	}
	if err := sameSettings(in0.Chain, ch, req); err != nil {
		return Started{}, err
	}
	img := in0.Image
	img.Digest = earlier.Image.Digest
	in, err := Input(s.Config.Config, ch, img, req.Cause, s.taskQueue())
	if err != nil {
		return Started{}, err
	}
	in.Push, in.Build = in0.Push, in0.Build
	in.Rerun = &workflows.Rerun{Of: req.Run, OfRun: runID, From: req.From, Destinations: req.Destinations, Earlier: earlier,
		ApprovalChanged: !same(in0.Chain.Approval, ch.Approval)}
	// The chain's settings are part of the ID: the same request under the
	// same settings is one rerun; after a fix to the chain, it is a new one.
	settings, err := json.Marshal(ch)
	if err != nil {
		return Started{}, err
	}
	return s.start(ctx, workflows.RerunWorkflowID(req.Run, runID+"\x00"+string(settings), req.From, req.Destinations), in, false)
}

// rerunnable says why the earlier run cannot be re-run as req asks: the
// stages a rerun takes from it must have done what the chain asks now, so a
// rerun never gets past a policy, a signature or a copy the earlier run did
// not pass.
func rerunnable(ch chain.Chain, earlier workflows.RunStatus, req RerunRequest) error {
	refuse := func(format string, args ...any) error {
		return &RerunError{Reason: fmt.Sprintf("run %s: ", req.Run) + fmt.Sprintf(format, args...)}
	}
	if earlier.Outcome == workflows.OutcomeRunning {
		return refuse("it is still running; a rerun starts from an ended run (cancel it, or wait)")
	}
	if earlier.Image.Digest == "" {
		return refuse("it ended (%s at %s) before it had an image: start it again (dchain run start --rerun)", earlier.Outcome, earlier.FailedStage)
	}
	reused := req.reuses
	done := func(stage string) bool {
		s := earlier.Stage(stage)
		return s != nil && (s.State == workflows.StateSucceeded || s.State == workflows.StateReused)
	}
	skipped := func(stage string) bool {
		s := earlier.Stage(stage)
		return s != nil && s.State == workflows.StateSkipped
	}
	switch {
	case earlier.Outcome == workflows.OutcomeBlocked && reused(workflows.StageEvaluate):
		return refuse("the blocking policy stopped it; a rerun from %s would pass the policy by: rerun --from scan", req.From)
	case ch.Scan != nil && reused(workflows.StageScan) && !done(workflows.StageScan):
		return refuse("chain %s scans, and this run's scan did not pass (%s): rerun --from scan", ch.Name, stageState(earlier, workflows.StageScan))
	case ch.Scan != nil && reused(workflows.StageScan) && !done(workflows.StageEvaluate) && !skipped(workflows.StageEvaluate):
		return refuse("chain %s applies a policy, and this run's policy stage did not pass (%s): rerun --from scan", ch.Name, stageState(earlier, workflows.StageEvaluate))
	case (ch.Signing != nil || ch.Verify != nil) && reused(workflows.StageSign) && !done(workflows.StageSign):
		return refuse("chain %s signs or verifies, and this run's sign stage did not pass (%s): rerun --from scan", ch.Name, stageState(earlier, workflows.StageSign))
	case req.From == workflows.StageTrigger && !done(workflows.StageReplicate) && len(ch.Replication) > 0 && len(earlier.Destinations) == 0:
		return refuse("it copied nothing (%s at %s): rerun --from replicate", earlier.Outcome, earlier.FailedStage)
	case req.From == workflows.StageTrigger && !done(workflows.StageReplicate) && len(ch.Replication) > 0:
		return refuse("its copies did not all succeed (%s): rerun --from replicate, or run retry --destination", stageState(earlier, workflows.StageReplicate))
	case len(req.Destinations) > 0 && len(earlier.Destinations) == 0:
		return refuse("it copied nothing (%s at %s), so there is no copy to retry: rerun --from replicate", earlier.Outcome, earlier.FailedStage)
	}
	for _, d := range req.Destinations {
		i := slices.IndexFunc(earlier.Destinations, func(x workflows.DestinationStatus) bool { return x.Registry == d })
		switch {
		case i < 0:
			var had []string
			for _, x := range earlier.Destinations {
				had = append(had, x.Registry)
			}
			return refuse("it had no destination %q (its destinations: %s)", d, strings.Join(had, ", "))
		case earlier.Destinations[i].State == workflows.StateSucceeded:
			return refuse("%s already has the image (its copy succeeded)", d)
		case !slices.ContainsFunc(ch.Replication, func(r chain.ReplicationRule) bool { return r.Destination == d }):
			return refuse("chain %s no longer replicates to %s", ch.Name, d)
		}
	}
	return nil
}

// sameSettings refuses a rerun that would reuse a scan, policy or
// signature made under settings the chain no longer has (tightened since):
// those stages must run again.
func sameSettings(then, now chain.Chain, req RerunRequest) error {
	reused := req.reuses
	switch {
	case reused(workflows.StageScan) && !same(then.Scan, now.Scan):
		return &RerunError{Reason: fmt.Sprintf("run %s: chain %s's scan settings changed since it ran: its scan and policy decision do not stand for them: rerun --from scan", req.Run, now.Name)}
	case reused(workflows.StageSign) && (!same(then.Signing, now.Signing) || !same(then.Verify, now.Verify)):
		return &RerunError{Reason: fmt.Sprintf("run %s: chain %s's signing or verify settings changed since it ran: rerun --from scan", req.Run, now.Name)}
	}
	return nil
}

// same says whether two settings sections are the same (as recorded).
func same(a, b any) bool {
	x, errx := json.Marshal(a)
	y, erry := json.Marshal(b)
	return errx == nil && erry == nil && bytes.Equal(x, y)
}

// stageState is "Failed: its message" of the earlier run's stage.
func stageState(st workflows.RunStatus, stage string) string {
	s := st.Stage(stage)
	if s == nil {
		return "the run had no " + stage + " stage"
	}
	if s.Message == "" {
		return string(s.State)
	}
	return string(s.State) + ": " + s.Message
}
