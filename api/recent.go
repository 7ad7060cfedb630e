package api

import (
	"crypto/sha256"
	"sync"
	"time"

	"github.com/dchain-dev/dchain/starter"
)

// recentDeliveries remembers the answers to signed deliveries that
// started runs, by source and body, for a while: a sender's redelivery of
// the same body is answered from here, without asking Temporal. That is
// safe because run IDs are deterministic and started with the
// reject-duplicate policy: asking again could only find the same runs.
// A reloaded config starts with an empty memory (its matching may differ).
type recentDeliveries struct {
	mu      sync.Mutex
	ttl     time.Duration
	max     int
	answers map[[sha256.Size]byte]recentAnswer
	order   [][sha256.Size]byte // oldest first
}

type recentAnswer struct {
	runs    []starter.Started
	ignored []string
	at      time.Time
}

func newRecentDeliveries(ttl time.Duration, max int) *recentDeliveries {
	return &recentDeliveries{ttl: ttl, max: max, answers: map[[sha256.Size]byte]recentAnswer{}}
}

func deliveryKey(source string, body []byte) [sha256.Size]byte {
	h := sha256.New()
	h.Write([]byte(source))
	h.Write([]byte{0})
	h.Write(body)
	var k [sha256.Size]byte
	copy(k[:], h.Sum(nil))
	return k
}

// get returns the remembered answer, its runs marked existing.
func (r *recentDeliveries) get(k [sha256.Size]byte, now time.Time) ([]starter.Started, []string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	a, ok := r.answers[k]
	if !ok || now.Sub(a.at) > r.ttl {
		return nil, nil, false
	}
	runs := make([]starter.Started, len(a.runs))
	for i, s := range a.runs {
		s.Existing = true
		runs[i] = s
	}
	return runs, a.ignored, true
}

// put remembers an answer that named runs, forgetting the oldest beyond max.
func (r *recentDeliveries) put(k [sha256.Size]byte, runs []starter.Started, ignored []string, now time.Time) {
	if len(runs) == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.answers[k]; !ok {
		r.order = append(r.order, k)
	}
	r.answers[k] = recentAnswer{runs: runs, ignored: ignored, at: now}
	for len(r.order) > r.max || len(r.order) > 0 && now.Sub(r.answers[r.order[0]].at) > r.ttl {
		delete(r.answers, r.order[0])
		r.order = r.order[1:]
	}
}
