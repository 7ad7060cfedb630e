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

// referrerManifest is an OCI 1.1 image manifest with its artifactType,
// which ggcr's v1.Manifest writes but its mutate package does not set.
type referrerManifest struct{ v1.Manifest }

func (m referrerManifest) RawManifest() ([]byte, error) { return json.Marshal(m.Manifest) }
func (m referrerManifest) MediaType() (types.MediaType, error) {
	return types.OCIManifestSchema1, nil
}

// Attach stores bundle as a referrer of subject in subject's repository,
// and returns the referrer's digest. Registries without the referrers API
// get the referrers tag scheme (ggcr keeps the sha256-<hex> index).
func Attach(subject name.Digest, desc v1.Descriptor, predicateType string, bundle []byte, opts ...remote.Option) (v1.Hash, error) {
	repo := subject.Context()
	layer := static.NewLayer(bundle, BundleMediaType)
	config := static.NewLayer([]byte("{}"), emptyMediaType)
	var layers []v1.Descriptor
	for _, l := range []v1.Layer{config, layer} {
		if err := remote.WriteLayer(repo, l, opts...); err != nil {
			return v1.Hash{}, err
		}
		d, _ := l.Digest()
		sz, _ := l.Size()
		mt, _ := l.MediaType()
		layers = append(layers, v1.Descriptor{MediaType: mt, Digest: d, Size: sz})
	}
	m := referrerManifest{v1.Manifest{
		SchemaVersion: 2, MediaType: types.OCIManifestSchema1, ArtifactType: BundleMediaType,
		Config: layers[0], Layers: layers[1:],
		Annotations: map[string]string{
			annotationCreated:   time.Now().UTC().Format(time.RFC3339),
			annotationContent:   "dsse-envelope",
			AnnotationPredicate: predicateType,
		},
		Subject: &v1.Descriptor{MediaType: desc.MediaType, Digest: desc.Digest, Size: desc.Size},
	}}
	raw, err := m.RawManifest()
	if err != nil {
		return v1.Hash{}, err
	}
	d, _, err := v1.SHA256(bytes.NewReader(raw))
	if err != nil {
		return v1.Hash{}, err
	}
	if err := remote.Put(repo.Digest(d.String()), m, opts...); err != nil {
		return v1.Hash{}, err
	}
	return d, nil
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
