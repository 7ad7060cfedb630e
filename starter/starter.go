// Package starter turns events into chain runs: it checks a request against
// the chain's scope, resolves the image to a digest, snapshots the chain and
// its registries into the workflow input, and starts ChainRun under a
// deterministic workflow ID so the same event twice starts one run.
package starter

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/dchain-dev/dchain/activities"
	"github.com/dchain-dev/dchain/chain"
	"github.com/dchain-dev/dchain/workflows"
)

// Starter starts chain runs.
type Starter struct {
	Client client.Client
	Config *chain.Loaded
	// TaskQueue is the base task queue (default workflows.DefaultTaskQueue).
	TaskQueue string
	// Activities resolve images with the registries' credentials.
	Activities *activities.Activities
}

// ImageRequest asks for a run of Chain on an image already in the chain's source registry.
type ImageRequest struct {
	Chain string
	// Repository is "namespace/name" inside the source registry.
	Repository string
	Tag        string
	// Digest, when known (a registry notification), is used instead of resolving the tag.
	Digest string
	Cause  workflows.Cause
	// Rerun starts a new run even when one for the same event has ended.
	Rerun bool
}

// Started names a run.
type Started struct {
	WorkflowID string `json:"workflowId"`
	RunID      string `json:"runId"`
	// Existing is true when the event already had a run and none was started.
	Existing bool `json:"existing"`
}

// StartImage resolves the image and starts (or finds) its run.
func (s *Starter) StartImage(ctx context.Context, req ImageRequest) (Started, error) {
	ch, err := s.Config.Chain(req.Chain)
	if err != nil {
		return Started{}, err
	}
	if why := s.Config.NotAnImage(req.Repository, req.Tag); why != "" {
		return Started{}, &chain.InputError{Field: "image", Reason: why}
	}
	if !ch.Scope.Covers(req.Repository) {
		return Started{}, fmt.Errorf("chain %s does not cover repository %s (scope: %s)", ch.Name, req.Repository, describeScope(ch.Scope))
	}
	src, _ := s.Config.Config.Registry(ch.Scope.Registry)
	img := workflows.ImageRef{Registry: src.Name, Repository: req.Repository, Tag: req.Tag, Digest: req.Digest}
	info, err := s.activities().ResolveImage(ctx, workflows.ResolveImageInput{Registry: src, Image: img})
	if err != nil {
		return Started{}, err
	}
	img.Digest = info.Digest
	in, err := Input(s.Config.Config, ch, img, req.Cause, s.taskQueue())
	if err != nil {
		return Started{}, err
	}
	return s.start(ctx, workflows.WorkflowID(in.Chain.Name, in.Image), in, req.Rerun)
}

// Input snapshots the chain and the registries it names into a run's input.
func Input(cfg *chain.Config, ch chain.Chain, img workflows.ImageRef, cause workflows.Cause, taskQueue string) (workflows.ChainRunInput, error) {
	in := workflows.ChainRunInput{Chain: ch, Image: img, Cause: cause, Retry: cfg.Retry, TaskQueue: taskQueue}
	names := []string{ch.Scope.Registry}
	for _, r := range ch.Replication {
		names = append(names, r.Destination)
	}
	seen := map[string]bool{}
	for _, n := range names {
		if seen[n] {
			continue
		}
		seen[n] = true
		reg, ok := cfg.Registry(n)
		if !ok {
			return in, fmt.Errorf("chain %s names registry %q, which %s does not declare", ch.Name, n, cfg.Path)
		}
		in.Registries = append(in.Registries, reg)
	}
	return in, nil
}

func (s *Starter) start(ctx context.Context, id string, in workflows.ChainRunInput, rerun bool) (Started, error) {
	var dests []string
	for _, r := range in.Chain.Replication {
		dests = append(dests, r.Destination)
	}
	in.AttributesAtStart = true
	return s.startWorkflow(ctx, id, "ChainRun", in, rerun, workflows.StartAttributes(in),
		fmt.Sprintf("%s: %s → %s", in.Chain.Name, in.Image.Repository+":"+in.Image.Tag, strings.Join(dests, ", ")), staticDetails(in))
}

// eagerStarts counts the starts in flight in this process; beyond
// maxEagerStarts a start asks for no eager task. An eager start holds a
// workflow task slot of the local worker while the server answers, so a
// burst of them would hold every slot and leave the worker's pollers
// none: the burst's other tasks (its runs' next steps) would wait.
var eagerStarts atomic.Int32

const maxEagerStarts = 16

// startWorkflow starts workflow under id on the base task queue with its
// first search attributes, or finds the run of id: one that ended, unless
// rerun, or one still running.
func (s *Starter) startWorkflow(ctx context.Context, id, workflow string, input any, rerun bool, attrs temporal.SearchAttributes,
	summary, details string) (Started, error) {
	reuse := enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE
	if rerun {
		reuse = enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE
	}
	eager := eagerStarts.Add(1) <= maxEagerStarts
	defer eagerStarts.Add(-1)
	run, err := s.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                                       id,
		TaskQueue:                                s.taskQueue(),
		WorkflowIDReusePolicy:                    reuse,
		WorkflowExecutionErrorWhenAlreadyStarted: true,
		TypedSearchAttributes:                    attrs,
		StaticSummary:                            summary,
		StaticDetails:                            details,
		// Where this client also runs a worker of the queue (dchain dev:
		// the API and the workers in one process) and it has a free slot,
		// the run's first workflow task comes back with the start's answer
		// and runs here, not through the server's matching, which queues it
		// behind a burst's other tasks. Elsewhere the start is as usual.
		// Either way the run is durably started before the answer.
		EnableEagerStart: eager,
	}, workflow, input)
	var already *serviceerror.WorkflowExecutionAlreadyStarted
	if errors.As(err, &already) {
		return Started{WorkflowID: id, RunID: already.RunId, Existing: true}, nil
	}
	if err != nil {
		return Started{}, fmt.Errorf("start %s: %w", id, err)
	}
	return Started{WorkflowID: id, RunID: run.GetRunID()}, nil
}

func (s *Starter) activities() *activities.Activities {
	if s.Activities != nil {
		return s.Activities
	}
	return &activities.Activities{}
}

func (s *Starter) taskQueue() string {
	if s.TaskQueue != "" {
		return s.TaskQueue
	}
	return workflows.DefaultTaskQueue
}

func describeScope(s chain.Scope) string {
	if s.AllRepositories {
		return fmt.Sprintf("all repositories of %s except %v", s.Namespace, s.Exclude)
	}
	return s.FullRepository(s.Repository)
}

// PushRequest asks for the runs a source push starts: one per build rule of
// the chain that matches the ref.
type PushRequest struct {
	Chain string
	// Ref and Commit passed the chain package's validator (chain.ParseRef,
	// chain.ParseCommit). An empty Commit means "what Ref points at now".
	Ref    chain.Ref
	Commit chain.Commit
	// VerifyCommit asks to confirm the source has Commit before starting
	// (a person named it; a push event's commit was just pushed).
	VerifyCommit bool
	At           time.Time
	Pusher       string
	// Manual is true when a person (CLI/API) asks rather than a push; rules
	// with regular expressions, build time or commit id then refuse.
	Manual bool
	// Rule, when set, is the one build rule to run (a person's choice
	// where several rules match the ref); RuleField names it in errors.
	Rule, RuleField string
	Cause           workflows.Cause
	Rerun           bool
}

// ParsePushFields checks a person's ref and optional commit (a CLI flag, a
// REST field) with the chain package's validator; the fields name them in
// errors. A named commit is verified against the source before the run
// starts.
func ParsePushFields(refField, ref, commitField, commit string) (PushRequest, error) {
	var req PushRequest
	var err error
	if req.Ref, err = chain.ParseRef(refField, ref); err != nil {
		return req, err
	}
	if commit != "" {
		if req.Commit, err = chain.ParseCommit(commitField, commit); err != nil {
			return req, err
		}
		req.VerifyCommit = true
	}
	return req, nil
}

// StartPush plans the builds a push triggers and starts (or finds) a run for each.
func (s *Starter) StartPush(ctx context.Context, req PushRequest) ([]Started, error) {
	ch, err := s.Config.Chain(req.Chain)
	if err != nil {
		return nil, err
	}
	if ch.Build == nil {
		return nil, fmt.Errorf("chain %s has no build section; start it with an image instead", ch.Name)
	}
	switch {
	case req.Commit == "":
		if req.Commit, err = activities.ResolveRef(ctx, ch.Build.Source, req.Ref); err != nil {
			return nil, err
		}
	case req.VerifyCommit:
		if err := activities.CheckCommit(ctx, ch.Build.Source, req.Commit, ""); errors.Is(err, activities.ErrUnknownCommit) {
			return nil, &chain.InputError{Field: "commit", Reason: err.Error()}
		} else if err != nil {
			return nil, err
		}
	}
	push := chain.Push{Ref: req.Ref, Commit: req.Commit, At: req.At, Pusher: req.Pusher}
	plans, err := chain.PlanBuilds(ch, push, req.Manual, req.Rule)
	if in := (*chain.InputError)(nil); errors.As(err, &in) && in.Field == "rule" && req.RuleField != "" {
		in.Field = req.RuleField
	}
	if err != nil {
		return nil, err
	}
	if len(plans) == 0 {
		return nil, fmt.Errorf("no build rule of chain %s matches %s", ch.Name, req.Ref)
	}
	var out []Started
	for _, plan := range plans {
		img := workflows.ImageRef{Registry: ch.Scope.Registry, Repository: ch.Scope.FullRepository(ch.Scope.Repository), Tag: plan.Tags[0]}
		in, err := Input(s.Config.Config, ch, img, req.Cause, s.taskQueue())
		if err != nil {
			return out, err
		}
		in.Push, in.Build = &push, &plan
		st, err := s.start(ctx, workflows.BuildWorkflowID(ch.Name, plan.Rule, push.Ref, push.Commit), in, req.Rerun)
		if err != nil {
			return out, err
		}
		out = append(out, st)
		if ch.Concurrency == chain.ConcurrencySupersede && !st.Existing {
			if err := s.supersede(ctx, ch.Name, push.Ref, st.WorkflowID); err != nil {
				return out, err
			}
		}
	}
	return out, nil
}

// staticDetails is the run's description in the Web UI.
func staticDetails(in workflows.ChainRunInput) string {
	if r := in.Rerun; r != nil {
		return fmt.Sprintf("a rerun of `%s` (run id `%s`) from %s, started by %s %s; digest `%s`", r.Of, r.OfRun, r.From, in.Cause.Kind, in.Cause.Actor, in.Image.Digest)
	}
	if in.Push != nil && in.Build != nil {
		return fmt.Sprintf("build rule `%s` of %s at `%s` (%s) → tags %v for %v; started by %s %s",
			in.Build.Rule, in.Chain.Build.Source.URL, in.Push.Commit, in.Push.Ref, in.Build.Tags, in.Build.Platforms, in.Cause.Kind, in.Cause.Actor)
	}
	return fmt.Sprintf("digest `%s`, started by %s %s", in.Image.Digest, in.Cause.Kind, in.Cause.Actor)
}

// supersede cancels the runs of chain for ref that are still building,
// other than the one just started.
func (s *Starter) supersede(ctx context.Context, chainName string, ref chain.Ref, keep string) error {
	q := workflows.OlderRunsQuery(chainName, string(ref), keep, time.Time{}).Eq(workflows.AttrStage.GetName(), workflows.StageBuild)
	resp, err := s.Client.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: q.String(), PageSize: 100})
	if err != nil {
		return fmt.Errorf("supersede older runs of %s for %s: %w", chainName, ref, err)
	}
	for _, e := range resp.Executions {
		if err := s.Client.CancelWorkflow(ctx, e.GetExecution().GetWorkflowId(), e.GetExecution().GetRunId()); err != nil {
			return fmt.Errorf("supersede %s: %w", e.GetExecution().GetWorkflowId(), err)
		}
	}
	return nil
}
