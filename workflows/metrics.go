package workflows

import (
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/workflow"
)

// dchain's metrics, emitted through the Temporal SDK's metrics handler
// (in workflows, the replay-safe one), so one exporter serves them beside
// the SDK's own. Names are the SDK's; the Prometheus exporter adds _total
// to counters and _seconds to timers.
const (
	MetricRunsStarted        = "dchain_runs_started"         // chain
	MetricRunsEnded          = "dchain_runs_ended"           // chain, outcome
	MetricStageDuration      = "dchain_stage_duration"       // chain, stage, state
	MetricReplicatedBytes    = "dchain_replicated_bytes"     // destination (every attempt's bytes)
	MetricReplicatedBlobs    = "dchain_replicated_blobs"     // destination
	MetricReplicationRetries = "dchain_replication_failures" // destination, class (an attempt that failed, by error type)
	MetricTriggerDeliveries  = "dchain_trigger_deliveries"   // trigger, result (delivered | http_NNN | error type)
	MetricScanFindings       = "dchain_scan_findings"        // severity
	MetricWebhookEvents      = "dchain_webhook_events"       // source, result
)

// Metric tag keys. Values of TagChain, TagDestination, TagTrigger and
// TagSource are names from the config; anything else is "unknown"
// (worker.Metrics bounds them).
const (
	TagChain       = "chain"
	TagDestination = "destination"
	TagTrigger     = "trigger"
	TagSource      = "source"
	TagStage       = "stage"
	TagState       = "state"
	TagOutcome     = "outcome"
	TagSeverity    = "severity"
	TagClass       = "class"
	TagResult      = "result"
)

// metrics is the run's replay-safe handler, tagged with its chain.
func (r *run) metrics(ctx workflow.Context) client.MetricsHandler {
	return workflow.GetMetricsHandler(ctx).WithTags(map[string]string{TagChain: r.in.Chain.Name})
}
