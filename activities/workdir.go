package activities

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
)

// ClaimWorkDir gives a worker process a private directory under base for
// its temporary work (source checkouts) and removes what earlier workers
// left behind. Each worker holds an flock on <dir>/.lock for as long as it
// runs; a directory whose lock can be taken belongs to a worker that is
// gone (even one killed with SIGKILL mid-build), so it is removed. Workers
// sharing base never remove each other's work.
func ClaimWorkDir(base string) (string, error) {
	if err := os.MkdirAll(base, 0o700); err != nil {
		return "", fmt.Errorf("work dir %s: %w", base, err)
	}
	old, _ := filepath.Glob(filepath.Join(base, "w-*"))
	for _, d := range old {
		if f, ok := tryLock(filepath.Join(d, ".lock")); ok {
			os.RemoveAll(d)
			f.Close()
		}
	}
	dir, err := os.MkdirTemp(base, "w-")
	if err != nil {
		return "", fmt.Errorf("work dir %s: %w", base, err)
	}
	f, ok := tryLock(filepath.Join(dir, ".lock"))
	if !ok {
		return "", fmt.Errorf("work dir %s: cannot lock it", dir)
	}
	heldMu.Lock()
	held = append(held, f) // open until the process ends: the flock marks the directory as ours
	heldMu.Unlock()
	return dir, nil
}

// held keeps the work dir locks open (an unreferenced *os.File is closed
// by its finalizer, which would release the lock).
var (
	heldMu sync.Mutex
	held   []*os.File
)

// tryLock opens path and takes an exclusive flock without waiting.
func tryLock(path string) (*os.File, bool) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, false
	}
	if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
		f.Close()
		return nil, false
	}
	return f, true
}
