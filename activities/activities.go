package activities

import (
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/dchain-dev/dchain/chain"
)

// Activities are dchain's activities. The zero value is usable.
type Activities struct {
	// HTTP sends trigger deliveries; nil means a client with a 30 s timeout.
	HTTP *http.Client
	// Transport carries registry traffic; nil means http.DefaultTransport.
	Transport http.RoundTripper
	// Trace, when set, wraps every transport of registry and trigger
	// requests (tracing), after a registry's CA is applied.
	Trace func(http.RoundTripper) http.RoundTripper
	// Jobs is how many blobs a replication uploads at once (default 4).
	Jobs int
	// HeartbeatEvery is how often long work reports progress (default 5s).
	HeartbeatEvery time.Duration
	// StallTimeout ends a copy's attempt (to be retried) when no bytes
	// moved for that long (default DefaultStallTimeout).
	StallTimeout time.Duration
	// Builder builds images (package activities/buildkit: BuildKit); nil
	// means this worker does not build.
	Builder ImageBuilder
	// MaxBuilds, when above 0, bounds the builds this worker hands BuildKit
	// at once; more wait their turn, heartbeating (the wait counts against
	// the build's time limits). Where buildkitd shares the worker's cores
	// (dchain dev), a burst of builds all solving at once starves the runs'
	// workflow tasks without finishing sooner.
	MaxBuilds int
	// TempDir holds source checkouts while they build: the worker's own
	// directory (ClaimWorkDir; default: the system's temp dir).
	TempDir string
	// Scanner scans images (package scanner: Trivy); nil means this worker does not scan.
	Scanner ImageScanner
	// Temporal lets WaitTurn see the other runs (the worker's own client).
	Temporal client.Client

	// buildSlots holds a token per build solving (MaxBuilds).
	buildSlots     slots
	buildSlotsOnce sync.Once
	// mirrors are the worker's local mirrors of build sources.
	mirrors sourceMirrors
	// blobs lets concurrent copies read each source blob once.
	blobs blobShare
	// tagLocks serialize the check and the write of one destination tag
	// (by reference) among this worker's copies.
	tagLocks sync.Map
	// fallbackLocks serialize this worker's writes of one referrers tag
	// (listInFallbackTag; by a hash of its reference).
	fallbackLocks [64]sync.Mutex
	// registries are the worker's configured registries (SetRegistries).
	registries atomic.Pointer[[]chain.Registry]
}

// SetRegistries tells the activities the worker's configured registries:
// BuildKit signs in to each by its address (a build's FROM may name any of
// them). Safe while activities run (a config reload).
func (a *Activities) SetRegistries(rs []chain.Registry) {
	a.registries.Store(&rs)
}

func (a *Activities) configured() []chain.Registry {
	if rs := a.registries.Load(); rs != nil {
		return *rs
	}
	return nil
}

func (a *Activities) httpClient() *http.Client {
	if a.HTTP != nil {
		return a.HTTP
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: a.traced(http.DefaultTransport)}
}

// traced is tr wrapped by Trace, if set.
func (a *Activities) traced(tr http.RoundTripper) http.RoundTripper {
	if a.Trace == nil {
		return tr
	}
	return a.Trace(tr)
}

func (a *Activities) heartbeatEvery() time.Duration {
	if a.HeartbeatEvery > 0 {
		return a.HeartbeatEvery
	}
	return 5 * time.Second
}
