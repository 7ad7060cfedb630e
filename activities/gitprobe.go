package activities

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/dchain-dev/dchain/chain"
)

// errNotARepository marks a source that is, for certain, no Git repository.
var errNotARepository = errors.New("not a Git repository")

// errSourceDenied marks a source whose server refused the credentials.
var errSourceDenied = errors.New("access denied")

// whyNotARepository looks again, after git could not fetch from src, at
// what the source is, from typed answers only: a local path that is missing
// or holds no repository; an HTTP(S) URL whose smart-protocol discovery
// (info/refs?service=git-upload-pack) answers 404 or 410, 401 or 403, or
// a web page. It returns errNotARepository or
// errSourceDenied with what it saw, or nil when the source may be a
// repository that did not answer (or is one it cannot look at: ssh, git).
func whyNotARepository(ctx context.Context, src chain.BuildSource) error {
	u := src.URL
	if p, ok := strings.CutPrefix(u, "file://"); ok {
		return localRepository(p)
	}
	scheme, _, ok := strings.Cut(u, "://")
	switch {
	case ok && (scheme == "http" || scheme == "https"):
		return httpRepository(ctx, src)
	case !ok && !scpLike(u):
		return localRepository(u)
	}
	return nil
}

// scpLike is git's user@host:path form (a ':' before any '/').
func scpLike(u string) bool {
	before, _, ok := strings.Cut(u, ":")
	return ok && !strings.Contains(before, "/")
}

// localRepository is nil when dir holds a repository (a work tree's .git
// or a bare repository's HEAD and objects).
func localRepository(dir string) error {
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %s does not exist", errNotARepository, dir)
	}
	if _, err := os.Stat(filepath.Join(dir, ".git")); err == nil {
		return nil
	}
	_, head := os.Stat(filepath.Join(dir, "HEAD"))
	_, objects := os.Stat(filepath.Join(dir, "objects"))
	if head == nil && objects == nil {
		return nil
	}
	return fmt.Errorf("%w: %s has neither .git nor a bare repository's HEAD and objects", errNotARepository, dir)
}

// httpRepository asks an HTTP(S) source for Git's smart-protocol
// advertisement, with the source's credentials as git sends them.
func httpRepository(ctx context.Context, src chain.BuildSource) error {
	ref, err := url.Parse(strings.TrimSuffix(src.URL, "/") + "/info/refs?service=git-upload-pack")
	if err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ref.String(), nil)
	if err != nil {
		return nil
	}
	req.Header.Set("Git-Protocol", "version=2")
	if src.Credentials != "" {
		secret, err := src.Credentials.Resolve()
		if err != nil {
			return nil
		}
		user, pass, _ := strings.Cut(secret, ":")
		req.SetBasicAuth(user, pass)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil // unreachable: maybe later
	}
	defer resp.Body.Close()
	at := ref.Redacted()
	switch ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); {
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone:
		return fmt.Errorf("%w: %s answered %d", errNotARepository, at, resp.StatusCode)
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return fmt.Errorf("%w: %s answered %d; check the source's credentials", errSourceDenied, at, resp.StatusCode)
	case resp.StatusCode == http.StatusOK && ct == "text/html":
		// (a dumb-protocol server answers its info/refs file, never a page)
		return fmt.Errorf("%w: %s answered a web page, not Git's advertisement", errNotARepository, at)
	}
	return nil
}
