package activities

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"go.temporal.io/sdk/temporal"

	"github.com/dchain-dev/dchain/chain"
)

// A source that is no Git repository, or refuses the credentials, fails
// the checkout for good, saying so; an unreachable one is retried.
func TestSourceThatIsNoRepositoryIsPermanent(t *testing.T) {
	repo, commit := gitRepo(t)
	served := gitServer(t, repo)
	t.Setenv("DCHAIN_TEST_GIT_CRED", gitSecret)
	t.Setenv("DCHAIN_TEST_GIT_WRONG", "bot:wrong")
	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write([]byte("<html><body>Welcome</body></html>"))
	}))
	defer page.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String() + "/app.git"
	l.Close()

	for _, c := range []struct {
		name      string
		src       chain.BuildSource
		permanent bool
		errType   string
	}{
		{"an empty directory", chain.BuildSource{URL: t.TempDir()}, true, ErrNotFound},
		{"a missing path", chain.BuildSource{URL: filepath.Join(t.TempDir(), "missing")}, true, ErrNotFound},
		{"a file:// URL of an empty directory", chain.BuildSource{URL: "file://" + t.TempDir()}, true, ErrNotFound},
		{"a repository the server does not have", chain.BuildSource{URL: served + "-missing", Credentials: "env:DCHAIN_TEST_GIT_CRED"}, true, ErrNotFound},
		{"wrong credentials", chain.BuildSource{URL: served, Credentials: "env:DCHAIN_TEST_GIT_WRONG"}, true, ErrAccessDenied},
		{"a web page", chain.BuildSource{URL: page.URL + "/app.git"}, true, ErrNotFound},
		{"a server that is down", chain.BuildSource{URL: closed}, false, ErrTransient},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := (&Activities{TempDir: t.TempDir()}).checkout(context.Background(), c.src, commit)
			var app *temporal.ApplicationError
			if !errors.As(err, &app) || app.NonRetryable() != c.permanent || app.Type() != c.errType {
				t.Fatalf("%v, want %s (permanent %v)", err, c.errType, c.permanent)
			}
			t.Log(err)
		})
	}
	if _, err := (&Activities{TempDir: t.TempDir()}).checkout(context.Background(), chain.BuildSource{URL: served, Credentials: "env:DCHAIN_TEST_GIT_CRED"}, commit); err != nil {
		t.Fatalf("the repository itself: %v", err)
	}
}
