package activities_test

import (
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/dchain-dev/dchain/chain"
	"github.com/dchain-dev/dchain/workflows"
)

// A copy into a registry without the referrers API (distribution) writes
// the image, then what is attached to it, listed with one write of the
// referrers tag, and the tag last: when the tag is in the region, its
// signatures are too.
func TestCopyWritesAttachmentsBeforeTheTag(t *testing.T) {
	src, digest := sourceWithSample(t)
	dst := startRegistry(t, "dst")
	repo, _ := name.NewRepository(src.Addr+"/apps/web", name.Insecure)
	desc, err := remote.Get(repo.Digest(digest))
	if err != nil {
		t.Fatal(err)
	}
	var attached []string
	for _, text := range []string{"signature", "sbom", "provenance"} {
		img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
		img = mutate.ConfigMediaType(img, types.MediaType("application/vnd.dchain.test."+text))
		img, _ = mutate.Append(img, mutate.Addendum{Layer: static.NewLayer([]byte(text), "text/plain")})
		img = mutate.Subject(img, desc.Descriptor).(v1.Image)
		d, _ := img.Digest()
		if err := remote.Write(repo.Digest(d.String()), img); err != nil {
			t.Fatal(err)
		}
		attached = append(attached, d.String())
	}

	// The manifest writes the destination receives, in order.
	var mu sync.Mutex
	var puts []string
	dstAddr := watched(t, dst.Addr, func(r *http.Request) {
		if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/manifests/") {
			mu.Lock()
			puts = append(puts, r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:])
			mu.Unlock()
		}
	})
	res := replicate(t, workflows.ReplicateInput{
		Source:      chain.Registry{Name: "src", Address: src.Addr, Insecure: true},
		Destination: chain.Registry{Name: "dst", Address: dstAddr, Insecure: true},
		Repository:  "apps/web", Tag: "v1", Digest: digest,
	})
	if res.Referrers != len(attached) {
		t.Errorf("%d referrers copied, want %d", res.Referrers, len(attached))
	}
	at := func(what string) int { return slices.Index(puts, what) }
	fallback := strings.Replace(digest, ":", "-", 1)
	for _, d := range attached {
		if at(d) < 0 || at(d) < at(digest) || at(d) > at("v1") {
			t.Errorf("attachment %s written at %d, the image at %d, the tag at %d: %v", d, at(d), at(digest), at("v1"), puts)
		}
	}
	n := 0
	for _, p := range puts {
		if p == fallback {
			n++
		}
	}
	if n != 1 || at(fallback) > at("v1") {
		t.Errorf("the referrers tag written %d times, at %d (the tag at %d)", n, at(fallback), at("v1"))
	}
	ref, err := name.NewDigest(dst.Addr+"/apps/web@"+digest, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := remote.Referrers(ref)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := idx.IndexManifest()
	var listed []string
	for _, d := range m.Manifests {
		listed = append(listed, d.Digest.String())
	}
	slices.Sort(listed)
	slices.Sort(attached)
	if !slices.Equal(listed, attached) {
		t.Errorf("the destination lists %v, want %v", listed, attached)
	}
}
