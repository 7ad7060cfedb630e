package devstack

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/dchain-dev/dchain/activities"
	"github.com/dchain-dev/dchain/api"
	"github.com/dchain-dev/dchain/chain"
	"github.com/dchain-dev/dchain/starter"
	"github.com/dchain-dev/dchain/workflows"
)

const (
	hookSecretEnv = "DCHAIN_IT_HOOK_SECRET"
	apiTokenEnv   = "DCHAIN_IT_API_TOKEN"
)

// apiServer serves l's sources and API from an httptest server.
func apiServer(t testing.TB, l *chain.Loaded, c client.Client) (*httptest.Server, *api.Server) {
	t.Helper()
	t.Setenv(hookSecretEnv, "hook-secret")
	t.Setenv(apiTokenEnv, "api-token")
	l.Config.API.Token = "env:" + apiTokenEnv
	l.Config.Sources = []chain.Source{
		{Name: "gh", Provider: starter.ProviderGitHub, Secret: "env:" + hookSecretEnv},
		{Name: "registry", Provider: starter.ProviderDistribution, Registry: "src", Secret: "env:" + hookSecretEnv},
		{Name: "harbor", Provider: starter.ProviderHarbor, Registry: "src", Secret: "env:" + hookSecretEnv},
	}
	s, err := api.NewServer(&starter.Starter{Client: c, Config: l}, l, "default", nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return srv, s
}

// deliver POSTs a signed (or, with secret "", unsigned) delivery.
func deliver(t testing.TB, url, source, provider, secret string, body []byte, extra ...string) (int, api.WebhookAnswer, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url+"/webhooks/"+source, bytes.NewReader(body))
	if secret != "" {
		h, err := starter.SignedHeaders(provider, secret, body, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		req.Header = h
	}
	for i := 0; i+1 < len(extra); i += 2 {
		req.Header.Set(extra[i], extra[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var ans api.WebhookAnswer
	_ = json.Unmarshal(raw, &ans)
	return resp.StatusCode, ans, string(raw)
}

func distributionEvent(repo, tag, digest string) []byte {
	return []byte(fmt.Sprintf(`{"events":[{"id":"%s","timestamp":"%s","action":"push","target":{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"%s","repository":"%s","tag":"%s"},"actor":{"name":"ci"}}]}`,
		tag, time.Now().UTC().Format(time.RFC3339Nano), digest, repo, tag))
}

func TestWebhookAnswers(t *testing.T) {
	l, _ := testChain("it-hooks", "hooks/app")
	srv, _ := apiServer(t, l, stack.Client)
	digest, err := PushSample(context.Background(), stack.Endpoints.Registries["src"], "hooks/app", "v1")
	if err != nil {
		t.Fatal(err)
	}
	ev := distributionEvent("hooks/app", "v1", digest)

	if code, _, body := deliver(t, srv.URL, "nope", "distribution", "hook-secret", ev); code != http.StatusNotFound || !strings.Contains(body, `"code":"unknown_source"`) {
		t.Errorf("unknown source: %d %s", code, body)
	}
	if code, _, _ := deliver(t, srv.URL, "registry", "distribution", "wrong-secret", ev); code != http.StatusUnauthorized {
		t.Errorf("bad signature: %d", code)
	}
	if code, _, _ := deliver(t, srv.URL, "registry", "distribution", "", ev); code != http.StatusUnauthorized {
		t.Errorf("missing signature: %d", code)
	}
	if code, _, body := deliver(t, srv.URL, "registry", "distribution", "hook-secret", []byte(`{"events":[{"action":"push","target":{"repository":"hooks/app","tag":"v1","digest":"nope"}}]}`)); code != http.StatusBadRequest || !strings.Contains(body, "sha256") {
		t.Errorf("malformed: %d %s", code, body)
	}
	if code, _, _ := deliver(t, srv.URL, "registry", "distribution", "hook-secret", bytes.Repeat([]byte("x"), api.DefaultMaxBody+1)); code != http.StatusRequestEntityTooLarge {
		t.Errorf("too large: %d", code)
	}
	if code, ans, _ := deliver(t, srv.URL, "gh", "github", "hook-secret", []byte(`{"zen":"hi"}`), "X-GitHub-Event", "ping"); code != http.StatusOK || len(ans.Runs) != 0 || len(ans.Ignored) != 1 {
		t.Errorf("ping: %d %+v", code, ans)
	}
	if code, ans, _ := deliver(t, srv.URL, "gh", "github", "hook-secret", sample(t, "github-delete.json")); code != http.StatusOK || len(ans.Runs) != 0 {
		t.Errorf("branch deletion: %d %+v", code, ans)
	}

	// A good delivery starts one run; its redelivery starts nothing new.
	code, first, body := deliver(t, srv.URL, "registry", "distribution", "hook-secret", ev)
	if code != http.StatusAccepted || len(first.Runs) != 1 || first.Runs[0].Existing || !strings.Contains(first.Runs[0].UI, "/namespaces/default/workflows/") {
		t.Fatalf("first delivery: %d %s", code, body)
	}
	code, again, _ := deliver(t, srv.URL, "registry", "distribution", "hook-secret", ev)
	if code != http.StatusOK || len(again.Runs) != 1 || !again.Runs[0].Existing || again.Runs[0].RunID != first.Runs[0].RunID {
		t.Fatalf("redelivery: %d %+v", code, again)
	}
	// The API's memory of recent deliveries answers only signed ones: the
	// same body with a wrong or no signature is still refused.
	for _, secret := range []string{"wrong-secret", ""} {
		if code, _, _ := deliver(t, srv.URL, "registry", "distribution", secret, ev); code != http.StatusUnauthorized {
			t.Errorf("a remembered body with signing secret %q: %d, want 401", secret, code)
		}
	}
	st := waitRun(t, first.Runs[0].WorkflowID, time.Minute)
	if st.Outcome != workflows.OutcomeSucceeded || st.Image.Digest != digest {
		t.Fatalf("run: %s %s", st.Outcome, st.Message)
	}
	assertReplicated(t, "eu", "hooks/app", "v1", digest)
}

func TestWebhookTemporalUnavailable(t *testing.T) {
	l, _ := testChain("it-down", "hooks/down")
	dead, err := client.NewLazyClient(client.Options{HostPort: "127.0.0.1:1", ConnectionOptions: client.ConnectionOptions{}})
	if err != nil {
		t.Fatal(err)
	}
	srv, _ := apiServer(t, l, dead)
	digest, err := PushSample(context.Background(), stack.Endpoints.Registries["src"], "hooks/down", "v1")
	if err != nil {
		t.Fatal(err)
	}
	if code, _, body := deliver(t, srv.URL, "registry", "distribution", "hook-secret", distributionEvent("hooks/down", "v1", digest)); code != http.StatusServiceUnavailable {
		t.Fatalf("Temporal down: %d %s", code, body)
	}
}

// call makes an API request with the token (or without, when token is "").
func call(t *testing.T, method, url, token string, body any) (int, map[string]any) {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, url, r)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func TestRESTAPI(t *testing.T) {
	l, _ := testChain("it-rest", "rest/app")
	srv, _ := apiServer(t, l, stack.Client)
	digest, err := PushSample(context.Background(), stack.Endpoints.Registries["src"], "rest/app", "v1")
	if err != nil {
		t.Fatal(err)
	}
	if code, out := call(t, "GET", srv.URL+"/api/v1/chains", "", nil); code != http.StatusUnauthorized || out["error"] == nil {
		t.Fatalf("no token: %d %v", code, out)
	}
	if code, _ := call(t, "GET", srv.URL+"/api/v1/chains", "wrong", nil); code != http.StatusUnauthorized {
		t.Fatalf("wrong token: %d", code)
	}
	if code, out := call(t, "GET", srv.URL+"/api/v1/chains", "api-token", nil); code != http.StatusOK || len(out["chains"].([]any)) != 1 {
		t.Fatalf("chains: %d %v", code, out)
	}
	if code, out := call(t, "POST", srv.URL+"/api/v1/runs", "api-token", map[string]any{"chain": "it-rest"}); code != http.StatusBadRequest {
		t.Fatalf("start without image or ref: %d %v", code, out)
	}
	code, out := call(t, "POST", srv.URL+"/api/v1/runs", "api-token", map[string]any{"chain": "it-rest", "image": "rest/app:v1"})
	if code != http.StatusAccepted {
		t.Fatalf("start: %d %v", code, out)
	}
	id := out["runs"].([]any)[0].(map[string]any)["workflowId"].(string)
	waitRun(t, id, time.Minute)
	if code, out := call(t, "GET", srv.URL+"/api/v1/runs/"+id, "api-token", nil); code != http.StatusOK || out["run"].(map[string]any)["outcome"] != "Succeeded" {
		t.Fatalf("get: %d %v", code, out)
	}
	if code, _ := call(t, "GET", srv.URL+"/api/v1/runs/does-not-exist", "api-token", nil); code != http.StatusNotFound {
		t.Fatalf("unknown run: %d", code)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		code, out := call(t, "GET", srv.URL+"/api/v1/runs?chain=it-rest&outcome=Succeeded", "api-token", nil)
		if code == http.StatusOK && len(out["runs"].([]any)) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("list: %d %v", code, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Cancel a run that is waiting on a stopped destination.
	us := stack.Registries["us"]
	if err := us.Stop(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		r, err := StartRegistry(us.Name, us.Addr, us.RootDir)
		if err != nil {
			t.Fatal(err)
		}
		stack.Registries["us"] = r
	}()
	if _, err := PushSample(context.Background(), stack.Endpoints.Registries["src"], "rest/app", "v2"); err != nil {
		t.Fatal(err)
	}
	_, out = call(t, "POST", srv.URL+"/api/v1/runs", "api-token", map[string]any{"chain": "it-rest", "image": "rest/app:v2"})
	id2 := out["runs"].([]any)[0].(map[string]any)["workflowId"].(string)
	time.Sleep(500 * time.Millisecond)
	if code, out := call(t, "POST", srv.URL+"/api/v1/runs/"+id2+"/cancel", "api-token", nil); code != http.StatusAccepted {
		t.Fatalf("cancel: %d %v", code, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := stack.Client.GetWorkflow(ctx, id2, "").Get(ctx, nil); err == nil || !strings.Contains(err.Error(), "canceled") {
		t.Fatalf("canceled run ended with %v", err)
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if code, _ := call(t, "GET", srv.URL+path, "", nil); code != http.StatusOK {
			t.Fatalf("%s: %d", path, code)
		}
	}
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	m, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(m), `dchain_api_runs_started_total{origin="api"} 2`) || !strings.Contains(string(m), "dchain_api_requests_total") {
		t.Fatalf("metrics:\n%s", m)
	}
	_ = digest
}

// TestSignedGitHubPushBuildsScansReplicatesTriggers is the whole chain from a webhook.
func TestSignedGitHubPushBuildsScansReplicatesTriggers(t *testing.T) {
	src := filepath.Join(t.TempDir(), "sample-app")
	if err := SampleRepo(context.Background(), src, ""); err != nil {
		t.Fatal(err)
	}
	l := buildChain(t, "it-github", "hook/web", src, "linux/amd64", "linux/arm64")
	l.Chains[0].Scan = &chain.Scan{Conditions: critical, Action: chain.ActionDeleteTag}
	srv, _ := apiServer(t, l, stack.Client)
	commit, err := activities.ResolveRef(context.Background(), l.Chains[0].Build.Source, "refs/heads/main")
	if err != nil {
		t.Fatal(err)
	}
	payload := fmt.Sprintf(`{"ref":"refs/heads/main","after":"%s","deleted":false,"repository":{"full_name":"acme/sample-app","clone_url":%q},"pusher":{"name":"alice"},"head_commit":{"timestamp":"2026-11-22T08:00:00Z"}}`, commit, src)
	code, ans, body := deliver(t, srv.URL, "gh", "github", "hook-secret", []byte(payload))
	if code != http.StatusAccepted || len(ans.Runs) != 1 {
		t.Fatalf("push: %d %s", code, body)
	}
	st := waitRun(t, ans.Runs[0].WorkflowID, 3*time.Minute)
	if st.Outcome != workflows.OutcomeSucceeded || st.Build == nil || st.Scan == nil || st.Decision == nil || st.Decision.Blocked {
		t.Fatalf("run: %s %s", st.Outcome, st.Message)
	}
	for _, reg := range []string{"eu", "us"} {
		assertReplicated(t, reg, "hook/web", "latest", st.Image.Digest)
	}
	found := false
	for _, d := range stack.Receiver.Deliveries() {
		found = found || (d.Path == "/it-github/ce" && strings.Contains(string(d.Body), st.Image.Digest))
	}
	if !found {
		t.Fatal("the trigger did not fire")
	}
	if code, again, _ := deliver(t, srv.URL, "gh", "github", "hook-secret", []byte(payload)); code != http.StatusOK || !again.Runs[0].Existing {
		t.Fatalf("GitHub redelivery started a new run: %d %+v", code, again)
	}
}

func sample(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "starter", "testdata", "webhooks", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
