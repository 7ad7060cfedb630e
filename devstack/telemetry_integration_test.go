package devstack

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/dchain-dev/dchain/api"
	"github.com/dchain-dev/dchain/chain"
	"github.com/dchain-dev/dchain/starter"
	"github.com/dchain-dev/dchain/worker"
	"github.com/dchain-dev/dchain/workflows"
)

// metrics are the stack's process metrics (the SDK's and dchain's).
var metrics *worker.Metrics

// metricsBounds is the config the metrics know: the stack's registries,
// chain it-metrics with triggers acr and ce, and source registry.
func metricsBounds() *chain.Loaded {
	cfg := &chain.Config{Sources: []chain.Source{{Name: "registry"}}}
	for _, r := range []string{"src", "eu", "us", "ap", "priv"} {
		cfg.Registries = append(cfg.Registries, chain.Registry{Name: r})
	}
	return &chain.Loaded{Config: cfg, Chains: []chain.Chain{{Name: "it-metrics", Triggers: []chain.Trigger{{Name: "acr"}, {Name: "ce"}}}}}
}

// After a scanned chain run to two regions with two triggers, a copy that
// fails (a wrong password) and a run of a chain the metrics do not know,
// the process's /metrics holds every dchain family with the right labels,
// the SDK's own (backlog: schedule-to-start), and no label value outside
// the config; the API counts webhooks by configured source only and labels
// requests by route pattern, so random paths add no series.
func TestMetrics(t *testing.T) {
	pushVulnerable(t, "metrics/app", "v1")
	l := scanChain("it-metrics", "metrics/app", chain.Scan{Mode: chain.ModeNonBlocking, Conditions: critical, Action: chain.ActionDeleteTag})
	if st := waitRun(t, startRun(t, l, "metrics/app:v1").WorkflowID, 2*time.Minute); st.Outcome != workflows.OutcomeSucceeded {
		t.Fatalf("%s %s", st.Outcome, st.Message)
	}
	if _, err := PushSample(t.Context(), stack.Endpoints.Registries["src"], "metrics/other", "v1"); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DCHAIN_IT_METRICS_WRONG", privUser+":wrong")
	wrong := privRegistry
	wrong.Credentials = "env:DCHAIN_IT_METRICS_WRONG"
	waitFailed(t, startRun(t, withPriv("it-metrics-unknown", "metrics/other", wrong), "metrics/other:v1").WorkflowID)

	srv, _ := apiServerWith(t, l, metrics)
	for _, path := range []string{"/webhooks/evil-1", "/webhooks/evil-2", "/random/path/1"} {
		resp, err := http.Post(srv.URL+path, "application/json", strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}

	fams := scrape(t)
	allowed := map[string]map[string]bool{}
	for k, v := range map[string][]string{"chain": {"it-metrics", "unknown"}, "destination": {"src", "eu", "us", "ap", "priv", "unknown"},
		"trigger": {"acr", "ce", "unknown"}, "source": {"registry", "unknown"}} {
		allowed[k] = map[string]bool{}
		for _, n := range v {
			allowed[k][n] = true
		}
	}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			for _, lp := range m.GetLabel() {
				if set, ok := allowed[lp.GetName()]; ok && !set[lp.GetValue()] {
					t.Errorf("%s{%s=%q}: a label value outside the config", name, lp.GetName(), lp.GetValue())
				}
				if lp.GetName() == "route" && (strings.Contains(lp.GetValue(), "evil") || strings.Contains(lp.GetValue(), "random")) {
					t.Errorf("%s{route=%q}: a raw path as a label", name, lp.GetValue())
				}
			}
		}
	}
	for _, c := range []struct {
		family string
		labels map[string]string
	}{
		{"dchain_runs_started_total", map[string]string{"chain": "it-metrics"}},
		{"dchain_runs_ended_total", map[string]string{"chain": "it-metrics", "outcome": "Succeeded"}},
		{"dchain_runs_ended_total", map[string]string{"chain": "unknown", "outcome": "Failed"}},
		{"dchain_stage_duration_seconds", map[string]string{"chain": "it-metrics", "stage": "replicate", "state": "Succeeded"}},
		{"dchain_stage_duration_seconds", map[string]string{"chain": "it-metrics", "stage": "scan", "state": "Succeeded"}},
		{"dchain_replicated_bytes_total", map[string]string{"destination": "eu"}},
		{"dchain_replicated_blobs_total", map[string]string{"destination": "us"}},
		{"dchain_replication_failures_total", map[string]string{"destination": "priv", "class": "AccessDenied"}},
		{"dchain_trigger_deliveries_total", map[string]string{"trigger": "acr", "result": "delivered"}},
		{"dchain_trigger_deliveries_total", map[string]string{"trigger": "ce", "result": "delivered"}},
		{"dchain_scan_findings_total", map[string]string{"severity": "CRITICAL"}},
		{"dchain_webhook_events_total", map[string]string{"source": "unknown", "result": "unknown_source"}},
		{"dchain_api_requests_total", map[string]string{"route": "/webhooks/:source", "code": "404"}},
		{"temporal_activity_schedule_to_start_latency_seconds", map[string]string{"activity_type": workflows.ActivityReplicateImage}},
		{"temporal_workflow_completed_total", map[string]string{"workflow_type": "ChainRun"}},
	} {
		if v := find(fams, c.family, c.labels); v <= 0 {
			t.Errorf("%s%v: %v, want > 0", c.family, c.labels, v)
		}
	}
}

// apiServerWith is apiServer with the API's metrics in m's registry.
func apiServerWith(t *testing.T, l *chain.Loaded, m *worker.Metrics) (*httptest.Server, *api.Server) {
	t.Helper()
	t.Setenv(hookSecretEnv, "hook-secret")
	t.Setenv(apiTokenEnv, "api-token")
	l.Config.API.Token = "env:" + apiTokenEnv
	l.Config.Sources = []chain.Source{{Name: "registry", Provider: starter.ProviderDistribution, Registry: "src", Secret: "env:" + hookSecretEnv}}
	s, err := api.NewServer(&starter.Starter{Client: stack.Client, Config: l}, l, "default", m.Registry)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return srv, s
}

// scrape reads the process's /metrics as Prometheus text.
func scrape(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	srv := httptest.NewServer(promhttp.HandlerFor(metrics.Registry, promhttp.HandlerOpts{}))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

// find sums the family's samples whose labels include want (a histogram
// counts its observations).
func find(fams map[string]*dto.MetricFamily, family string, want map[string]string) float64 {
	f, ok := fams[family]
	if !ok {
		return -1
	}
	sum := 0.0
next:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, lp := range m.GetLabel() {
			have[lp.GetName()] = lp.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Histogram != nil:
			sum += float64(m.GetHistogram().GetSampleCount())
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		}
	}
	return sum
}
