package starter

import (
	"context"
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/dchain-dev/dchain/workflows"
)

// ReferrersRequest says that an artifact was attached to an image in the
// chain's source registry (a signature, an SBOM: cosign signs after the
// push): Tag is the referrer tag that changed and Digest what it points
// at now, Subject the image's digest.
type ReferrersRequest struct {
	Chain      string
	Repository string
	Tag        string
	Digest     string
	Subject    string
	Cause      workflows.Cause
}

// StartReferrers starts a run that follows the image's referrers to every
// destination of the chain that copies referrers and has the image
// already (one that has not gets them with the image's own copy); the
// same notification twice maps to one run.
func (s *Starter) StartReferrers(ctx context.Context, req ReferrersRequest) (Started, error) {
	ch, err := s.Config.Chain(req.Chain)
	if err != nil {
		return Started{}, err
	}
	cfg := s.Config.Config
	src, _ := cfg.Registry(ch.Scope.Registry)
	wr := workflows.ReplicateRequest{Source: src, TaskQueue: s.taskQueue(), Retry: cfg.Retry, ReferrersOnly: true, Chain: ch.Name,
		Image: workflows.ImageRef{Registry: src.Name, Repository: req.Repository, Tag: req.Tag, Digest: req.Subject}}
	seen := map[string]bool{}
	for _, rule := range ch.Replication {
		// The tag filter is not looked at: the image is followed where it is.
		if ok, _ := rule.CoversRepository(ch.Scope, req.Repository); !ok || !rule.CopiesReferrers() || seen[rule.Destination] {
			continue
		}
		seen[rule.Destination] = true
		reg, ok := cfg.Registry(rule.Destination)
		if !ok {
			return Started{}, fmt.Errorf("chain %s names registry %q, which %s does not declare", ch.Name, rule.Destination, cfg.Path)
		}
		wr.Targets = append(wr.Targets, workflows.ReplicationTarget{Registry: reg, Repository: req.Repository})
	}
	if len(wr.Targets) == 0 {
		return Started{}, errNothingToFollow
	}
	at := req.Digest
	if at == "" { // (a notification without the digest: its time tells one from the next)
		at = req.Cause.At.UTC().Format(time.RFC3339Nano)
	}
	id := workflows.ReferrersWorkflowID(ch.Name, workflows.ImageRef{Repository: req.Repository, Tag: req.Tag, Digest: at})
	return s.startWorkflow(ctx, id, workflows.WorkflowReplicate, wr, false,
		temporal.NewSearchAttributes(workflows.AttrChain.ValueSet(ch.Name), workflows.AttrRepository.ValueSet(req.Repository)),
		fmt.Sprintf("follow the referrers of %s@%s → %d destinations", req.Repository, req.Subject, len(wr.Targets)), "")
}

// errNothingToFollow: no destination of the chain copies referrers.
var errNothingToFollow = fmt.Errorf("no replication rule of the chain copies referrers")
