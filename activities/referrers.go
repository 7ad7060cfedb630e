package activities

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/sync/errgroup"

	"github.com/dchain-dev/dchain/chain"
)

// maxReferrerDepth bounds how deep referrers of referrers are followed (a
// signature of an SBOM of an image is depth 2).
const maxReferrerDepth = 8

// walkReferrers calls visit with every artifact attached to digest in repo
// (OCI 1.1 subject: signatures, SBOMs, attestations, dchain's scan
// reports), to the manifests of an index's platforms (`cosign sign
// --recursive`, per-platform SBOMs), and recursively to those, each once.
// The source is read through its referrers API or the tag-schema fallback.
func walkReferrers(repo name.Repository, digest string, opts []remote.Option, visit func(referrer v1.Descriptor, depth int) error) error {
	seen := map[string]bool{digest: true}
	var walk func(digest string, depth int) error
	walk = func(digest string, depth int) error {
		if depth > maxReferrerDepth {
			return nil
		}
		idx, err := remote.Referrers(repo.Digest(digest), opts...)
		if err != nil {
			return fmt.Errorf("list the referrers of %s@%s: %w", repo, digest, err)
		}
		m, err := idx.IndexManifest()
		if err != nil {
			return err
		}
		for _, d := range m.Manifests {
			if seen[d.Digest.String()] {
				continue
			}
			seen[d.Digest.String()] = true
			if err := visit(d, depth); err != nil {
				return fmt.Errorf("referrer %s of %s: %w", d.Digest, digest, err)
			}
			if err := walk(d.Digest.String(), depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(digest, 1); err != nil {
		return err
	}
	// The platforms of an index carry referrers of their own.
	desc, err := remote.Get(repo.Digest(digest), opts...)
	if err != nil || !desc.MediaType.IsIndex() {
		return err
	}
	_, children, err := indexChildren(desc)
	if err != nil {
		return err
	}
	for _, c := range children {
		if seen[c.Digest.String()] || !(c.MediaType.IsImage() || c.MediaType.IsIndex()) {
			continue
		}
		seen[c.Digest.String()] = true
		if err := walk(c.Digest.String(), 1); err != nil {
			return err
		}
	}
	return nil
}

// cosignSuffixes are the tags of cosign's tag scheme (its default before
// OCI 1.1 referrers): "sha256-<hex>.sig" (signatures), ".att"
// (attestations), ".sbom" — manifests without a subject, which no
// referrers listing names.
var cosignSuffixes = []string{".sig", ".att", ".sbom"}

// cosignTags calls visit with each cosign tag-scheme tag of digest in from
// that exists there, with what it points at.
func cosignTags(from name.Repository, digest string, opts []remote.Option, visit func(tag string, d v1.Hash) error) error {
	for _, sfx := range cosignSuffixes {
		tag := strings.Replace(digest, ":", "-", 1) + sfx
		desc, err := remote.Head(from.Tag(tag), opts...)
		if isNotFound(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("look up %s:%s: %w", from, tag, err)
		}
		if err := visit(tag, desc.Digest); err != nil {
			return fmt.Errorf("%s:%s: %w", from, tag, err)
		}
	}
	return nil
}

// attachment is one artifact attached to an image: a referrer (by its
// digest) or a cosign tag-scheme tag (Tag set) and what it points at.
type attachment struct {
	Digest v1.Hash
	Tag    string
	// Depth is 1 for what is attached to the image, 2 for what is
	// attached to that, and so on.
	Depth int
}

// attachments lists what is attached to digest in from: every referrer
// walkReferrers finds, in its order (a referrer before its own), then the
// image's cosign tag-scheme tags.
func attachments(from name.Repository, digest string, opts []remote.Option) ([]attachment, error) {
	var out []attachment
	err := walkReferrers(from, digest, opts, func(d v1.Descriptor, depth int) error {
		out = append(out, attachment{Digest: d.Digest, Depth: depth})
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = cosignTags(from, digest, opts, func(tag string, d v1.Hash) error {
		out = append(out, attachment{Digest: d, Tag: tag, Depth: 1})
		return nil
	})
	return out, err
}

// at is where the attachment goes in repo: its tag, or its digest.
func (at attachment) at(repo name.Repository) name.Reference {
	if at.Tag != "" {
		return repo.Tag(at.Tag)
	}
	return repo.Digest(at.Digest.String())
}

// copyReferrers copies what is attached to digest in from (attachments)
// into to, each byte for byte, depth by depth (an attachment after its
// subject): the referrers of a depth together (attach: at once, and
// listed in one write of the referrers tag where the destination has no
// referrers API). A cosign tag is moved at the destination when cosign
// re-pushed it with a new signature, and left when it is there already.
// It returns how many attachments the destination holds now. The
// attachments' manifests are written only once subjectThere (when not
// nil) says the image is at the destination; their blobs before.
func (a *Activities) copyReferrers(ctx context.Context, from, to name.Repository, dst chain.Registry, digest string, srcOpts, dstOpts []remote.Option,
	subjectThere func() error) (int, error) {
	srcOpts, err := keepTransports(srcOpts)
	if err != nil {
		return 0, err
	}
	if dstOpts, err = keepTransports(dstOpts); err != nil {
		return 0, err
	}
	list, err := attachments(from, digest, srcOpts)
	if err != nil {
		return 0, err
	}
	n := 0
	for depth := 1; ; depth++ {
		level := slices.DeleteFunc(slices.Clone(list), func(at attachment) bool { return at.Depth != depth })
		if len(level) == 0 {
			return n, nil
		}
		ready := subjectThere
		if depth > 1 || ready == nil {
			ready = func() error { return nil } // the subjects are the level before's
		}
		arts := make([]artifact, len(level))
		plain := make([]bool, len(level))
		var g errgroup.Group
		g.SetLimit(referrerJobs)
		for i, at := range level {
			g.Go(func() error {
				if at.Tag != "" {
					cur, err := remote.Head(at.at(to), dstOpts...)
					plain[i] = err != nil || cur.Digest != at.Digest
					return nil
				}
				art, err := referrerArtifact(from.Digest(at.Digest.String()), srcOpts)
				arts[i], plain[i] = art, err == nil && art.raw == nil
				return err
			})
		}
		if err := g.Wait(); err != nil {
			return n, fmt.Errorf("copy what is attached to %s@%s: %w", from, digest, err)
		}
		// A cosign tag, an index, or a manifest listed that names no subject
		// is copied as it is, one at a time (go-containerregistry keeps the
		// referrers tag of an index that names a subject: a read and a write).
		for i, at := range level {
			if !plain[i] {
				continue
			}
			if err := ready(); err != nil {
				return n, err
			}
			if err := copyManifest(from.Digest(at.Digest.String()), at.at(to), srcOpts, dstOpts); err != nil {
				return n, fmt.Errorf("copy %s attached to %s@%s: %w", at.at(from), from, digest, err)
			}
		}
		arts = slices.DeleteFunc(arts, func(art artifact) bool { return art.raw == nil })
		n += len(level) - len(arts)
		if len(arts) > 0 {
			if _, err := a.attach(ctx, dst, to, arts, dstOpts, ready); err != nil {
				return n, fmt.Errorf("copy what is attached to %s@%s: %w", from, digest, err)
			}
			n += len(arts)
		}
	}
}

// referrerArtifact reads the referrer at ref as an artifact to attach; its
// raw is nil when it is not an image manifest that names a subject.
func referrerArtifact(ref name.Digest, opts []remote.Option) (artifact, error) {
	desc, err := remote.Get(ref, opts...)
	if err != nil || !desc.MediaType.IsImage() {
		return artifact{}, err
	}
	img, err := desc.Image()
	if err != nil {
		return artifact{}, err
	}
	art, err := imageArtifact(img)
	if err != nil || art.subject() == nil {
		return artifact{}, err
	}
	return art, nil
}

// keepTransports are opts with a puller and a pusher that keep their
// transports (the registry's ping, its token) across requests, instead of
// making them anew for each.
func keepTransports(opts []remote.Option) ([]remote.Option, error) {
	puller, err := remote.NewPuller(opts...)
	if err != nil {
		return nil, err
	}
	pusher, err := remote.NewPusher(opts...)
	if err != nil {
		return nil, err
	}
	return append(slices.Clip(opts), remote.Reuse(puller), remote.Reuse(pusher)), nil
}

// missingAttachments counts what of list (attachments) to lacks, or has
// at another digest.
func missingAttachments(to name.Repository, list []attachment, dstOpts []remote.Option) (int, error) {
	n := 0
	for _, at := range list {
		cur, err := remote.Head(at.at(to), dstOpts...)
		switch {
		case isNotFound(err) || (err == nil && cur.Digest != at.Digest):
			n++
		case err != nil:
			return n, err
		}
	}
	return n, nil
}

// copyManifest copies one manifest (an image, an artifact or an index) with
// everything it references, keeping its bytes, to dst (a digest or a tag).
func copyManifest(src name.Digest, dst name.Reference, srcOpts, dstOpts []remote.Option) error {
	desc, err := remote.Get(src, srcOpts...)
	if err != nil {
		return err
	}
	if desc.MediaType.IsIndex() {
		idx, err := desc.ImageIndex()
		if err != nil {
			return err
		}
		return remote.WriteIndex(dst, idx, dstOpts...)
	}
	img, err := desc.Image()
	if err != nil {
		return err
	}
	return remote.Write(dst, img, dstOpts...)
}
