package activities

import (
	"context"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// maxReferrerDepth bounds how deep referrers of referrers are followed (a
// signature of an SBOM of an image is depth 2).
const maxReferrerDepth = 8

// copyReferrers copies every artifact attached to digest in from (OCI 1.1
// subject: signatures, SBOMs, attestations, dchain's scan reports) into
// to, and recursively what is attached to those, each by digest, so the
// copies are byte for byte the originals. The source is read through its
// referrers API or the tag-schema fallback; go-containerregistry writes
// to the destination's referrers API where it has one and keeps the
// fallback tag's index up to date where it does not. It returns how many
// referrers it copied.
func copyReferrers(ctx context.Context, from, to name.Repository, digest string, srcOpts, dstOpts []remote.Option) (int, error) {
	seen := map[string]bool{digest: true}
	n := 0
	var walk func(digest string, depth int) error
	walk = func(digest string, depth int) error {
		if depth > maxReferrerDepth {
			return nil
		}
		idx, err := remote.Referrers(from.Digest(digest), srcOpts...)
		if err != nil {
			return fmt.Errorf("list the referrers of %s@%s: %w", from, digest, err)
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
			if err := copyManifest(from.Digest(d.Digest.String()), to.Digest(d.Digest.String()), srcOpts, dstOpts); err != nil {
				return fmt.Errorf("copy referrer %s of %s: %w", d.Digest, digest, err)
			}
			n++
			if err := walk(d.Digest.String(), depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	err := walk(digest, 1)
	return n, err
}

// copyManifest copies one manifest (an image, an artifact or an index) with
// everything it references, keeping its bytes.
func copyManifest(src, dst name.Digest, srcOpts, dstOpts []remote.Option) error {
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
