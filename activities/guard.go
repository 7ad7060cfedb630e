package activities

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"net/http"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// errRedirectRefused marks a registry answer that sends the client to a
// private, loopback or link-local address of another host.
var errRedirectRefused = errors.New("redirect refused")

// errDigestMismatch marks content whose bytes do not hash to the digest it
// was asked for by.
var errDigestMismatch = errors.New("content does not match its digest")

// registryGuard checks what a registry answers before go-containerregistry
// sees it, so that what it refuses is known by type here (its own checks
// return untyped errors that read as transient):
//
//   - a redirect (3xx) or upload location that leads from the registry to a
//     private, loopback or link-local IP of another host is refused, the same
//     rule as go-containerregistry's SSRF guard, but typed;
//   - a blob or manifest fetched by digest is hashed as it is read, and one
//     whose bytes do not match is refused at its end.
type registryGuard struct{ next http.RoundTripper }

func (g registryGuard) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := g.next.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	if loc := resp.Header.Get("Location"); loc != "" {
		if to, err := req.URL.Parse(loc); err == nil && privateElsewhere(origin(req).URL.Hostname(), to.Hostname()) {
			resp.Body.Close()
			return nil, fmt.Errorf("%w: %s %s answered %d with a location on %s, a private or link-local address of another host",
				errRedirectRefused, req.Method, origin(req).URL.Redacted(), resp.StatusCode, to.Host)
		}
	}
	if req.Method != http.MethodGet || resp.StatusCode != http.StatusOK {
		return resp, nil
	}
	if want, ok := digestOf(origin(req).URL.Path); ok {
		resp.Body = &digestBody{ReadCloser: resp.Body, want: want, h: sha256.New(), path: origin(req).URL.Path}
	}
	return resp, nil
}

// origin is the request a chain of redirects started with.
func origin(req *http.Request) *http.Request {
	for req.Response != nil && req.Response.Request != nil {
		req = req.Response.Request
	}
	return req
}

// privateElsewhere says whether to is an IP literal of a private, loopback,
// link-local or unspecified address on another host than from.
func privateElsewhere(from, to string) bool {
	if to == "" || to == from {
		return false
	}
	ip := net.ParseIP(to)
	return ip != nil && (ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() || ip.IsPrivate() || ip.IsUnspecified())
}

// digestOf is the sha256 digest a registry path asks for by
// (/v2/<repo>/blobs/<digest> or /v2/<repo>/manifests/<digest>).
func digestOf(path string) (v1.Hash, bool) {
	i := strings.LastIndexByte(path, '/')
	if i < 0 || !(strings.HasSuffix(path[:i], "/blobs") || strings.HasSuffix(path[:i], "/manifests")) {
		return v1.Hash{}, false
	}
	h, err := v1.NewHash(path[i+1:])
	if err != nil || h.Algorithm != "sha256" {
		return v1.Hash{}, false
	}
	return h, true
}

// digestBody hashes a body as it is read and fails its end when the bytes
// do not match want.
type digestBody struct {
	io.ReadCloser
	want v1.Hash
	h    hash.Hash
	path string
	read int64
}

func (b *digestBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.h.Write(p[:n])
	b.read += int64(n)
	if err == io.EOF {
		if got := hex.EncodeToString(b.h.Sum(nil)); got != b.want.Hex {
			return n, fmt.Errorf("%w: %s: the registry sent %d bytes with digest sha256:%s", errDigestMismatch, b.path, b.read, got)
		}
	}
	return n, err
}
