package devstack

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/dchain-dev/dchain/starter"
	"github.com/dchain-dev/dchain/worker"
	"github.com/dchain-dev/dchain/workflows"
)

// tracing records the stack's spans in spans (in memory).
var (
	tracing *worker.Tracing
	spans   = tracetest.NewInMemoryExporter()
)

// One trace ties a webhook — continuing the sender's traceparent — to the
// workflow start, the workflow, every activity and the HTTP requests the
// activities make to the registries and the trigger receivers.
func TestTraceTiesWebhookToActivities(t *testing.T) {
	if tracing == nil {
		t.Fatal("the stack was started without tracing")
	}
	digest, err := PushSample(context.Background(), stack.Endpoints.Registries["src"], "trace/app", "v1")
	if err != nil {
		t.Fatal(err)
	}
	l, _ := testChain("it-trace", "trace/app")
	_, s := apiServer(t, l, stack.Client)
	srv := httptest.NewServer(tracing.Handler(s.Handler()))
	defer srv.Close()

	traceID, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	body := distributionEvent("trace/app", "v1", digest)
	h, err := starter.SignedHeaders(starter.ProviderDistribution, "hook-secret", body, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/webhooks/registry", bytes.NewReader(body))
	req.Header = h
	req.Header.Set("traceparent", "00-"+traceID.String()+"-00f067aa0ba902b7-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("webhook: %s", resp.Status)
	}
	id := workflows.WorkflowID("it-trace", workflows.ImageRef{Registry: "src", Repository: "trace/app", Tag: "v1", Digest: digest})
	if st := waitRun(t, id, time.Minute); st.Outcome != workflows.OutcomeSucceeded {
		t.Fatalf("%s %s", st.Outcome, st.Message)
	}

	var names []string
	clientHTTP := 0
	for _, sp := range spans.GetSpans() {
		if sp.SpanContext.TraceID() != traceID {
			continue
		}
		names = append(names, sp.Name)
		if sp.SpanKind == trace.SpanKindClient {
			clientHTTP++
		}
	}
	for _, want := range []string{"POST /webhooks/:source", "StartWorkflow:ChainRun", "RunWorkflow:ChainRun",
		"StartActivity:" + workflows.ActivityResolveImage, "RunActivity:" + workflows.ActivityResolveImage,
		"StartActivity:" + workflows.ActivityReplicateImage, "RunActivity:" + workflows.ActivityReplicateImage,
		"RunActivity:" + workflows.ActivityDeliverTrigger} {
		if !slices.Contains(names, want) {
			t.Errorf("the trace lacks %q; it has %v", want, names)
		}
	}
	if clientHTTP < 4 {
		t.Errorf("%d HTTP client spans in the trace (registry and trigger requests), want several: %v", clientHTTP, names)
	}
}
