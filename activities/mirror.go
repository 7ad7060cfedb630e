package activities

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"go.temporal.io/sdk/temporal"

	"github.com/dchain-dev/dchain/chain"
)

// sourceMirrors are a worker's local mirrors of its build sources: one bare
// repository per source (its URL and credentials reference), under the
// worker's own work dir. A burst of pushes to one repository fetches it
// once, not once per run: a build checks its commit out of the mirror, and
// only a commit the mirror lacks makes it fetch (the source's branches and
// tags, then the commit alone). The first build of a source fetches its
// branches and tags in full, as a CI runner's cached clone does; later ones
// fetch what is new. Mirrors live as long as the worker's work dir; a
// restarted worker fetches anew.
type sourceMirrors struct {
	mu    sync.Mutex
	root  string
	byKey map[string]*sourceMirror
}

// sourceMirror is one source's bare repository. lock (one slot) is held
// while it is created or fetched: this process is its only writer.
type sourceMirror struct {
	dir    string // absolute
	lock   slots
	inited atomic.Bool
}

// mirror returns the mirror of src under the work dir tmp ("": a private
// directory of the system's temp dir).
func (ms *sourceMirrors) mirror(tmp string, src chain.BuildSource) (*sourceMirror, error) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if ms.root == "" {
		root := filepath.Join(tmp, "mirrors")
		if tmp == "" {
			dir, err := os.MkdirTemp("", "dchain-mirrors-")
			if err != nil {
				return nil, err
			}
			root = dir
		}
		// git runs inside the mirror: a relative work dir would be read
		// from there.
		abs, err := filepath.Abs(root)
		if err != nil {
			return nil, err
		}
		ms.root = abs
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
// repository or refuses the credentials, a tree git refuses to write are
// permanent errors; an unreachable source is transient.
func (a *Activities) checkout(ctx context.Context, src chain.BuildSource, commit chain.Commit) (string, error) {
	tmp, err := filepath.Abs(a.TempDir)
	if a.TempDir == "" {
		tmp, err = os.TempDir(), nil
	}
	if err != nil {
		return "", err
	}
	m, err := a.mirrors.mirror(a.TempDir, src)
	if err != nil {
		return "", err
	}
	if err := m.init(ctx, src); err != nil {
		return "", err
	}
	dir, err := m.checkout(ctx, src, commit, tmp)
	if err == nil || ctx.Err() != nil {
		return dir, err
	}
	if err := m.fetch(ctx, src, commit); err != nil {
		return "", err
	}
	// The commit is in the mirror now (this build fetched it, or another
	// one did meanwhile).
	if dir, err = m.checkout(ctx, src, commit, tmp); err == nil || ctx.Err() != nil {
		return dir, err
	}
	// git would not write its tree (a path it refuses, such as one through
	// a symlink or into .git; a full disk): git's own reason.
	return "", temporal.NewNonRetryableApplicationError(
		fmt.Sprintf("check out commit %s of %s: %v", commit, src.URL, err), ErrNotFound, nil)
}

// init creates the mirror's bare repository, once.
func (m *sourceMirror) init(ctx context.Context, src chain.BuildSource) error {
	if m.inited.Load() {
		return nil
	}
	if err := m.lock.take(ctx); err != nil {
		return err
	}
	defer m.lock.release()
	if m.inited.Load() {
		return nil
	}
	os.RemoveAll(m.dir) // (what an interrupted init left)
	if err := os.MkdirAll(m.dir, 0o700); err != nil {
		return err
	}
	for _, s := range [][]string{{"init", "-q", "--bare"}, {"remote", "add", "--", "origin", src.URL}} {
		if _, err := m.git(ctx, src, nil, s...); err != nil {
			os.RemoveAll(m.dir)
			return err
		}
	}
	m.inited.Store(true)
	return nil
}

// git runs git on the mirror (named, so git never looks further up).
func (m *sourceMirror) git(ctx context.Context, src chain.BuildSource, env []string, args ...string) (string, error) {
	return gitRun(ctx, src, m.dir, env, append([]string{"--git-dir=" + m.dir}, args...)...)
}

// gitFetch runs git fetch -q --no-tags args on the mirror. Maintenance, when
// a fetch starts it, runs before the fetch ends: inside the mirror's lock.
func (m *sourceMirror) gitFetch(ctx context.Context, src chain.BuildSource, args ...string) error {
	_, err := m.git(ctx, src, nil, append([]string{"-c", "gc.autoDetach=false", "-c", "maintenance.autoDetach=false",
		"fetch", "-q", "--no-tags"}, args...)...)
	return err
}

// has is whether the mirror holds commit.
func (m *sourceMirror) has(ctx context.Context, src chain.BuildSource, commit chain.Commit) bool {
	_, err := m.git(ctx, src, nil, "cat-file", "-e", "--end-of-options", string(commit)+"^{commit}")
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
	m.dropLocks()
	err := m.gitFetch(ctx, src, "--prune", "--end-of-options", "origin", "+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*")
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case m.has(ctx, src, commit):
		return nil // (also when a ref could not be updated: the objects came)
	case err != nil:
		if fault := sourceFault(ctx, src); fault != nil {
			return fault
		}
		return temporal.NewApplicationError(fmt.Sprintf("fetch %s: %v (will retry)", src.URL, err), ErrTransient)
	}
	err = m.gitFetch(ctx, src, "--end-of-options", "origin", string(commit))
	if err == nil && m.has(ctx, src, commit) {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if fault := sourceFault(ctx, src); fault != nil { // (git's dumb protocol fetches "nothing" from a web page)
		return fault
	}
	return temporal.NewNonRetryableApplicationError(fmt.Sprintf("commit %s is not in %s", commit, src.URL), ErrNotFound, nil)
}

// sourceFault is the permanent error for a source that whyNotARepository
// finds is no Git repository (ErrNotFound) or refuses the credentials
// (ErrAccessDenied), or nil.
func sourceFault(ctx context.Context, src chain.BuildSource) error {
	switch why := whyNotARepository(ctx, src); {
	case errors.Is(why, errSourceDenied):
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("fetch %s: %v", src.URL, why), ErrAccessDenied, nil)
	case why != nil:
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("fetch %s: %v", src.URL, why), ErrNotFound, nil)
	}
	return nil
}

// dropLocks removes the lock files of refs and of the repository's own
// files that a git killed mid-fetch left in the mirror: under the mirror's
// lock nothing else writes it (no other process; this one's fetches run
// their maintenance in the foreground), so each is stale, and would make
// the next fetch fail to update its ref.
func (m *sourceMirror) dropLocks() {
	top, _ := filepath.Glob(filepath.Join(m.dir, "*.lock"))
	for _, p := range top {
		os.Remove(p)
	}
	_ = filepath.WalkDir(filepath.Join(m.dir, "refs"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".lock") {
			os.Remove(p)
		}
		return nil
	})
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
	if _, err := m.git(ctx, src, []string{"GIT_INDEX_FILE=" + index},
		"--work-tree="+dir, "read-tree", "--reset", "-u", "--end-of-options", string(commit)+"^{commit}"); err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	return dir, nil
}
