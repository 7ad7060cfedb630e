package activities

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
	"time"
)

// blobShare lets the copies that run at once in one worker — the branches
// of a run's fan-out, one per destination — read each source blob once:
// the first copy to need a blob starts its download into a spool file
// under the worker's work dir, and every copy that needs it meanwhile
// streams from that file as it grows. The download is verified against the
// blob's digest once (go-containerregistry does it as it reads); it stops
// when no copy reads it any more, or when no bytes came for the stall
// timeout, and the file is removed when the last reader is done.
//
// A blob is spooled only when the work dir has room for it besides what
// the spools still filling will take; else open says errNoRoom and the copy
// streams it from the source itself. So a small work dir costs source
// reads, never a copy.
type blobShare struct {
	mu     sync.Mutex
	spools map[string]*spool
	// room is the space left for files in dir (default: statfs).
	room func(dir string) (int64, error)
}

// errNoRoom means the work dir has no room to spool a blob.
var errNoRoom = errors.New("no room in the work dir to spool the blob")

// spoolMargin is the work dir space a spool leaves free.
const spoolMargin = 1 << 20

// diskRoom is the space an unprivileged process may still use in dir.
func diskRoom(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * st.Bsize, nil
}

// spool is one blob being (or done being) downloaded into a file.
type spool struct {
	share *blobShare
	key   string
	path  string
	want  int64 // the blob's size

	mu      sync.Mutex
	cond    *sync.Cond
	size    int64 // bytes in the file so far
	done    bool
	err     error
	readers int
	cancel  context.CancelFunc
}

// open returns a reader of the blob key, size bytes, fetched with fetch by
// the first reader into a spool file in dir, or errNoRoom. A download that
// gets no bytes for stall fails its readers.
func (s *blobShare) open(dir, key string, size int64, stall time.Duration, fetch func(ctx context.Context) (io.ReadCloser, error)) (io.ReadCloser, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.spools == nil {
		s.spools = map[string]*spool{}
	}
	sp := s.spools[key]
	if sp != nil {
		sp.mu.Lock()
		failed := sp.err != nil
		sp.mu.Unlock()
		if failed {
			sp = nil // a failed download is not shared: this reader starts anew
		}
	}
	if sp == nil {
		if err := s.fits(dir, size); err != nil {
			return nil, err
		}
		f, err := os.CreateTemp(dir, "blob-")
		if err != nil {
			return nil, err
		}
		ctx, cancel := context.WithCancel(context.Background())
		sp = &spool{share: s, key: key, path: f.Name(), want: size, cancel: cancel}
		sp.cond = sync.NewCond(&sp.mu)
		s.spools[key] = sp
		go sp.fill(ctx, f, stall, fetch)
	}
	r, err := os.Open(sp.path)
	if err != nil {
		return nil, err
	}
	sp.mu.Lock()
	sp.readers++
	sp.mu.Unlock()
	return &spoolReader{sp: sp, f: r}, nil
}

// fits says whether dir has room for size more bytes besides what the
// spools still filling will take (errNoRoom if not). s.mu is held.
func (s *blobShare) fits(dir string, size int64) error {
	room := s.room
	if room == nil {
		room = diskRoom
	}
	if dir == "" {
		dir = os.TempDir() // where os.CreateTemp puts the spool then
	}
	left, err := room(dir)
	if err != nil {
		return err
	}
	for _, sp := range s.spools {
		sp.mu.Lock()
		if !sp.done {
			left -= sp.want - sp.size
		}
		sp.mu.Unlock()
	}
	if left-spoolMargin < size {
		return fmt.Errorf("%w: %d bytes, %d left in %s", errNoRoom, size, max(left, 0), dir)
	}
	return nil
}

// fill downloads the blob into f, waking the readers as it grows.
func (sp *spool) fill(ctx context.Context, f *os.File, stall time.Duration, fetch func(ctx context.Context) (io.ReadCloser, error)) {
	ctx, stopWatch := watchStall(ctx, stall, func() int64 {
		sp.mu.Lock()
		defer sp.mu.Unlock()
		return sp.size
	})
	defer stopWatch()
	err := func() error {
		defer f.Close()
		rc, err := fetch(ctx)
		if err != nil {
			return err
		}
		defer rc.Close()
		buf := make([]byte, 256<<10)
		for {
			n, rerr := rc.Read(buf)
			if n > 0 {
				if _, werr := f.Write(buf[:n]); werr != nil {
					return werr
				}
				sp.mu.Lock()
				sp.size += int64(n)
				sp.cond.Broadcast()
				sp.mu.Unlock()
			}
			if rerr == io.EOF {
				return nil
			}
			if rerr != nil {
				return rerr
			}
		}
	}()
	var stalled *stallError
	if err != nil && errors.As(context.Cause(ctx), &stalled) {
		err = stalled
	}
	sp.mu.Lock()
	sp.done, sp.err = true, err
	last := sp.readers == 0
	sp.cond.Broadcast()
	sp.mu.Unlock()
	if last {
		sp.release()
	}
}

// release forgets the spool and removes its file, unless a reader
// attached meanwhile (its Close releases it then).
func (sp *spool) release() {
	sp.share.mu.Lock()
	defer sp.share.mu.Unlock()
	sp.mu.Lock()
	busy := sp.readers > 0
	sp.mu.Unlock()
	if busy {
		return
	}
	if sp.share.spools[sp.key] == sp {
		delete(sp.share.spools, sp.key)
	}
	os.Remove(sp.path)
}

// spoolReader reads a spool from the start, waiting for bytes not yet downloaded.
type spoolReader struct {
	sp     *spool
	f      *os.File
	off    int64
	closed bool
}

func (r *spoolReader) Read(p []byte) (int, error) {
	sp := r.sp
	sp.mu.Lock()
	for r.off >= sp.size && !sp.done {
		sp.cond.Wait()
	}
	avail, done, err := sp.size-r.off, sp.done, sp.err
	sp.mu.Unlock()
	if avail == 0 {
		if err != nil {
			return 0, err
		}
		if done {
			return 0, io.EOF
		}
	}
	n, rerr := r.f.ReadAt(p[:min(int64(len(p)), avail)], r.off)
	r.off += int64(n)
	if rerr == io.EOF && n > 0 {
		rerr = nil
	}
	return n, rerr
}

// Close ends this reader; the last one stops an unfinished download and
// removes the file of a finished one.
func (r *spoolReader) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	err := r.f.Close()
	sp := r.sp
	sp.mu.Lock()
	sp.readers--
	last, done := sp.readers == 0, sp.done
	sp.mu.Unlock()
	if last {
		if done {
			sp.release()
		} else {
			sp.cancel() // fill ends with an error and releases the spool
		}
	}
	return err
}
