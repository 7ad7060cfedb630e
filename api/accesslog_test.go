package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/dchain-dev/dchain/worker"
)

// One access log line per request, with the route pattern and status, and
// nothing of the query string, the headers or the body.
func TestAccessLog(t *testing.T) {
	var buf bytes.Buffer
	if err := worker.SetupLogging(&buf, "json", "info"); err != nil {
		t.Fatal(err)
	}
	defer worker.SetupLogging(&bytes.Buffer{}, "text", "info")
	e := echo.New()
	e.Use(accessLog)
	e.POST("/webhooks/:source", func(c echo.Context) error { return c.String(http.StatusAccepted, "ok") })
	req := httptest.NewRequest(http.MethodPost, "/webhooks/gh?token=query-secret", strings.NewReader(`{"password":"body-secret"}`))
	req.Header.Set("Authorization", "Bearer header-secret")
	e.ServeHTTP(httptest.NewRecorder(), req)
	line := strings.TrimSpace(buf.String())
	var rec map[string]any
	if err := json.Unmarshal([]byte(line), &rec); err != nil {
		t.Fatalf("%q: %v", line, err)
	}
	if rec["msg"] != "request" || rec["route"] != "/webhooks/:source" || rec["path"] != "/webhooks/gh" || rec["status"] != float64(202) || rec["method"] != "POST" {
		t.Fatalf("access log: %s", line)
	}
	if strings.Contains(line, "secret") {
		t.Fatalf("the access log holds a secret: %s", line)
	}
}
