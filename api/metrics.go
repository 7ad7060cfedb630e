package api

import (
	"strconv"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dchain-dev/dchain/workflows"
)

// metrics are the API's Prometheus metrics, in the process's registry
// (beside the SDK client's) or one of their own.
type metrics struct {
	registry *prometheus.Registry
	requests *prometheus.CounterVec
	starts   *prometheus.CounterVec
	events   *prometheus.CounterVec
}

func newMetrics(reg *prometheus.Registry) *metrics {
	m := &metrics{
		registry: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "dchain_api_requests_total",
			Help: "HTTP requests by route (the API's route pattern, never the raw path) and status code."}, []string{"route", "code"}),
		starts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "dchain_api_runs_started_total",
			Help: "Chain runs started through the API, by origin (a configured webhook source, or api)."}, []string{"origin"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: workflows.MetricWebhookEvents + "_total",
			Help: "Webhook deliveries by source (configured names; anything else is unknown) and result."}, []string{workflows.TagSource, workflows.TagResult}),
	}
	if m.registry == nil {
		m.registry = prometheus.NewRegistry()
		m.registry.MustRegister(prometheus.NewGoCollector())
	}
	m.registry.MustRegister(m.requests, m.starts, m.events)
	return m
}

// event counts a webhook delivery of source (already bounded) by result.
func (m *metrics) event(source, result string) {
	m.events.WithLabelValues(source, result).Inc()
}

// count counts every request by route and answer.
func (s *Server) count(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		err := next(c)
		code := answerStatus(c, err)
		route := c.Path()
		if route == "" || route == "/*" {
			route = "unmatched"
		}
		s.metrics.requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
		return err
	}
}

// answerStatus is the status the request was answered with: the response's,
// or that of the echo error the handler returned (written after the
// middlewares, by the error handler).
func answerStatus(c echo.Context, err error) int {
	if he, ok := err.(*echo.HTTPError); ok {
		return he.Code
	}
	return c.Response().Status
}
