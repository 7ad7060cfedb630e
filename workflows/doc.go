// Package workflows holds the ChainRun workflow — one chain run, told as its
// story: build → scan → evaluate → replicate (fan-out) → trigger — and the one
// place that knows Temporal names: task queues, activity and query names,
// search attributes and workflow IDs. It does no I/O; activities do.
package workflows
