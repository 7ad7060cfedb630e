// Package worker runs dchain's Temporal workers: the chain worker (the
// ChainRun workflow and its non-regional activities) on the base task queue,
// and one replication worker per region on that region's queue, so a worker
// started inside a region can serve only the copies into it.
package worker

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"
	sdkworker "go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/dchain-dev/dchain/activities"
	"github.com/dchain-dev/dchain/workflows"
)

// Options say which queues a worker process serves.
type Options struct {
	// TaskQueue is the base task queue (default workflows.DefaultTaskQueue).
	TaskQueue string
	// Chains serves the base queue: ChainRun workflows, build, resolve and trigger activities.
	Chains bool
	// Regions are the registries whose replication queues this process serves.
	Regions []string
	// Activities are the activity implementations (zero value if nil).
	Activities *activities.Activities
	// WorkDir holds the workers' temporary work (source checkouts), each
	// process in a directory of its own; what dead workers left there is
	// removed at start (default: <system temp dir>/dchain-work).
	WorkDir string
	// Concurrency bounds what one process runs at once (zero fields: the
	// per-role defaults, DefaultConcurrency).
	Concurrency Concurrency
}

// Concurrency is how much a worker process runs at once on each queue.
type Concurrency struct {
	// ChainActivities and WorkflowTasks bound the chain queue: builds,
	// scans, resolves, triggers; and workflow tasks.
	ChainActivities, WorkflowTasks int
	// Copies bounds the copies into each region a process serves (each one
	// streams blobs, several at once).
	Copies int
	// Builds, when above 0, bounds the builds among ChainActivities that
	// solve at once (activities.Activities.MaxBuilds); 0: no bound.
	Builds int
	// WorkflowPollers and ActivityPollers are the long polls each queue
	// keeps open: the SDK's 2 left a burst of 100 runs waiting up to 14 s for
	// their first workflow task (docs/benchmarks.md). Fixed, not the SDK's
	// autoscaling pollers: those cancel polls as they scale down, and a task
	// handed to a canceled poll is lost until it times out (10 s).
	WorkflowPollers, ActivityPollers int
}

// DefaultConcurrency are the per-role defaults: copies are bandwidth- and
// disk-bound, so few at once per region; the rest mostly waits on others.
var DefaultConcurrency = Concurrency{ChainActivities: 100, WorkflowTasks: 100, Copies: 8, WorkflowPollers: 16, ActivityPollers: 8}

func (c Concurrency) orDefault() Concurrency {
	d := DefaultConcurrency
	if c.ChainActivities > 0 {
		d.ChainActivities = c.ChainActivities
	}
	if c.WorkflowTasks > 0 {
		d.WorkflowTasks = c.WorkflowTasks
	}
	if c.Copies > 0 {
		d.Copies = c.Copies
	}
	if c.WorkflowPollers > 0 {
		d.WorkflowPollers = c.WorkflowPollers
	}
	if c.ActivityPollers > 0 {
		d.ActivityPollers = c.ActivityPollers
	}
	if c.Builds > 0 {
		d.Builds = c.Builds
	}
	return d
}

// Workers are the started workers of one process.
type Workers []sdkworker.Worker

// Start starts the workers Options ask for; Stop stops them.
func Start(c client.Client, o Options) (Workers, error) {
	if o.TaskQueue == "" {
		o.TaskQueue = workflows.DefaultTaskQueue
	}
	a := o.Activities
	if a == nil {
		a = &activities.Activities{}
	}
	if a.Temporal == nil {
		a.Temporal = c
	}
	if o.WorkDir == "" {
		o.WorkDir = filepath.Join(os.TempDir(), "dchain-work")
	}
	if a.TempDir == "" {
		dir, err := activities.ClaimWorkDir(o.WorkDir)
		if err != nil {
			return nil, err
		}
		a.TempDir = dir
	}
	if !o.Chains && len(o.Regions) == 0 {
		return nil, fmt.Errorf("worker: nothing to serve: enable the chain queue or name at least one region")
	}
	conc := o.Concurrency.orDefault()
	if a.MaxBuilds == 0 {
		a.MaxBuilds = conc.Builds
	}
	var ws Workers
	if o.Chains {
		w := sdkworker.New(c, o.TaskQueue, workerOptions(conc.ChainActivities, conc.WorkflowTasks, conc))
		w.RegisterWorkflowWithOptions(workflows.ChainRun, workflow.RegisterOptions{Name: "ChainRun"})
		w.RegisterActivityWithOptions(a.ResolveImage, activity.RegisterOptions{Name: workflows.ActivityResolveImage})
		w.RegisterActivityWithOptions(a.DeliverTrigger, activity.RegisterOptions{Name: workflows.ActivityDeliverTrigger})
		w.RegisterActivityWithOptions(a.CheckHealth, activity.RegisterOptions{Name: workflows.ActivityCheckHealth})
		w.RegisterActivityWithOptions(a.AccelerateImage, activity.RegisterOptions{Name: workflows.ActivityAccelerateImage})
		w.RegisterActivityWithOptions(a.VariantOf, activity.RegisterOptions{Name: workflows.ActivityVariantOf})
		w.RegisterWorkflowWithOptions(workflows.AccelerateWorkflow, workflow.RegisterOptions{Name: workflows.WorkflowAccelerate})
		w.RegisterActivityWithOptions(a.BuildImage, activity.RegisterOptions{Name: workflows.ActivityBuildImage})
		w.RegisterActivityWithOptions(a.ScanImage, activity.RegisterOptions{Name: workflows.ActivityScanImage})
		w.RegisterActivityWithOptions(a.EvaluatePolicy, activity.RegisterOptions{Name: workflows.ActivityEvaluatePolicy})
		w.RegisterActivityWithOptions(a.ApplyBlockAction, activity.RegisterOptions{Name: workflows.ActivityApplyBlock})
		w.RegisterActivityWithOptions(a.ListTags, activity.RegisterOptions{Name: workflows.ActivityListTags})
		w.RegisterActivityWithOptions(a.WaitTurn, activity.RegisterOptions{Name: workflows.ActivityWaitTurn})
		w.RegisterActivityWithOptions(a.SignImage, activity.RegisterOptions{Name: workflows.ActivitySignImage})
		w.RegisterActivityWithOptions(a.VerifyImage, activity.RegisterOptions{Name: workflows.ActivityVerifyImage})
		w.RegisterWorkflowWithOptions(workflows.ReplicateWorkflow, workflow.RegisterOptions{Name: workflows.WorkflowReplicate})
		w.RegisterWorkflowWithOptions(workflows.ChainSyncWorkflow, workflow.RegisterOptions{Name: workflows.WorkflowChainSync})
		w.RegisterActivityWithOptions(a.PlanSync, activity.RegisterOptions{Name: workflows.ActivityPlanSync})
		w.RegisterWorkflowWithOptions(workflows.ScanImageWorkflow, workflow.RegisterOptions{Name: workflows.WorkflowScanImage})
		w.RegisterWorkflowWithOptions(workflows.ScanRepositoryWorkflow, workflow.RegisterOptions{Name: workflows.WorkflowScanRepository})
		ws = append(ws, w)
	}
	for _, region := range o.Regions {
		w := sdkworker.New(c, workflows.ReplicationQueue(o.TaskQueue, region), workerOptions(conc.Copies, 0, conc))
		w.RegisterActivityWithOptions(a.ReplicateImage, activity.RegisterOptions{Name: workflows.ActivityReplicateImage})
		ws = append(ws, w)
	}
	for i, w := range ws {
		if err := w.Start(); err != nil {
			ws[:i].Stop()
			return nil, fmt.Errorf("worker: start: %w", err)
		}
	}
	return ws, nil
}

// workerOptions are a dchain worker's options: at most activities and
// workflowTasks at once (0: the SDK's default), the pollers of conc (never
// more activity polls than activity slots), the activity log and metrics.
func workerOptions(activities, workflowTasks int, conc Concurrency) sdkworker.Options {
	return sdkworker.Options{Interceptors: []interceptor.WorkerInterceptor{&activityObserver{}},
		MaxConcurrentActivityExecutionSize: activities, MaxConcurrentWorkflowTaskExecutionSize: workflowTasks,
		MaxConcurrentWorkflowTaskPollers: conc.WorkflowPollers, MaxConcurrentActivityTaskPollers: min(conc.ActivityPollers, max(activities, 1))}
}

// Stop stops every worker.
func (ws Workers) Stop() {
	for _, w := range ws {
		w.Stop()
	}
}

// Run starts the workers and blocks until ctx ends.
func Run(ctx context.Context, c client.Client, o Options) error {
	ws, err := Start(c, o)
	if err != nil {
		return err
	}
	<-ctx.Done()
	ws.Stop()
	return nil
}
