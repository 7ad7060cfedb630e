package workflows

import (
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/dchain-dev/dchain/chain"
)

// ActivityAccelerateImage writes an image's accelerated variant.
const ActivityAccelerateImage = "AccelerateImage"

// StageAccelerate makes the accelerated variant (chains with accelerate:),
// after the policy and the sign stage passed, before any copy.
const StageAccelerate = "accelerate"

// AccelerateInput asks for the accelerated variant of
// Registry/Repository@Digest in Format, tagged with Tags (each a delivered
// tag with chain.AcceleratedSuffix).
type AccelerateInput struct {
	Registry   chain.Registry `json:"registry"`
	Repository string         `json:"repository"`
	Digest     string         `json:"digest"`
	Format     string         `json:"format"`
	Tags       []string       `json:"tags"`
}

// Accelerated is an image's accelerated variant, as the run made (or found) it.
type Accelerated struct {
	Format string `json:"format"`
	// Digest is the variant's (an index where the image is one).
	Digest string   `json:"digest"`
	Tags   []string `json:"tags"`
	// Platforms maps each platform to its variant manifest's digest.
	Platforms map[string]string `json:"platforms,omitempty"`
	// Layers, BytesIn (the original layers, compressed) and BytesOut (the
	// variant's layers) count what was converted.
	Layers   int   `json:"layers"`
	BytesIn  int64 `json:"bytesIn"`
	BytesOut int64 `json:"bytesOut"`
	// Reused: another run had made the variant of this digest (its record
	// says so); nothing was converted.
	Reused bool `json:"reused,omitempty"`
	// Skipped says why there is no variant (no Linux image to convert).
	Skipped  string        `json:"skipped,omitempty"`
	Duration time.Duration `json:"duration,omitempty"`
}

// AccelerateProgress is the heartbeat detail of a conversion.
type AccelerateProgress struct {
	Layers   int   `json:"layers"`
	Done     int   `json:"done"`
	BytesOut int64 `json:"bytesOut"`
}

// WorkflowAccelerate makes one image's accelerated variant: a workflow of
// its own, with an ID per source image and format (AccelerationWorkflowID),
// so that its history is the record of the conversion — which a later run
// of the same digest reads instead of converting again, and which no one
// who can push to a registry can forge (a tag or an annotation could be).
const WorkflowAccelerate = "Accelerate"

// ActivityVariantOf reads a finished acceleration's result and points a
// run's accelerated tags at it.
const ActivityVariantOf = "VariantOf"

// AccelerationWorkflowID is "accelerate:<registry>/<repository>@<digest>.<format>".
func AccelerationWorkflowID(registry, repository, digest, format string) string {
	return "accelerate:" + registry + "/" + repository + "@" + digest + "." + format
}

// VariantOfInput asks for the result of the acceleration WorkflowID, and
// for In.Tags to point at its variant.
type VariantOfInput struct {
	WorkflowID string          `json:"workflowId"`
	In         AccelerateInput `json:"in"`
}

// AccelerateWorkflow converts the image (AccelerateImage).
func AccelerateWorkflow(ctx workflow.Context, in AccelerateInput) (*Accelerated, error) {
	opts := workflow.ActivityOptions{
		Summary:             fmt.Sprintf("accelerate %s@%s (%s)", in.Repository, in.Digest, in.Format),
		StartToCloseTimeout: 2 * time.Hour, ScheduleToCloseTimeout: 6 * time.Hour, HeartbeatTimeout: heartbeatTimeout,
		RetryPolicy: &temporal.RetryPolicy{InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 2 * time.Minute},
	}
	var acc Accelerated
	err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, opts), ActivityAccelerateImage, in).Get(ctx, &acc)
	return &acc, err
}

// accelerate makes (or finds) the accelerated variant of the image, after
// the policy and the signature checks passed; where the chain signs, it
// signs the variant too. Its files are the image's: it is not scanned again
// (the image's scan and policy stand for it). A rerun makes it again (the
// record makes that cheap), so a chain's accelerate setting now is what counts.
func (r *run) accelerate(ctx workflow.Context) error {
	src, err := r.registry(r.in.Image.Registry)
	if err != nil {
		return err
	}
	in := AccelerateInput{Registry: src, Repository: r.status.Image.Repository, Digest: r.status.Image.Digest, Format: r.in.Chain.Accelerate,
		Tags: chain.AcceleratedTags(r.status.Tags)}
	if len(in.Tags) == 0 {
		return errSkipped(fmt.Sprintf("no tag of %v can carry %q (tags are at most 128 characters)", r.status.Tags, chain.AcceleratedSuffix))
	}
	r.attrs.flush(ctx)
	id := AccelerationWorkflowID(src.Name, in.Repository, in.Digest, in.Format)
	cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
		WorkflowID: id, TaskQueue: r.in.TaskQueue, StaticSummary: "accelerate " + in.Repository + "@" + in.Digest,
		// A conversion that failed may be made again; one that succeeded is the record.
		WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE_FAILED_ONLY,
		ParentClosePolicy:     enumspb.PARENT_CLOSE_POLICY_ABANDON,
	})
	var acc Accelerated
	err = workflow.ExecuteChildWorkflow(cctx, WorkflowAccelerate, in).Get(ctx, &acc)
	if temporal.IsWorkflowExecutionAlreadyStartedError(err) {
		// Another run of this digest made it (or is making it): its record says what.
		opts := r.activityOptions(r.in.TaskQueue, "the accelerated variant of "+in.Repository+"@"+in.Digest+" made by "+id, 6*time.Hour, 6*time.Hour)
		opts.HeartbeatTimeout = heartbeatTimeout
		err = r.execute(workflow.WithActivityOptions(ctx, opts), ActivityVariantOf, VariantOfInput{WorkflowID: id, In: in}).Get(ctx, &acc)
	}
	if err != nil {
		return err
	}
	r.status.Accelerated = &acc
	if acc.Digest == "" {
		return errSkipped(acc.Skipped)
	}
	if c := r.in.Chain.Signing; c != nil {
		v := SignInput{Registry: src, Repository: in.Repository, Digest: acc.Digest, Key: c.Key}
		opts := r.activityOptions(r.in.TaskQueue, fmt.Sprintf("sign the accelerated variant %s@%s with %s", v.Repository, v.Digest, v.Key), 30*time.Minute, 2*time.Hour)
		opts.HeartbeatTimeout = 5 * time.Minute
		var vs Signed
		if err := r.execute(workflow.WithActivityOptions(ctx, opts), ActivitySignImage, v).Get(ctx, &vs); err != nil {
			return err
		}
		if r.status.Signing == nil {
			r.status.Signing = &Signing{}
		}
		r.status.Signing.Accelerated = &vs
	}
	r.stageStatus(StageAccelerate).Message = acc.String() + r.sameFilesNote()
	return nil
}

// sameFilesNote says why the variant is not scanned again.
func (r *run) sameFilesNote() string {
	if r.status.Scan == nil {
		return ""
	}
	return "; the same files as the scanned image, not scanned again"
}

// String is "estargz sha256:… (v1_accelerated): 3 layers, 12.0 MiB → 12.3 MiB in 1.2s".
func (a *Accelerated) String() string {
	if a.Reused {
		return fmt.Sprintf("%s %s %v: made before, reused", a.Format, a.Digest, a.Tags)
	}
	return fmt.Sprintf("%s %s %v: %d layers, %d → %d bytes in %s", a.Format, a.Digest, a.Tags, a.Layers, a.BytesIn, a.BytesOut, a.Duration.Round(time.Millisecond))
}
