package activities

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/dchain-dev/dchain/chain"
	"github.com/dchain-dev/dchain/workflows"
)

// A registry that answers its API root, even 401, is reachable; a 5xx or
// no answer is not, and says which registry.
func TestReachable(t *testing.T) {
	code := http.StatusUnauthorized
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(code) }))
	reg := chain.Registry{Name: "frankfurt", Address: strings.TrimPrefix(srv.URL, "http://"), Insecure: true}
	a := &Activities{}
	if err := a.Reachable(context.Background(), reg); err != nil {
		t.Fatalf("401: %v", err)
	}
	code = http.StatusServiceUnavailable
	if err := a.Reachable(context.Background(), reg); err == nil || !strings.Contains(err.Error(), "frankfurt") {
		t.Fatalf("503: %v", err)
	}
	srv.Close()
	if err := a.Reachable(context.Background(), reg); err == nil {
		t.Fatal("a closed registry is reachable")
	}
}

// A wave's health check passes on 2xx; any other answer, or none, is
// retried with the answer in the failure's details; a URL that cannot be
// requested fails at once.
func TestCheckHealth(t *testing.T) {
	code := http.StatusServiceUnavailable
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(code)
		_, _ = w.Write([]byte("canary unhealthy"))
	}))
	defer srv.Close()
	check := func(url string) (workflows.HealthResult, error) {
		var s testsuite.WorkflowTestSuite
		env := s.NewTestActivityEnvironment()
		a := &Activities{}
		env.RegisterActivity(a.CheckHealth)
		var res workflows.HealthResult
		v, err := env.ExecuteActivity(a.CheckHealth, workflows.HealthInput{URL: url, Wave: "canary"})
		if err == nil {
			err = v.Get(&res)
		}
		return res, err
	}
	var app *temporal.ApplicationError
	if _, err := check(srv.URL + "/healthz"); !errors.As(err, &app) || app.NonRetryable() || app.Type() != ErrHealthFailed ||
		!strings.Contains(app.Message(), "HTTP 503 canary unhealthy (will retry)") {
		t.Fatalf("503: %v", err)
	}
	var res workflows.HealthResult
	if err := app.Details(&res); err != nil || res.HTTPStatus != 503 {
		t.Fatalf("503's details: %+v %v", res, err)
	}
	code = http.StatusNoContent
	if res, err := check(srv.URL + "/healthz"); err != nil || res.HTTPStatus != 204 {
		t.Fatalf("204: %+v %v", res, err)
	}
	if _, err := check("http://canary\x7f/"); !errors.As(err, &app) || !app.NonRetryable() {
		t.Fatalf("a bad URL: %v", err)
	}
}
