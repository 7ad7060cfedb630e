package activities

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"go.temporal.io/sdk/testsuite"

	"github.com/dchain-dev/dchain/chain"
	"github.com/dchain-dev/dchain/workflows"
)

// A work dir smaller than the blobs a fan-out would spool at once (a 7 MiB
// tmpfs; 4 layers of 3 MiB copied, 4 at a time, into 3 regions) still
// gets every copy done: a blob that does not fit besides the spools being
// filled is streamed from the source by each copy instead.
func TestSmallWorkDirStillCopies(t *testing.T) {
	work := filepath.Join(t.TempDir(), "work")
	if err := mkdirMount(work, "size=7m"); err != nil {
		t.Skip("mounting a tmpfs needs root:", err)
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

	a := &Activities{TempDir: work}
	var wg sync.WaitGroup
	dsts := make([]string, 3)
	errs := make([]error, len(dsts))
	for i := range dsts {
		s := httptest.NewServer(registry.New())
		defer s.Close()
		dsts[i] = strings.TrimPrefix(s.URL, "http://")
		wg.Add(1)
		go func() {
			defer wg.Done()
			env := (&testsuite.WorkflowTestSuite{}).NewTestActivityEnvironment()
			env.SetTestTimeout(2 * time.Minute)
			env.RegisterActivity(a.ReplicateImage)
			_, errs[i] = env.ExecuteActivity(workflows.ActivityReplicateImage, workflows.ReplicateInput{
				Source: chain.Registry{Name: "src", Address: srcAddr, Insecure: true}, Destination: chain.Registry{Name: dsts[i], Address: dsts[i], Insecure: true},
				Repository: "demo/app", Tag: "v1", Digest: d.String(), SkipReferrers: true,
			})
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	for _, dst := range dsts {
		r, _ := name.ParseReference(dst + "/demo/app:v1")
		got, err := remote.Head(r)
		if err != nil || got.Digest != d {
			t.Fatalf("%s: %v %v", dst, got, err)
		}
	}
	noSpoolLeft(t, work)
}

// mkdirMount makes dir and mounts a tmpfs with opts on it.
func mkdirMount(dir, opts string) error {
	if err := syscall.Mkdir(dir, 0o700); err != nil {
		return err
	}
	return syscall.Mount("tmpfs", dir, "tmpfs", 0, opts)
}
