package activities

import (
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// A work dir smaller than the blobs a fan-out would spool at once (a 7 MiB
// tmpfs; 4 layers of 3 MiB copied, 4 at a time, into 3 regions) still
// gets every copy done: a blob that does not fit besides the spools being
// filled is streamed from the source by each copy instead.
func TestSmallWorkDirStillCopies(t *testing.T) {
	work := filepath.Join(t.TempDir(), "work")
	if err := mkdirMount(work, "size=7m"); err != nil {
		t.Fatal("mounting a tmpfs (the test needs root, as the stack's isolation tests do):", err)
	}
	t.Cleanup(func() { syscall.Unmount(work, syscall.MNT_DETACH) })

	inner := registry.New()
	src := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/sha256:") {
			time.Sleep(300 * time.Millisecond) // a slow source: the copies overlap
		}
		inner.ServeHTTP(w, r)
	}))
	defer src.Close()
	img, err := random.Image(3<<20, 4)
	if err != nil {
		t.Fatal(err)
	}
	srcAddr := strings.TrimPrefix(src.URL, "http://")
	ref, _ := name.ParseReference(srcAddr + "/demo/app:v1")
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()

	fanOut(t, &Activities{TempDir: work}, srcAddr, d, 3)
	noSpoolLeft(t, work)
}

// mkdirMount makes dir and mounts a tmpfs with opts on it.
func mkdirMount(dir, opts string) error {
	if err := syscall.Mkdir(dir, 0o700); err != nil {
		return err
	}
	return syscall.Mount("tmpfs", dir, "tmpfs", 0, opts)
}
