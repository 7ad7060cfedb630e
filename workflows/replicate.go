package workflows

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/dchain-dev/dchain/chain"
)

// replicate fans out one branch per destination; each branch copies the
// image by digest and succeeds or fails on its own. The stage fails if any
// branch failed, after every branch has ended. A chain with waves copies
// wave after wave (waves.go).
func (r *run) replicate(ctx workflow.Context) error {
	if len(r.in.Chain.Replication) == 0 {
		return errSkipped("no replication rules")
	}
	copies, err := r.planCopies()
	if err != nil {
		return err
	}
	if len(r.in.Chain.Waves) > 0 {
		return r.replicateInWaves(ctx, copies)
	}
	r.copyAll(ctx, copies)
	return r.replicationOutcome(ctx)
}

// notCopied starts the note of a destination a run did not copy into
// though its rule applies (a wave before it failed, a retry left it out).
const notCopied = "not copied"

// aCopy is one replication branch to run: its destination's index in the
// status and its input.
type aCopy struct {
	i  int
	in ReplicateInput
}

// planCopies records every rule's destination in the status (skipped when
// the rule covers none of the run's tags) and returns the copies to make.
func (r *run) planCopies() ([]aCopy, error) {
	src, err := r.registry(r.in.Image.Registry)
	if err != nil {
		return nil, err
	}
	img := r.status.Image
	var copies []aCopy
	r.status.Destinations = make([]DestinationStatus, 0, len(r.in.Chain.Replication))
	for _, rule := range r.in.Chain.Replication {
		dst, err := r.registry(rule.Destination)
		if err != nil {
			return nil, err
		}
		i := len(r.status.Destinations)
		r.status.Destinations = append(r.status.Destinations, DestinationStatus{
			Rule: rule.Name, Registry: dst.Name, Region: dst.RegionName(),
			Reference: dst.Address + "/" + img.Repository + ":" + img.Tag, State: StatePending,
		})
		if w := r.in.Chain.WaveOf(dst.Name); w >= 0 {
			r.status.Destinations[i].Wave = r.in.Chain.WaveName(w)
		}
		if !r.retried(dst.Name) {
			// run retry of other destinations: this one's copy is the
			// earlier run's; one that never got the image still lacks it.
			d, ok := r.earlierDestination(rule.Name)
			switch {
			case ok && d.State == StateSucceeded:
				if !strings.Contains(d.Message, "(run ") { // a retry of a retry names the first run
					d.Message = strings.TrimSpace(d.Message + " (run " + r.in.Rerun.Of + ")")
				}
				r.status.Destinations[i] = d
			case ok && d.State == StateSkipped && !strings.HasPrefix(d.Message, notCopied):
				r.status.Destinations[i] = d // its rule covers none of the tags
			default:
				was := "no copy"
				if ok {
					was = string(d.State) + ": " + d.Message
				}
				d := &r.status.Destinations[i]
				d.State, d.Message = StateSkipped, fmt.Sprintf("%s: not retried, still without the image (run %s: %s)", notCopied, r.in.Rerun.Of, was)
				r.missing = append(r.missing, i)
			}
			continue
		}
		var tags []string
		why := ""
		for _, tag := range r.status.Tags {
			ok, reason := rule.Applies(r.in.Chain.Scope, img.Repository, tag)
			if ok {
				tags = append(tags, tag)
			} else if why == "" {
				why = reason
			}
		}
		if len(tags) == 0 {
			r.status.Destinations[i].State, r.status.Destinations[i].Message = StateSkipped, why
			continue
		}
		r.status.Destinations[i].Reference = dst.Address + "/" + img.Repository + ":" + strings.Join(tags, ",")
		copies = append(copies, aCopy{i: i, in: ReplicateInput{Source: src, Destination: dst, Repository: img.Repository, Tag: tags[0], Tags: tags[1:], Digest: img.Digest, Overwrite: rule.Overwrite,
			SkipReferrers: !rule.CopiesReferrers(), ImmutableTags: r.in.Chain.ImmutableTags, Alone: len(r.in.Chain.Replication) == 1}})
	}
	return copies, nil
}

// copyAll runs copies at once, one branch each, and waits for them all.
func (r *run) copyAll(ctx workflow.Context, copies []aCopy) {
	wg := workflow.NewWaitGroup(ctx)
	for _, c := range copies {
		dst, in := c.in.Destination, c.in
		opts := r.replicationOptions(dst.Name,
			fmt.Sprintf("replicate %s → %s (%s)", in.Repository+":"+strings.Join(append([]string{in.Tag}, in.Tags...), ","), dst.Name, dst.RegionName()))
		wg.Add(1)
		workflow.Go(ctx, func(ctx workflow.Context) {
			defer wg.Done()
			r.replicateTo(workflow.WithActivityOptions(ctx, opts), c.i, in)
		})
	}
	wg.Wait(ctx)
}

// replicationOptions are the options of a copy into registry: on its
// region's queue, retried until the chain's replication timeout, with a
// short heartbeat timeout (progress, and how a cancel reaches the copy).
func (r *run) replicationOptions(registry, summary string) workflow.ActivityOptions {
	opts := r.activityOptions(ReplicationQueue(r.in.TaskQueue, registry), summary, 2*time.Hour, r.in.Retry.ReplicationTimeout.Or(24*time.Hour))
	opts.HeartbeatTimeout = heartbeatTimeout
	return opts
}

// replicateTo runs one branch and records it.
func (r *run) replicateTo(ctx workflow.Context, i int, in ReplicateInput) {
	d := &r.status.Destinations[i]
	d.State = StateRunning
	workflow.SetCurrentDetails(ctx, currentDetails(&r.status))
	start := workflow.Now(ctx)
	var res ReplicateResult
	err := r.execute(ctx, ActivityReplicateImage, in).Get(ctx, &res)
	d.Duration = workflow.Now(ctx).Sub(start)
	switch {
	case err == nil:
		d.State, d.Digest = StateSucceeded, res.Digest
		d.BytesCopied, d.BlobsCopied, d.BlobsSkipped, d.Referrers, d.BytesTotal = res.BytesCopied, res.BlobsCopied, res.BlobsSkipped, res.Referrers, res.BytesTotal
		switch {
		case res.NotPresent:
			d.State, d.Message = StateSkipped, "the image is not there: no referrers to follow"
		case in.ReferrersOnly:
			d.Message = fmt.Sprintf("%d referrers followed", res.Referrers)
		case res.AlreadyPresent:
			d.Message = "already present"
		}
		if r.status.Accelerated != nil && r.status.Accelerated.Digest != "" && !in.ReferrersOnly {
			// The image is there; its variant follows (a failure says so).
			r.copyVariant(ctx, d, in)
			d.Duration = workflow.Now(ctx).Sub(start)
		}
	case temporal.IsCanceledError(err):
		d.State, d.Message = StateCanceled, "canceled"
	default:
		d.State, d.Message = StateFailed, errorMessage(err)
	}
	workflow.SetCurrentDetails(ctx, currentDetails(&r.status))
}

// copyVariant copies the image's accelerated variant to the destination of
// in, under the accelerated tags of the tags in copies there.
func (r *run) copyVariant(ctx workflow.Context, d *DestinationStatus, in ReplicateInput) {
	acc := r.status.Accelerated
	tags := slices.DeleteFunc(chain.AcceleratedTags(append([]string{in.Tag}, in.Tags...)), func(t string) bool { return !slices.Contains(acc.Tags, t) })
	if len(tags) == 0 {
		return
	}
	v := in
	v.Digest, v.Tag, v.Tags = acc.Digest, tags[0], tags[1:]
	var res ReplicateResult
	err := r.execute(ctx, ActivityReplicateImage, v).Get(ctx, &res)
	switch {
	case err == nil:
		d.Accelerated = &res
	case temporal.IsCanceledError(err):
		d.State, d.Message = StateCanceled, "canceled"
	default:
		d.State, d.Message = StateFailed, "the image is there; its accelerated variant: "+errorMessage(err)
	}
}

// replicationOutcome turns the branches' states into the stage's result.
func (r *run) replicationOutcome(ctx workflow.Context) error {
	copied, err := r.copiesOutcome(ctx, "")
	if err != nil {
		return err
	}
	if copied == 0 {
		return errSkipped("no replication rule applies to " + r.status.Image.Repository + ":" + r.status.Image.Tag)
	}
	return nil
}

// copiesOutcome is the result of the copies of wave ("": every
// destination): how many succeeded, and an error if any failed.
func (r *run) copiesOutcome(ctx workflow.Context, wave string) (int, error) {
	var failed []string
	copied, total := 0, 0
	for k, d := range r.status.Destinations {
		if wave != "" && d.Wave != wave {
			continue
		}
		total++
		if slices.Contains(r.missing, k) {
			failed = append(failed, fmt.Sprintf("%s: %s", d.Registry, d.Message))
			continue
		}
		switch d.State {
		case StateFailed:
			failed = append(failed, fmt.Sprintf("%s: %s", d.Registry, d.Message))
		case StateSucceeded:
			copied++
		}
	}
	return copied, branchesOutcome(ctx, "destinations", "ReplicationFailed", failed, total)
}

// branchesOutcome is the result of a stage that ran parallel branches:
// canceled if the run was, failed (naming each failed branch) if any failed.
func branchesOutcome(ctx workflow.Context, what, errType string, failed []string, total int) error {
	switch {
	case ctx.Err() != nil:
		return temporal.NewCanceledError()
	case len(failed) > 0:
		return temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("%d of %d %s failed: %s", len(failed), total, what, strings.Join(failed, "; ")), errType, nil)
	}
	return nil
}
