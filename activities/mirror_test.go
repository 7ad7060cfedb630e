package activities

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/dchain-dev/dchain/chain"
)

// commits adds n commits to main of repo, one file each, and returns them.
func commits(t *testing.T, repo string, n int) []chain.Commit {
	t.Helper()
	var out []chain.Commit
	for i := range n {
		name := filepath.Join(repo, "f"+strings.Repeat("x", i%3)+string(rune('a'+i%26)))
		if err := os.WriteFile(name, []byte(fmt.Sprint(time.Now().UnixNano(), i)), 0o644); err != nil {
			t.Fatal(err)
		}
		gitIn(t, repo, "add", ".")
		gitIn(t, repo, "commit", "-q", "-m", "c")
		out = append(out, chain.Commit(gitIn(t, repo, "rev-parse", "HEAD")))
	}
	return out
}

func gitIn(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@x", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@x")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v: %s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// fetches counts the git fetches in an argv log of recordGitArgs.
func fetches(t *testing.T, log string) int {
	b, _ := os.ReadFile(log)
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		if slices.Contains(strings.Fields(line), "fetch") {
			n++
		}
	}
	return n
}

// A burst of builds of one source fetches it once: each build checks its
// commit out of the worker's mirror, with the commit's files only.
func TestCheckoutBurstFetchesOnce(t *testing.T) {
	repo, first := gitRepo(t)
	if err := os.Symlink("Dockerfile", filepath.Join(repo, "link")); err != nil {
		t.Fatal(err)
	}
	cs := append([]chain.Commit{first}, commits(t, repo, 19)...)
	log := recordGitArgs(t)
	a := &Activities{TempDir: t.TempDir()}
	src := chain.BuildSource{URL: repo}
	dirs := make([]string, len(cs))
	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Go(func() {
			dir, err := a.checkout(context.Background(), src, c)
			if err != nil {
				t.Error(err)
			}
			dirs[i] = dir
		})
	}
	wg.Wait()
	if n := fetches(t, log); n != 1 {
		t.Fatalf("%d fetches for a burst of %d builds, want 1", n, len(cs))
	}
	for i, dir := range dirs {
		entries, _ := os.ReadDir(dir)
		want := 1 // the first commit's Dockerfile; later ones add the link and a file each
		if i > 0 {
			want = i + 2
		}
		if len(entries) != want {
			t.Fatalf("checkout %d has %d entries, want %d", i, len(entries), want)
		}
		if _, err := os.Stat(filepath.Join(dir, ".git")); !os.IsNotExist(err) {
			t.Fatalf("checkout %d holds .git (%v)", i, err)
		}
		if target, err := os.Readlink(filepath.Join(dir, "link")); i > 0 && (err != nil || target != "Dockerfile") {
			t.Fatalf("the symlink is %q, %v", target, err)
		}
		if matches, _ := filepath.Glob(dir + ".index"); len(matches) != 0 {
			t.Fatalf("the checkout's index was left: %v", matches)
		}
	}

	// A later push is fetched; a commit that no branch holds any more (a
	// force push) is fetched alone; a commit the source never had is
	// permanent, with its reason.
	later := commits(t, repo, 1)[0]
	gitIn(t, repo, "config", "uploadpack.allowAnySHA1InWant", "true")
	gone := commits(t, repo, 1)[0]
	gitIn(t, repo, "reset", "-q", "--hard", string(later))
	for _, c := range []chain.Commit{later, gone} {
		if _, err := a.checkout(context.Background(), src, c); err != nil {
			t.Fatalf("checkout %s: %v", c, err)
		}
	}
	_, err := a.checkout(context.Background(), src, chain.Commit(strings.Repeat("1", 40)))
	var app *temporal.ApplicationError
	if !errors.As(err, &app) || app.Type() != ErrNotFound || !app.NonRetryable() || !strings.Contains(err.Error(), "is not in "+repo) {
		t.Fatalf("unknown commit: %v", err)
	}
}

// Sources with other credentials never share a mirror.
func TestMirrorPerCredentials(t *testing.T) {
	var ms sourceMirrors
	tmp := t.TempDir()
	a, _ := ms.mirror(tmp, chain.BuildSource{URL: "https://git.example/app.git", Credentials: "env:A"})
	b, _ := ms.mirror(tmp, chain.BuildSource{URL: "https://git.example/app.git", Credentials: "env:B"})
	again, _ := ms.mirror(tmp, chain.BuildSource{URL: "https://git.example/app.git", Credentials: "env:A"})
	if a == b || a != again || a.dir == b.dir || filepath.Dir(a.dir) != filepath.Join(tmp, "mirrors") {
		t.Fatalf("mirrors %s %s %s", a.dir, b.dir, again.dir)
	}
}

// A relative work dir works (git runs inside the mirror: the paths it is
// given are absolute); lock files a killed git left in the mirror do not
// stop its next fetch.
func TestMirrorRelativeWorkDirAndStaleLocks(t *testing.T) {
	repo, first := gitRepo(t)
	t.Chdir(t.TempDir())
	a := &Activities{TempDir: "work"}
	src := chain.BuildSource{URL: repo}
	if _, err := a.checkout(context.Background(), src, first); err != nil {
		t.Fatal(err)
	}
	m, _ := a.mirrors.mirror(a.TempDir, src)
	for _, lock := range []string{"refs/heads/main.lock", "packed-refs.lock"} {
		if err := os.WriteFile(filepath.Join(m.dir, lock), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	next := commits(t, repo, 1)[0]
	if _, err := a.checkout(context.Background(), src, next); err != nil {
		t.Fatal(err)
	}
	if out := gitIn(t, m.dir, "rev-parse", "refs/heads/main"); out != string(next) {
		t.Fatalf("the mirror's main is %s, want %s", out, next)
	}
}

// A commit whose tree git refuses to write (an entry named .git) fails at
// once with git's reason, not as a missing commit.
func TestCheckoutRefusesAHostileTree(t *testing.T) {
	repo, _ := gitRepo(t)
	blob := gitIn(t, repo, "hash-object", "-w", "--stdin")
	cmd := exec.Command("git", "mktree")
	cmd.Dir, cmd.Stdin = repo, strings.NewReader("040000 tree "+gitIn(t, repo, "write-tree")+"\t.git\n100644 blob "+blob+"\tok\n")
	tree, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	evil := gitIn(t, repo, "commit-tree", "-m", "evil", strings.TrimSpace(string(tree)))
	gitIn(t, repo, "update-ref", "refs/heads/evil", evil)
	a := &Activities{TempDir: t.TempDir()}
	_, err = a.checkout(context.Background(), chain.BuildSource{URL: repo}, chain.Commit(evil))
	var app *temporal.ApplicationError
	if !errors.As(err, &app) || !app.NonRetryable() || !strings.Contains(err.Error(), "check out commit "+evil) {
		t.Fatalf("a tree with .git: %v", err)
	}
	entries, _ := os.ReadDir(a.TempDir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "src-") {
			t.Fatalf("the refused checkout %s was left", e.Name())
		}
	}
}
