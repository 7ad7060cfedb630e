package worker

import (
	"context"
	"log/slog"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/interceptor"
)

// activityLog is a worker interceptor that logs each activity attempt's
// start and end with its run (workflow ID), attempt and task queue. Inputs
// and results are not logged (they are in the run's history; secrets
// never are).
type activityLog struct {
	interceptor.WorkerInterceptorBase
}

func (*activityLog) InterceptActivity(ctx context.Context, next interceptor.ActivityInboundInterceptor) interceptor.ActivityInboundInterceptor {
	i := &activityLogInbound{}
	i.Next = next
	return i
}

type activityLogInbound struct {
	interceptor.ActivityInboundInterceptorBase
}

func (i *activityLogInbound) ExecuteActivity(ctx context.Context, in *interceptor.ExecuteActivityInput) (any, error) {
	info := activity.GetInfo(ctx)
	log := slog.With("activity", info.ActivityType.Name, "run", info.WorkflowExecution.ID, "attempt", info.Attempt, "queue", info.TaskQueue)
	log.Info("activity started")
	start := time.Now()
	out, err := i.Next.ExecuteActivity(ctx, in)
	if err != nil {
		log.Warn("activity failed", "duration", time.Since(start).Round(time.Millisecond), "error", err)
	} else {
		log.Info("activity ended", "duration", time.Since(start).Round(time.Millisecond))
	}
	return out, err
}
