package workflows

import (
	"fmt"
	"strings"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/dchain-dev/dchain/chain"
)

// errBlocked stops the chain: a policy (the scan's blocking policy, the
// signature policy) said no. Its text is why.
type errBlocked struct{ by, reason string }

func (e errBlocked) Error() string { return e.reason }

// scan scans the image (every platform) with Trivy; the full report goes to
// the registry as a referrer of the image, the summary into the run.
func (r *run) scan(ctx workflow.Context) error {
	if r.in.Chain.Scan == nil {
		return errSkipped("no scan section")
	}
	src, err := r.registry(r.in.Image.Registry)
	if err != nil {
		return err
	}
	img := r.status.Image
	opts := r.activityOptions(r.in.TaskQueue, fmt.Sprintf("scan %s@%s", img.Repository, img.Digest), 30*time.Minute, 2*time.Hour)
	opts.HeartbeatTimeout = 5 * time.Minute // one platform's scan heartbeats once
	opts.RetryPolicy.MaximumAttempts = 5    // a scan that keeps failing is a finding in itself
	var sum ScanSummary
	err = r.execute(workflow.WithActivityOptions(ctx, opts), ActivityScanImage,
		ScanInput{Registry: src, Repository: img.Repository, Digest: img.Digest}).Get(ctx, &sum)
	if err != nil {
		return err
	}
	r.status.Scan = &sum
	if sum.Reused {
		r.stageStatus(StageScan).Message = "reused the report of " + sum.ScannedAt.UTC().Format(time.RFC3339) + " (same image, same DB)"
	}
	r.attrs.set(ctx, integer(AttrCritical, int64(sum.Counts["CRITICAL"])), integer(AttrHigh, int64(sum.Counts["HIGH"])))
	return nil
}

// evaluate applies the blocking policy to the report. When it blocks, the
// action is applied and the chain stops for every image of the run.
func (r *run) evaluate(ctx workflow.Context) error {
	policy := r.in.Chain.Scan
	if policy == nil || r.status.Scan == nil {
		return errSkipped("no scan section, no blocking policy")
	}
	src, err := r.registry(r.in.Image.Registry)
	if err != nil {
		return err
	}
	opts := r.activityOptions(r.in.TaskQueue, "evaluate the blocking policy", 5*time.Minute, time.Hour)
	var d chain.Decision
	err = r.execute(workflow.WithActivityOptions(ctx, opts), ActivityEvaluatePolicy,
		EvaluateInput{Registry: src, Report: r.status.Scan.Report, Policy: *policy, Now: workflow.Now(ctx)}).Get(ctx, &d)
	if err != nil {
		return err
	}
	r.status.Decision = &d
	if !d.Blocked {
		return nil
	}
	in := BlockInput{Registry: src, Repository: r.status.Image.Repository, Tags: r.status.Tags, Digest: r.status.Image.Digest, Action: d.Action}
	if r.in.Chain.Accelerate != "" {
		in.Variants = chain.AcceleratedTags(r.status.Tags) // a variant an earlier run made of this digest goes with it
	}
	if policy.Backup != nil {
		in.BackupRepository = policy.Backup.Repository
	}
	opts = r.activityOptions(r.in.TaskQueue, fmt.Sprintf("%s %s:%v", d.Action, in.Repository, in.Tags), 30*time.Minute, 24*time.Hour)
	var res BlockResult
	if err := r.execute(workflow.WithActivityOptions(ctx, opts), ActivityApplyBlock, in).Get(ctx, &res); err != nil {
		return err
	}
	r.status.Block = &res
	return errBlocked{by: "scan policy", reason: fmt.Sprintf("%s (action %s)", strings.Join(d.Reasons, "; "), d.Action)}
}
