package activities

import (
	"context"
	"fmt"
	"time"
)

// DefaultStallTimeout is how long a transfer may move no bytes before its
// attempt fails (Activities.StallTimeout).
const DefaultStallTimeout = 5 * time.Minute

// stallError is the cause of a transfer ended because no bytes moved for
// after: a registry that keeps a connection open and sends nothing.
type stallError struct{ after time.Duration }

func (e *stallError) Error() string {
	return fmt.Sprintf("no bytes moved for %s: the transfer stalled", e.after)
}

func (a *Activities) stallTimeout() time.Duration {
	if a.StallTimeout > 0 {
		return a.StallTimeout
	}
	return DefaultStallTimeout
}

// watchStall returns a context of ctx that ends, with a *stallError as its
// cause, once moved() has not changed for after; stop ends the watch.
func watchStall(ctx context.Context, after time.Duration, moved func() int64) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	go func() {
		tick := time.NewTicker(max(after/20, 10*time.Millisecond))
		defer tick.Stop()
		last, since := moved(), time.Now()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case now := <-tick.C:
				if n := moved(); n != last {
					last, since = n, now
				} else if now.Sub(since) >= after {
					cancel(&stallError{after})
					return
				}
			}
		}
	}()
	return ctx, func() { close(done); cancel(nil) }
}
