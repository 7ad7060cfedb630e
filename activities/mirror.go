package activities

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"go.temporal.io/sdk/temporal"

	"github.com/dchain-dev/dchain/chain"
)

// sourceMirrors are a worker's local mirrors of its build sources: one bare
// repository per source (its URL and credentials reference), under the
// worker's own work dir. A burst of pushes to one repository fetches it
// once, not once per run: a build checks its commit out of the mirror, and
// only a commit the mirror lacks makes it fetch (the source's branches and
// tags, then the commit alone). Mirrors live as long as the worker's work
// dir; a restarted worker fetches anew.
type sourceMirrors struct {
	mu    sync.Mutex
	root  string
	byKey map[string]*sourceMirror
}

// sourceMirror is one source's bare repository; lock (one slot) is held
// while it is created or fetched.
type sourceMirror struct {
	dir    string
	lock   slots
	inited bool
}

// mirror returns the mirror of src under the work dir tmp ("" : a private
// directory of the system's temp dir).
func (ms *sourceMirrors) mirror(tmp string, src chain.BuildSource) (*sourceMirror, error) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if ms.root == "" {
		if tmp == "" {
			dir, err := os.MkdirTemp("", "dchain-mirrors-")
			if err != nil {
				return nil, err
			}
			ms.root = dir
		} else {
			ms.root = filepath.Join(tmp, "mirrors")
		}
	}
	// Credentials are part of the key: a source read with one chain's
	// credentials is never served to a chain with others (or none).
	sum := sha256.Sum256([]byte(src.URL + "\x00" + string(src.Credentials)))
	key := hex.EncodeToString(sum[:12])
	m := ms.byKey[key]
	if m == nil {
		if ms.byKey == nil {
			ms.byKey = map[string]*sourceMirror{}
		}
		m = &sourceMirror{dir: filepath.Join(ms.root, key+".git"), lock: make(slots, 1)}
		ms.byKey[key] = m
	}
	return m, nil
}

// checkout writes the tree of commit of the source into a new directory
// under the worker's work dir and returns it; remove it when done. The
// directory holds the commit's files only (no .git, as BuildKit's own Git
// contexts). A commit the source does not have, a source that is no Git
// repository or refuses the credentials are permanent errors; an
// unreachable source is transient.
func (a *Activities) checkout(ctx context.Context, src chain.BuildSource, commit chain.Commit) (string, error) {
	m, err := a.mirrors.mirror(a.TempDir, src)
	if err != nil {
		return "", err
	}
	if err := m.init(ctx, src); err != nil {
		return "", err
	}
	if dir, err := m.checkout(ctx, src, commit, a.TempDir); err == nil {
		return dir, nil
	}
	if err := m.fetch(ctx, src, commit); err != nil {
		return "", err
	}
	dir, err := m.checkout(ctx, src, commit, a.TempDir)
	if err != nil {
		return "", temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("commit %s is not in %s: %v", commit, src.URL, err), ErrNotFound, nil)
	}
	return dir, nil
}

// init creates the mirror's bare repository, once.
func (m *sourceMirror) init(ctx context.Context, src chain.BuildSource) error {
	if err := m.lock.take(ctx); err != nil {
		return err
	}
	defer m.lock.release()
	if m.inited {
		return nil
	}
	os.RemoveAll(m.dir) // (what an interrupted init left)
	if err := os.MkdirAll(m.dir, 0o700); err != nil {
		return err
	}
	for _, s := range [][]string{{"init", "-q", "--bare"}, {"remote", "add", "--", "origin", src.URL}} {
		if _, err := gitCmd(ctx, src, m.dir, s...); err != nil {
			os.RemoveAll(m.dir)
			return err
		}
	}
	m.inited = true
	return nil
}

// has is whether the mirror holds commit.
func (m *sourceMirror) has(ctx context.Context, src chain.BuildSource, commit chain.Commit) bool {
	_, err := gitCmd(ctx, src, m.dir, "cat-file", "-e", "--end-of-options", string(commit)+"^{commit}")
	return err == nil
}

// fetch brings commit into the mirror: nothing when a build waiting for the
// same lock fetched it already; else the source's branches and tags (which
// hold every commit pushed so far, for all the builds of a burst), and
// then, if the commit is still missing (a branch moved on by force), the
// commit alone.
func (m *sourceMirror) fetch(ctx context.Context, src chain.BuildSource, commit chain.Commit) error {
	if err := m.lock.take(ctx); err != nil {
		return err
	}
	defer m.lock.release()
	if m.has(ctx, src, commit) {
		return nil
	}
	if _, err := gitCmd(ctx, src, m.dir, "fetch", "-q", "--prune", "--no-tags", "--end-of-options", "origin",
		"+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		switch why := whyNotARepository(ctx, src); {
		case errors.Is(why, errNotARepository):
			return temporal.NewNonRetryableApplicationError(fmt.Sprintf("fetch %s: %v", src.URL, why), ErrNotFound, nil)
		case errors.Is(why, errSourceDenied):
			return temporal.NewNonRetryableApplicationError(fmt.Sprintf("fetch %s: %v", src.URL, why), ErrAccessDenied, nil)
		}
		return temporal.NewApplicationError(fmt.Sprintf("fetch %s: %v (will retry)", src.URL, err), ErrTransient)
	}
	if m.has(ctx, src, commit) {
		return nil
	}
	_, err := gitCmd(ctx, src, m.dir, "fetch", "-q", "--no-tags", "--end-of-options", "origin", string(commit))
	if err == nil && m.has(ctx, src, commit) {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	switch why := whyNotARepository(ctx, src); { // (git's dumb protocol fetches "nothing" from a web page)
	case errors.Is(why, errSourceDenied):
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("fetch %s: %v", src.URL, why), ErrAccessDenied, nil)
	case why != nil:
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("fetch %s: %v", src.URL, why), ErrNotFound, nil)
	}
	return temporal.NewNonRetryableApplicationError(fmt.Sprintf("commit %s is not in %s", commit, src.URL), ErrNotFound, nil)
}

// checkout writes commit's tree into a new directory under tmp with a
// private index (so that builds check out of one mirror at once, and while
// it fetches). read-tree runs no hooks and refuses what git's checkout
// refuses (paths through symlinks, .git entries).
func (m *sourceMirror) checkout(ctx context.Context, src chain.BuildSource, commit chain.Commit, tmp string) (string, error) {
	dir, err := os.MkdirTemp(tmp, "src-")
	if err != nil {
		return "", err
	}
	index := dir + ".index"
	defer os.Remove(index)
	if _, err := gitRun(ctx, src, m.dir, []string{"GIT_INDEX_FILE=" + index},
		"--work-tree="+dir, "read-tree", "--reset", "-u", "--end-of-options", string(commit)+"^{commit}"); err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	return dir, nil
}
