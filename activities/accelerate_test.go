package activities

import (
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"
	"go.temporal.io/sdk/testsuite"

	"github.com/dchain-dev/dchain/chain"
	"github.com/dchain-dev/dchain/workflows"
)

// An index's variant: every platform converted, each layer an eStargz blob
// whose table of contents the estargz reader verifies at the digest the
// layer's annotation names, under every tag asked for.
func TestAccelerateImage(t *testing.T) {
	srv := httptest.NewServer(registryNew(t))
	defer srv.Close()
	reg := chain.Registry{Name: "hz", Address: strings.TrimPrefix(srv.URL, "http://"), Insecure: true}
	var adds []mutate.IndexAddendum
	for _, arch := range []string{"amd64", "arm64"} {
		img, err := random.Image(2048, 2)
		if err != nil {
			t.Fatal(err)
		}
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}}})
	}
	idx := mutate.AppendManifests(empty.Index, adds...)
	ref, _ := name.ParseReference(reg.Address+"/demo/app:v1", name.Insecure)
	if err := remote.WriteIndex(ref, idx); err != nil {
		t.Fatal(err)
	}
	d, _ := idx.Digest()
	in := workflows.AccelerateInput{Registry: reg, Repository: "demo/app", Digest: d.String(), Format: chain.AccelerateEstargz, Tags: []string{"v1_accelerated", "latest_accelerated"}}
	run := func() workflows.Accelerated {
		env := (&testsuite.WorkflowTestSuite{}).NewTestActivityEnvironment()
		a := &Activities{TempDir: t.TempDir()}
		env.RegisterActivity(a.AccelerateImage)
		return runActivity[workflows.Accelerated](t, env, a.AccelerateImage, in)
	}
	res := run()
	if res.Reused || res.Layers != 4 || res.BytesOut == 0 || len(res.Platforms) != 2 {
		t.Fatalf("first: %+v", res)
	}
	for _, tag := range in.Tags {
		r, _ := name.ParseReference(reg.Address+"/demo/app:"+tag, name.Insecure)
		desc, err := remote.Get(r)
		if err != nil || desc.Digest.String() != res.Digest {
			t.Fatalf("%s: %v %v", tag, desc, err)
		}
	}
	r, _ := name.ParseReference(reg.Address+"/demo/app@"+res.Digest, name.Insecure)
	vidx, err := remote.Index(r)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := vidx.IndexManifest()
	if m.Annotations[AnnotationAcceleratedFrom] != d.String() {
		t.Fatalf("index annotations %v", m.Annotations)
	}
	for _, c := range m.Manifests {
		img, _ := vidx.Image(c.Digest)
		mf, _ := img.Manifest()
		for _, l := range mf.Layers {
			toc := l.Annotations[estargz.TOCJSONDigestAnnotation]
			layer, _ := img.LayerByDigest(l.Digest)
			if err := openEstargz(layer, toc); err != nil {
				t.Fatalf("%s layer %s: %v", c.Platform, l.Digest, err)
			}
		}
	}
}

// An index without a Linux image has no variant, and says why.
func TestAccelerateSkipsOtherOSes(t *testing.T) {
	srv := httptest.NewServer(registryNew(t))
	defer srv.Close()
	reg := chain.Registry{Name: "hz", Address: strings.TrimPrefix(srv.URL, "http://"), Insecure: true}
	img, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	idx := mutate.AppendManifests(empty.Index, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "windows", Architecture: "amd64"}}})
	ref, _ := name.ParseReference(reg.Address+"/demo/win:v1", name.Insecure)
	if err := remote.WriteIndex(ref, idx); err != nil {
		t.Fatal(err)
	}
	d, _ := idx.Digest()
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	a := &Activities{TempDir: t.TempDir()}
	env.RegisterActivity(a.AccelerateImage)
	v, err := env.ExecuteActivity(a.AccelerateImage, workflows.AccelerateInput{Registry: reg, Repository: "demo/win", Digest: d.String(), Format: chain.AccelerateEstargz, Tags: []string{"v1_accelerated"}})
	var res workflows.Accelerated
	if err == nil {
		err = v.Get(&res)
	}
	if err != nil || res.Digest != "" || !strings.Contains(res.Skipped, "no Linux image") {
		t.Fatalf("%+v %v", res, err)
	}
}

// openEstargz reads the layer's blob with the estargz library and checks
// its table of contents against toc.
func openEstargz(l v1.Layer, toc string) error {
	rc, err := l.Compressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return err
	}
	r, err := estargz.Open(io.NewSectionReader(strings.NewReader(string(b)), 0, int64(len(b))))
	if err != nil {
		return err
	}
	dgst, err := digest.Parse(toc)
	if err != nil {
		return err
	}
	_, err = r.VerifyTOC(dgst)
	return err
}

func registryNew(t *testing.T) http.Handler {
	t.Helper()
	return registry.New(registry.Logger(log.New(io.Discard, "", 0)))
}

// A blocked digest's accelerated variant goes with its tags; a tag holding
// something else is left alone.
func TestBlockDeletesTheVariant(t *testing.T) {
	srv := httptest.NewServer(registryNew(t))
	defer srv.Close()
	reg := chain.Registry{Name: "hz", Address: strings.TrimPrefix(srv.URL, "http://"), Insecure: true}
	put := func(tag string, ann map[string]string) v1.Image {
		img, err := random.Image(256, 1)
		if err != nil {
			t.Fatal(err)
		}
		if ann != nil {
			img = mutate.Annotations(img, ann).(v1.Image)
		}
		ref, _ := name.ParseReference(reg.Address+"/demo/app:"+tag, name.Insecure)
		if err := remote.Write(ref, img); err != nil {
			t.Fatal(err)
		}
		return img
	}
	orig := put("v1", nil)
	d, _ := orig.Digest()
	put("v1_accelerated", map[string]string{AnnotationAcceleratedFrom: d.String()})
	put("v2_accelerated", map[string]string{AnnotationAcceleratedFrom: "sha256:" + strings.Repeat("0", 64)})
	res, err := (&Activities{}).ApplyBlockAction(t.Context(), workflows.BlockInput{Registry: reg, Repository: "demo/app", Tags: []string{"v1"},
		Digest: d.String(), Action: chain.ActionDeleteTag, Variants: []string{"v1_accelerated", "v2_accelerated", "v3_accelerated"}})
	if err != nil || strings.Join(res.Deleted, ",") != "demo/app:v1,demo/app:v1_accelerated" {
		t.Fatalf("%+v %v", res, err)
	}
	ref, _ := name.ParseReference(reg.Address+"/demo/app:v2_accelerated", name.Insecure)
	if _, err := remote.Head(ref); err != nil {
		t.Fatalf("another digest's tag was deleted: %v", err)
	}
}
