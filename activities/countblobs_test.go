package activities

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// countBlobs counts a single image's config and layers (it read the count
// before adding the image), and an index's distinct blobs.
func TestCountBlobs(t *testing.T) {
	srv := httptest.NewServer(registry.New())
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")

	img, err := random.Image(64, 3)
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := name.ParseReference(host + "/demo/one:v1")
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Get(ref)
	if err != nil {
		t.Fatal(err)
	}
	var want int64
	m, _ := img.Manifest()
	want = m.Config.Size
	for _, l := range m.Layers {
		want += l.Size
	}
	if n, bytes, err := countBlobs(desc); err != nil || n != 4 || bytes != want {
		t.Fatalf("single image: %d blobs, %d bytes (%v), want 4 (config + 3 layers), %d bytes", n, bytes, err, want)
	}

	idx, err := random.Index(64, 2, 2)
	if err != nil {
		t.Fatal(err)
	}
	ref, _ = name.ParseReference(host + "/demo/multi:v1")
	if err := remote.WriteIndex(ref, idx); err != nil {
		t.Fatal(err)
	}
	if desc, err = remote.Get(ref); err != nil {
		t.Fatal(err)
	}
	if n, _, err := countBlobs(desc); err != nil || n != 6 {
		t.Fatalf("index: %d blobs (%v), want 6 (2 × (config + 2 layers))", n, err)
	}
}
