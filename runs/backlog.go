package runs

import (
	"context"
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	taskqueuepb "go.temporal.io/api/taskqueue/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/dchain-dev/dchain/workflows"
)

// Backlog is what waits on one task queue for a worker, as the server
// counts it (approximately): after a burst, runs queue here before they
// start, and copies before they copy.
type Backlog struct {
	Queue string `json:"queue"`
	// Kind is "workflow" (runs' workflow tasks) or "activity".
	Kind  string `json:"kind"`
	Tasks int64  `json:"tasks"`
	// Oldest is how long the oldest waiting task has waited.
	Oldest  time.Duration `json:"oldest"`
	Pollers int           `json:"pollers"`
}

func (b Backlog) String() string {
	return fmt.Sprintf("%s: %d %s tasks waiting, the oldest for %s (%d pollers)",
		b.Queue, b.Tasks, b.Kind, b.Oldest.Round(100*time.Millisecond), b.Pollers)
}

// Backlogs describes the chain queue base (its workflow and activity tasks)
// and the replication queue of each region.
func Backlogs(ctx context.Context, c client.Client, namespace, base string, regions []string) ([]Backlog, error) {
	type q struct {
		name string
		kind enumspb.TaskQueueType
	}
	queues := []q{{base, enumspb.TASK_QUEUE_TYPE_WORKFLOW}, {base, enumspb.TASK_QUEUE_TYPE_ACTIVITY}}
	for _, r := range regions {
		queues = append(queues, q{workflows.ReplicationQueue(base, r), enumspb.TASK_QUEUE_TYPE_ACTIVITY})
	}
	var out []Backlog
	for _, tq := range queues {
		resp, err := c.WorkflowService().DescribeTaskQueue(ctx, &workflowservice.DescribeTaskQueueRequest{
			Namespace: namespace, TaskQueue: &taskqueuepb.TaskQueue{Name: tq.name, Kind: enumspb.TASK_QUEUE_KIND_NORMAL},
			TaskQueueType: tq.kind, ReportStats: true,
		})
		if err != nil {
			return nil, fmt.Errorf("describe task queue %s: %w", tq.name, err)
		}
		kind := "workflow"
		if tq.kind == enumspb.TASK_QUEUE_TYPE_ACTIVITY {
			kind = "activity"
		}
		out = append(out, Backlog{Queue: tq.name, Kind: kind, Tasks: resp.GetStats().GetApproximateBacklogCount(),
			Oldest: resp.GetStats().GetApproximateBacklogAge().AsDuration(), Pollers: livePollers(resp.GetPollers(), time.Now())})
	}
	return out, nil
}
