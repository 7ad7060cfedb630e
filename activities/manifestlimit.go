package activities

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// MaxManifestBytes bounds a manifest, an index or a referrers list read
// from a registry: 4 MiB, the size every registry must accept (OCI
// distribution) and CNCF distribution's own limit. A larger one is refused
// for good, before a byte past the limit is read.
const MaxManifestBytes = 4 << 20

// errManifestTooLarge marks a registry answer over MaxManifestBytes.
var errManifestTooLarge = errors.New("manifest too large")

// manifestLimit bounds the bodies of manifest and referrers answers
// (go-containerregistry reads up to 100 MiB, and a hostile or broken
// registry can send that, slowly, with no heartbeat in between).
type manifestLimit struct{ next http.RoundTripper }

func (m manifestLimit) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := m.next.RoundTrip(req)
	if err != nil || req.Method != http.MethodGet ||
		!(strings.Contains(req.URL.Path, "/manifests/") || strings.Contains(req.URL.Path, "/referrers/")) {
		return resp, err
	}
	if resp.ContentLength > MaxManifestBytes {
		resp.Body.Close()
		return nil, fmt.Errorf("%w: %s says %d bytes, more than %d", errManifestTooLarge, req.URL.Path, resp.ContentLength, MaxManifestBytes)
	}
	resp.Body = &limitedBody{ReadCloser: resp.Body, left: MaxManifestBytes, path: req.URL.Path}
	return resp, nil
}

// limitedBody fails once more than left bytes come.
type limitedBody struct {
	io.ReadCloser
	left int64
	path string
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.ReadCloser.Read(p)
	if b.left -= int64(n); b.left < 0 {
		return 0, fmt.Errorf("%w: %s is more than %d bytes", errManifestTooLarge, b.path, MaxManifestBytes)
	}
	return n, err
}
