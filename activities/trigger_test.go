package activities

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/dchain-dev/dchain/chain"
	"github.com/dchain-dev/dchain/workflows"
)

var event = workflows.TriggerEvent{
	Chain: "demo", RunID: "demo:demo/app:v1@sha256:0123", Registry: "127.0.0.1:5001", Region: "cn-hangzhou",
	Repository: "demo/app", Tag: "v1", Digest: "sha256:abc", PushedAt: time.Date(2026, 11, 22, 4, 25, 46, 0, time.UTC),
}

func TestACRPayload(t *testing.T) {
	body, ct, err := TriggerBody(chain.FormatACR, "k", event)
	if err != nil || ct != "application/json" {
		t.Fatal(ct, err)
	}
	var p ACRPayload
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatal(err)
	}
	want := ACRPayload{
		PushData: ACRPushData{Digest: "sha256:abc", PushedAt: "2026-11-22 12:25:46", Tag: "v1"},
		Repository: ACRRepository{DateCreated: "2026-11-22 12:25:46", Name: "app", Namespace: "demo", Region: "cn-hangzhou",
			RepoAuthenticationType: "NO_CERTIFIED", RepoFullName: "demo/app", RepoOriginType: "NO_CERTIFIED", RepoType: "PRIVATE"},
	}
	if p != want {
		t.Fatalf("payload\n got %+v\nwant %+v", p, want)
	}
	again, _, _ := TriggerBody(chain.FormatACR, "k", event)
	if string(again) != string(body) {
		t.Fatal("the body must be the same on every attempt")
	}
}

// A signed image's payload names its signature and attestations; an
// unsigned one's is the vendor's exactly.
func TestPayloadsNameTheSigning(t *testing.T) {
	if body, _, _ := TriggerBody(chain.FormatACR, "k", event); strings.Contains(string(body), "signing") {
		t.Fatalf("an unsigned image's ACR payload: %s", body)
	}
	signed := event
	signed.Signing = &workflows.SigningRef{Key: "env:K", Signature: "sha256:sig",
		Attestations: []workflows.AttestationRef{{Kind: "provenance", PredicateType: "https://slsa.dev/provenance/v0.2", Platform: "linux/amd64", Digest: "sha256:prov"}}}
	for _, format := range []string{chain.FormatACR, chain.FormatCloudEvents} {
		body, _, err := TriggerBody(format, "k", signed)
		if err != nil {
			t.Fatal(err)
		}
		var p struct {
			Signing *workflows.SigningRef `json:"signing"`
			Data    struct {
				Signing *workflows.SigningRef `json:"signing"`
			} `json:"data"`
		}
		if err := json.Unmarshal(body, &p); err != nil {
			t.Fatal(err)
		}
		got := p.Signing
		if format == chain.FormatCloudEvents {
			got = p.Data.Signing
		}
		if got == nil || got.Signature != "sha256:sig" || len(got.Attestations) != 1 || got.Attestations[0].Digest != "sha256:prov" {
			t.Fatalf("%s payload: %s", format, body)
		}
	}
}

func TestCloudEventPayload(t *testing.T) {
	body, ct, err := TriggerBody(chain.FormatCloudEvents, "key-1", event)
	if err != nil || ct != "application/cloudevents+json" {
		t.Fatal(ct, err)
	}
	var ev CloudEvent
	if err := json.Unmarshal(body, &ev); err != nil {
		t.Fatal(err)
	}
	if ev.SpecVersion != "1.0" || ev.ID != "key-1" || ev.Type != CloudEventType || ev.Subject != "demo/app:v1" || ev.Data.Digest != "sha256:abc" {
		t.Fatalf("event %+v", ev)
	}
}

func TestSignature(t *testing.T) {
	sig := Sign("s", []byte("body"))
	if !VerifySignature("s", []byte("body"), sig) || VerifySignature("s", []byte("body!"), sig) || VerifySignature("t", []byte("body"), sig) {
		t.Fatal("HMAC verification")
	}
}

// deliver runs DeliverTrigger against a server answering with codes in turn.
func deliver(t *testing.T, codes ...int) (workflows.DeliverResult, error, []*http.Request, [][]byte) {
	t.Helper()
	var mu sync.Mutex
	var reqs []*http.Request
	var bodies [][]byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		b, _ := io.ReadAll(r.Body)
		reqs, bodies = append(reqs, r), append(bodies, b)
		w.WriteHeader(codes[min(len(reqs)-1, len(codes)-1)])
	}))
	defer srv.Close()
	t.Setenv("DCHAIN_TEST_HOOK_SECRET", "topsecret")
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	a := &Activities{}
	env.RegisterActivity(a.DeliverTrigger)
	in := workflows.DeliverInput{
		Trigger:        chain.Trigger{Name: "hook", URL: srv.URL + "/hook", Mode: chain.TriggerAll, Secret: "env:DCHAIN_TEST_HOOK_SECRET"},
		Event:          event,
		IdempotencyKey: "idem-1",
	}
	var res workflows.DeliverResult
	v, err := env.ExecuteActivity(a.DeliverTrigger, in)
	if err == nil {
		err = v.Get(&res)
	}
	return res, err, reqs, bodies
}

func TestDeliverTriggerSignsAndSucceeds(t *testing.T) {
	res, err, reqs, bodies := deliver(t, http.StatusAccepted)
	if err != nil || res.HTTPStatus != 202 || len(reqs) != 1 {
		t.Fatal(res, err, len(reqs))
	}
	r := reqs[0]
	if !VerifySignature("topsecret", bodies[0], r.Header.Get(HeaderSignature)) {
		t.Fatal("signature does not verify")
	}
	if r.Header.Get(HeaderIdempotency) != "idem-1" || r.Header.Get(HeaderDelivery) != "idem-1" {
		t.Fatal("idempotency key missing")
	}
}

func TestDeliverTriggerRetryableAndPermanent(t *testing.T) {
	for _, tc := range []struct {
		code      int
		retryable bool
	}{{500, true}, {503, true}, {429, true}, {408, true}, {404, false}, {401, false}, {400, false}} {
		_, err, _, _ := deliver(t, tc.code)
		var app *temporal.ApplicationError
		if !errors.As(err, &app) {
			t.Fatalf("HTTP %d: want an application error, got %v", tc.code, err)
		}
		if app.NonRetryable() == tc.retryable {
			t.Errorf("HTTP %d: non-retryable=%v, want retryable=%v", tc.code, app.NonRetryable(), tc.retryable)
		}
		var d workflows.DeliverResult
		if err := app.Details(&d); err != nil || d.HTTPStatus != tc.code {
			t.Errorf("HTTP %d: details %+v %v", tc.code, d, err)
		}
	}
}
