package activities

import "context"

// slots is a counting semaphore whose waits end with their context: a
// canceled run stops waiting for its turn.
type slots chan struct{}

// take waits for a free slot, or for ctx to end.
func (s slots) take(ctx context.Context) error {
	select {
	case s <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// release frees a slot taken.
func (s slots) release() { <-s }
