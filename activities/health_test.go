package activities

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/dchain-dev/dchain/chain"
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
