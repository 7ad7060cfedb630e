package workflows

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/workflow"
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
	in := BuildInput{
		Source: r.in.Chain.Build.Source, Push: *r.in.Push, Plan: *r.in.Build,
		Registry: src, Repository: r.in.Image.Repository,
	}
	opts := r.activityOptions(r.in.TaskQueue,
		fmt.Sprintf("build %s@%s → %s:%v (%v)", r.in.Build.Rule, r.in.Push.Commit[:min(12, len(r.in.Push.Commit))], r.in.Image.Repository, r.in.Build.Tags, r.in.Build.Platforms),
		time.Hour, 2*time.Hour)
	opts.HeartbeatTimeout = heartbeatTimeout
	var res BuildResult
	if err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, opts), ActivityBuildImage, in).Get(ctx, &res); err != nil {
		if failed, ok := failureDetails[BuildResult](err); ok {
			r.status.Build = &failed // keeps the log of a failed build
		}
		return err
	}
	r.status.Build = &res
	r.status.Image.Digest = res.Digest
	return nil
}
