package activities

import (
	"errors"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// errForeignLayer marks an image with a non-distributable ("foreign") layer.
var errForeignLayer = errors.New("non-distributable layer")

// refuseForeign fails for an image, or an index with an image, that has a
// non-distributable layer (foreignLayer).
func refuseForeign(desc *remote.Descriptor) error {
	return eachImage(desc, foreignLayer)
}

// foreignLayer fails for an image manifest (of platform p, nil for a
// single image) with a non-distributable layer: its bytes are not in the
// registry but behind URLs the image names, which a worker does not fetch
// (they may point anywhere, a cloud's metadata service included). Such an
// image can be neither scanned nor copied whole, whatever the attempt.
func foreignLayer(m *v1.Manifest, p *v1.Platform) error {
	for _, l := range m.Layers {
		if l.MediaType.IsDistributable() {
			continue
		}
		of := "the image"
		if p != nil {
			of = p.String()
		}
		return fmt.Errorf("%w: layer %s of %s has media type %s, with %d URL(s) outside the registry; dchain scans and copies only layers the registry holds",
			errForeignLayer, l.Digest, of, l.MediaType, len(l.URLs))
	}
	return nil
}
