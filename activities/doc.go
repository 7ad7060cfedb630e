// Package activities holds the chain's I/O: thin adapters over
// go-containerregistry (resolve, replicate) and net/http (triggers). Each
// activity resolves its own secrets, heartbeats long work, and decides once,
// where an error is made, whether it is transient (retried by Temporal with
// backoff) or permanent (non-retryable, with a message saying what to do).
package activities
