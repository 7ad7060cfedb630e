package activities

import (
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/dchain-dev/dchain/chain"
	"github.com/dchain-dev/dchain/workflows"
)

// Annotations of an accelerated variant's manifest (or index): what it was
// made from, and how.
const (
	AnnotationAcceleratedFrom   = "dev.dchain.accelerated.from"
	AnnotationAcceleratedFormat = "dev.dchain.accelerated.format"
)

// AccelerateImage writes the eStargz variant of an image — every platform
// of an index; BuildKit's attestation manifests stay with the original —
// into the same repository under in.Tags. Each layer is converted by the
// estargz library (a table of contents, chunked gzip members), its TOC
// digest and uncompressed size annotated on the layer as containerd's
// stargz snapshotter reads them. It runs in the Accelerate workflow of the
// digest: a later run of the same digest reads that record (VariantOf).
func (a *Activities) AccelerateImage(ctx context.Context, in workflows.AccelerateInput) (workflows.Accelerated, error) {
	start := time.Now()
	res := workflows.Accelerated{Format: in.Format, Tags: in.Tags}
	if in.Format != chain.AccelerateEstargz || len(in.Tags) == 0 {
		return res, temporal.NewNonRetryableApplicationError(fmt.Sprintf("accelerate: format %q with tags %v: only estargz, with at least one tag", in.Format, in.Tags), ErrInvalidReference, nil)
	}
	src, err := reference(in.Registry, in.Repository, in.Digest)
	if err != nil {
		return res, err
	}
	opts, err := a.remoteOptions(ctx, in.Registry)
	if err != nil {
		return res, err
	}
	opts = append(opts, remote.WithContext(ctx))
	what := fmt.Sprintf("accelerate %s in registry %s", src, in.Registry.Name)
	tags := make([]name.Reference, len(in.Tags))
	for i, t := range in.Tags {
		if tags[i], err = reference(in.Registry, in.Repository, t); err != nil {
			return res, err
		}
	}

	dir, err := os.MkdirTemp(a.TempDir, "accelerate-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	var progress struct{ layers, done, bytesOut atomic.Int64 }
	stop := a.every(ctx, func() {
		activity.RecordHeartbeat(ctx, workflows.AccelerateProgress{Layers: int(progress.layers.Load()), Done: int(progress.done.Load()), BytesOut: progress.bytesOut.Load()})
	})
	defer stop()
	conv := &converter{dir: dir, ctx: ctx}
	conv.onLayer = func(in, out int64) {
		progress.done.Add(1)
		progress.bytesOut.Add(out)
		res.Layers++
		res.BytesIn += in
		res.BytesOut += out
	}
	annotations := map[string]string{AnnotationAcceleratedFrom: in.Digest, AnnotationAcceleratedFormat: in.Format}

	desc, err := remote.Get(src, opts...)
	if err != nil {
		return res, registryError(ctx, what, err)
	}
	var written remote.Taggable
	if desc.MediaType.IsIndex() {
		idx, err := desc.ImageIndex()
		if err != nil {
			return res, registryError(ctx, what, err)
		}
		im, err := idx.IndexManifest()
		if err != nil {
			return res, registryError(ctx, what, err)
		}
		var adds []mutate.IndexAddendum
		res.Platforms = map[string]string{}
		for _, m := range im.Manifests {
			if m.Annotations[annotationRefType] != "" || !m.MediaType.IsImage() || m.Platform == nil {
				continue // BuildKit's attestations, nested indexes
			}
			if m.Platform.OS != "linux" {
				continue // lazy pulling is Linux's (the stargz snapshotter, containers/storage)
			}
			img, err := idx.Image(m.Digest)
			if err != nil {
				return res, registryError(ctx, what, err)
			}
			if ls, err := img.Layers(); err == nil {
				progress.layers.Add(int64(len(ls)))
			}
			v, err := conv.image(img)
			if err != nil {
				return res, registryError(ctx, what+" ("+m.Platform.String()+")", err)
			}
			d, err := v.Digest()
			if err != nil {
				return res, err
			}
			res.Platforms[m.Platform.String()] = d.String()
			adds = append(adds, mutate.IndexAddendum{Add: v, Descriptor: v1.Descriptor{Platform: m.Platform}})
		}
		if len(adds) == 0 {
			res.Skipped = "the index has no Linux image to accelerate"
			return res, nil
		}
		out := mutate.Annotations(mutate.IndexMediaType(mutate.AppendManifests(empty.Index, adds...), types.OCIImageIndex), annotations).(v1.ImageIndex)
		if err := remote.WriteIndex(tags[0], out, opts...); err != nil {
			return res, registryError(ctx, what, err)
		}
		written = out
	} else {
		img, err := desc.Image()
		if err != nil {
			return res, registryError(ctx, what, err)
		}
		if cf, err := img.ConfigFile(); err != nil {
			return res, registryError(ctx, what, err)
		} else if cf.OS != "linux" {
			res.Skipped = fmt.Sprintf("a %s image: lazy pulling is for Linux images", cf.OS)
			return res, nil
		}
		if ls, err := img.Layers(); err == nil {
			progress.layers.Add(int64(len(ls)))
		}
		v, err := conv.image(img)
		if err != nil {
			return res, registryError(ctx, what, err)
		}
		out := mutate.Annotations(v, annotations).(v1.Image)
		if err := remote.Write(tags[0], out, opts...); err != nil {
			return res, registryError(ctx, what, err)
		}
		written = out
	}
	d, err := partialDigest(written)
	if err != nil {
		return res, err
	}
	res.Digest = d.String()
	for _, t := range tags[1:] {
		if err := remote.Tag(t.Context().Tag(t.Identifier()), written, opts...); err != nil {
			return res, registryError(ctx, what, err)
		}
	}
	res.Duration = time.Since(start)
	activity.GetLogger(ctx).Info("accelerated", "image", src.String(), "variant", res.Digest, "layers", res.Layers, "bytesIn", res.BytesIn, "bytesOut", res.BytesOut, "took", res.Duration)
	return res, nil
}

// partialDigest is the digest of what was written.
func partialDigest(t remote.Taggable) (v1.Hash, error) {
	switch x := t.(type) {
	case v1.Image:
		return x.Digest()
	case v1.ImageIndex:
		return x.Digest()
	}
	return v1.Hash{}, fmt.Errorf("accelerate: wrote a %T", t)
}

// VariantOf waits for the acceleration in.WorkflowID (another run's, of the
// same digest) to end and returns its variant, pointing this run's
// accelerated tags at it: Temporal's record of the conversion, not a tag or
// an annotation in the registry, says which variant is the image's.
func (a *Activities) VariantOf(ctx context.Context, in workflows.VariantOfInput) (workflows.Accelerated, error) {
	var res workflows.Accelerated
	if a.Temporal == nil {
		return res, temporal.NewNonRetryableApplicationError("this worker has no Temporal client to read the acceleration "+in.WorkflowID+" with", ErrRejected, nil)
	}
	stop := a.every(ctx, func() { activity.RecordHeartbeat(ctx, "waiting for "+in.WorkflowID) })
	defer stop()
	if err := a.Temporal.GetWorkflow(ctx, in.WorkflowID, "").Get(ctx, &res); err != nil {
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		// It failed (the next try starts it again: the run's stage retries) or is unreadable now.
		return res, temporal.NewNonRetryableApplicationError("the acceleration "+in.WorkflowID+" of this digest failed: "+err.Error(), ErrRejected, nil)
	}
	res.Reused, res.Tags, res.Layers, res.BytesIn, res.BytesOut, res.Duration = true, in.In.Tags, 0, 0, 0, 0
	if res.Digest == "" {
		return res, nil
	}
	opts, err := a.remoteOptions(ctx, in.In.Registry)
	if err != nil {
		return res, err
	}
	opts = append(opts, remote.WithContext(ctx))
	variant, err := reference(in.In.Registry, in.In.Repository, res.Digest)
	if err != nil {
		return res, err
	}
	what := fmt.Sprintf("tag the accelerated variant %s", variant)
	d, err := remote.Get(variant, opts...)
	if err != nil {
		return res, registryError(ctx, what, err)
	}
	for _, t := range in.In.Tags {
		ref, err := reference(in.In.Registry, in.In.Repository, t)
		if err != nil {
			return res, err
		}
		if err := remote.Tag(ref.Context().Tag(t), d, opts...); err != nil {
			return res, registryError(ctx, what, err)
		}
	}
	return res, nil
}

// converter turns images into their eStargz variants, spooling layers in dir.
type converter struct {
	dir     string
	ctx     context.Context
	onLayer func(in, out int64)
}

// image is img with every layer converted: the same config (its diff IDs
// those of the new layers), history and platform, OCI media types.
func (c *converter) image(img v1.Image) (v1.Image, error) {
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	m, err := img.Manifest()
	if err != nil {
		return nil, err
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, err
	}
	cfg := cf.DeepCopy()
	history := cfg.History
	cfg.RootFS.DiffIDs, cfg.History = nil, nil
	base, err := mutate.ConfigFile(empty.Image, cfg)
	if err != nil {
		return nil, err
	}
	base = mutate.ConfigMediaType(mutate.MediaType(base, types.OCIManifestSchema1), types.OCIConfigJSON)
	adds := make([]mutate.Addendum, 0, len(layers))
	for i, l := range layers {
		if i < len(m.Layers) && !m.Layers[i].MediaType.IsDistributable() {
			return nil, temporal.NewNonRetryableApplicationError("layer "+m.Layers[i].Digest.String()+" is foreign (non-distributable): it cannot be converted", ErrRejected, nil)
		}
		el, err := c.layer(l)
		if err != nil {
			return nil, err
		}
		layer, err := partial.CompressedToLayer(el)
		if err != nil {
			return nil, err
		}
		adds = append(adds, mutate.Addendum{Layer: layer, MediaType: types.OCILayer, Annotations: map[string]string{
			estargz.TOCJSONDigestAnnotation:         el.toc,
			estargz.StoreUncompressedSizeAnnotation: strconv.FormatInt(el.uncompressed, 10),
		}})
	}
	v, err := mutate.Append(base, adds...)
	if err != nil {
		return nil, err
	}
	vcf, err := v.ConfigFile()
	if err != nil {
		return nil, err
	}
	vcf = vcf.DeepCopy()
	vcf.History = history // the image's own, empty layers included
	return mutate.ConfigFile(v, vcf)
}

// layer converts one layer: its tar spooled to a file, rebuilt by the
// estargz library into another.
func (c *converter) layer(l v1.Layer) (*estargzLayer, error) {
	insize, _ := l.Size()
	rc, err := l.Uncompressed()
	if err != nil {
		return nil, err
	}
	tarFile, err := os.CreateTemp(c.dir, "layer-*.tar")
	if err != nil {
		rc.Close()
		return nil, err
	}
	defer os.Remove(tarFile.Name())
	defer tarFile.Close()
	n, err := io.Copy(tarFile, rc)
	rc.Close()
	if err != nil {
		return nil, err
	}
	blob, err := estargz.Build(io.NewSectionReader(tarFile, 0, n), estargz.WithContext(c.ctx), estargz.WithCompressionLevel(gzip.DefaultCompression))
	if err != nil {
		return nil, temporal.NewNonRetryableApplicationError("convert a layer to eStargz: "+err.Error(), ErrRejected, nil)
	}
	defer blob.Close()
	out, err := os.CreateTemp(c.dir, "estargz-*")
	if err != nil {
		return nil, err
	}
	defer out.Close()
	h := sha256.New()
	size, err := io.Copy(io.MultiWriter(out, h), blob)
	if err != nil {
		return nil, err
	}
	usize, err := blob.UncompressedSize()
	if err != nil {
		return nil, err
	}
	diffID, err := v1.NewHash(blob.DiffID().String())
	if err != nil {
		return nil, err
	}
	c.onLayer(insize, size)
	return &estargzLayer{path: out.Name(), size: size, uncompressed: usize, toc: blob.TOCDigest().String(), diffID: diffID,
		digest: v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}}, nil
}

// estargzLayer is a converted layer in a file: a gzip stream (eStargz is
// one) with its digests known; partial.CompressedToLayer reads it
// uncompressed.
type estargzLayer struct {
	path               string
	size, uncompressed int64
	toc                string
	digest, diffID     v1.Hash
}

func (l *estargzLayer) Digest() (v1.Hash, error)            { return l.digest, nil }
func (l *estargzLayer) DiffID() (v1.Hash, error)            { return l.diffID, nil }
func (l *estargzLayer) Size() (int64, error)                { return l.size, nil }
func (l *estargzLayer) MediaType() (types.MediaType, error) { return types.OCILayer, nil }
func (l *estargzLayer) Compressed() (io.ReadCloser, error)  { return os.Open(l.path) }
