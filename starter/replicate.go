package starter

import (
	"context"
	"fmt"

	"go.temporal.io/sdk/temporal"
	"golang.org/x/sync/errgroup"

	"github.com/dchain-dev/dchain/chain"
	"github.com/dchain-dev/dchain/workflows"
)

// ReplicationRequest asks for a manual replication, in the words of
// `dchain replicate` and POST /api/v1/replications: Source is
// REGISTRY/NAMESPACE/REPO:TAG (or @sha256:…), each of To is
// REGISTRY[/NAMESPACE/REPO[:TAG]].
type ReplicationRequest struct {
	Source    string
	To        []string
	Overwrite bool
	// SourceField and ToField name the fields in errors (CLI flags or JSON fields).
	SourceField, ToField string
}

// StartReplication checks the request with the shared validator, resolves
// the source to its digest, refuses a target tag that points at another
// digest unless Overwrite — all before anything is written — and starts
// the Replicate workflow (or finds the same one still running).
func (s *Starter) StartReplication(ctx context.Context, req ReplicationRequest) (Started, error) {
	cfg := s.Config.Config
	src, repo, at, err := cfg.ParseRegistryImage(req.SourceField, req.Source)
	if err != nil {
		return Started{}, err
	}
	if len(req.To) == 0 {
		return Started{}, &chain.InputError{Field: req.ToField, Reason: "name at least one destination: REGISTRY[/NAMESPACE/REPOSITORY[:TAG]]"}
	}
	img := workflows.ImageRef{Registry: src.Name, Repository: repo}
	if _, err := chain.ParseDigest("", at); err == nil {
		img.Digest = at
	} else {
		img.Tag = at
	}
	info, err := s.activities().ResolveImage(ctx, workflows.ResolveImageInput{Registry: src, Image: img})
	if err != nil {
		if gone(err) {
			return Started{}, &chain.InputError{Field: req.SourceField, Reason: err.Error()}
		}
		return Started{}, err
	}
	img.Digest = info.Digest
	wr := workflows.ReplicateRequest{Source: src, Image: img, TaskQueue: s.taskQueue(), Retry: cfg.Retry}
	seen := map[string]bool{}
	for _, to := range req.To {
		reg, trepo, tag, err := cfg.ParseTarget(req.ToField, to, repo, img.Tag)
		if err != nil {
			return Started{}, err
		}
		t := workflows.ReplicationTarget{Registry: reg, Repository: trepo, Tag: tag, Overwrite: req.Overwrite}
		if seen[t.String()] {
			continue
		}
		seen[t.String()] = true
		if reg.Name == src.Name && trepo == repo && tag == img.Tag {
			return Started{}, &chain.InputError{Field: req.ToField, Reason: fmt.Sprintf("%q is the source itself", to)}
		}
		wr.Targets = append(wr.Targets, t)
	}
	// The destinations are looked at together (each its own registry),
	// eight at a time.
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for _, t := range wr.Targets {
		g.Go(func() error { return s.checkTarget(gctx, t, img.Digest, req.ToField) })
	}
	if err := g.Wait(); err != nil {
		return Started{}, err
	}
	st, err := s.startWorkflow(ctx, workflows.ReplicationWorkflowID(wr), workflows.WorkflowReplicate, wr, true, temporal.SearchAttributes{},
		fmt.Sprintf("replicate %s@%s → %d destinations", img.Repository, img.Digest, len(wr.Targets)), "")
	return st, err
}

// checkTarget refuses a target whose tag points at another digest when
// overwriting is off.
func (s *Starter) checkTarget(ctx context.Context, t workflows.ReplicationTarget, digest, field string) error {
	cur, err := s.activities().ResolveImage(ctx, workflows.ResolveImageInput{Registry: t.Registry,
		Image: workflows.ImageRef{Registry: t.Registry.Name, Repository: t.Repository, Tag: t.Tag}})
	switch {
	case gone(err):
		return nil
	case err != nil:
		return err
	case cur.Digest != digest && !t.Overwrite:
		return &chain.InputError{Field: field, Reason: fmt.Sprintf("%s exists with digest %s (the source is %s); overwrite it with --overwrite (REST: \"overwrite\": true)", t, cur.Digest, digest)}
	}
	return nil
}
