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
// layer's annotation names; asked again, the variant is found, not made.
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
		var s testsuite.WorkflowTestSuite
		env := s.NewTestActivityEnvironment()
		a := &Activities{TempDir: t.TempDir()}
		env.RegisterActivity(a.AccelerateImage)
		v, err := env.ExecuteActivity(a.AccelerateImage, in)
		if err != nil {
			t.Fatal(err)
		}
		var res workflows.Accelerated
		if err := v.Get(&res); err != nil {
			t.Fatal(err)
		}
		return res
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
	if again := run(); !again.Reused || again.Digest != res.Digest {
		t.Fatalf("again: %+v", again)
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
