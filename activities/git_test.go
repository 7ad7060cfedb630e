package activities

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dchain-dev/dchain/chain"
)

const gitSecret = "bot:s3cr3t-git-token"

// gitRepo makes a repository with one commit on main and an annotated tag
// v1 on it, and returns its directory and the commit.
func gitRepo(t *testing.T) (string, chain.Commit) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "app.git")
	run := func(args ...string) string { return gitIn(t, dir, args...) }
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	run("init", "-q", "-b", "main")
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM scratch\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	run("add", ".")
	run("commit", "-q", "-m", "one")
	run("tag", "-a", "-m", "release", "v1")
	return dir, chain.Commit(run("rev-parse", "HEAD"))
}

// gitServer serves repo over Git's smart HTTP (git http-backend, as a CGI)
// and refuses requests without the basic credentials of gitSecret.
func gitServer(t *testing.T, repo string) string {
	user, pass, _ := strings.Cut(gitSecret, ":")
	backend := &cgi.Handler{Path: "/usr/lib/git-core/git-http-backend",
		Env: []string{"GIT_PROJECT_ROOT=" + filepath.Dir(repo), "GIT_HTTP_EXPORT_ALL=1"}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != user || p != pass {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "credentials required", http.StatusUnauthorized)
			return
		}
		backend.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/" + filepath.Base(repo)
}

// recordGitArgs puts a git on PATH that logs its arguments, then runs the real one.
func recordGitArgs(t *testing.T) string {
	real, err := exec.LookPath("git")
	if err != nil {
		t.Fatal(err)
	}
	bin, log := t.TempDir(), filepath.Join(t.TempDir(), "argv.log")
	script := "#!/bin/sh\nprintf '%s\\n' \"$*\" >> " + log + "\nexec " + real + " \"$@\"\n"
	if err := os.WriteFile(filepath.Join(bin, "git"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	return log
}

// Credentials reach git through the environment, never its arguments
// (which every local user can read in ps), and they do work.
func TestGitCredentialsStayOutOfArgs(t *testing.T) {
	repo, commit := gitRepo(t)
	url := gitServer(t, repo)
	log := recordGitArgs(t)
	t.Setenv("DCHAIN_TEST_GIT_CRED", gitSecret)
	src := chain.BuildSource{URL: url, Credentials: "env:DCHAIN_TEST_GIT_CRED"}
	ctx := context.Background()

	if _, err := ResolveRef(ctx, chain.BuildSource{URL: url}, "refs/heads/main"); err == nil {
		t.Fatal("the test server let an anonymous client in")
	}
	got, err := ResolveRef(ctx, src, "refs/heads/main")
	if err != nil || got != commit {
		t.Fatalf("resolve main: %s %v", got, err)
	}
	if got, err := ResolveRef(ctx, src, "refs/tags/v1"); err != nil || got != commit {
		t.Fatalf("an annotated tag resolves to its commit: %s %v", got, err)
	}
	if err := CheckCommit(ctx, src, commit, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	if err := CheckCommit(ctx, src, chain.Commit(strings.Repeat("1", 40)), t.TempDir()); !errors.Is(err, ErrUnknownCommit) {
		t.Fatalf("unknown commit: %v", err)
	}
	dir, err := (&Activities{TempDir: t.TempDir()}).checkout(ctx, src, commit)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "Dockerfile")); err != nil {
		t.Fatal(err)
	}

	argv, err := os.ReadFile(log)
	if err != nil || len(argv) == 0 {
		t.Fatalf("no git command was recorded: %v", err)
	}
	for _, leak := range []string{gitSecret, base64.StdEncoding.EncodeToString([]byte(gitSecret)), "extraHeader", "Authorization"} {
		if strings.Contains(string(argv), leak) {
			t.Fatalf("git's arguments hold %q:\n%s", leak, argv)
		}
	}
}

// A value that reaches git is never read as an option, even if it got past
// the validator: the commit of `--commit '--upload-pack=touch /tmp/x'`.
func TestGitValuesNeverOptions(t *testing.T) {
	repo, _ := gitRepo(t)
	marker := filepath.Join(t.TempDir(), "pwned")
	src := chain.BuildSource{URL: repo}
	ctx := context.Background()
	evil := "--upload-pack=touch " + marker
	if _, err := (&Activities{TempDir: t.TempDir()}).checkout(ctx, src, chain.Commit(evil)); err == nil {
		t.Fatal("checkout of an option-shaped commit succeeded")
	}
	if err := CheckCommit(ctx, src, chain.Commit(evil), t.TempDir()); err == nil {
		t.Fatal("an option-shaped commit was found")
	}
	if _, err := ResolveRef(ctx, src, chain.Ref(evil)); err == nil {
		t.Fatal("an option-shaped ref resolved")
	}
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Fatalf("git ran the injected command (%v)", err)
	}
}
