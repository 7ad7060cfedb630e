package workflows

import (
	"fmt"
	"slices"
	"strings"

	"go.temporal.io/sdk/workflow"

	"github.com/dchain-dev/dchain/chain"
)

// WorkflowReplicate is a manual replication (`dchain replicate`): one
// image to destinations under names of the user's choosing, with the same
// activity, retries, verification and record as a chain's branches.
const WorkflowReplicate = "Replicate"

// ReplicationTarget is where a manual replication copies the image to.
type ReplicationTarget struct {
	Registry   chain.Registry `json:"registry"`
	Repository string         `json:"repository"`
	Tag        string         `json:"tag"`
	Overwrite  bool           `json:"overwrite,omitempty"`
}

// String is registry/repository:tag.
func (t ReplicationTarget) String() string { return t.Registry.Name + "/" + t.Repository + ":" + t.Tag }

// ReplicateRequest copies Image (resolved to its digest) from Source to
// every target, in parallel.
type ReplicateRequest struct {
	Source    chain.Registry      `json:"source"`
	Image     ImageRef            `json:"image"`
	Targets   []ReplicationTarget `json:"targets"`
	TaskQueue string              `json:"taskQueue,omitempty"`
	Retry     chain.RetrySettings `json:"retry"`
	// ReferrersOnly follows the artifacts attached to Image's digest to
	// every target that has the image (ReplicateInput.ReferrersOnly); the
	// targets' tags are empty. Chain names the chain that asked for it.
	ReferrersOnly bool   `json:"referrersOnly,omitempty"`
	Chain         string `json:"chain,omitempty"`
}

// ReplicateWorkflow is the story of a manual replication: one replicate
// stage, a branch per target. It ends like a ChainRun (its status is a
// RunStatus, so `dchain run show/watch` and the REST API read it the same way).
func ReplicateWorkflow(ctx workflow.Context, req ReplicateRequest) (*RunStatus, error) {
	name := "(manual replication)"
	if req.Chain != "" {
		name = req.Chain
	}
	r := newRun(ctx, ChainRunInput{Chain: chain.Chain{Name: name}, Image: req.Image,
		Registries: []chain.Registry{req.Source}, TaskQueue: req.TaskQueue, Retry: req.Retry})
	r.status.Stages = []StageStatus{{Name: StageReplicate, State: StatePending}}
	if err := workflow.SetQueryHandler(ctx, QueryStatus, func() (RunStatus, error) { return r.status, nil }); err != nil {
		return nil, err
	}
	_ = workflow.UpsertTypedSearchAttributes(ctx, AttrRepository.ValueSet(req.Image.Repository),
		AttrTag.ValueSet(req.Image.Tag), AttrOutcome.ValueSet(string(OutcomeRunning)))
	err := r.stage(ctx, StageReplicate, func(ctx workflow.Context) error { return r.replicateTargets(ctx, req) })
	if err != nil {
		return r.finish(ctx, StageReplicate, err)
	}
	return r.finish(ctx, "", nil)
}

// replicateTargets fans out one branch per target.
func (r *run) replicateTargets(ctx workflow.Context, req ReplicateRequest) error {
	img := r.status.Image
	r.status.Destinations = make([]DestinationStatus, 0, len(req.Targets))
	wg := workflow.NewWaitGroup(ctx)
	for _, t := range req.Targets {
		i := len(r.status.Destinations)
		ref, summary := t.Registry.Address+"/"+t.Repository+":"+t.Tag, fmt.Sprintf("replicate %s@%s → %s (%s)", img.Repository, img.Digest, t, t.Registry.RegionName())
		if req.ReferrersOnly {
			ref = t.Registry.Address + "/" + t.Repository + "@" + img.Digest
			summary = fmt.Sprintf("follow the referrers of %s@%s → %s (%s)", img.Repository, img.Digest, t.Registry.Name, t.Registry.RegionName())
		}
		r.status.Destinations = append(r.status.Destinations, DestinationStatus{
			Registry: t.Registry.Name, Region: t.Registry.RegionName(), Reference: ref, State: StatePending,
		})
		in := ReplicateInput{Source: req.Source, Destination: t.Registry, Repository: img.Repository, TargetRepository: t.Repository,
			Tag: t.Tag, Digest: img.Digest, Overwrite: t.Overwrite, ReferrersOnly: req.ReferrersOnly, Alone: len(req.Targets) == 1}
		opts := r.replicationOptions(t.Registry.Name, summary)
		wg.Add(1)
		workflow.Go(ctx, func(ctx workflow.Context) {
			defer wg.Done()
			r.replicateTo(workflow.WithActivityOptions(ctx, opts), i, in)
		})
	}
	wg.Wait(ctx)
	if req.ReferrersOnly && !slices.ContainsFunc(r.status.Destinations, func(d DestinationStatus) bool { return d.State != StateSkipped }) {
		return errSkipped("no destination has the image: no referrers to follow")
	}
	return r.replicationOutcome(ctx)
}

// ReplicationWorkflowID is a manual replication's ID: the source image and
// its targets, so the same request while it runs is one replication.
func ReplicationWorkflowID(req ReplicateRequest) string {
	if req.ReferrersOnly {
		return ReferrersWorkflowID(req.Chain, req.Image)
	}
	targets := make([]string, len(req.Targets))
	for i, t := range req.Targets {
		targets[i] = t.String()
	}
	d := strings.TrimPrefix(req.Image.Digest, "sha256:")
	return fmt.Sprintf("replicate:%s/%s@sha256:%s->%s", req.Source.Name, req.Image.Repository, d[:min(16, len(d))], strings.Join(targets, ","))
}

// ReferrersWorkflowID is the ID of a run that follows new referrers of an
// image to the chain's destinations; Image.Tag names what arrived (the
// referrer tag at its digest), so one notification maps to one run.
func ReferrersWorkflowID(chainName string, img ImageRef) string {
	return "referrers:" + WorkflowID(chainName, img)
}
