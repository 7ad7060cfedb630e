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

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

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
	Cause      workflows.Cause
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

// ParseImage splits "namespace/name:tag" into repository and tag.
func ParseImage(s string) (repo, tag string, err error) {
	i := strings.LastIndex(s, ":")
	if i < 0 || strings.Contains(s[i:], "/") {
		return "", "", fmt.Errorf("image %q: want namespace/repository:tag", s)
	}
	repo, tag = s[:i], s[i+1:]
	if !strings.Contains(repo, "/") {
		return "", "", fmt.Errorf("image %q: repository must be namespace/name", s)
	}
	if !chain.TagRe.MatchString(tag) {
		return "", "", fmt.Errorf("image %q: %q is not a valid tag", s, tag)
	}
	return repo, tag, nil
}

// StartImage resolves the image and starts (or finds) its run.
func (s *Starter) StartImage(ctx context.Context, req ImageRequest) (Started, error) {
	ch, err := s.Config.Chain(req.Chain)
	if err != nil {
		return Started{}, err
	}
	if !ch.Scope.Covers(req.Repository) {
		return Started{}, fmt.Errorf("chain %s does not cover repository %s (scope: %s)", ch.Name, req.Repository, describeScope(ch.Scope))
	}
	src, _ := s.Config.Config.Registry(ch.Scope.Registry)
	img := workflows.ImageRef{Registry: src.Name, Repository: req.Repository, Tag: req.Tag}
	info, err := s.activities().ResolveImage(ctx, workflows.ResolveImageInput{Registry: src, Image: img})
	if err != nil {
		return Started{}, err
	}
	img.Digest = info.Digest
	in, err := Input(s.Config.Config, ch, img, req.Cause, s.taskQueue())
	if err != nil {
		return Started{}, err
	}
	return s.start(ctx, in, req.Rerun)
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

func (s *Starter) start(ctx context.Context, in workflows.ChainRunInput, rerun bool) (Started, error) {
	id := workflows.WorkflowID(in.Chain.Name, in.Image)
	reuse := enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE
	if rerun {
		reuse = enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE
	}
	var dests []string
	for _, r := range in.Chain.Replication {
		dests = append(dests, r.Destination)
	}
	run, err := s.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                                       id,
		TaskQueue:                                in.TaskQueue,
		WorkflowIDReusePolicy:                    reuse,
		WorkflowExecutionErrorWhenAlreadyStarted: true,
		StaticSummary:                            fmt.Sprintf("%s: %s → %s", in.Chain.Name, in.Image.Repository+":"+in.Image.Tag, strings.Join(dests, ", ")),
		StaticDetails:                            fmt.Sprintf("digest `%s`, started by %s %s", in.Image.Digest, in.Cause.Kind, in.Cause.Actor),
	}, "ChainRun", in)
	var already *serviceerror.WorkflowExecutionAlreadyStarted
	if errors.As(err, &already) {
		return Started{WorkflowID: id, RunID: already.RunId, Existing: true}, nil
	}
	if err != nil {
		return Started{}, fmt.Errorf("start run %s: %w", id, err)
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
