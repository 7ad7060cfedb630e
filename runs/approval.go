package runs

import (
	"context"
	"errors"
	"fmt"
	"slices"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/dchain-dev/dchain/workflows"
)

// DecisionError is why a run refused an approval decision. Kind is the
// validator's error type (workflows.ErrTypeNotWaiting, ErrTypeNotAnApprover,
// ErrTypeBadDecision).
type DecisionError struct {
	Kind, Message string
}

func (e *DecisionError) Error() string { return e.Message }

// decisionErrors are the refusals of the run's validator.
var decisionErrors = []string{workflows.ErrTypeNotWaiting, workflows.ErrTypeNotAnApprover, workflows.ErrTypeBadDecision}

// Decide sends an approver's decision to a run waiting for approval (the
// Temporal Update workflows.UpdateApproval) and returns it as the run
// recorded it. A run that cannot take it answers a *DecisionError; an
// unknown run ErrNotFound.
func Decide(ctx context.Context, c client.Client, id string, d workflows.ApprovalDecision) (workflows.ApprovalDecision, error) {
	var out workflows.ApprovalDecision
	h, err := c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID: id, UpdateName: workflows.UpdateApproval, Args: []any{d}, WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err == nil {
		err = h.Get(ctx, &out)
	}
	var app *temporal.ApplicationError
	var nf *serviceerror.NotFound
	switch {
	case err == nil:
		return out, nil
	case errors.As(err, &app) && slices.Contains(decisionErrors, app.Type()):
		return out, &DecisionError{Kind: app.Type(), Message: fmt.Sprintf("run %s: %s", id, app.Message())}
	case errors.As(err, &app):
		// No handler took it: not a chain run, or its worker predates approvals.
		return out, &DecisionError{Kind: workflows.ErrTypeNotWaiting, Message: fmt.Sprintf("run %s takes no approval decisions (not a chain run, or its worker predates approvals): %s", id, app.Message())}
	case errors.As(err, &nf):
		// No such run, or one that has ended.
		desc, derr := c.DescribeWorkflowExecution(ctx, id, "")
		if derr != nil || desc.GetWorkflowExecutionInfo().GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
			return out, fmt.Errorf("run %s: %w", id, ErrNotFound)
		}
		outcome := string(statusOutcome(desc.GetWorkflowExecutionInfo().GetStatus()))
		if st, serr := Status(ctx, c, id); serr == nil {
			outcome = string(st.Outcome)
		}
		return out, &DecisionError{Kind: workflows.ErrTypeNotWaiting, Message: fmt.Sprintf("run %s has ended (%s): it is not waiting for approval", id, outcome)}
	}
	return out, fmt.Errorf("run %s: decide: %w", id, err)
}
