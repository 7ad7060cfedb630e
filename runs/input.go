package runs

import (
	"context"
	"errors"
	"fmt"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/dchain-dev/dchain/workflows"
)

// ErrNotAChainRun: the run is another kind of workflow (a replication, a
// sync, a scan).
var ErrNotAChainRun = errors.New("not a chain run: only chain runs are re-run")

// Input is the input a chain run started with (its first history event)
// and its run ID.
func Input(ctx context.Context, c client.Client, id string) (workflows.ChainRunInput, string, error) {
	var in workflows.ChainRunInput
	it := c.GetWorkflowHistory(ctx, id, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	if !it.HasNext() {
		return in, "", fmt.Errorf("run %s: %w", id, ErrNotFound)
	}
	ev, err := it.Next()
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return in, "", fmt.Errorf("run %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return in, "", fmt.Errorf("run %s: %w", id, err)
	}
	a := ev.GetWorkflowExecutionStartedEventAttributes()
	if a == nil || a.GetWorkflowType().GetName() != "ChainRun" {
		return in, "", fmt.Errorf("run %s is a %s, %w", id, a.GetWorkflowType().GetName(), ErrNotAChainRun)
	}
	if err := converter.GetDefaultDataConverter().FromPayloads(a.GetInput(), &in); err != nil {
		return in, "", fmt.Errorf("run %s: read its input: %w", id, err)
	}
	return in, a.GetOriginalExecutionRunId(), nil
}

// Reruns lists the reruns of the run with workflow ID id, newest first.
func Reruns(ctx context.Context, c client.Client, id string) ([]Row, error) {
	return list(ctx, c, workflows.RerunsQuery(id).String(), 20)
}
