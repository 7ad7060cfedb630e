package starter

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/dchain-dev/dchain/chain"
	"github.com/dchain-dev/dchain/workflows"
)

// syncRequest snapshots the chain and its registries into a sync's input.
func (s *Starter) syncRequest(ch chain.Chain, dryRun bool) (workflows.SyncRequest, error) {
	if len(ch.Replication) == 0 {
		return workflows.SyncRequest{}, fmt.Errorf("chain %s has no replication rules: nothing to sync", ch.Name)
	}
	in, err := Input(s.Config.Config, ch, workflows.ImageRef{}, workflows.Cause{}, s.taskQueue())
	if err != nil {
		return workflows.SyncRequest{}, err
	}
	return workflows.SyncRequest{Chain: ch, Registries: in.Registries, TaskQueue: s.taskQueue(), Retry: s.Config.Config.Retry, DryRun: dryRun}, nil
}

// StartSync starts the sync of chain (or finds the one running): every
// existing tag its rules cover that a destination lacks is copied.
func (s *Starter) StartSync(ctx context.Context, chainName string, dryRun bool) (Started, error) {
	ch, err := s.Config.Chain(chainName)
	if err != nil {
		return Started{}, err
	}
	req, err := s.syncRequest(ch, dryRun)
	if err != nil {
		return Started{}, err
	}
	what := "sync"
	if dryRun {
		what = "sync plan (dry run)"
	}
	return s.startWorkflow(ctx, workflows.SyncWorkflowID(ch.Name, dryRun), workflows.WorkflowChainSync, req, true, temporal.SearchAttributes{},
		fmt.Sprintf("%s of chain %s", what, ch.Name), "")
}

// SyncTimeout bounds a scheduled sync: the config's replication timeout
// (how long one copy may keep retrying, default 24h) and an hour to plan.
func SyncTimeout(r chain.RetrySettings) time.Duration {
	return r.ReplicationTimeout.Or(24*time.Hour) + time.Hour
}

// SyncSchedules makes the Temporal Schedules of the chains' `sync.schedule`
// what the config says: created, updated (cron and chain snapshot), or
// deleted when the chain no longer has one. It returns what it did. One
// owner calls it — `dchain setup` (and `dchain dev`), never a worker — so
// workers started with other configs cannot undo each other's schedules.
func (s *Starter) SyncSchedules(ctx context.Context) ([]string, error) {
	sc := s.Client.ScheduleClient()
	want := map[string]chain.Chain{}
	for _, ch := range s.Config.Chains {
		if ch.Sync != nil {
			want[workflows.SyncScheduleID(ch.Name)] = ch
		}
	}
	var did []string
	it, err := sc.List(ctx, client.ScheduleListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list schedules: %w", err)
	}
	existing := map[string]bool{}
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			return did, fmt.Errorf("list schedules: %w", err)
		}
		if !strings.HasPrefix(e.ID, workflows.SyncScheduleID("")) {
			continue
		}
		existing[e.ID] = true
		if _, ok := want[e.ID]; !ok {
			if err := sc.GetHandle(ctx, e.ID).Delete(ctx); err != nil {
				return did, fmt.Errorf("delete schedule %s: %w", e.ID, err)
			}
			did = append(did, "deleted "+e.ID)
		}
	}
	for id, ch := range want {
		req, err := s.syncRequest(ch, false)
		if err != nil {
			return did, err
		}
		// A scheduled sync that cannot finish (no worker polls its queue, a
		// destination down for good) ends TimedOut instead of holding the
		// schedule: while it runs, the next ones are skipped.
		action := &client.ScheduleWorkflowAction{ID: workflows.SyncWorkflowID(ch.Name, false), Workflow: workflows.WorkflowChainSync,
			TaskQueue: s.taskQueue(), Args: []any{req}, WorkflowExecutionTimeout: SyncTimeout(s.Config.Config.Retry)}
		spec := client.ScheduleSpec{CronExpressions: []string{ch.Sync.Schedule}}
		if existing[id] {
			// Updated in place: the schedule keeps its state (recent and next runs).
			err = sc.GetHandle(ctx, id).Update(ctx, client.ScheduleUpdateOptions{DoUpdate: func(in client.ScheduleUpdateInput) (*client.ScheduleUpdate, error) {
				in.Description.Schedule.Spec, in.Description.Schedule.Action = &spec, action
				return &client.ScheduleUpdate{Schedule: &in.Description.Schedule}, nil
			}})
			did = append(did, fmt.Sprintf("updated %s (%s)", id, ch.Sync.Schedule))
		} else {
			_, err = sc.Create(ctx, client.ScheduleOptions{ID: id, Spec: spec, Action: action})
			var exists *serviceerror.AlreadyExists
			if errors.As(err, &exists) || errors.Is(err, temporal.ErrScheduleAlreadyRunning) {
				err = nil
			}
			did = append(did, fmt.Sprintf("created %s (%s)", id, ch.Sync.Schedule))
		}
		if err != nil {
			return did, fmt.Errorf("schedule %s: %w", id, err)
		}
	}
	return did, nil
}
