package devstack

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/dchain-dev/dchain/runs"
	"github.com/dchain-dev/dchain/workflows"
)

// A run started on a queue no worker polls waits there: the backlog counts
// it, says how long it has waited and that nobody polls; the region's
// replication queue is described too, with nothing waiting.
func TestBacklogCountsWaitingRuns(t *testing.T) {
	ctx := context.Background()
	queue := fmt.Sprintf("it-backlog-%d", time.Now().UnixNano())
	run, err := stack.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: queue, TaskQueue: queue}, "ChainRun", workflows.ChainRunInput{})
	if err != nil {
		t.Fatal(err)
	}
	defer stack.Client.TerminateWorkflow(ctx, run.GetID(), "", "test done")
	deadline := time.Now().Add(30 * time.Second)
	for {
		bs, err := runs.Backlogs(ctx, stack.Client, stack.Endpoints.Namespace, queue, []string{"eu"})
		if err != nil {
			t.Fatal(err)
		}
		if len(bs) != 3 || bs[2].Queue != workflows.ReplicationQueue(queue, "eu") || bs[2].Kind != "activity" || bs[2].Tasks != 0 {
			t.Fatalf("backlogs %+v", bs)
		}
		if w := bs[0]; w.Kind == "workflow" && w.Tasks == 1 && w.Pollers == 0 && w.Oldest > 0 {
			t.Log(w)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the waiting run is not in the backlog: %+v", bs)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
