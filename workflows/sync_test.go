package workflows

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"
)

// A large sync copies SyncCopiesPerRun images, at most SyncParallel at
// once, and continues as new with the rest and what it did so far; a dry
// run copies nothing.
func TestChainSyncContinuesAsNewInBatches(t *testing.T) {
	in := testInput()
	var plan SyncPlan
	for i := range SyncCopiesPerRun + 50 {
		plan.Copy = append(plan.Copy, SyncItem{Repository: "demo/app", Tag: fmt.Sprintf("v%d", i), Digest: digest, Destination: "frankfurt"})
	}
	plan.Skip = []SyncItem{{Repository: "demo/app", Tag: "latest", Destination: "virginia", Reason: "already there"}}

	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(ChainSyncWorkflow, workflow.RegisterOptions{Name: WorkflowChainSync})
	env.RegisterActivityWithOptions(func(ctx context.Context, _ PlanSyncInput) (SyncPlan, error) { return plan, nil }, activity.RegisterOptions{Name: ActivityPlanSync})
	var mu sync.Mutex // the copies run at once
	running, most, copies := 0, 0, 0
	env.RegisterActivityWithOptions(func(ctx context.Context, r ReplicateInput) (ReplicateResult, error) {
		mu.Lock()
		running++
		most = max(most, running)
		copies++
		mu.Unlock()
		defer func() { mu.Lock(); running--; mu.Unlock() }()
		if r.Destination.Name != "frankfurt" || r.Source.Name != "hangzhou" {
			return ReplicateResult{}, errors.New("wrong registries")
		}
		return ReplicateResult{Digest: r.Digest}, nil
	}, activity.RegisterOptions{Name: ActivityReplicateImage})
	env.ExecuteWorkflow(WorkflowChainSync, SyncRequest{Chain: in.Chain, Registries: in.Registries})
	var next *workflow.ContinueAsNewError
	if err := env.GetWorkflowError(); !errors.As(err, &next) {
		t.Fatalf("want continue-as-new, got %v", err)
	}
	if copies != SyncCopiesPerRun || most > SyncParallel {
		t.Fatalf("%d copies (want %d), %d at once (at most %d)", copies, SyncCopiesPerRun, most, SyncParallel)
	}
	var carried SyncRequest
	if err := converter.GetDefaultDataConverter().FromPayloads(next.Input, &carried); err != nil {
		t.Fatal(err)
	}
	if len(carried.Pending) != 50 || carried.Done == nil || len(carried.Done.Copied) != SyncCopiesPerRun || len(carried.Done.Skipped) != 1 {
		t.Fatalf("carried %d pending, done %+v", len(carried.Pending), carried.Done)
	}

	// The next run copies the rest and ends with the whole account.
	env = s.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(ChainSyncWorkflow, workflow.RegisterOptions{Name: WorkflowChainSync})
	env.RegisterActivityWithOptions(func(ctx context.Context, r ReplicateInput) (ReplicateResult, error) {
		return ReplicateResult{Digest: r.Digest}, nil
	}, activity.RegisterOptions{Name: ActivityReplicateImage})
	env.ExecuteWorkflow(WorkflowChainSync, carried)
	var res SyncResult
	if err := env.GetWorkflowResult(&res); err != nil || len(res.Copied) != SyncCopiesPerRun+50 || len(res.Skipped) != 1 {
		t.Fatalf("final: %d copied, %v", len(res.Copied), err)
	}

	env = s.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(ChainSyncWorkflow, workflow.RegisterOptions{Name: WorkflowChainSync})
	env.RegisterActivityWithOptions(func(ctx context.Context, _ PlanSyncInput) (SyncPlan, error) { return plan, nil }, activity.RegisterOptions{Name: ActivityPlanSync})
	env.ExecuteWorkflow(WorkflowChainSync, SyncRequest{Chain: in.Chain, Registries: in.Registries, DryRun: true})
	if err := env.GetWorkflowResult(&res); err != nil || !res.DryRun || len(res.Copied) != len(plan.Copy) {
		t.Fatalf("dry run: %+v %v", res.DryRun, err)
	}
}
