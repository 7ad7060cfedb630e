package runs

import (
	"context"
	"fmt"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	taskqueuepb "go.temporal.io/api/taskqueue/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/dchain-dev/dchain/workflows"
)

// addLiveReplication fills in what only the server knows about a running
// run's copies: each pending copy's progress (its heartbeat), its attempt
// and last error while it retries, and that no worker polls a
// destination's queue — the status query answers from the workflow's own
// state, which changes only when a copy ends.
func addLiveReplication(ctx context.Context, c client.Client, id string, st *workflows.RunStatus) {
	if st.Outcome != workflows.OutcomeRunning || len(st.Destinations) == 0 {
		return
	}
	desc, err := c.DescribeWorkflowExecution(ctx, id, "")
	if err != nil {
		return // the status itself is still right, only less detailed
	}
	base := desc.GetExecutionConfig().GetTaskQueue().GetName()
	for _, pa := range desc.GetPendingActivities() {
		if pa.GetActivityType().GetName() != workflows.ActivityReplicateImage {
			continue
		}
		var p workflows.ReplicateProgress
		if hb := pa.GetHeartbeatDetails(); hb != nil {
			_ = converter.GetDefaultDataConverter().FromPayloads(hb, &p)
		}
		registry := strings.TrimPrefix(pa.GetActivityOptions().GetTaskQueue().GetName(), base+".replicate.")
		d := destination(st, registry, p.Reference)
		if d == nil {
			continue
		}
		d.Attempt = pa.GetAttempt()
		if f := pa.GetLastFailure(); f != nil {
			d.LastError = f.GetMessage()
		}
		if p.Reference != "" {
			d.BytesCopied, d.BytesTotal, d.BlobsCopied, d.BlobsTotal = p.BytesCopied, p.BytesTotal, int(p.BlobsCopied), p.BlobsTotal
		}
	}
	for i := range st.Destinations {
		d := &st.Destinations[i]
		if d.State != workflows.StateRunning && d.State != workflows.StatePending {
			continue
		}
		queue := workflows.ReplicationQueue(base, d.Registry)
		tq, err := c.DescribeTaskQueue(ctx, queue, enumspb.TASK_QUEUE_TYPE_ACTIVITY)
		if err == nil && livePollers(tq.GetPollers(), time.Now()) == 0 {
			d.Message = fmt.Sprintf("no worker is polling %s: start `dchain worker --region %s`", queue, d.Registry)
		}
	}
}

// pollerTTL is how long after its last poll a poller still counts as
// there: a long poll lasts up to about 70 s, so a live worker polls again
// within it. Temporal keeps a gone poller in DescribeTaskQueue for 5
// minutes, which alone would say "polling" for that long.
const pollerTTL = 2 * time.Minute

// livePollers counts the pollers that polled within pollerTTL of now.
func livePollers(ps []*taskqueuepb.PollerInfo, now time.Time) int {
	n := 0
	for _, p := range ps {
		if at := p.GetLastAccessTime(); at == nil || now.Sub(at.AsTime()) < pollerTTL {
			n++
		}
	}
	return n
}

// destination finds the destination of registry whose reference is ref
// (or starts with ref and a further tag); with no ref, the only
// destination of registry.
func destination(st *workflows.RunStatus, registry, ref string) *workflows.DestinationStatus {
	var only *workflows.DestinationStatus
	n := 0
	for i := range st.Destinations {
		d := &st.Destinations[i]
		if d.Registry != registry {
			continue
		}
		if ref != "" && (d.Reference == ref || strings.HasPrefix(d.Reference, ref+",")) {
			return d
		}
		only, n = d, n+1
	}
	if n == 1 {
		return only
	}
	return nil
}

// BuildProgress is a running build's progress, from its last heartbeat.
func BuildProgress(ctx context.Context, c client.Client, id string) (workflows.BuildProgress, bool) {
	desc, err := c.DescribeWorkflowExecution(ctx, id, "")
	if err != nil {
		return workflows.BuildProgress{}, false
	}
	for _, pa := range desc.GetPendingActivities() {
		if pa.GetActivityType().GetName() != workflows.ActivityBuildImage || pa.GetHeartbeatDetails() == nil {
			continue
		}
		var p workflows.BuildProgress
		if err := converter.GetDefaultDataConverter().FromPayloads(pa.GetHeartbeatDetails(), &p); err == nil {
			return p, true
		}
	}
	return workflows.BuildProgress{}, false
}
