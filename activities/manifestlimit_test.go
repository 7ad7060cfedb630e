package activities

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
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
				w.(http.Flusher).Flush()
			}
		}))
		reg := chain.Registry{Name: "hostile", Address: strings.TrimPrefix(srv.URL, "http://"), Insecure: true}
		env := (&testsuite.WorkflowTestSuite{}).NewTestActivityEnvironment()
		counted := &countingTransport{next: http.DefaultTransport}
		a := &Activities{Transport: counted}
		env.RegisterActivity(a.ResolveImage)
		_, err := env.ExecuteActivity(a.ResolveImage, workflows.ResolveImageInput{Registry: reg,
			Image: workflows.ImageRef{Registry: "hostile", Repository: "demo/app", Tag: "v1"}})
		srv.Close()
		var app *temporal.ApplicationError
		if !errors.As(err, &app) || !app.NonRetryable() || app.Type() != ErrRejected || !strings.Contains(err.Error(), "manifest too large") {
			t.Fatalf("Content-Length sent %v: %v, want a final refusal", declared, err)
		}
		if n := counted.read.Load(); n > MaxManifestBytes+1 {
			t.Errorf("Content-Length sent %v: %d bytes read before the refusal", declared, n)
		}
	}
}

// countingTransport counts the response body bytes read through it.
type countingTransport struct {
	next http.RoundTripper
	read atomic.Int64
}

func (c *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.next.RoundTrip(req)
	if err == nil {
		resp.Body = &countingBody{ReadCloser: resp.Body, n: &c.read}
	}
	return resp, err
}

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}
