package devstack

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"

	"github.com/dchain-dev/dchain/activities"
	"github.com/dchain-dev/dchain/chain"
	"github.com/dchain-dev/dchain/workflows"
)

// A chain with accelerate: estargz delivers the image's eStargz variant to
// every region next to it. The estargz library's own reader opens every
// converted layer in every region, verifies its table of contents at the
// digest the layer's annotation names, and finds every file of the
// original layer with the same content — though a hostile pusher had put a
// forged "variant" of the digest under the tag first. The same digest
// delivered under another tag is not converted again: the record of the
// first conversion (its Temporal workflow) names the variant.
func TestAcceleratedVariantInEveryRegion(t *testing.T) {
	l, ch := testChain("it-accel", "accel/app")
	ch.Accelerate = chain.AccelerateEstargz
	ch.Scan = &chain.Scan{Mode: chain.ModeNonBlocking, Conditions: critical, Action: chain.ActionDeleteTag}
	l.Chains[0] = ch
	ctx := context.Background()
	idx, err := SampleImage("v1")
	if err != nil {
		t.Fatal(err)
	}
	d, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	// A hostile pusher prepares a "variant" of the digest it is about to
	// push: its own content, annotated as made from that digest. It is
	// neither reused nor delivered: only the record of a conversion is.
	forged, err := random.Image(1024, 1)
	if err != nil {
		t.Fatal(err)
	}
	forged = mutate.Annotations(forged, map[string]string{activities.AnnotationAcceleratedFrom: d.String(), activities.AnnotationAcceleratedFormat: "estargz"}).(v1.Image)
	fref, _ := name.ParseReference(stack.Endpoints.Registries["src"]+"/accel/app:v1_accelerated", name.Insecure)
	if err := remote.Write(fref, forged); err != nil {
		t.Fatal(err)
	}
	digest, err := pushIndex(ctx, stack.Endpoints.Registries["src"]+"/accel/app:v1", idx)
	if err != nil {
		t.Fatal(err)
	}
	st := waitRun(t, startRun(t, l, "accel/app:v1").WorkflowID, 3*time.Minute)
	acc := st.Accelerated
	if st.Outcome != workflows.OutcomeSucceeded || acc == nil || acc.Reused || len(acc.Platforms) != 2 || acc.Layers == 0 {
		t.Fatalf("%s %s: %+v", st.Outcome, st.Message, acc)
	}
	if s := st.Stage(workflows.StageAccelerate); !strings.Contains(s.Message, "not scanned again") {
		t.Fatalf("the accelerate stage: %+v", s)
	}
	for _, reg := range []string{"eu", "us"} {
		assertReplicated(t, reg, "accel/app", "v1", digest)
		checkVariant(t, reg, idx, acc.Digest)
	}
	recordHistory(t, workflows.WorkflowID(st.Chain, st.Image), "chainrun-accelerated.json")

	// The same image under another tag: its variant is found, not made again.
	if _, err := pushIndex(ctx, stack.Endpoints.Registries["src"]+"/accel/app:v2", idx); err != nil {
		t.Fatal(err)
	}
	st2 := waitRun(t, startRun(t, l, "accel/app:v2").WorkflowID, 3*time.Minute)
	if st2.Outcome != workflows.OutcomeSucceeded || st2.Accelerated == nil || !st2.Accelerated.Reused || st2.Accelerated.Digest != acc.Digest {
		t.Fatalf("the same digest again: %s %s %+v", st2.Outcome, st2.Message, st2.Accelerated)
	}
	ref, _ := name.ParseReference(stack.Endpoints.Registries["us"]+"/accel/app:v2_accelerated", name.Insecure)
	if d, err := remote.Head(ref); err != nil || d.Digest.String() != acc.Digest {
		t.Fatalf("us v2_accelerated: %v %v", d, err)
	}
}

// checkVariant checks, in registry reg, that accel/app:v1_accelerated is
// the variant (digest want) of orig: per platform, every layer an eStargz
// blob whose TOC verifies and holds every file of the original layer.
func checkVariant(t *testing.T, reg string, orig v1.ImageIndex, want string) {
	t.Helper()
	ref, _ := name.ParseReference(stack.Endpoints.Registries[reg]+"/accel/app:v1_accelerated", name.Insecure)
	vidx, err := remote.Index(ref)
	if err != nil {
		t.Fatalf("%s: %v", reg, err)
	}
	if d, _ := vidx.Digest(); d.String() != want {
		t.Fatalf("%s: variant %s, want %s", reg, d, want)
	}
	vm, _ := vidx.IndexManifest()
	if vm.Annotations[activities.AnnotationAcceleratedFrom] == "" {
		t.Fatalf("%s: the variant does not say what it was made from: %v", reg, vm.Annotations)
	}
	om, _ := orig.IndexManifest()
	for _, o := range om.Manifests {
		if o.Platform == nil {
			continue
		}
		oimg, _ := orig.Image(o.Digest)
		var v v1.Descriptor
		for _, c := range vm.Manifests {
			if c.Platform != nil && c.Platform.Equals(*o.Platform) {
				v = c
			}
		}
		if v.Digest.Hex == "" {
			t.Fatalf("%s: no variant for %s", reg, o.Platform)
		}
		vimg, err := vidx.Image(v.Digest)
		if err != nil {
			t.Fatal(err)
		}
		olayers, _ := oimg.Layers()
		vmf, _ := vimg.Manifest()
		if len(vmf.Layers) != len(olayers) {
			t.Fatalf("%s %s: %d layers, want %d", reg, o.Platform, len(vmf.Layers), len(olayers))
		}
		for i, ld := range vmf.Layers {
			vl, _ := vimg.LayerByDigest(ld.Digest)
			r := openStargz(t, vl, ld.Annotations[estargz.TOCJSONDigestAnnotation])
			files := 0
			forEachFile(t, olayers[i], func(name string, content []byte) {
				files++
				e, ok := r.Lookup(name)
				if !ok {
					t.Fatalf("%s %s layer %d: %s is not in the eStargz layer", reg, o.Platform, i, name)
				}
				sr, err := r.OpenFile(name)
				if err != nil {
					t.Fatal(err)
				}
				got, _ := io.ReadAll(io.NewSectionReader(sr, 0, e.Size))
				if !bytes.Equal(got, content) {
					t.Fatalf("%s %s layer %d: %s differs", reg, o.Platform, i, name)
				}
			})
			if files == 0 {
				t.Fatalf("%s %s layer %d: the original layer has no files to compare", reg, o.Platform, i)
			}
		}
	}
}

// openStargz opens a layer blob with the estargz library and verifies its
// table of contents at toc.
func openStargz(t *testing.T, l v1.Layer, toc string) *estargz.Reader {
	t.Helper()
	rc, err := l.Compressed()
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	r, err := estargz.Open(io.NewSectionReader(bytes.NewReader(b), 0, int64(len(b))))
	if err != nil {
		t.Fatalf("not an eStargz blob: %v", err)
	}
	d, err := digest.Parse(toc)
	if err != nil {
		t.Fatalf("TOC digest annotation %q: %v", toc, err)
	}
	if _, err := r.VerifyTOC(d); err != nil {
		t.Fatalf("TOC at %s: %v", toc, err)
	}
	return r
}

// forEachFile calls f with every regular file of the layer's tar.
func forEachFile(t *testing.T, l v1.Layer, f func(name string, content []byte)) {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			b, _ := io.ReadAll(tr)
			f(strings.TrimPrefix(h.Name, "./"), b)
		}
	}
}
