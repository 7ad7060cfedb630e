package api

import (
	"strconv"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the API's Prometheus metrics, in a registry of their own.
type metrics struct {
	registry   *prometheus.Registry
	requests   *prometheus.CounterVec
	runs       *prometheus.CounterVec
	rejections *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "dchain_api_requests_total", Help: "HTTP requests by route and status code."}, []string{"route", "code"}),
		runs:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "dchain_runs_started_total", Help: "Chain runs started, by origin (webhook source or api)."}, []string{"origin"}),
		rejections: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "dchain_webhook_rejections_total", Help: "Webhook deliveries refused, by source and reason."},
			[]string{"source", "reason"}),
	}
	m.registry.MustRegister(m.requests, m.runs, m.rejections, prometheus.NewGoCollector())
	return m
}

// count counts every request by route and answer.
func (s *Server) count(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		err := next(c)
		code := c.Response().Status
		if he, ok := err.(*echo.HTTPError); ok {
			code = he.Code
		}
		s.metrics.requests.WithLabelValues(c.Path(), strconv.Itoa(code)).Inc()
		return err
	}
}
