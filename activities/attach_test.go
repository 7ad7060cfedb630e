package activities

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"go.temporal.io/sdk/temporal"

	"github.com/dchain-dev/dchain/chain"
)

// attachRegistry is an in-memory registry (with or without the referrers
// API) that counts the writes of referrers tags; race, when set, runs
// after the first such write is answered (another writer).
type attachRegistry struct {
	srv        *httptest.Server
	reg        chain.Registry
	repo       name.Repository
	tagWrites  atomic.Int32
	manifestsN atomic.Int32
	race       func()
	raced      atomic.Bool
}

func newAttachRegistry(t *testing.T, api bool) *attachRegistry {
	r := &attachRegistry{}
	h := registry.New(registry.WithReferrersSupport(api), registry.Logger(log.New(io.Discard, "", 0)))
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		h.ServeHTTP(w, req)
		if req.Method != http.MethodPut || !strings.Contains(req.URL.Path, "/manifests/") {
			return
		}
		if strings.Contains(req.URL.Path, "/manifests/sha256-") {
			r.tagWrites.Add(1)
			if r.race != nil && r.raced.CompareAndSwap(false, true) {
				r.race()
			}
		} else {
			r.manifestsN.Add(1)
		}
	}))
	t.Cleanup(r.srv.Close)
	r.reg = chain.Registry{Name: "r", Address: strings.TrimPrefix(r.srv.URL, "http://"), Insecure: true}
	r.repo, _ = name.NewRepository(r.reg.Address+"/demo/app", name.Insecure)
	return r
}

// subject pushes an image and returns its descriptor.
func (r *attachRegistry) subject(t *testing.T) v1.Descriptor {
	img, _ := random.Image(64, 1)
	d, _ := img.Digest()
	if err := remote.Write(r.repo.Digest(d.String()), img); err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Get(r.repo.Digest(d.String()))
	if err != nil {
		t.Fatal(err)
	}
	return desc.Descriptor
}

// note is an artifact attached to subject, holding text.
func note(t *testing.T, subject v1.Descriptor, text string) artifact {
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, "application/vnd.dchain.test.note")
	img, err := mutate.Append(img, mutate.Addendum{Layer: static.NewLayer([]byte(text), "text/plain")})
	if err != nil {
		t.Fatal(err)
	}
	img = mutate.Annotations(img, map[string]string{"note": text}).(v1.Image)
	art, err := imageArtifact(mutate.Subject(img, subject).(v1.Image))
	if err != nil {
		t.Fatal(err)
	}
	return art
}

// listed is what the registry lists as referrers of subject (its API, or
// the referrers tag), as digest → the note annotation.
func (r *attachRegistry) listed(t *testing.T, subject v1.Hash) map[string]string {
	idx, err := remote.Referrers(r.repo.Digest(subject.String()))
	if err != nil {
		t.Fatal(err)
	}
	m, _ := idx.IndexManifest()
	out := map[string]string{}
	for _, d := range m.Manifests {
		if _, dup := out[d.Digest.String()]; dup {
			t.Errorf("%s listed twice", d.Digest)
		}
		out[d.Digest.String()] = d.Annotations["note"]
	}
	return out
}

// Attachments are written at once and listed, in the referrers tag of a
// registry without the API with one write per subject (not one per
// attachment), with their annotations; written again, nothing is.
func TestAttachListsTogether(t *testing.T) {
	for _, api := range []bool{true, false} {
		t.Run(map[bool]string{true: "referrers API", false: "tag scheme"}[api], func(t *testing.T) {
			r := newAttachRegistry(t, api)
			a := &Activities{}
			s1, s2 := r.subject(t), r.subject(t)
			arts := []artifact{note(t, s1, "a"), note(t, s1, "b"), note(t, s1, "c"), note(t, s2, "d")}
			got, err := a.attach(context.Background(), r.reg, r.repo, arts, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]string{got[0].String(): "a", got[1].String(): "b", got[2].String(): "c"}
			if api { // the registry's listing, with what it keeps (this one: no annotations)
				for k := range want {
					want[k] = ""
				}
			}
			if l := r.listed(t, s1.Digest); fmt.Sprint(l) != fmt.Sprint(want) {
				t.Fatalf("listed %v, want %v", l, want)
			}
			if l := r.listed(t, s2.Digest); len(l) != 1 || l[got[3].String()] != map[bool]string{true: "", false: "d"}[api] {
				t.Fatalf("listed %v for the second subject", l)
			}
			wantTags := map[bool]int32{true: 0, false: 2}[api]
			if n := r.tagWrites.Load(); n != wantTags || r.manifestsN.Load() != 4+2 {
				t.Fatalf("%d referrers tag writes (want %d), %d manifests", n, wantTags, r.manifestsN.Load())
			}
			if again, err := a.attach(context.Background(), r.reg, r.repo, arts, nil, nil); err != nil || !slices.Equal(again, got) {
				t.Fatalf("again: %v %v", again, err)
			}
			if n := r.tagWrites.Load(); n != wantTags || r.manifestsN.Load() != 4+2 {
				t.Fatalf("written again: %d tag writes, %d manifests", n, r.manifestsN.Load())
			}
		})
	}
}

// An attachment the registry holds but that its referrers tag does not list
// (a write cut short between the two) is listed; one another writer put in
// the tag while this one wrote it is kept, and this one's entries, which
// that writer's index lost, are written again.
func TestAttachRepairsAndMergesWithOtherWriters(t *testing.T) {
	r := newAttachRegistry(t, false)
	a := &Activities{}
	s := r.subject(t)
	cut := note(t, s, "cut short")
	client, err := a.registryClient(context.Background(), r.reg, r.repo, "push")
	if err != nil {
		t.Fatal(err)
	}
	d, _, _ := v1.SHA256(bytes.NewReader(cut.raw))
	for _, b := range cut.blobs {
		if err := remote.WriteLayer(r.repo, b); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := putManifest(context.Background(), client, r.repo.Digest(d.String()), cut); err != nil {
		t.Fatal(err)
	}
	if l := r.listed(t, s.Digest); len(l) != 0 {
		t.Fatalf("listed before: %v", l)
	}
	// Another writer replaces the tag's index right after this one's write,
	// with only its own entry.
	other := note(t, s, "other writer")
	od, _, _ := v1.SHA256(bytes.NewReader(other.raw))
	r.race = func() {
		for _, b := range other.blobs {
			_ = remote.WriteLayer(r.repo, b)
		}
		_, _ = putManifest(context.Background(), client, r.repo.Digest(od.String()), other)
		raw, _ := json.Marshal(v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex,
			Manifests: []v1.Descriptor{{MediaType: types.OCIManifestSchema1, Digest: od, Size: int64(len(other.raw)), Annotations: map[string]string{"note": "other writer"}}}})
		req, _ := http.NewRequest(http.MethodPut, r.srv.URL+"/v2/demo/app/manifests/"+strings.Replace(s.Digest.String(), ":", "-", 1), bytes.NewReader(raw))
		req.Header.Set("Content-Type", string(types.OCIImageIndex))
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}
	mine := note(t, s, "mine")
	got, err := a.attach(context.Background(), r.reg, r.repo, []artifact{cut, mine}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{got[0].String(): "cut short", got[1].String(): "mine", od.String(): "other writer"}
	if l := r.listed(t, s.Digest); fmt.Sprint(l) != fmt.Sprint(want) {
		t.Fatalf("listed %v, want %v", l, want)
	}
}

// A referrers tag that never keeps this writer's entries (another writer
// replaces it each time) fails the attach, saying so, after a few writes.
func TestAttachGivesUpOnATagOthersKeepReplacing(t *testing.T) {
	r := newAttachRegistry(t, false)
	a := &Activities{}
	s := r.subject(t)
	h := r.srv.Config.Handler
	r.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method == http.MethodGet && strings.Contains(req.URL.Path, "/manifests/sha256-") {
			http.Error(w, `{"errors":[{"code":"MANIFEST_UNKNOWN"}]}`, http.StatusNotFound) // what was written is gone
			return
		}
		h.ServeHTTP(w, req)
	})
	_, err := a.attach(context.Background(), r.reg, r.repo, []artifact{note(t, s, "x")}, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "other writers kept replacing the referrers tag's index (5 writes)") {
		t.Fatalf("err %v", err)
	}
	if n := r.tagWrites.Load(); n != fallbackWrites {
		t.Fatalf("%d writes", n)
	}
}

// A referrers tag that holds something else than the tag schema's OCI
// index (an image pushed under that name) is refused for good, saying so,
// and left as it is.
func TestAttachRefusesAReferrersTagThatIsNoIndex(t *testing.T) {
	r := newAttachRegistry(t, false)
	a := &Activities{}
	s := r.subject(t)
	img, _ := random.Image(16, 1)
	tag := r.repo.Tag(strings.Replace(s.Digest.String(), ":", "-", 1))
	if err := remote.Write(tag, img); err != nil {
		t.Fatal(err)
	}
	_, err := a.attach(context.Background(), r.reg, r.repo, []artifact{note(t, s, "x")}, nil, nil)
	var app *temporal.ApplicationError
	if !errors.As(err, &app) || !app.NonRetryable() || app.Type() != ErrRejected || !strings.Contains(app.Message(), "not the OCI index of the referrers tag schema") {
		t.Fatalf("err %v", err)
	}
	if d, err := remote.Head(tag); err != nil || d.MediaType == types.OCIImageIndex {
		t.Fatalf("the tag was changed: %v %v", d, err)
	}
}

// FuzzMergeListing merges descriptors into whatever a registry holds at a
// referrers tag: it never panics; a listing it takes keeps what it had and
// gains every digest once, sorted; merging the same again adds nothing
// (an entry without a digest would be written back as ":": refused).
func FuzzMergeListing(f *testing.F) {
	f.Add([]byte(nil))
	f.Add([]byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`))
	f.Add([]byte(`{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:` + strings.Repeat("b", 64) + `","size":1}],"annotations":{"a":"b"}}`))
	f.Add([]byte(`{"manifests":[{"digest":"sha256:` + strings.Repeat("a", 64) + `"},{"digest":"sha256:` + strings.Repeat("a", 64) + `"}]}`))
	f.Add([]byte(`{"manifests":{}}`))
	f.Add([]byte(`[]`))
	mine := []v1.Descriptor{
		{MediaType: types.OCIManifestSchema1, Digest: v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("a", 64)}, Size: 10},
		{MediaType: types.OCIManifestSchema1, Digest: v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("c", 64)}, Size: 20},
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		im, added, err := mergeListing(raw, mine)
		if err != nil {
			return
		}
		var before []v1.Descriptor
		if raw != nil {
			got, _ := v1.ParseIndexManifest(bytes.NewReader(raw))
			before = got.Manifests
		}
		if im.SchemaVersion != 2 || im.MediaType != types.OCIImageIndex || len(im.Manifests) < len(before) {
			t.Fatalf("%+v from %d entries", im, len(before))
		}
		for _, d := range append(slices.Clone(before), mine...) {
			if !slices.ContainsFunc(im.Manifests, func(l v1.Descriptor) bool { return l.Digest == d.Digest }) {
				t.Fatalf("%s missing from %+v", d.Digest, im.Manifests)
			}
		}
		if added && !slices.IsSortedFunc(im.Manifests, func(x, y v1.Descriptor) int { return strings.Compare(x.Digest.String(), y.Digest.String()) }) {
			t.Fatalf("not sorted: %+v", im.Manifests)
		}
		again, _ := json.Marshal(im)
		if _, more, err := mergeListing(again, mine); err != nil || more {
			t.Fatalf("merged again: added %v, %v", more, err)
		}
	})
}
