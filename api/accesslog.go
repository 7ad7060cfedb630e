package api

import (
	"log/slog"
	"time"

	"github.com/labstack/echo/v4"
	"go.opentelemetry.io/otel/trace"
)

// accessLog names the request's span by its route and writes one line per request: method, path, route, status,
// bytes, duration and the remote address. Never headers, the query string
// or the body (they may carry tokens and signatures).
func accessLog(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		req, res := c.Request(), c.Response()
		status := answerStatus(c, err)
		if span := trace.SpanFromContext(req.Context()); span.IsRecording() {
			span.SetName(req.Method + " " + c.Path()) // the route pattern: bounded
		}
		slog.Info("request", "method", req.Method, "path", req.URL.Path, "route", c.Path(), "status", status,
			"bytes", res.Size, "duration", time.Since(start).Round(time.Microsecond), "remote", c.RealIP())
		return err
	}
}
