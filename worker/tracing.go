package worker

import (
	"context"
	"fmt"
	"net/http"
	"os"

	"go.opentelemetry.io/contrib/exporters/autoexport"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	sdkotel "go.temporal.io/sdk/contrib/opentelemetry"
	"go.temporal.io/sdk/interceptor"
)

// Tracing is a process's OpenTelemetry tracing: one trace from a webhook
// (its traceparent continued) through the workflow start, the workflow and
// every activity to the registry and trigger HTTP requests they make. A
// nil *Tracing traces nothing.
type Tracing struct {
	provider   *sdktrace.TracerProvider
	tracer     trace.Tracer
	propagator propagation.TextMapPropagator
}

// StartTracing exports spans as the standard OTEL_* variables say
// (OTEL_TRACES_EXPORTER, OTEL_EXPORTER_OTLP_ENDPOINT, …), and returns nil
// — no tracing — when none of them asks for it.
func StartTracing(ctx context.Context) (*Tracing, error) {
	if os.Getenv("OTEL_TRACES_EXPORTER") == "" && os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" {
		return nil, nil
	}
	exp, err := autoexport.NewSpanExporter(ctx)
	if err != nil {
		return nil, fmt.Errorf("tracing (OTEL_* variables): %w", err)
	}
	if autoexport.IsNoneSpanExporter(exp) {
		return nil, nil
	}
	return NewTracing(sdktrace.WithBatcher(exp)), nil
}

// NewTracing traces into the span processors of opts (tests pass a
// synchronous in-memory exporter).
func NewTracing(opts ...sdktrace.TracerProviderOption) *Tracing {
	tp := sdktrace.NewTracerProvider(opts...)
	return &Tracing{provider: tp, tracer: tp.Tracer("dchain"),
		propagator: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})}
}

// ClientInterceptors are the Temporal client's tracing interceptors.
func (t *Tracing) ClientInterceptors() ([]interceptor.ClientInterceptor, error) {
	if t == nil {
		return nil, nil
	}
	i, err := sdkotel.NewTracingInterceptor(sdkotel.TracerOptions{Tracer: t.tracer, TextMapPropagator: t.propagator})
	if err != nil {
		return nil, fmt.Errorf("tracing: %w", err)
	}
	return []interceptor.ClientInterceptor{i}, nil
}

// Transport traces the requests sent over base (nil: http.DefaultTransport).
func (t *Tracing) Transport(base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	if t == nil {
		return base
	}
	return otelhttp.NewTransport(base, otelhttp.WithTracerProvider(t.provider), otelhttp.WithPropagators(t.propagator))
}

// Handler traces the requests h serves, continuing a caller's
// traceparent. Spans are named by method; h may rename them by its route
// pattern (the API does), never by the raw path.
func (t *Tracing) Handler(h http.Handler) http.Handler {
	if t == nil {
		return h
	}
	return otelhttp.NewHandler(h, "http", otelhttp.WithTracerProvider(t.provider), otelhttp.WithPropagators(t.propagator),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return r.Method }))
}

// Close flushes the spans still buffered.
func (t *Tracing) Close() {
	if t != nil {
		_ = t.provider.Shutdown(context.Background())
	}
}
