package activities

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/dchain-dev/dchain/chain"
	"github.com/dchain-dev/dchain/workflows"
)

// A registry that answers a manifest of more than 4 MiB — saying so in
// Content-Length, or streaming it without one — gets a final refusal that
// says what is wrong, after at most 4 MiB read; never a retry.
func TestManifestsAreBounded(t *testing.T) {
	for _, declared := range []bool{true, false} {
		read := 0
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/v2/" {
				return
			}
			w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
			w.Header().Set("Docker-Content-Digest", "sha256:"+strings.Repeat("a", 64))
			if declared {
				w.Header().Set("Content-Length", "52428800")
			}
			chunk := []byte(strings.Repeat(" ", 64<<10))
			for range 50 << 20 / len(chunk) {
				if _, err := w.Write(chunk); err != nil {
					return
				}
				read += len(chunk)
				w.(http.Flusher).Flush()
			}
		}))
		reg := chain.Registry{Name: "hostile", Address: strings.TrimPrefix(srv.URL, "http://"), Insecure: true}
		env := (&testsuite.WorkflowTestSuite{}).NewTestActivityEnvironment()
		a := &Activities{}
		env.RegisterActivity(a.ResolveImage)
		_, err := env.ExecuteActivity(a.ResolveImage, workflows.ResolveImageInput{Registry: reg,
			Image: workflows.ImageRef{Registry: "hostile", Repository: "demo/app", Tag: "v1"}})
		srv.Close()
		var app *temporal.ApplicationError
		if !errors.As(err, &app) || !app.NonRetryable() || app.Type() != ErrRejected || !strings.Contains(err.Error(), "manifest too large") {
			t.Fatalf("Content-Length sent %v: %v, want a final refusal", declared, err)
		}
		if read > 8<<20 {
			t.Errorf("Content-Length sent %v: %d bytes written before the refusal", declared, read)
		}
	}
}
