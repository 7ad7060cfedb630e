package activities

import (
	"context"
	"fmt"

	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/dchain-dev/dchain/workflows"
)

// ResolveImage reads the manifest descriptor of the image (by digest when
// known, else by tag) and, for an index, the platforms it covers.
func (a *Activities) ResolveImage(ctx context.Context, in workflows.ResolveImageInput) (workflows.ImageInfo, error) {
	at := in.Image.Digest
	if at == "" {
		at = in.Image.Tag
	}
	ref, err := reference(in.Registry, in.Image.Repository, at)
	if err != nil {
		return workflows.ImageInfo{}, err
	}
	opts, err := a.remoteOptions(ctx, in.Registry)
	if err != nil {
		return workflows.ImageInfo{}, err
	}
	what := fmt.Sprintf("resolve %s in registry %s", ref, in.Registry.Name)
	desc, err := remote.Get(ref, opts...)
	if err != nil {
		return workflows.ImageInfo{}, registryError(ctx, what, err)
	}
	info := workflows.ImageInfo{Digest: desc.Digest.String(), MediaType: string(desc.MediaType), Size: desc.Size}
	if desc.MediaType.IsIndex() {
		idx, err := desc.ImageIndex()
		if err != nil {
			return info, registryError(ctx, what, err)
		}
		m, err := idx.IndexManifest()
		if err != nil {
			return info, registryError(ctx, what, err)
		}
		for _, c := range m.Manifests {
			if c.Platform != nil && c.Annotations[annotationRefType] == "" { // not BuildKit's attestations
				info.Platforms = append(info.Platforms, c.Platform.String())
				if info.Manifests == nil {
					info.Manifests = map[string]string{}
				}
				info.Manifests[c.Platform.String()] = c.Digest.String()
			}
		}
	}
	return info, nil
}
