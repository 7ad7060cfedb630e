package worker

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
)

// /healthz answers 503 until a health check is set, then what it says.
func TestHealthz(t *testing.T) {
	m, err := NewMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go m.Serve(ctx, ln)
	get := func() (int, string) {
		resp, err := http.Get("http://" + ln.Addr().String() + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get(); code != http.StatusServiceUnavailable {
		t.Fatalf("before a check is set: %d", code)
	}
	m.SetHealth(func(context.Context) error { return errors.New("registry frankfurt: connection refused") })
	if code, body := get(); code != http.StatusServiceUnavailable || !strings.Contains(body, "frankfurt") {
		t.Fatalf("unhealthy: %d %q", code, body)
	}
	m.SetHealth(func(context.Context) error { return nil })
	if code, _ := get(); code != http.StatusOK {
		t.Fatalf("healthy: %d", code)
	}
}
