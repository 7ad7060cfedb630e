package activities

import (
	"context"
	"io"
	"os"
	"sync"
)

// blobShare lets the copies that run at once in one worker — the branches
// of a run's fan-out, one per destination — read each source blob once:
// the first copy to need a blob starts its download into a spool file
// under the worker's work dir, and every copy that needs it meanwhile
// streams from that file as it grows. The download is verified against the
// blob's digest once (go-containerregistry does it as it reads); it stops
// when no copy reads it any more, and the file is removed when the last
// reader is done.
type blobShare struct {
	mu     sync.Mutex
	spools map[string]*spool
}

// spool is one blob being (or done being) downloaded into a file.
type spool struct {
	share *blobShare
	key   string
	path  string

	mu      sync.Mutex
	cond    *sync.Cond
	size    int64 // bytes in the file so far
	done    bool
	err     error
	readers int
	cancel  context.CancelFunc
}

// open returns a reader of the blob key, fetched with fetch by the first
// reader into a spool file in dir.
func (s *blobShare) open(dir, key string, fetch func(ctx context.Context) (io.ReadCloser, error)) (io.ReadCloser, error) {
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
		f, err := os.CreateTemp(dir, "blob-")
		if err != nil {
			return nil, err
		}
		ctx, cancel := context.WithCancel(context.Background())
		sp = &spool{share: s, key: key, path: f.Name(), cancel: cancel}
		sp.cond = sync.NewCond(&sp.mu)
		s.spools[key] = sp
		go sp.fill(ctx, f, fetch)
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

// fill downloads the blob into f, waking the readers as it grows.
func (sp *spool) fill(ctx context.Context, f *os.File, fetch func(ctx context.Context) (io.ReadCloser, error)) {
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
