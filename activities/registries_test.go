package activities_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/testsuite"

	"github.com/dchain-dev/dchain/activities"
	"github.com/dchain-dev/dchain/devstack"
	"github.com/dchain-dev/dchain/workflows"
)

// startRegistry serves a distribution registry (filesystem storage, no
// referrers API) until the test ends.
func startRegistry(t *testing.T, name string) *devstack.Registry {
	t.Helper()
	r, err := devstack.StartRegistry(name, "127.0.0.1:0", filepath.Join(t.TempDir(), name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Stop() })
	return r
}

// sourceWithSample is a registry holding the sample app at apps/web:v1,
// and the app's digest.
func sourceWithSample(t *testing.T) (*devstack.Registry, string) {
	t.Helper()
	src := startRegistry(t, "src")
	digest, err := devstack.PushSample(context.Background(), src.Addr, "apps/web", "v1")
	if err != nil {
		t.Fatal(err)
	}
	return src, digest
}

// watched serves addr through a proxy that shows see each request first,
// and returns the proxy's address.
func watched(t *testing.T, addr string, see func(*http.Request)) string {
	target, _ := url.Parse("http://" + addr)
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		see(r)
		httputil.NewSingleHostReverseProxy(target).ServeHTTP(w, r)
	}))
	t.Cleanup(proxy.Close)
	return strings.TrimPrefix(proxy.URL, "http://")
}

// replicate runs the ReplicateImage activity with in.
func replicate(t *testing.T, in workflows.ReplicateInput) workflows.ReplicateResult {
	t.Helper()
	env := (&testsuite.WorkflowTestSuite{}).NewTestActivityEnvironment()
	env.SetTestTimeout(2 * time.Minute)
	a := &activities.Activities{TempDir: t.TempDir()}
	env.RegisterActivity(a.ReplicateImage)
	val, err := env.ExecuteActivity(workflows.ActivityReplicateImage, in)
	if err != nil {
		t.Fatal(err)
	}
	var res workflows.ReplicateResult
	if err := val.Get(&res); err != nil {
		t.Fatal(err)
	}
	return res
}
