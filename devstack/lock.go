package devstack

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// LockDataDir takes the data dir for this process: one dev stack per data
// dir, since two Temporal servers on one SQLite file fight over its shard.
// The lock is an flock on <dir>/dchain.lock, released when the returned
// file is closed or the process ends (also by SIGKILL); the file says who
// holds it, so a second stack can name the first.
func LockDataDir(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "dchain.lock")
	f, err := tryLock(path)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		holder, _ := os.ReadFile(path)
		return nil, fmt.Errorf("data dir %s is in use by another dchain dev (%s); stop it, or pass another --data-dir",
			dir, strings.TrimSpace(string(holder)))
	}
	if err != nil {
		return nil, fmt.Errorf("lock data dir %s: %w", dir, err)
	}
	return f, nil
}

// tryLock takes an flock on path (made if missing) without waiting, and
// writes into it who holds it; syscall.EWOULDBLOCK when another holds it.
// The lock lasts until the file is closed or the process ends.
func tryLock(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, err
	}
	_ = f.Truncate(0)
	_, _ = fmt.Fprintf(f, "pid %d, started %s\n", os.Getpid(), time.Now().Format(time.RFC3339))
	return f, nil
}
