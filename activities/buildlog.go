package activities

import (
	"context"
	"fmt"
	"io"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"go.temporal.io/sdk/activity"

	"github.com/dchain-dev/dchain/chain"
	"github.com/dchain-dev/dchain/workflows"
)

// Media types of the build log artifact.
const (
	BuildLogArtifactType = "application/vnd.dchain.build.log.v1"
	BuildLogLayerType    = "text/plain; charset=utf-8"
)

// pushBuildLog stores a build's log as an OCI artifact in the source registry
// (dchain-logs/<repository>:<rule>-<commit>) and returns its reference. The
// log is a convenience: a failure to store it is logged, not fatal.
func (a *Activities) pushBuildLog(ctx context.Context, in workflows.BuildInput, log []byte) string {
	repo := LogRepositoryPrefix + in.Repository
	tag := in.Plan.Rule + "-" + short(in.Push.Commit)
	ref, err := reference(in.Registry, repo, tag)
	if err != nil {
		return ""
	}
	opts, err := a.remoteOptions(ctx, in.Registry)
	if err == nil {
		img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
		img = mutate.ConfigMediaType(img, types.MediaType(BuildLogArtifactType))
		img, err = mutate.Append(img, mutate.Addendum{Layer: static.NewLayer(log, BuildLogLayerType),
			Annotations: map[string]string{"org.opencontainers.image.title": "build.log"}})
		if err == nil {
			err = remote.Write(ref, img, append(opts, remote.WithContext(context.WithoutCancel(ctx)))...)
		}
	}
	if err != nil {
		activity.GetLogger(ctx).Warn("could not store the build log", "ref", ref.String(), "error", err)
		return ""
	}
	return ref.String()
}

// ReadBuildLog fetches a build log stored by BuildImage.
func (a *Activities) ReadBuildLog(ctx context.Context, reg chain.Registry, ref string) ([]byte, error) {
	return a.readArtifact(ctx, reg, ref)
}

// readArtifact returns the content of a one-layer artifact (build log, scan report).
func (a *Activities) readArtifact(ctx context.Context, reg chain.Registry, ref string) ([]byte, error) {
	opts, err := a.remoteOptions(ctx, reg)
	if err != nil {
		return nil, err
	}
	r, err := parseRef(reg, ref)
	if err != nil {
		return nil, err
	}
	img, err := remote.Image(r, opts...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ref, err)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		return nil, fmt.Errorf("%s: not a dchain artifact (%v)", ref, err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}
