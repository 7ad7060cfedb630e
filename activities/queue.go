package activities

import (
	"context"
	"fmt"
	"time"

	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/dchain-dev/dchain/workflows"
)

// WaitTurn waits, heartbeating, until no older run of the same chain and ref
// is running: the "queue" concurrency of a chain.
func (a *Activities) WaitTurn(ctx context.Context, in workflows.WaitTurnInput) error {
	if a.Temporal == nil {
		return temporal.NewNonRetryableApplicationError("this worker has no Temporal client to queue runs with", ErrRejected, nil)
	}
	q := workflows.OlderRunsQuery(in.Chain, in.Ref, in.WorkflowID, in.StartedAt).String()
	for {
		resp, err := a.Temporal.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: q, PageSize: 10})
		if err != nil {
			return temporal.NewApplicationError("queue: list older runs: "+err.Error(), ErrTransient)
		}
		if len(resp.Executions) == 0 {
			return nil
		}
		activity.RecordHeartbeat(ctx, fmt.Sprintf("waiting for %s", resp.Executions[0].GetExecution().GetWorkflowId()))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}
