package activities

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/dchain-dev/dchain/chain"
	"github.com/dchain-dev/dchain/workflows"
)

// hostile serves a real (in-memory) registry through twist, which may
// answer a request itself (true) once armed; the image is pushed first.
type hostile struct {
	addr  string
	armed atomic.Bool
	img   v1.Image
	layer v1.Hash // the image's first layer
}

func newHostile(t *testing.T, img v1.Image, twist func(h *hostile, w http.ResponseWriter, r *http.Request) bool, opts ...remote.Option) *hostile {
	t.Helper()
	h := &hostile{img: img}
	inner := registry.New()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h.armed.Load() && twist(h, w, r) {
			return
		}
		inner.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	h.addr = strings.TrimPrefix(srv.URL, "http://")
	ref, _ := name.ParseReference(h.addr + "/demo/app:v1")
	if err := remote.Write(ref, img, opts...); err != nil {
		t.Fatal(err)
	}
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if h.layer, err = ls[0].Digest(); err != nil {
		t.Fatal(err)
	}
	h.armed.Store(true)
	return h
}

// isBlobGet says whether r fetches the blob d.
func isBlobGet(r *http.Request, d v1.Hash) bool {
	return r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+d.String())
}

// replicateFrom copies the hostile source's image into dst with a.
func replicateFrom(t *testing.T, a *Activities, h *hostile, dst string) error {
	t.Helper()
	d, err := h.img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	env := (&testsuite.WorkflowTestSuite{}).NewTestActivityEnvironment()
	env.SetTestTimeout(time.Minute)
	env.RegisterActivity(a.ReplicateImage)
	_, err = env.ExecuteActivity(workflows.ActivityReplicateImage, workflows.ReplicateInput{
		Source:      chain.Registry{Name: "src", Address: h.addr, Insecure: true},
		Destination: chain.Registry{Name: "dst", Address: dst, Insecure: true},
		Repository:  "demo/app", Tag: "v1", Digest: d.String(), SkipReferrers: true,
	})
	return err
}

func newDestination(t *testing.T, h http.Handler) string {
	if h == nil {
		h = registry.New()
	}
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return strings.TrimPrefix(s.URL, "http://")
}

// wantFailure checks err is an application error of errType, retryable or
// not, whose message holds say.
func wantFailure(t *testing.T, err error, errType string, permanent bool, say string) {
	t.Helper()
	var app *temporal.ApplicationError
	if !errors.As(err, &app) || app.Type() != errType || app.NonRetryable() != permanent || !strings.Contains(err.Error(), say) {
		t.Fatalf("got %v; want a %s failure (permanent: %v) saying %q", err, errType, permanent, say)
	}
	t.Log(err)
}

// What a hostile or broken source registry does that no retry can mend
// fails the copy at once, for good, saying what is wrong: a blob whose
// bytes are not those of its digest, a redirect to a private address of
// another host, a layer that is not in the registry at all.
func TestHostileSourceFailsForGood(t *testing.T) {
	img, err := random.Image(256<<10, 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("bytes that do not match the digest", func(t *testing.T) {
		h := newHostile(t, img, func(h *hostile, w http.ResponseWriter, r *http.Request) bool {
			if !isBlobGet(r, h.layer) {
				return false
			}
			l, _ := h.img.LayerByDigest(h.layer)
			rc, _ := l.Compressed()
			b, _ := io.ReadAll(rc)
			b[len(b)/2] ^= 0xff // same size, one byte off
			io.Copy(w, bytes.NewReader(b))
			return true
		})
		err := replicateFrom(t, &Activities{TempDir: t.TempDir()}, h, newDestination(t, nil))
		wantFailure(t, err, ErrDigestMismatch, true, "does not match its digest")
	})
	t.Run("a redirect to a private address of another host", func(t *testing.T) {
		var reached atomic.Int64
		l, err := net.Listen("tcp", "127.0.0.2:0")
		if err != nil {
			t.Fatal("the test needs a second loopback address, 127.0.0.2 (Linux has 127/8):", err)
		}
		inside := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { reached.Add(1) })}
		go inside.Serve(l)
		defer inside.Close()
		h := newHostile(t, img, func(h *hostile, w http.ResponseWriter, r *http.Request) bool {
			if !isBlobGet(r, h.layer) {
				return false
			}
			http.Redirect(w, r, "http://"+l.Addr().String()+"/latest/meta-data/iam", http.StatusTemporaryRedirect)
			return true
		})
		err = replicateFrom(t, &Activities{TempDir: t.TempDir()}, h, newDestination(t, nil))
		wantFailure(t, err, ErrRejected, true, "redirect refused")
		if n := reached.Load(); n != 0 {
			t.Fatalf("the private address was asked %d times", n)
		}
	})
	t.Run("a foreign layer", func(t *testing.T) {
		foreign, err := mutate.Append(img, mutate.Addendum{
			Layer:     static.NewLayer([]byte("not here"), types.DockerForeignLayer),
			URLs:      []string{"http://169.254.169.254/latest/meta-data"},
			MediaType: types.DockerForeignLayer,
		})
		if err != nil {
			t.Fatal(err)
		}
		h := newHostile(t, foreign, func(*hostile, http.ResponseWriter, *http.Request) bool { return false }, remote.WithNondistributable)
		err = replicateFrom(t, &Activities{TempDir: t.TempDir()}, h, newDestination(t, nil))
		wantFailure(t, err, ErrRejected, true, "non-distributable")
	})
}

// A transfer that stops moving bytes — the source sends half a blob and
// then nothing, or the destination takes no more — ends its attempt after
// the stall timeout, to be retried, instead of holding it for hours; the
// spool of the stalled download goes too.
func TestStalledTransferEndsTheAttempt(t *testing.T) {
	img, err := random.Image(1<<20, 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("source", func(t *testing.T) {
		h := newHostile(t, img, func(h *hostile, w http.ResponseWriter, r *http.Request) bool {
			if !isBlobGet(r, h.layer) {
				return false
			}
			l, _ := h.img.LayerByDigest(h.layer)
			size, _ := l.Size()
			rc, _ := l.Compressed()
			w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
			io.CopyN(w, rc, size/2)
			w.(http.Flusher).Flush()
			<-r.Context().Done()
			return true
		})
		a := &Activities{TempDir: t.TempDir(), StallTimeout: 500 * time.Millisecond}
		err := replicateFrom(t, a, h, newDestination(t, nil))
		wantFailure(t, err, ErrStalled, false, "no bytes moved for 500ms")
		noSpoolLeft(t, a.TempDir)
	})
	t.Run("destination", func(t *testing.T) {
		h := newHostile(t, img, func(*hostile, http.ResponseWriter, *http.Request) bool { return false })
		inner := registry.New()
		release := make(chan struct{})
		dst := newDestination(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if (r.Method == http.MethodPatch || r.Method == http.MethodPut) && strings.Contains(r.URL.Path, "/blobs/uploads/") {
				select { // takes no byte (a server that reads no body does not see the client go)
				case <-r.Context().Done():
				case <-release:
				}
				return
			}
			inner.ServeHTTP(w, r)
		}))
		t.Cleanup(func() { close(release) }) // before the server closes
		a := &Activities{TempDir: t.TempDir(), StallTimeout: 500 * time.Millisecond}
		err := replicateFrom(t, a, h, dst)
		wantFailure(t, err, ErrStalled, false, "the transfer stalled")
		noSpoolLeft(t, a.TempDir)
	})
}

// noSpoolLeft waits (a while) for dir to be empty.
func noSpoolLeft(t *testing.T, dir string) {
	t.Helper()
	for range 100 {
		if left, _ := os.ReadDir(dir); len(left) == 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	left, _ := os.ReadDir(dir)
	t.Fatalf("spool files left behind: %v", left)
}

// A tag made at the destination while the copy runs (another writer) is
// not replaced when overwrite is off: the copy fails with the conflict and
// the tag keeps the other writer's image.
func TestTagWrittenDuringCopyIsNotOverwritten(t *testing.T) {
	img, err := random.Image(256<<10, 2)
	if err != nil {
		t.Fatal(err)
	}
	other, err := random.Image(1024, 1)
	if err != nil {
		t.Fatal(err)
	}
	h := newHostile(t, img, func(*hostile, http.ResponseWriter, *http.Request) bool { return false })
	inner := registry.New()
	var dst string
	var once atomic.Bool
	dst = newDestination(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/blobs/uploads/") && once.CompareAndSwap(false, true) {
			// the other writer, in the middle of this copy
			ref, _ := name.ParseReference(dst + "/demo/app:v1")
			if err := remote.Write(ref, other); err != nil {
				t.Error(err)
			}
		}
		inner.ServeHTTP(w, r)
	}))
	err = replicateFrom(t, &Activities{TempDir: t.TempDir()}, h, dst)
	wantFailure(t, err, ErrTagConflict, true, "written by someone else during the copy")
	ref, _ := name.ParseReference(dst + "/demo/app:v1")
	got, err := remote.Head(ref)
	want, _ := other.Digest()
	if err != nil || got.Digest != want {
		t.Fatalf("the tag points at %v (%v), want the other writer's %s", got, err, want)
	}
}

// Under immutableTags a copy never moves an existing tag but latest, even
// with overwrite on; latest it moves.
func TestImmutableTagsAreNotMoved(t *testing.T) {
	img, err := random.Image(1024, 1)
	if err != nil {
		t.Fatal(err)
	}
	other, err := random.Image(1024, 1)
	if err != nil {
		t.Fatal(err)
	}
	h := newHostile(t, img, func(*hostile, http.ResponseWriter, *http.Request) bool { return false })
	dst := newDestination(t, nil)
	for _, tag := range []string{"v1", "latest"} {
		ref, _ := name.ParseReference(dst + "/demo/app:" + tag)
		if err := remote.Write(ref, other); err != nil {
			t.Fatal(err)
		}
	}
	d, _ := img.Digest()
	replicate := func(tag string) error {
		env := (&testsuite.WorkflowTestSuite{}).NewTestActivityEnvironment()
		a := &Activities{TempDir: t.TempDir()}
		env.RegisterActivity(a.ReplicateImage)
		_, err := env.ExecuteActivity(workflows.ActivityReplicateImage, workflows.ReplicateInput{
			Source: chain.Registry{Name: "src", Address: h.addr, Insecure: true}, Destination: chain.Registry{Name: "dst", Address: dst, Insecure: true},
			Repository: "demo/app", Tag: tag, Digest: d.String(), Overwrite: true, ImmutableTags: true, SkipReferrers: true})
		return err
	}
	wantFailure(t, replicate("v1"), ErrTagConflict, true, "is immutable")
	if err := replicate("latest"); err != nil {
		t.Fatalf("latest: %v", err)
	}
	for tag, want := range map[string]v1.Image{"v1": other, "latest": img} {
		ref, _ := name.ParseReference(dst + "/demo/app:" + tag)
		got, err := remote.Head(ref)
		w, _ := want.Digest()
		if err != nil || got.Digest != w {
			t.Errorf("%s: %v %v, want %s", tag, got, err, w)
		}
	}
}
