package activities

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"go.temporal.io/sdk/activity"

	"github.com/dchain-dev/dchain/chain"
	"github.com/dchain-dev/dchain/workflows"
)

// buildInputs is a digest of everything that decides what a rule builds
// from a commit besides the commit's own content: the source, the commit,
// the context, the Dockerfile, the platforms, the build arguments, the
// network, the secrets' references and whether BuildKit attached its
// provenance (when set: the key of an older plan is unchanged). Two
// builds with the same inputs make the same image, so the second reuses the
// first's (a new branch or tag at an already-built commit).
func buildInputs(in workflows.BuildInput) string {
	b, _ := json.Marshal(struct {
		Source, Commit, Context, Dockerfile string
		Platforms                           []string
		BuildArgs                           map[string]string
		Network                             string                     `json:",omitempty"`
		Secrets                             map[string]chain.SecretRef `json:",omitempty"`
		Provenance                          bool                       `json:",omitempty"`
	}{in.Source.URL, string(in.Push.Commit), in.Plan.Context, in.Plan.Dockerfile, in.Plan.Platforms, in.Plan.BuildArgs,
		in.Plan.Network, in.Plan.Secrets, in.Provenance})
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// previousBuild returns the digest a successful earlier build with the
// same inputs pushed — of any rule: found by its inputs, or (a log stored
// before those were kept) by this rule and commit — and that build's log,
// when that image is still in the repository. (A rule with noCache does
// not reuse it, but an earlier attempt's image is still its own.)
func (a *Activities) previousBuild(ctx context.Context, in workflows.BuildInput) (digest, log string, ok bool) {
	opts, err := a.remoteOptions(ctx, in.Registry)
	if err != nil {
		return "", "", false
	}
	for _, at := range []func(workflows.BuildInput) (name.Reference, error){inputsLogRef, buildLogRef} {
		ref, err := at(in)
		if err != nil {
			continue
		}
		img, err := remote.Image(ref, opts...)
		if err != nil {
			continue
		}
		m, err := img.Manifest()
		if err != nil || m.Annotations[AnnotationBuildInputs] != buildInputs(in) {
			continue
		}
		digest := m.Annotations[AnnotationBuildDigest]
		built, err := reference(in.Registry, in.Repository, digest)
		if err != nil {
			continue
		}
		if _, err := remote.Head(built, opts...); err != nil {
			continue
		}
		return digest, ref.String(), true
	}
	return "", "", false
}

// reuseBuild tags the image an earlier build pushed with every tag of the
// plan, instead of building it again.
func (a *Activities) reuseBuild(ctx context.Context, in workflows.BuildInput, digest, log string) (workflows.BuildResult, error) {
	res := workflows.BuildResult{Tags: in.Plan.Tags, Digest: digest, ReusedFrom: digest, Log: log}
	opts, err := a.remoteOptions(ctx, in.Registry)
	if err != nil {
		return res, err
	}
	at, err := reference(in.Registry, in.Repository, digest)
	if err != nil {
		return res, err
	}
	desc, err := remote.Get(at, opts...)
	if err != nil {
		return res, registryError(ctx, "read "+at.String()+" to reuse it", err)
	}
	for _, t := range in.Plan.Tags {
		tag, err := reference(in.Registry, in.Repository, t)
		if err != nil {
			return res, err
		}
		if err := remote.Put(tag, desc, opts...); err != nil {
			return res, registryError(ctx, fmt.Sprintf("tag %s as %s", at, tag), err)
		}
	}
	activity.GetLogger(ctx).Info("reused an earlier build", "rule", in.Plan.Rule, "commit", in.Push.Commit, "digest", digest, "tags", in.Plan.Tags, "log", log)
	info, err := a.ResolveImage(ctx, workflows.ResolveImageInput{Registry: in.Registry,
		Image: workflows.ImageRef{Registry: in.Registry.Name, Repository: in.Repository, Tag: in.Plan.Tags[0], Digest: digest}})
	if err != nil {
		return res, err
	}
	res.Platforms = info.Manifests
	return res, nil
}
