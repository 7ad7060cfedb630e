package activities

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"go.temporal.io/sdk/testsuite"

	"github.com/dchain-dev/dchain/chain"
	"github.com/dchain-dev/dchain/workflows"
)

// A fan-out's copies running at once in one worker read each source blob
// once, land digest-identical everywhere, and leave no spool file behind.
func TestFanOutReadsEachSourceBlobOnce(t *testing.T) {
	var mu sync.Mutex
	gets := map[string]int{}
	inner := registry.New()
	src := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/sha256:") {
			mu.Lock()
			gets[r.URL.Path]++
			mu.Unlock()
			time.Sleep(100 * time.Millisecond) // a slow source: the copies overlap
		}
		inner.ServeHTTP(w, r)
	}))
	defer src.Close()
	idx, err := random.Index(256<<10, 2, 2)
	if err != nil {
		t.Fatal(err)
	}
	srcAddr := strings.TrimPrefix(src.URL, "http://")
	ref, _ := name.ParseReference(srcAddr + "/demo/app:v1")
	if err := remote.WriteIndex(ref, idx); err != nil {
		t.Fatal(err)
	}
	d, _ := idx.Digest()
	mu.Lock()
	clear(gets) // the push's own reads
	mu.Unlock()

	a := &Activities{TempDir: t.TempDir()}
	fanOut(t, a, srcAddr, d, 3)
	mu.Lock()
	defer mu.Unlock()
	if len(gets) != 6 { // 2 platforms × (config + 2 layers)
		t.Fatalf("%d distinct blobs read, want 6: %v", len(gets), gets)
	}
	for p, n := range gets {
		if n != 1 {
			t.Errorf("%s read %d times from the source for 3 destinations", p, n)
		}
	}
	if left, _ := os.ReadDir(a.TempDir); len(left) != 0 {
		t.Errorf("spool files left behind: %v", left)
	}
}

// fanOut copies srcAddr/demo/app@d into n new registries at once with a,
// as a chain's fan-out does, and checks each got it.
func fanOut(t *testing.T, a *Activities, srcAddr string, d v1.Hash, n int) {
	t.Helper()
	var wg sync.WaitGroup
	dsts := make([]string, n)
	errs := make([]error, n)
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
}
