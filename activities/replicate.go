package activities

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/dchain-dev/dchain/chain"
	"github.com/dchain-dev/dchain/workflows"
)

// ReplicateImage copies an image (or a whole multi-arch index) by digest from
// the source registry to the destination and points every tag at it. Blobs
// stream from source to destination without being buffered, several at once;
// blobs the destination already has are skipped. The destination's digest is
// checked against the source's, for every tag, before the activity succeeds.
func (a *Activities) ReplicateImage(ctx context.Context, in workflows.ReplicateInput) (workflows.ReplicateResult, error) {
	res := workflows.ReplicateResult{Digest: in.Digest}
	src, err := reference(in.Source, in.Repository, in.Digest)
	if err != nil {
		return res, err
	}
	srcOpts, err := a.remoteOptions(ctx, in.Source)
	if err != nil {
		return res, err
	}
	dstOpts, err := a.remoteOptions(ctx, in.Destination)
	if err != nil {
		return res, err
	}
	target := in.Repository
	if in.TargetRepository != "" {
		target = in.TargetRepository
	}
	into := fmt.Sprintf("replicate %s:%s into registry %s (%s)", target, in.Tag, in.Destination.Name, in.Destination.RegionName())
	if in.ReferrersOnly {
		return a.followReferrers(ctx, in, src, target, srcOpts, dstOpts)
	}

	// What the destination tags point at now decides what to write at all;
	// a conflict fails before anything is written.
	var todo []name.Reference
	for _, tag := range append([]string{in.Tag}, in.Tags...) {
		dst, err := reference(in.Destination, target, tag)
		if err != nil {
			return res, err
		}
		cur, err := digestAt(ctx, dst, dstOpts, into)
		switch {
		case err != nil:
			return res, err
		case cur == in.Digest:
			continue
		case cur != "" && in.ImmutableTags && !chain.Movable(tag):
			return res, temporal.NewNonRetryableApplicationError(
				fmt.Sprintf("%s: tag %s exists with digest %s and is immutable (the chain's immutableTags: every tag but latest)", into, tag, cur), ErrTagConflict, nil)
		case cur != "" && !in.Overwrite:
			return res, temporal.NewNonRetryableApplicationError(
				fmt.Sprintf("%s: tag %s exists with digest %s and the rule's overwrite is off", into, tag, cur), ErrTagConflict, nil)
		}
		todo = append(todo, dst)
	}
	res.AlreadyPresent = len(todo) == 0
	dst, err := reference(in.Destination, target, in.Digest)
	if err != nil {
		return res, err
	}
	// The image goes in by digest while the artifacts attached to it are
	// read and their blobs copied (also when the image was there already:
	// a signature may have been added since); they are written once it is
	// there, and the tags last: a tag in a region comes with its
	// signatures and attestations.
	c := &counter{}
	// Heartbeats report progress (`dchain run show` and the Web UI's pending
	// activities read them); they are also how a canceled run reaches this
	// activity: the context ends.
	progress := func() workflows.ReplicateProgress {
		return workflows.ReplicateProgress{Reference: dst.Context().Tag(in.Tag).String(),
			BytesCopied: c.bytes.Load(), BytesTotal: c.totalBytes.Load(), BlobsCopied: c.blobs.Load(), BlobsTotal: c.totalBlobs.Load()}
	}
	stop := a.every(ctx, func() { activity.RecordHeartbeat(ctx, progress()) })
	defer stop()
	var desc *remote.Descriptor
	var copyErr error
	copyCtx, cancelCopy := context.WithCancel(ctx)
	defer cancelCopy()
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		if len(todo) > 0 {
			desc, copyErr = a.copyImage(copyCtx, in, src, dst.Context().Digest(in.Digest), c, srcOpts, dstOpts, into, &res)
		}
	}()
	imageThere := func() error {
		select {
		case <-copied:
			if copyErr != nil {
				return errImageNotCopied
			}
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	var refErr error
	if !in.SkipReferrers {
		res.Referrers, refErr = a.copyReferrers(ctx, src.Context(), dst.Context(), in.Destination, in.Digest, srcOpts, dstOpts, imageThere)
	}
	if refErr != nil {
		cancelCopy() // the attempt fails: no need to finish the copy first
	}
	<-copied
	switch {
	case refErr != nil && !errors.Is(refErr, errImageNotCopied):
		return res, registryError(ctx, into+": referrers", refErr)
	case copyErr != nil:
		return res, copyErr
	case len(todo) > 0:
		return res, a.writeTags(ctx, in, todo, desc, dstOpts, into, progress())
	}
	return res, nil
}

// errImageNotCopied stops a copy's referrers when its image's copy failed
// (that failure is the one reported).
var errImageNotCopied = errors.New("the image was not copied")

// followReferrers copies the referrers of the image to a destination that
// has it; one that does not is left alone (NotPresent).
func (a *Activities) followReferrers(ctx context.Context, in workflows.ReplicateInput, src name.Reference, target string, srcOpts, dstOpts []remote.Option) (workflows.ReplicateResult, error) {
	res := workflows.ReplicateResult{Digest: in.Digest}
	dst, err := reference(in.Destination, target, in.Digest)
	if err != nil {
		return res, err
	}
	what := fmt.Sprintf("follow the referrers of %s@%s into registry %s (%s)", target, in.Digest, in.Destination.Name, in.Destination.RegionName())
	if _, err := remote.Head(dst, dstOpts...); isNotFound(err) {
		res.NotPresent = true
		return res, nil
	} else if err != nil {
		return res, registryError(ctx, what, err)
	}
	res.Referrers, err = a.copyReferrers(ctx, src.Context(), dst.Context(), in.Destination, in.Digest, srcOpts, dstOpts, nil)
	return res, registryError(ctx, what, err)
}

// copyImage writes the image (or index) at byDigest and returns it,
// counting in c what it copies.
func (a *Activities) copyImage(ctx context.Context, in workflows.ReplicateInput, src name.Reference, byDigest name.Digest, c *counter,
	srcOpts, dstOpts []remote.Option, into string, res *workflows.ReplicateResult) (*remote.Descriptor, error) {
	desc, err := remote.Get(src, srcOpts...)
	if err != nil {
		return nil, registryError(ctx, fmt.Sprintf("read %s from registry %s", src, in.Source.Name), err)
	}
	total, totalBytes, err := countBlobs(desc) // (refuses a foreign layer on the way)
	if err != nil {
		return nil, registryError(ctx, into, err)
	}
	c.totalBlobs.Store(int64(total))
	c.totalBytes.Store(totalBytes)
	// A copy that moves no bytes for the stall timeout (a registry holding
	// the connection open and sending nothing) ends its attempt; the
	// retry starts again.
	ctx, stopWatch := watchStall(ctx, a.stallTimeout(), c.bytes.Load)
	defer stopWatch()
	srcOpts = append(slices.Clip(srcOpts), remote.WithContext(ctx))
	dstOpts = append(slices.Clip(dstOpts), remote.WithJobs(a.jobs()), remote.WithContext(ctx))
	c.src = &sharedSource{a: a, ctx: ctx, repo: src.Context(), opts: srcOpts, alone: in.Alone}
	// A rename or a promotion (another repository than the source's) asks
	// the destination registry to mount each blob it lacks here from the
	// source's repository name there (where the chain delivers it, or the
	// source itself within one registry): a blob already held moves no
	// byte. Where it is not there, the registry says so and the blob is
	// uploaded as usual.
	if from := byDigest.Context().Registry.Repo(src.Context().RepositoryStr()); from.String() != byDigest.Context().String() {
		c.mountFrom = &from
	}
	if desc.MediaType.IsIndex() {
		idx, err := desc.ImageIndex()
		if err != nil {
			return nil, registryError(ctx, into, err)
		}
		err = remote.WriteIndex(byDigest, &countingIndex{idx, c}, dstOpts...)
	} else {
		img, err2 := desc.Image()
		if err2 != nil {
			return nil, registryError(ctx, into, err2)
		}
		err = remote.Write(byDigest, &countingImage{img, c}, dstOpts...)
	}
	if err != nil {
		return nil, registryError(ctx, into, err)
	}
	copied := int(c.blobs.Load())
	res.BytesCopied, res.BlobsCopied, res.BlobsSkipped, res.BytesTotal = c.bytes.Load(), copied, max(total-copied, 0), totalBytes
	return desc, nil
}

// writeTags points the tags of todo at the image, only if the run still
// wants them (a canceled run writes no tag), and verifies every tag's
// digest.
func (a *Activities) writeTags(ctx context.Context, in workflows.ReplicateInput, todo []name.Reference, desc *remote.Descriptor, dstOpts []remote.Option, into string,
	progress workflows.ReplicateProgress) error {
	if err := a.stillWanted(ctx, progress); err != nil {
		return err
	}
	for _, dst := range todo {
		if err := a.writeTag(ctx, in, dst.(name.Tag), desc, dstOpts, into); err != nil {
			return err
		}
	}
	for _, dst := range todo {
		got, err := remote.Head(dst, dstOpts...)
		if err != nil {
			return registryError(ctx, "verify "+into, err)
		}
		if got.Digest.String() != in.Digest {
			return temporal.NewApplicationError(
				fmt.Sprintf("%s: destination %s has digest %s, source has %s", into, dst, got.Digest, in.Digest), ErrDigestMismatch)
		}
	}
	return nil
}

// writeTag points dst at the image. Without overwrite (or for an
// immutable tag) the tag is looked at again right before it is written:
// another writer may have made it during the copy. Copies in this worker
// check and write one tag one at a time, so two of them cannot both find
// it free; against other processes a window of one round trip remains
// (the distribution API has no conditional manifest PUT).
func (a *Activities) writeTag(ctx context.Context, in workflows.ReplicateInput, dst name.Tag, desc *remote.Descriptor, dstOpts []remote.Option, into string) error {
	if in.Overwrite && !(in.ImmutableTags && !chain.Movable(dst.TagStr())) {
		return registryError(ctx, into, remote.Tag(dst, desc, dstOpts...))
	}
	mu, _ := a.tagLocks.LoadOrStore(dst.String(), &sync.Mutex{})
	mu.(*sync.Mutex).Lock()
	defer mu.(*sync.Mutex).Unlock()
	cur, err := digestAt(ctx, dst, dstOpts, into)
	switch {
	case err != nil:
		return err
	case cur == in.Digest:
		return nil
	case cur != "":
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf(
			"%s: tag %s was written by someone else during the copy (now digest %s) and the rule's overwrite is off (or the tag is immutable); it was left as it is",
			into, dst.TagStr(), cur), ErrTagConflict, nil)
	}
	return registryError(ctx, into, remote.Tag(dst, desc, dstOpts...))
}

func (a *Activities) jobs() int {
	if a.Jobs > 0 {
		return a.Jobs
	}
	return 4
}

func isNotFound(err error) bool {
	var te *transport.Error
	return errors.As(err, &te) && te.StatusCode == http.StatusNotFound
}

// countBlobs counts the distinct blobs (layers and configs) below desc
// and their bytes; an image with a foreign layer fails it (foreignLayer),
// in the same walk of the manifests.
func countBlobs(desc *remote.Descriptor) (int, int64, error) {
	seen := map[v1.Hash]int64{}
	err := eachImage(desc, func(m *v1.Manifest, p *v1.Platform) error {
		if err := foreignLayer(m, p); err != nil {
			return err
		}
		seen[m.Config.Digest] = m.Config.Size
		for _, l := range m.Layers {
			seen[l.Digest] = l.Size
		}
		return nil
	})
	var bytes int64
	for _, n := range seen {
		bytes += n
	}
	return len(seen), bytes, err
}

// eachImage calls f with the manifest of desc, a single image, or of each
// image of desc, an index, with its platform.
func eachImage(desc *remote.Descriptor, f func(m *v1.Manifest, p *v1.Platform) error) error {
	if !desc.MediaType.IsIndex() {
		img, err := desc.Image()
		if err != nil {
			return err
		}
		m, err := img.Manifest()
		if err != nil {
			return err
		}
		return f(m, nil)
	}
	idx, children, err := indexChildren(desc)
	if err != nil {
		return err
	}
	for _, c := range children {
		if !c.MediaType.IsImage() {
			continue
		}
		img, err := idx.Image(c.Digest)
		if err != nil {
			return err
		}
		m, err := img.Manifest()
		if err != nil {
			return err
		}
		if err := f(m, c.Platform); err != nil {
			return err
		}
	}
	return nil
}

// indexChildren is the index desc and the descriptors of its manifests.
func indexChildren(desc *remote.Descriptor) (v1.ImageIndex, []v1.Descriptor, error) {
	idx, err := desc.ImageIndex()
	if err != nil {
		return nil, nil, err
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, nil, err
	}
	return idx, im.Manifests, nil
}

// counter counts what a replication actually uploads.
type counter struct {
	bytes atomic.Int64
	blobs atomic.Int64
	// totalBlobs and totalBytes are the image's, once read.
	totalBlobs, totalBytes atomic.Int64
	// src, when set, reads the blobs through the worker's blob share.
	src *sharedSource
	// mountFrom, when set, is a repository of the destination registry to
	// mount blobs from (a cross-repository mount) before uploading them.
	mountFrom *name.Repository
}

// layer wraps l to count its upload, and to be mounted from mountFrom
// when set.
func (c *counter) layer(l v1.Layer) (v1.Layer, error) {
	cl := &countingLayer{l, c}
	if c.mountFrom == nil {
		return cl, nil
	}
	d, err := l.Digest()
	if err != nil {
		return nil, err
	}
	return &remote.MountableLayer{Layer: cl, Reference: c.mountFrom.Digest(d.String())}, nil
}

// sharedSource opens a source repository's blobs through the worker's
// blob share, so copies of the same image running at once (a fan-out to
// several destinations) read each blob from the source once; a copy that
// runs alone streams each blob from the source to the destination.
type sharedSource struct {
	a     *Activities
	ctx   context.Context // the copy's
	repo  name.Repository
	opts  []remote.Option
	alone bool
}

func (s *sharedSource) open(l v1.Layer) (io.ReadCloser, error) {
	d, err := l.Digest()
	if err != nil {
		return nil, err
	}
	size, err := l.Size()
	if err != nil {
		return nil, err
	}
	fetch := func(ctx context.Context) (io.ReadCloser, error) {
		// (Clip: concurrent downloads must not append into one array.)
		layer, err := remote.Layer(s.repo.Digest(d.String()), append(slices.Clip(s.opts), remote.WithContext(ctx))...)
		if err != nil {
			return nil, err
		}
		return layer.Compressed() // verified against d as it is read
	}
	if s.alone {
		return fetch(s.ctx)
	}
	// The download outlives the copy that started it (others read it too):
	// it has a context of its own, canceled when no copy reads.
	rc, err := s.a.blobs.open(s.a.TempDir, s.repo.String()+"@"+d.String(), size, s.a.stallTimeout(), fetch)
	if errors.Is(err, errNoRoom) {
		return fetch(s.ctx) // this copy reads the blob from the source itself
	}
	return rc, err
}

// countingIndex, countingImage and countingLayer pass an image through
// unchanged (same manifests, same digests) while counting the blobs that
// ggcr streams to the destination: it opens a layer only to upload it.
type countingIndex struct {
	idx v1.ImageIndex
	c   *counter
}

func (i *countingIndex) MediaType() (types.MediaType, error)       { return i.idx.MediaType() }
func (i *countingIndex) Digest() (v1.Hash, error)                  { return i.idx.Digest() }
func (i *countingIndex) Size() (int64, error)                      { return i.idx.Size() }
func (i *countingIndex) IndexManifest() (*v1.IndexManifest, error) { return i.idx.IndexManifest() }
func (i *countingIndex) RawManifest() ([]byte, error)              { return i.idx.RawManifest() }

func (i *countingIndex) Image(h v1.Hash) (v1.Image, error) {
	img, err := i.idx.Image(h)
	if err != nil {
		return nil, err
	}
	return &countingImage{img, i.c}, nil
}

func (i *countingIndex) ImageIndex(h v1.Hash) (v1.ImageIndex, error) {
	idx, err := i.idx.ImageIndex(h)
	if err != nil {
		return nil, err
	}
	return &countingIndex{idx, i.c}, nil
}

type countingImage struct {
	v1.Image
	c *counter
}

func (i *countingImage) Layers() ([]v1.Layer, error) {
	ls, err := i.Image.Layers()
	if err != nil {
		return nil, err
	}
	out := make([]v1.Layer, len(ls))
	for j, l := range ls {
		if out[j], err = i.c.layer(l); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// ConfigLayer wraps the config blob too, so its upload is counted.
func (i *countingImage) ConfigLayer() (v1.Layer, error) {
	l, err := partial.ConfigLayer(i.Image)
	if err != nil {
		return nil, err
	}
	return i.c.layer(l)
}

func (i *countingImage) LayerByDigest(h v1.Hash) (v1.Layer, error) {
	l, err := i.Image.LayerByDigest(h)
	if err != nil {
		return nil, err
	}
	return i.c.layer(l)
}

type countingLayer struct {
	v1.Layer
	c *counter
}

func (l *countingLayer) Compressed() (io.ReadCloser, error) {
	var rc io.ReadCloser
	var err error
	if l.c.src != nil {
		rc, err = l.c.src.open(l.Layer)
	} else {
		rc, err = l.Layer.Compressed()
	}
	if err != nil {
		return nil, err
	}
	l.c.blobs.Add(1)
	return &countingReader{rc, l.c}, nil
}

type countingReader struct {
	io.ReadCloser
	c *counter
}

func (r *countingReader) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	r.c.bytes.Add(int64(n))
	return n, err
}

// stillWanted asks the server, now, whether the run still wants this
// activity's work: a cancellation otherwise reaches the activity only with
// its next (throttled) heartbeat, seconds later. It is asked right before
// a copy points destination tags at the image — the one write a canceled
// run must not make. On a cancellation it waits for the activity's context
// to end (the SDK then reports the activity canceled) and returns its error.
func (a *Activities) stillWanted(ctx context.Context, details any) error {
	if a.Temporal == nil || !activity.IsActivity(ctx) {
		return ctx.Err()
	}
	err := a.Temporal.RecordActivityHeartbeat(ctx, activity.GetInfo(ctx).TaskToken, details)
	if !temporal.IsCanceledError(err) {
		return ctx.Err() // a failed check is no reason to stop a copy
	}
	activity.RecordHeartbeat(ctx, details)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(2 * heartbeatWait):
		return temporal.NewCanceledError("the run was canceled")
	}
}

// heartbeatWait bounds how long a canceled activity waits for its context
// to end (the SDK throttles heartbeats to 80% of the heartbeat timeout).
const heartbeatWait = 10 * time.Second
