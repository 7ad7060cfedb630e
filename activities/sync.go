package activities

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/dchain-dev/dchain/chain"
	"github.com/dchain-dev/dchain/workflows"
)

// PlanSync decides what a sync of the chain copies: every tag of every
// repository in its scope (the registry's catalog, for a whole namespace),
// for every replication rule that covers it, whose destination lacks it
// or some of its referrers (a signature added since), or has it at
// another digest, where the rule may overwrite (else it is refused). With a blocking scan policy, an image is synced only when its
// newest stored scan report passes the policy. Referrer tags and dchain's
// own repositories are never images to sync.
func (a *Activities) PlanSync(ctx context.Context, in workflows.PlanSyncInput) (workflows.SyncPlan, error) {
	plan := workflows.SyncPlan{Copy: []workflows.SyncItem{}, Skip: []workflows.SyncItem{}, Refuse: []workflows.SyncItem{}}
	ch := in.Chain
	registry := func(n string) (chain.Registry, error) {
		for _, r := range in.Registries {
			if r.Name == n {
				return r, nil
			}
		}
		return chain.Registry{}, temporal.NewNonRetryableApplicationError(fmt.Sprintf("registry %q is not in the sync's configuration snapshot", n), ErrRejected, nil)
	}
	src, err := registry(ch.Scope.Registry)
	if err != nil {
		return plan, err
	}
	repos, err := a.scopeRepositories(ctx, src, ch.Scope)
	if err != nil {
		return plan, err
	}
	srcOpts, err := a.remoteOptions(ctx, src)
	if err != nil {
		return plan, err
	}
	loaded := &chain.Loaded{Chains: []chain.Chain{ch}}
	for _, repo := range repos {
		tags, err := a.ListTags(ctx, workflows.ListTagsInput{Registry: src, Repository: repo})
		if err != nil {
			return plan, err
		}
		for _, tag := range tags {
			activity.RecordHeartbeat(ctx, fmt.Sprintf("%s:%s (%d planned)", repo, tag, len(plan.Copy)))
			if loaded.NotAnImage(repo, tag) != "" {
				continue
			}
			ref, err := reference(src, repo, tag)
			if err != nil {
				return plan, err
			}
			desc, err := remote.Head(ref, srcOpts...)
			if err != nil {
				return plan, registryError(ctx, "resolve "+ref.String(), err)
			}
			img := workflows.SyncItem{Repository: repo, Tag: tag, Digest: desc.Digest.String()}
			if why, err := a.scanGate(ctx, src, ch, img); err != nil {
				return plan, err
			} else if why != "" {
				img.Reason = why
				plan.Refuse = append(plan.Refuse, img)
				continue
			}
			plan.Scanned++
			var attached []attachment // the image's referrers at the source, once listed
			listed := false
			for _, rule := range ch.Replication {
				item := img
				item.Rule, item.Destination, item.Overwrite, item.SkipReferrers = rule.Name, rule.Destination, rule.Overwrite, !rule.CopiesReferrers()
				if ok, why := rule.Applies(ch.Scope, repo, tag); !ok {
					item.Reason = why
					plan.Skip = append(plan.Skip, item)
					continue
				}
				dst, err := registry(rule.Destination)
				if err != nil {
					return plan, err
				}
				switch cur, err := a.tagDigest(ctx, dst, repo, tag); {
				case err != nil:
					return plan, err
				case cur == item.Digest:
					// There, but a signature or SBOM attached since may not be.
					if !listed && !item.SkipReferrers {
						// What is attached at the source: listed once per image, whatever the destinations.
						if attached, err = attachments(ref.Context(), item.Digest, srcOpts); err != nil {
							return plan, registryError(ctx, "list the referrers of "+ref.String(), err)
						}
						listed = true
					}
					missing, err := a.referrersMissing(ctx, dst, repo, item, attached)
					if err != nil {
						return plan, err
					}
					if missing == 0 {
						item.Reason = "already there"
						plan.Skip = append(plan.Skip, item)
						break
					}
					item.Reason = fmt.Sprintf("already there, without %d of its referrers", missing)
					plan.Copy = append(plan.Copy, item)
				case cur != "" && ch.Immutable(tag):
					item.Reason = fmt.Sprintf("%s has %s:%s at %s and the chain's tags are immutable (immutableTags)", dst.Name, repo, tag, cur)
					plan.Refuse = append(plan.Refuse, item)
				case cur != "" && !rule.Overwrite:
					item.Reason = fmt.Sprintf("%s has %s:%s at %s and the rule's overwrite is off", dst.Name, repo, tag, cur)
					plan.Refuse = append(plan.Refuse, item)
				default:
					plan.Copy = append(plan.Copy, item)
				}
			}
		}
	}
	return plan, nil
}

// scopeRepositories lists the repositories of the scope in reg: the one
// repository, or every repository of the namespace in the registry's
// catalog, less the excluded ones.
func (a *Activities) scopeRepositories(ctx context.Context, reg chain.Registry, s chain.Scope) ([]string, error) {
	if !s.AllRepositories {
		return []string{s.FullRepository(s.Repository)}, nil
	}
	opts, err := a.remoteOptions(ctx, reg)
	if err != nil {
		return nil, err
	}
	nopts := registryNameOpts(reg)
	r, err := name.NewRegistry(reg.Address, nopts...)
	if err != nil {
		return nil, temporal.NewNonRetryableApplicationError(err.Error(), ErrInvalidReference, nil)
	}
	// Pages of 100: registries cap the page size (CNCF distribution at 100).
	var repos []string
	for last := ""; ; {
		page, err := remote.CatalogPage(r, last, catalogPage, opts...)
		if err != nil {
			return nil, registryError(ctx, "list the repositories of registry "+reg.Name, err)
		}
		for _, repo := range page {
			if _, err := chain.ParseRepository("", repo); err == nil && s.Covers(repo) {
				repos = append(repos, repo)
			}
		}
		if len(page) < catalogPage {
			break
		}
		last = page[len(page)-1]
	}
	slices.Sort(repos)
	return repos, nil
}

const catalogPage = 100

// scanGate says why an image must not be synced under the chain's blocking
// scan policy ("" when it may): it has no stored scan report, or its newest
// report fails the policy.
func (a *Activities) scanGate(ctx context.Context, reg chain.Registry, ch chain.Chain, img workflows.SyncItem) (string, error) {
	if ch.Scan == nil || ch.Scan.Mode == chain.ModeNonBlocking {
		return "", nil
	}
	r, _, err := a.latestReport(ctx, reg, img.Repository, img.Digest)
	if err != nil {
		return "", registryError(ctx, "read the scan reports of "+img.Repository+"@"+img.Digest, err)
	}
	if r == nil {
		return "not scanned yet: scan it first (dchain scan), the chain's policy is blocking", nil
	}
	if d := ch.Scan.EvaluateReport(r.Findings, workflows.Unanalysed(r.Inventory), time.Now()); d.Blocked {
		return "blocked by the scan policy: " + strings.Join(d.Reasons, "; "), nil
	}
	return "", nil
}

// referrersMissing counts what of list (the attachments of the image
// item names in the source) dst lacks (0 when the rule does not copy
// referrers).
func (a *Activities) referrersMissing(ctx context.Context, dst chain.Registry, repo string, item workflows.SyncItem, list []attachment) (int, error) {
	if item.SkipReferrers {
		return 0, nil
	}
	to, err := reference(dst, repo, item.Digest)
	if err != nil {
		return 0, err
	}
	dstOpts, err := a.remoteOptions(ctx, dst)
	if err != nil {
		return 0, err
	}
	n, err := missingAttachments(to.Context(), list, dstOpts)
	return n, registryError(ctx, "compare the referrers of "+repo+"@"+item.Digest+" in "+dst.Name, err)
}

// tagDigest is the digest repo:tag points at in reg, "" when there is no such tag.
func (a *Activities) tagDigest(ctx context.Context, reg chain.Registry, repo, tag string) (string, error) {
	ref, err := reference(reg, repo, tag)
	if err != nil {
		return "", err
	}
	opts, err := a.remoteOptions(ctx, reg)
	if err != nil {
		return "", err
	}
	return digestAt(ctx, ref, opts, "read "+ref.String())
}

// digestAt is the digest ref points at, "" when there is no such tag;
// what names the operation in errors.
func digestAt(ctx context.Context, ref name.Reference, opts []remote.Option, what string) (string, error) {
	desc, err := remote.Head(ref, opts...)
	switch {
	case isNotFound(err):
		return "", nil
	case err != nil:
		return "", registryError(ctx, what, err)
	}
	return desc.Digest.String(), nil
}
