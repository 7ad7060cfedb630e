package workflows

import (
	"fmt"
	"slices"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/dchain-dev/dchain/chain"
)

// build builds the image when a source push started the run: BuildKit
// solves the commit for every platform and pushes one index under each tag
// of the rule to the chain's source repository.
func (r *run) build(ctx workflow.Context) error {
	if r.in.Build == nil || r.in.Push == nil || r.in.Chain.Build == nil {
		return errSkipped("no build: the image was pushed to " + r.in.Image.Registry)
	}
	src, err := r.registry(r.in.Image.Registry)
	if err != nil {
		return err
	}
	if err := r.waitTurn(ctx); err != nil {
		return err
	}
	in := BuildInput{
		Source: r.in.Chain.Build.Source, Push: *r.in.Push, Plan: *r.in.Build,
		Registry: src, Repository: r.in.Image.Repository, ImmutableTags: r.in.Chain.ImmutableTags,
		Provenance: r.in.Chain.Signing != nil && slices.Contains(r.in.Chain.Signing.Attestations(), chain.AttestProvenance),
	}
	opts := r.activityOptions(r.in.TaskQueue,
		fmt.Sprintf("build %s@%s → %s:%v (%v)", r.in.Build.Rule, r.in.Push.Commit.Short(), r.in.Image.Repository, r.in.Build.Tags, r.in.Build.Platforms),
		time.Hour, 2*time.Hour)
	opts.HeartbeatTimeout = heartbeatTimeout
	// A canceled run waits for the build to stop and store its log (what
	// was built so far), at most a heartbeat timeout for a worker that is
	// gone. Runs recorded before did not wait.
	opts.WaitForCancellation = workflow.GetVersion(ctx, "build-log-on-cancel", workflow.DefaultVersion, 1) == 1
	var res BuildResult
	if err := r.execute(workflow.WithActivityOptions(ctx, opts), ActivityBuildImage, in).Get(ctx, &res); err != nil {
		if failed, ok := failureDetails[BuildResult](err); ok {
			r.status.Build = &failed // keeps the log of a failed or canceled build
		}
		return err
	}
	r.status.Build = &res
	r.status.Image.Digest = res.Digest
	if res.ReusedFrom != "" {
		r.stageStatus(StageBuild).Message = fmt.Sprintf("reused %s: commit %s was built with the same inputs (log %s); tagged it %v, nothing rebuilt",
			res.ReusedFrom, r.in.Push.Commit.Short(), res.Log, res.Tags)
	}
	return nil
}

// waitTurn queues the run behind older runs of the same chain and ref, when
// the chain's concurrency is "queue".
func (r *run) waitTurn(ctx workflow.Context) error {
	if r.in.Chain.Concurrency != chain.ConcurrencyQueue {
		return nil
	}
	info := workflow.GetInfo(ctx)
	opts := r.activityOptions(r.in.TaskQueue, "wait for older runs of "+string(r.in.Push.Ref), 24*time.Hour, 24*time.Hour)
	opts.HeartbeatTimeout = heartbeatTimeout
	workflow.SetCurrentDetails(ctx, "queued behind older runs of "+r.in.Chain.Name+" for "+string(r.in.Push.Ref))
	return r.execute(workflow.WithActivityOptions(ctx, opts), ActivityWaitTurn, WaitTurnInput{
		Chain: r.in.Chain.Name, Ref: string(r.in.Push.Ref), WorkflowID: info.WorkflowExecution.ID, StartedAt: info.WorkflowStartTime,
	}).Get(ctx, nil)
}
