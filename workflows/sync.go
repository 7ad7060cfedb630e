package workflows

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/dchain-dev/dchain/chain"
)

// Names of the chain sync (`dchain chain sync`, a chain's sync schedule).
const (
	WorkflowChainSync = "ChainSync"
	ActivityPlanSync  = "PlanSync"
)

// Bounds of a sync run.
const (
	// SyncParallel is how many copies run at once.
	SyncParallel = 4
	// SyncCopiesPerRun is how many copies one workflow run makes before it
	// continues as new with the rest (keeps the history small).
	SyncCopiesPerRun = 200
)

// SyncRequest syncs a chain: every existing tag in its scope that its
// rules cover and a destination lacks (or has at another digest, where the
// rule may overwrite) is copied; an image the scan policy would block is not.
type SyncRequest struct {
	Chain      chain.Chain         `json:"chain"`
	Registries []chain.Registry    `json:"registries"`
	TaskQueue  string              `json:"taskQueue,omitempty"`
	Retry      chain.RetrySettings `json:"retry"`
	// DryRun plans and reports without copying.
	DryRun bool `json:"dryRun,omitempty"`
	// Carried over by continue-as-new: the copies still to make and what
	// the earlier runs did.
	Pending []SyncItem  `json:"pending,omitempty"`
	Done    *SyncResult `json:"done,omitempty"`
}

// SyncItem is one image tag and one destination.
type SyncItem struct {
	Repository  string `json:"repository"`
	Tag         string `json:"tag"`
	Digest      string `json:"digest"`
	Rule        string `json:"rule,omitempty"`
	Destination string `json:"destination,omitempty"`
	Overwrite   bool   `json:"overwrite,omitempty"`
	// SkipReferrers is the rule's `referrers: false`.
	SkipReferrers bool `json:"skipReferrers,omitempty"`
	// Reason says why an item was skipped, refused or failed (or, copied,
	// that the image was there without some of its referrers).
	Reason string `json:"reason,omitempty"`
}

// SyncPlan is what a sync would do.
type SyncPlan struct {
	Copy    []SyncItem `json:"copy"`
	Skip    []SyncItem `json:"skip"`
	Refuse  []SyncItem `json:"refuse"`
	Scanned int        `json:"scanned"`
}

// SyncResult is what a sync did (or, for a dry run, would do).
type SyncResult struct {
	DryRun  bool       `json:"dryRun,omitempty"`
	Copied  []SyncItem `json:"copied"`
	Skipped []SyncItem `json:"skipped"`
	Refused []SyncItem `json:"refused"`
	Failed  []SyncItem `json:"failed"`
}

// PlanSyncInput is the chain and its registries to plan a sync of.
type PlanSyncInput struct {
	Chain      chain.Chain      `json:"chain"`
	Registries []chain.Registry `json:"registries"`
}

// ChainSyncWorkflow plans the sync, then copies what the plan says with
// bounded parallelism, continuing as new every SyncCopiesPerRun copies.
func ChainSyncWorkflow(ctx workflow.Context, req SyncRequest) (*SyncResult, error) {
	res := req.Done
	if res == nil {
		res = &SyncResult{DryRun: req.DryRun, Copied: []SyncItem{}, Skipped: []SyncItem{}, Refused: []SyncItem{}, Failed: []SyncItem{}}
	}
	if err := workflow.SetQueryHandler(ctx, QueryStatus, func() (*SyncResult, error) { return res, nil }); err != nil {
		return nil, err
	}
	pending := req.Pending
	if req.Done == nil {
		opts := workflow.ActivityOptions{TaskQueue: orDefault(req.TaskQueue), Summary: "plan the sync of " + req.Chain.Name,
			StartToCloseTimeout: time.Hour, HeartbeatTimeout: time.Minute, ScheduleToCloseTimeout: 2 * time.Hour,
			RetryPolicy: &temporal.RetryPolicy{InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: time.Minute}}
		var plan SyncPlan
		if err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, opts), ActivityPlanSync,
			PlanSyncInput{Chain: req.Chain, Registries: req.Registries}).Get(ctx, &plan); err != nil {
			return res, err
		}
		res.Skipped, res.Refused = append(res.Skipped, plan.Skip...), append(res.Refused, plan.Refuse...)
		if req.DryRun {
			res.Copied = plan.Copy // what it would copy
			return res, nil
		}
		pending = plan.Copy
	}
	batch := pending[:min(len(pending), SyncCopiesPerRun)]
	r := &run{in: ChainRunInput{TaskQueue: orDefault(req.TaskQueue), Retry: req.Retry}}
	sem := workflow.NewSemaphore(ctx, SyncParallel)
	wg := workflow.NewWaitGroup(ctx)
	for _, item := range batch {
		if err := sem.Acquire(ctx, 1); err != nil {
			break // canceled
		}
		wg.Add(1)
		workflow.Go(ctx, func(ctx workflow.Context) {
			defer wg.Done()
			defer sem.Release(1)
			if err := r.syncCopy(ctx, req, item); err != nil {
				item.Reason = errorMessage(err)
				res.Failed = append(res.Failed, item)
				return
			}
			res.Copied = append(res.Copied, item)
		})
	}
	wg.Wait(ctx)
	if ctx.Err() != nil {
		return res, temporal.NewCanceledError(*res)
	}
	if rest := pending[len(batch):]; len(rest) > 0 {
		next := req
		next.Pending, next.Done = rest, res
		return nil, workflow.NewContinueAsNewError(ctx, WorkflowChainSync, next)
	}
	if len(res.Failed) > 0 {
		return res, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("sync of %s: %d of %d copies failed", req.Chain.Name, len(res.Failed), len(res.Failed)+len(res.Copied)), "SyncFailed", nil, *res)
	}
	return res, nil
}

// syncCopy copies one item with the chain's replication activity.
func (r *run) syncCopy(ctx workflow.Context, req SyncRequest, item SyncItem) error {
	var src, dst chain.Registry
	for _, reg := range req.Registries {
		switch reg.Name {
		case req.Chain.Scope.Registry:
			src = reg
		case item.Destination:
			dst = reg
		}
	}
	opts := r.replicationOptions(dst.Name, fmt.Sprintf("sync %s:%s → %s", item.Repository, item.Tag, dst.Name))
	return workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, opts), ActivityReplicateImage, ReplicateInput{
		Source: src, Destination: dst, Repository: item.Repository, Tag: item.Tag, Digest: item.Digest,
		Overwrite: item.Overwrite, SkipReferrers: item.SkipReferrers, ImmutableTags: req.Chain.ImmutableTags,
	}).Get(ctx, nil)
}

func orDefault(queue string) string {
	if queue == "" {
		return DefaultTaskQueue
	}
	return queue
}

// SyncWorkflowID is the ID of a chain's sync: one at a time per chain.
func SyncWorkflowID(chainName string, dryRun bool) string {
	if dryRun {
		return "sync:" + chainName + ":dry-run"
	}
	return "sync:" + chainName
}

// SyncScheduleID is the ID of the Temporal Schedule of a chain's sync.
func SyncScheduleID(chainName string) string { return "dchain-sync-" + chainName }
