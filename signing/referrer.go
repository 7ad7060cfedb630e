package signing

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Media types and annotations of a bundle referrer, as cosign writes them.
const (
	BundleMediaType     = "application/vnd.dev.sigstore.bundle.v0.3+json"
	emptyMediaType      = "application/vnd.oci.empty.v1+json"
	AnnotationPredicate = "dev.sigstore.bundle.predicateType"
	annotationContent   = "dev.sigstore.bundle.content"
	annotationCreated   = "org.opencontainers.image.created"
)

// Bounds of what is read from a registry: a bundle (an SBOM of a large
// image is a few MiB), all of an image's bundles together, and how many
// are read at all (a hostile registry's endless listing or blob is not
// read past them; what is left is rejected, saying so).
const (
	maxBundle      = 16 << 20
	maxBundleBytes = 128 << 20
	maxBundles     = 64
)

// Referrer is a bundle's referrer manifest (an OCI 1.1 image manifest whose
// subject is the image, as cosign writes it) and the blobs it names.
type Referrer struct {
	Manifest []byte
	Blobs    []v1.Layer
}

// NewReferrer makes the referrer that attaches bundle to the image desc.
func NewReferrer(desc v1.Descriptor, predicateType string, bundle []byte) (Referrer, error) {
	blobs := []v1.Layer{static.NewLayer([]byte("{}"), emptyMediaType), static.NewLayer(bundle, BundleMediaType)}
	var ds []v1.Descriptor
	for _, l := range blobs {
		d, _ := l.Digest()
		sz, _ := l.Size()
		mt, _ := l.MediaType()
		ds = append(ds, v1.Descriptor{MediaType: mt, Digest: d, Size: sz})
	}
	raw, err := json.Marshal(v1.Manifest{
		SchemaVersion: 2, MediaType: types.OCIManifestSchema1, ArtifactType: BundleMediaType,
		Config: ds[0], Layers: ds[1:],
		Annotations: map[string]string{
			annotationCreated:   time.Now().UTC().Format(time.RFC3339),
			annotationContent:   "dsse-envelope",
			AnnotationPredicate: predicateType,
		},
		Subject: &v1.Descriptor{MediaType: desc.MediaType, Digest: desc.Digest, Size: desc.Size},
	})
	return Referrer{Manifest: raw, Blobs: blobs}, err
}

// RawManifest and MediaType make a Referrer a manifest go-containerregistry writes.
func (r Referrer) RawManifest() ([]byte, error)        { return r.Manifest, nil }
func (r Referrer) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }

// Attach stores bundle as a referrer of subject in subject's repository
// the way any client would (go-containerregistry: one at a time; it keeps
// the sha256-<hex> tag's index of a registry without the referrers API),
// and returns the referrer's digest.
func Attach(subject name.Digest, desc v1.Descriptor, predicateType string, bundle []byte, opts ...remote.Option) (v1.Hash, error) {
	repo := subject.Context()
	r, err := NewReferrer(desc, predicateType, bundle)
	if err != nil {
		return v1.Hash{}, err
	}
	for _, l := range r.Blobs {
		if err := remote.WriteLayer(repo, l, opts...); err != nil {
			return v1.Hash{}, err
		}
	}
	d, _, err := v1.SHA256(bytes.NewReader(r.Manifest))
	if err != nil {
		return v1.Hash{}, err
	}
	return d, remote.Put(repo.Digest(d.String()), r, opts...)
}

// Bundle is a sigstore bundle attached to an image.
type Bundle struct {
	// Digest is the referrer manifest's.
	Digest        v1.Hash
	PredicateType string
	JSON          []byte
	// Unreadable says why the bundle could not be read (JSON is empty):
	// it verifies as nothing, and does not stop the others being read.
	Unreadable string
}

// Bundles lists the sigstore bundles attached to digest in repo (its
// referrers of the bundle artifact type) and reads each.
func Bundles(repo name.Repository, digest v1.Hash, opts ...remote.Option) ([]Bundle, error) {
	// Unfiltered: a registry may name an artifact by its config's media
	// type (before OCI 1.1's artifactType field), and ggcr's client would
	// then filter a bundle out.
	idx, err := remote.Referrers(repo.Digest(digest.String()), opts...)
	if err != nil {
		return nil, fmt.Errorf("list the referrers of %s@%s: %w", repo, digest, err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	var out []Bundle
	total := 0
	for _, d := range m.Manifests {
		sure := d.ArtifactType == BundleMediaType || d.Annotations[AnnotationPredicate] != ""
		if !sure && d.ArtifactType != "" && d.ArtifactType != emptyMediaType {
			continue // another kind of artifact (a scan report, an SBOM file)
		}
		b := Bundle{Digest: d.Digest, PredicateType: d.Annotations[AnnotationPredicate]}
		if len(out) >= maxBundles || total >= maxBundleBytes {
			b.Unreadable = fmt.Sprintf("not read: the image has more bundles than dchain reads (%d, %d MiB)", maxBundles, maxBundleBytes>>20)
			out = append(out, b)
			continue
		}
		got, err := readBundle(repo.Digest(d.Digest.String()), opts)
		var te *transport.Error
		switch {
		case errors.Is(err, errNotBundle) && !sure:
			continue
		case errors.Is(err, errNotBundle), errors.Is(err, errTooLarge),
			errors.As(err, &te) && te.StatusCode >= 400 && te.StatusCode < 500 && te.StatusCode != 408 && te.StatusCode != 429:
			b.Unreadable = err.Error() // what this bundle is, not how the registry is doing
		case err != nil:
			return nil, fmt.Errorf("read bundle %s: %w", d.Digest, err) // the registry may answer next time
		default:
			b.JSON = got.JSON
			if b.PredicateType == "" {
				b.PredicateType = got.PredicateType
			}
			total += len(got.JSON)
		}
		out = append(out, b)
	}
	return out, nil
}

var (
	errNotBundle = errors.New("not a sigstore bundle: want one layer of type " + BundleMediaType)
	errTooLarge  = fmt.Errorf("a bundle is over the %d MiB limit", maxBundle>>20)
)

func readBundle(ref name.Digest, opts []remote.Option) (Bundle, error) {
	img, err := remote.Image(ref, opts...)
	if err != nil {
		return Bundle{}, err
	}
	m, err := img.Manifest()
	if err != nil {
		return Bundle{}, err
	}
	if len(m.Layers) != 1 || m.Layers[0].MediaType != BundleMediaType {
		return Bundle{}, errNotBundle
	}
	if m.Layers[0].Size > maxBundle {
		return Bundle{}, errTooLarge
	}
	l, err := img.LayerByDigest(m.Layers[0].Digest)
	if err != nil {
		return Bundle{}, err
	}
	rc, err := l.Compressed() // a blob as stored; ggcr checks its digest at EOF
	if err != nil {
		return Bundle{}, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxBundle+1))
	if err != nil {
		return Bundle{}, err
	}
	if len(b) > maxBundle {
		return Bundle{}, errTooLarge
	}
	return Bundle{JSON: b, PredicateType: m.Annotations[AnnotationPredicate]}, nil
}
