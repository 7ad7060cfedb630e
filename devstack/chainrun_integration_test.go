package devstack

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/dchain-dev/dchain/activities"
	"github.com/dchain-dev/dchain/chain"
	"github.com/dchain-dev/dchain/starter"
	"github.com/dchain-dev/dchain/worker"
	"github.com/dchain-dev/dchain/workflows"
)

// stack is one embedded Temporal server, three real registries, a trigger
// receiver and a worker, shared by this package's integration tests.
var stack *Stack

func TestMain(m *testing.M) {
	_ = worker.SetupLogging(os.Stderr, "text", envOrWarn()) // activity start/end lines at info would drown the test output
	dir, err := os.MkdirTemp("", "dchain-it-")
	if err != nil {
		panic(err)
	}
	var regions []Region
	for _, n := range []string{"src", "eu", "us", "ap"} {
		p, err := FreePort("127.0.0.1")
		if err != nil {
			panic(err)
		}
		regions = append(regions, Region{Name: n, Port: p})
	}
	priv, err := privateRegion(dir)
	if err != nil {
		panic(err)
	}
	regions = append(regions, priv)
	if metrics, err = worker.NewMetrics(metricsBounds()); err != nil {
		panic(err)
	}
	flag.Parse()
	if flag.Lookup("test.bench").Value.String() == "" { // benchmarks measure the untraced default
		tracing = worker.NewTracing(sdktrace.WithSyncer(spans))
	}
	acts := &activities.Activities{}
	acts.SetRegistries([]chain.Registry{privRegistry})
	tp, _ := FreePort("127.0.0.1")
	up, _ := FreePort("127.0.0.1") // the Web UI too: builds must not reach it (isolation_integration_test.go)
	stack, err = Start(context.Background(), Options{
		DataDir: dir, TemporalPort: tp, UIPort: up, Regions: regions, BuildKit: true, Scan: true, Metrics: metrics.Handler, Tracing: tracing,
		Worker: &worker.Options{Chains: true, Activities: acts},
	})
	if err != nil {
		panic(err)
	}
	code := m.Run()
	stack.Stop()
	os.RemoveAll(dir)
	os.Exit(code)
}

// testChain is a chain from src to eu and us with an ACR trigger (signed)
// and a CloudEvents trigger, both pointing at the stack's receiver.
func testChain(name, repo string) (*chain.Loaded, chain.Chain) {
	cfg := &chain.Config{Path: "test", Retry: chain.RetrySettings{MaxInterval: chain.Duration(time.Second)}}
	for _, r := range []string{"src", "eu", "us", "ap"} {
		cfg.Registries = append(cfg.Registries, chain.Registry{Name: r, Region: "region-" + r, Address: stack.Endpoints.Registries[r], Insecure: true})
	}
	ns, repoName, _ := strings.Cut(repo, "/")
	ch := chain.Chain{
		Name:  name,
		Scope: chain.Scope{Registry: "src", Namespace: ns, Repository: repoName},
		Replication: []chain.ReplicationRule{
			{Name: "to-eu", Destination: "eu", Level: chain.LevelRepository},
			{Name: "to-us", Destination: "us", Level: chain.LevelNamespace, Overwrite: true},
		},
		Triggers: []chain.Trigger{
			{Name: "acr", URL: stack.Receiver.URL + "/" + name + "/acr", Mode: chain.TriggerRegexp, Regexp: `v\d+`, Secret: "env:" + TriggerSecretEnv},
			{Name: "ce", URL: stack.Receiver.URL + "/" + name + "/ce", Mode: chain.TriggerAll, Format: chain.FormatCloudEvents},
		},
	}
	return &chain.Loaded{Config: cfg, Chains: []chain.Chain{ch}}, ch
}

func startRun(t testing.TB, l *chain.Loaded, image string) starter.Started {
	t.Helper()
	repo, tag, err := chain.ParseImage("image", image)
	if err != nil {
		t.Fatal(err)
	}
	s := &starter.Starter{Client: stack.Client, Config: l}
	st, err := s.StartImage(context.Background(), starter.ImageRequest{
		Chain: l.Chains[0].Name, Repository: repo, Tag: tag, Cause: workflows.Cause{Kind: "manual", Actor: "test", At: time.Now().UTC()},
	})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func waitRun(t testing.TB, id string, d time.Duration) workflows.RunStatus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var st workflows.RunStatus
	if err := stack.Client.GetWorkflow(ctx, id, "").Get(ctx, &st); err != nil {
		t.Fatalf("run %s: %v", id, err)
	}
	return st
}

// assertReplicated checks the destination holds the whole index under tag,
// byte for byte: same digest, both platforms, every blob readable and valid.
func assertReplicated(t *testing.T, registry, repo, tag, digest string) {
	t.Helper()
	ref, err := name.ParseReference(stack.Endpoints.Registries[registry]+"/"+repo+":"+tag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Get(ref)
	if err != nil {
		t.Fatalf("%s: %v", registry, err)
	}
	if desc.Digest.String() != digest || !desc.MediaType.IsIndex() {
		t.Fatalf("%s: digest %s (%s), want index %s", registry, desc.Digest, desc.MediaType, digest)
	}
	idx, err := desc.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var plats []string
	for _, c := range m.Manifests {
		if c.Annotations["vnd.docker.reference.type"] == "attestation-manifest" {
			continue // BuildKit's provenance of a platform (a signing chain's build)
		}
		plats = append(plats, c.Platform.String())
	}
	if strings.Join(plats, ",") != "linux/amd64,linux/arm64" {
		t.Fatalf("%s: platforms %v", registry, plats)
	}
	if len(plats) == len(m.Manifests) { // BuildKit's attestation manifests are not images to validate
		if err := validate.Index(idx); err != nil {
			t.Fatalf("%s: index does not validate: %v", registry, err)
		}
	}
}

func searchAttr(t *testing.T, id, key string) string { return searchAttrOf[string](t, id, key) }

// searchAttrOf reads a run's search attribute as T (zero when unset).
func searchAttrOf[T any](t *testing.T, id, key string) T {
	t.Helper()
	desc, err := stack.Client.DescribeWorkflowExecution(context.Background(), id, "")
	if err != nil {
		t.Fatal(err)
	}
	var v T
	if p, ok := desc.GetWorkflowExecutionInfo().GetSearchAttributes().GetIndexedFields()[key]; ok {
		if err := converter.GetDefaultDataConverter().FromPayload(p, &v); err != nil {
			t.Fatal(err)
		}
	}
	return v
}

func TestChainRunReplicatesAndTriggers(t *testing.T) {
	l, _ := testChain("it-main", "team/app")
	digest, err := PushSample(context.Background(), stack.Endpoints.Registries["src"], "team/app", "v1")
	if err != nil {
		t.Fatal(err)
	}
	started := startRun(t, l, "team/app:v1")
	st := waitRun(t, started.WorkflowID, time.Minute)
	if st.Outcome != workflows.OutcomeSucceeded {
		t.Fatalf("outcome %s: %s", st.Outcome, st.Message)
	}
	for _, reg := range []string{"eu", "us"} {
		assertReplicated(t, reg, "team/app", "v1", digest)
	}
	for _, d := range st.Destinations {
		if d.State != workflows.StateSucceeded || d.Digest != digest || d.BlobsCopied != 7 {
			t.Errorf("destination %+v", d)
		}
	}

	// The receiver got the ACR payload, signed, and the CloudEvent.
	var acr, ce *Delivery
	for _, d := range stack.Receiver.Deliveries() {
		switch d.Path {
		case "/it-main/acr":
			acr = &d
		case "/it-main/ce":
			ce = &d
		}
	}
	if acr == nil || ce == nil {
		t.Fatalf("deliveries: acr %v, ce %v", acr, ce)
	}
	if !acr.Signed || !acr.SignatureValid {
		t.Fatalf("ACR delivery signature: signed %v valid %v", acr.Signed, acr.SignatureValid)
	}
	var p activities.ACRPayload
	if err := json.Unmarshal(acr.Body, &p); err != nil {
		t.Fatal(err)
	}
	if p.PushData.Digest != digest || p.PushData.Tag != "v1" || p.Repository.RepoFullName != "team/app" || p.Repository.Namespace != "team" || p.Repository.Region != "region-src" {
		t.Fatalf("ACR payload %+v", p)
	}
	if ce.ContentType != "application/cloudevents+json" || ce.IdempotencyKey == "" || ce.IdempotencyKey == acr.IdempotencyKey {
		t.Fatalf("CloudEvents delivery %+v", ce)
	}

	// The record: search attributes set as the run advanced.
	for k, want := range map[string]string{"DchainChain": "it-main", "DchainRepository": "team/app", "DchainTag": "v1", "DchainOutcome": "Succeeded", "DchainStage": "trigger"} {
		if got := searchAttr(t, started.WorkflowID, k); got != want {
			t.Errorf("search attribute %s = %q, want %q", k, got, want)
		}
	}
	// …and visibility finds the run by them.
	q := "DchainChain = 'it-main' AND DchainOutcome = 'Succeeded'"
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := stack.Client.ListWorkflow(context.Background(), &workflowservice.ListWorkflowExecutionsRequest{Query: q})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Executions) == 1 && resp.Executions[0].Status == enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("visibility query %q found %d runs", q, len(resp.Executions))
		}
		time.Sleep(200 * time.Millisecond)
	}

	recordHistory(t, started.WorkflowID, "chainrun-image-batched.json")

	// The same event again starts nothing new.
	again := startRun(t, l, "team/app:v1")
	if !again.Existing || again.RunID != started.RunID {
		t.Fatalf("second start of the same event: %+v (first %+v)", again, started)
	}
}

func TestReplicationSurvivesDestinationOutage(t *testing.T) {
	l, _ := testChain("it-outage", "team/api")
	digest, err := PushSample(context.Background(), stack.Endpoints.Registries["src"], "team/api", "v7")
	if err != nil {
		t.Fatal(err)
	}
	us := stack.Registries["us"]
	if err := us.Stop(); err != nil {
		t.Fatal(err)
	}
	started := startRun(t, l, "team/api:v7")

	// Wait until the copy into the stopped region has failed and is being retried.
	deadline := time.Now().Add(30 * time.Second)
	for attempts := int32(0); attempts < 2; {
		desc, err := stack.Client.DescribeWorkflowExecution(context.Background(), started.WorkflowID, "")
		if err != nil {
			t.Fatal(err)
		}
		for _, pa := range desc.PendingActivities {
			if pa.ActivityType.GetName() == workflows.ActivityReplicateImage {
				attempts = max(attempts, pa.Attempt)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("replication into the stopped region was not retried (attempt %d)", attempts)
		}
		time.Sleep(100 * time.Millisecond)
	}

	restarted, err := StartRegistry(us.Name, us.Addr, us.RootDir)
	if err != nil {
		t.Fatal(err)
	}
	stack.Registries["us"] = restarted

	st := waitRun(t, started.WorkflowID, time.Minute)
	if st.Outcome != workflows.OutcomeSucceeded {
		t.Fatalf("outcome %s: %s", st.Outcome, st.Message)
	}
	assertReplicated(t, "us", "team/api", "v7", digest)
	assertReplicated(t, "eu", "team/api", "v7", digest)
	fmt.Printf("outage run: us took %s\n", st.Destinations[1].Duration)
}

// recordHistory writes the run's history as JSON into the directory
// DCHAIN_RECORD_HISTORY names, when set: that is how workflows/testdata's
// replay fixtures are made.
func recordHistory(t *testing.T, id, file string) {
	dir := os.Getenv("DCHAIN_RECORD_HISTORY")
	if dir == "" {
		return
	}
	path := filepath.Join(dir, file)
	h := &historypb.History{Events: runHistory(t, id)}
	b, err := protojson.MarshalOptions{Indent: "  "}.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// runHistory is every event of the run's history.
func runHistory(t testing.TB, id string) []*historypb.HistoryEvent {
	t.Helper()
	var events []*historypb.HistoryEvent
	it := stack.Client.GetWorkflowHistory(context.Background(), id, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		events = append(events, e)
	}
	return events
}

// envOrWarn is the tests' log level: $DCHAIN_IT_LOG_LEVEL (debug shows a
// build's `built` line: where its time went), else warn.
func envOrWarn() string {
	if l := os.Getenv("DCHAIN_IT_LOG_LEVEL"); l != "" {
		return l
	}
	return "warn"
}
