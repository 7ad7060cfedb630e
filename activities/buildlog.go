package activities

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
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

// Annotations of the build log artifact that let a later run of the same
// rule at the same commit reuse the image instead of building it again.
const (
	AnnotationBuildDigest = "dev.dchain.build.digest"
	AnnotationBuildInputs = "dev.dchain.build.inputs"
)

// buildLogRef is where the log of the rule's build of the commit is kept:
// dchain-logs/<repository>:<rule>-<commit>.
func buildLogRef(in workflows.BuildInput) (name.Reference, error) {
	return reference(in.Registry, chain.LogRepositoryPrefix+in.Repository, in.Plan.Rule+"-"+in.Push.Commit.Short())
}

// inputsLogRef is where a successful build's log is also found by its
// inputs (buildInputs), whatever the rule: "inputs-<40 hex>".
func inputsLogRef(in workflows.BuildInput) (name.Reference, error) {
	return reference(in.Registry, chain.LogRepositoryPrefix+in.Repository, "inputs-"+strings.TrimPrefix(buildInputs(in), "sha256:")[:40])
}

// pushBuildLog stores a build's log as an OCI artifact in the source registry
// (buildLogRef) and returns its reference; a successful build's artifact also
// records the image's digest and the build's inputs (buildInputs). The log
// is a convenience: a failure to store it is logged, not fatal.
func (a *Activities) pushBuildLog(ctx context.Context, in workflows.BuildInput, log []byte, digest string) string {
	ref, err := buildLogRef(in)
	if err != nil {
		return ""
	}
	opts, err := a.remoteOptions(ctx, in.Registry)
	if err == nil {
		img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
		img = mutate.ConfigMediaType(img, types.MediaType(BuildLogArtifactType))
		img, err = mutate.Append(img, mutate.Addendum{Layer: static.NewLayer(log, BuildLogLayerType),
			Annotations: map[string]string{"org.opencontainers.image.title": "build.log"}})
		if err == nil && digest != "" {
			img = mutate.Annotations(img, map[string]string{AnnotationBuildDigest: digest, AnnotationBuildInputs: buildInputs(in)}).(v1.Image)
		}
		if err == nil {
			err = remote.Write(ref, img, append(opts, remote.WithContext(context.WithoutCancel(ctx)))...)
		}
		if inputs, ierr := inputsLogRef(in); err == nil && digest != "" && ierr == nil {
			// Found by its inputs too: another rule building the same gets it
			// (without, it only builds again).
			if terr := remote.Tag(inputs.(name.Tag), img, append(opts, remote.WithContext(context.WithoutCancel(ctx)))...); terr != nil {
				activity.GetLogger(ctx).Warn("could not tag the build log by its inputs", "ref", inputs.String(), "error", terr)
			}
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
