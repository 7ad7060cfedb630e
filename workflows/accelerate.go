package workflows

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/dchain-dev/dchain/chain"
)

// ActivityAccelerateImage writes an image's accelerated variant.
const ActivityAccelerateImage = "AccelerateImage"

// StageAccelerate makes the accelerated variant (chains with accelerate:),
// after the policy passed and before signing.
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
	// Reused: the variant of this digest existed already; nothing was converted.
	Reused   bool          `json:"reused,omitempty"`
	Duration time.Duration `json:"duration,omitempty"`
}

// AccelerateProgress is the heartbeat detail of a conversion.
type AccelerateProgress struct {
	Layers   int   `json:"layers"`
	Done     int   `json:"done"`
	BytesOut int64 `json:"bytesOut"`
}

// accelerate writes the accelerated variant of the image next to it in the
// source registry. Its files are the image's: it is not scanned again (the
// image's scan and policy stand for it).
func (r *run) accelerate(ctx workflow.Context) error {
	src, err := r.registry(r.in.Image.Registry)
	if err != nil {
		return err
	}
	in := AccelerateInput{Registry: src, Repository: r.status.Image.Repository, Digest: r.status.Image.Digest, Format: r.in.Chain.Accelerate}
	for _, tag := range r.status.Tags {
		if t := chain.AcceleratedTag(tag); t != "" {
			in.Tags = append(in.Tags, t)
		}
	}
	if len(in.Tags) == 0 {
		return errSkipped(fmt.Sprintf("no tag of %v can carry %q (tags are at most 128 characters)", r.status.Tags, chain.AcceleratedSuffix))
	}
	opts := r.activityOptions(r.in.TaskQueue, fmt.Sprintf("accelerate %s@%s (%s)", in.Repository, in.Digest, in.Format), 2*time.Hour, 6*time.Hour)
	opts.HeartbeatTimeout = heartbeatTimeout
	var acc Accelerated
	if err := r.execute(workflow.WithActivityOptions(ctx, opts), ActivityAccelerateImage, in).Get(ctx, &acc); err != nil {
		return err
	}
	r.status.Accelerated = &acc
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
