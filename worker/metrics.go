package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	sdkotel "go.temporal.io/sdk/contrib/opentelemetry"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/temporal"

	"github.com/dchain-dev/dchain/chain"
	"github.com/dchain-dev/dchain/workflows"
)

// Metrics are one process's Prometheus metrics: the Temporal SDK's (task
// latencies, pollers, schedule-to-start: the backlog) and dchain's, through
// one OpenTelemetry meter exported into Registry. Labels naming a chain,
// destination, trigger or webhook source carry only names of the config;
// anything else becomes "unknown", so no request can add series.
type Metrics struct {
	Registry *prometheus.Registry
	// Handler goes in the SDK client's options (client.Options.MetricsHandler).
	Handler client.MetricsHandler
	meters  *sdkmetric.MeterProvider
	allow   atomic.Pointer[map[string]map[string]bool]
	health  atomic.Pointer[func(context.Context) error]
}

// SetHealth makes f answer /healthz: nil is healthy (200), an error says
// why not (503). Until it is set, /healthz answers 503 "starting".
func (m *Metrics) SetHealth(f func(context.Context) error) { m.health.Store(&f) }

// NewMetrics makes the registry (with Go and process collectors) and the
// SDK metrics handler, bounded by the names in cfg.
func NewMetrics(l *chain.Loaded) (*Metrics, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	exp, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo(), otelprom.WithoutTargetInfo())
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp), sdkmetric.WithView(sdkmetric.NewView(
		sdkmetric.Instrument{Name: workflows.MetricStageDuration},
		sdkmetric.Stream{Aggregation: sdkmetric.AggregationExplicitBucketHistogram{
			Boundaries: []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600}}})))
	h := sdkotel.NewMetricsHandler(sdkotel.MetricsHandlerOptions{Meter: mp.Meter("dchain"), UseMonotonicCounters: true,
		OnError: func(error) {}})
	m := &Metrics{Registry: reg, meters: mp}
	m.SetBounds(l)
	m.Handler = bounded{h, &m.allow}
	return m, nil
}

// SetBounds makes the names of l the allowed label values (a config reload).
func (m *Metrics) SetBounds(l *chain.Loaded) {
	allow := allowedLabels(l)
	m.allow.Store(&allow)
}

// allowedLabels are the label values a config allows, by tag key.
func allowedLabels(l *chain.Loaded) map[string]map[string]bool {
	allow := map[string]map[string]bool{workflows.TagChain: {}, workflows.TagDestination: {}, workflows.TagTrigger: {}, workflows.TagSource: {}}
	if l == nil {
		return allow
	}
	for _, r := range l.Config.Registries {
		allow[workflows.TagDestination][r.Name] = true
	}
	for _, s := range l.Config.Sources {
		allow[workflows.TagSource][s.Name] = true
	}
	for _, c := range l.Chains {
		allow[workflows.TagChain][c.Name] = true
		for _, t := range c.Triggers {
			allow[workflows.TagTrigger][t.Name] = true
		}
	}
	return allow
}

// bounded replaces label values outside the allowed sets by "unknown".
type bounded struct {
	client.MetricsHandler
	allow *atomic.Pointer[map[string]map[string]bool]
}

func (b bounded) WithTags(tags map[string]string) client.MetricsHandler {
	clean := maps.Clone(tags)
	allow := *b.allow.Load()
	for k, v := range tags {
		if set, ok := allow[k]; ok && !set[v] {
			clean[k] = "unknown"
		}
	}
	return bounded{b.MetricsHandler.WithTags(clean), b.allow}
}

// Unwrap lets the SDK's contrib find the OpenTelemetry handler.
func (b bounded) Unwrap() client.MetricsHandler { return b.MetricsHandler }

// Serve serves /metrics and /healthz (SetHealth) on ln until ctx ends.
func (m *Metrics) Serve(ctx context.Context, ln net.Listener) error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		f := m.health.Load()
		if f == nil {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		if err := (*f)(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Close flushes and stops the meter provider.
func (m *Metrics) Close() { _ = m.meters.Shutdown(context.Background()) }

// activityObserver is a worker interceptor that logs each activity
// attempt's start and end with its run (workflow ID), attempt and task
// queue — never its input or result (they are in the run's history;
// secrets never are) — and records dchain's activity metrics from the
// attempt's input and result: bytes and blobs replicated and failed copies
// by destination, trigger deliveries by result, scan findings by severity.
type activityObserver struct {
	interceptor.WorkerInterceptorBase
}

func (*activityObserver) InterceptActivity(ctx context.Context, next interceptor.ActivityInboundInterceptor) interceptor.ActivityInboundInterceptor {
	i := &activityObserverInbound{}
	i.Next = next
	return i
}

type activityObserverInbound struct {
	interceptor.ActivityInboundInterceptorBase
}

func (i *activityObserverInbound) ExecuteActivity(ctx context.Context, in *interceptor.ExecuteActivityInput) (any, error) {
	info := activity.GetInfo(ctx)
	log := slog.With("activity", info.ActivityType.Name, "run", info.WorkflowExecution.ID, "attempt", info.Attempt, "queue", info.TaskQueue)
	log.Info("activity started")
	start := time.Now()
	out, err := i.Next.ExecuteActivity(ctx, in)
	if err != nil {
		log.Warn("activity failed", "duration", time.Since(start).Round(time.Millisecond), "error", err)
	} else {
		log.Info("activity ended", "duration", time.Since(start).Round(time.Millisecond))
	}
	if len(in.Args) > 0 {
		recordActivity(activity.GetMetricsHandler(ctx), in.Args[0], out, err)
	}
	return out, err
}

// recordActivity records the metrics of one attempt with input arg.
func recordActivity(m client.MetricsHandler, arg, out any, err error) {
	switch arg := arg.(type) {
	case workflows.ReplicateInput:
		d := m.WithTags(map[string]string{workflows.TagDestination: arg.Destination.Name})
		if res, ok := out.(workflows.ReplicateResult); ok {
			d.Counter(workflows.MetricReplicatedBytes).Inc(res.BytesCopied)
			d.Counter(workflows.MetricReplicatedBlobs).Inc(int64(res.BlobsCopied))
		}
		if err != nil {
			d.WithTags(map[string]string{workflows.TagClass: errorClass(err)}).Counter(workflows.MetricReplicationRetries).Inc(1)
		}
	case workflows.DeliverInput:
		result := "delivered"
		if err != nil {
			result = errorClass(err)
			if res, ok := out.(workflows.DeliverResult); ok && res.HTTPStatus != 0 {
				result = "http_" + strconv.Itoa(res.HTTPStatus)
			}
		}
		m.WithTags(map[string]string{workflows.TagTrigger: arg.Trigger.Name, workflows.TagResult: result}).Counter(workflows.MetricTriggerDeliveries).Inc(1)
	case workflows.ScanInput:
		if sum, ok := out.(workflows.ScanSummary); ok && err == nil {
			for sev, n := range sum.Counts {
				m.WithTags(map[string]string{workflows.TagSeverity: sev}).Counter(workflows.MetricScanFindings).Inc(int64(n))
			}
		}
	}
}

// errorClass is an activity error's type ("Transient", "AccessDenied",
// "canceled"…), a bounded set decided where the error is made.
func errorClass(err error) string {
	var app *temporal.ApplicationError
	switch {
	case errors.As(err, &app) && app.Type() != "":
		return app.Type()
	case errors.Is(err, context.Canceled) || temporal.IsCanceledError(err):
		return "canceled"
	default:
		return "other"
	}
}
