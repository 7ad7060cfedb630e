package activities

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
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
// into to, each byte for byte; go-containerregistry writes to the
// destination's referrers API where it has one and keeps the fallback
// tag's index up to date where it does not. A cosign tag is moved at the
// destination when cosign re-pushed it with a new signature, and left when
// it is there already. The attachments of one depth are copied at once (a
// signed image carries a few), each after its subject: attachJobs at once,
// asked of dst only when a depth has more than one. It returns how many it
// copied.
func (a *Activities) copyReferrers(ctx context.Context, from, to name.Repository, dst chain.Registry, digest string, srcOpts, dstOpts []remote.Option) (int, error) {
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
	jobs := sync.OnceValue(func() int { return a.attachJobs(ctx, dst, to, digest) })
	var n atomic.Int32
	for depth := 1; ; depth++ {
		level := slices.DeleteFunc(slices.Clone(list), func(at attachment) bool { return at.Depth != depth })
		if len(level) == 0 {
			return int(n.Load()), nil
		}
		var g errgroup.Group
		if len(level) > 1 {
			g.SetLimit(jobs())
		}
		for _, at := range level {
			g.Go(func() error {
				if at.Tag != "" {
					if cur, err := remote.Head(at.at(to), dstOpts...); err == nil && cur.Digest == at.Digest {
						return nil
					}
				}
				if err := copyManifest(from.Digest(at.Digest.String()), at.at(to), srcOpts, dstOpts); err != nil {
					return fmt.Errorf("copy %s attached to %s@%s: %w", at.at(from), from, digest, err)
				}
				n.Add(1)
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return int(n.Load()), err
		}
	}
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

// referrerJobs is how many attachments are written to one subject at once,
// into a registry with the referrers API.
const referrerJobs = 4

// attachJobs is how many attachments of digest may be written into repo
// of reg at once (it costs a request to reg): referrerJobs where the
// registry serves the OCI referrers API, else one: go-containerregistry keeps the fallback tag's index of a
// registry without it by reading and rewriting it, which concurrent writes
// would race (an attachment lost from the index).
func (a *Activities) attachJobs(ctx context.Context, reg chain.Registry, repo name.Repository, digest string) int {
	auth, err := Auth(reg)
	if err != nil {
		return 1
	}
	tr, err := a.transport(reg)
	if err != nil {
		return 1
	}
	rt, err := transport.NewWithContext(ctx, repo.Registry, auth, tr, []string{repo.Scope(transport.PullScope)})
	if err != nil {
		return 1
	}
	u := url.URL{Scheme: repo.Scheme(), Host: repo.RegistryStr(), Path: "/v2/" + repo.RepositoryStr() + "/referrers/" + digest}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return 1
	}
	req.Header.Set("Accept", string(types.OCIImageIndex))
	resp, err := (&http.Client{Transport: rt, Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return 1
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode == http.StatusOK && strings.HasPrefix(resp.Header.Get("Content-Type"), string(types.OCIImageIndex)) {
		return referrerJobs
	}
	return 1
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
