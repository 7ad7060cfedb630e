package workflows

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/dchain-dev/dchain/chain"
)

const digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func testInput() ChainRunInput {
	return ChainRunInput{
		Chain: chain.Chain{
			Name:  "demo",
			Scope: chain.Scope{Registry: "hangzhou", Namespace: "demo", Repository: "app"},
			Replication: []chain.ReplicationRule{
				{Name: "eu", Destination: "frankfurt", Level: chain.LevelRepository, Overwrite: true},
				{Name: "us", Destination: "virginia", Level: chain.LevelNamespace},
			},
			Triggers: []chain.Trigger{
				{Name: "all", URL: "http://x/all", Mode: chain.TriggerAll},
				{Name: "re", URL: "http://x/re", Mode: chain.TriggerRegexp, Regexp: `v[0-9]+`},
				{Name: "list", URL: "http://x/list", Mode: chain.TriggerTags, Tags: []string{"latest", "stable"}},
			},
		},
		Registries: []chain.Registry{
			{Name: "hangzhou", Address: "h:5000", Region: "cn-hangzhou"},
			{Name: "frankfurt", Address: "f:5000", Region: "eu-central-1"},
			{Name: "virginia", Address: "v:5000", Region: "us-east-1"},
		},
		Image: ImageRef{Registry: "hangzhou", Repository: "demo/app", Tag: "v1", Digest: digest},
		Cause: Cause{Kind: "manual", At: time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)},
	}
}

// fakes are the activities of a workflow test, recording what they were asked.
type fakes struct {
	// mu guards what activities that run at once (copies, deliveries) record.
	mu         sync.Mutex
	counts     map[string]int
	scanned    []string
	blocked    []string
	replicated []string
	delivered  []string
	replicate  func(ctx context.Context, in ReplicateInput) (ReplicateResult, error)
	deliver    func(ctx context.Context, in DeliverInput) (DeliverResult, error)
	// signing: what was signed and verified, in order ("sign", "verify"),
	// and what a verification finds.
	signing  []string
	verified Verification
	refuse   string // what SignImage refuses to sign, and why
	events   []TriggerEvent
	keys     []string // the deliveries' idempotency keys
	health   func(ctx context.Context, in HealthInput) (HealthResult, error)
	// accelerated: what AccelerateImage was asked; copies: every ReplicateInput.
	accelerated []AccelerateInput
	copies      []ReplicateInput
}

func runWorkflow(t *testing.T, in ChainRunInput, f *fakes, setup func(env *testsuite.TestWorkflowEnvironment)) (*RunStatus, error) {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.RegisterWorkflow(ChainRun)
	env.RegisterWorkflowWithOptions(AccelerateWorkflow, workflow.RegisterOptions{Name: WorkflowAccelerate})
	env.RegisterActivityWithOptions(func(ctx context.Context, in ResolveImageInput) (ImageInfo, error) {
		return ImageInfo{Digest: in.Image.Digest, MediaType: "application/vnd.oci.image.index.v1+json", Platforms: []string{"linux/amd64", "linux/arm64"}}, nil
	}, activity.RegisterOptions{Name: ActivityResolveImage})
	env.RegisterActivityWithOptions(func(ctx context.Context, in ReplicateInput) (ReplicateResult, error) {
		f.mu.Lock()
		f.replicated = append(f.replicated, in.Destination.Name)
		f.copies = append(f.copies, in)
		f.mu.Unlock()
		if f.replicate != nil {
			return f.replicate(ctx, in)
		}
		return ReplicateResult{Digest: in.Digest, BlobsCopied: 3}, nil
	}, activity.RegisterOptions{Name: ActivityReplicateImage})
	env.RegisterActivityWithOptions(func(ctx context.Context, in SignInput) (Signed, error) {
		f.signing = append(f.signing, "sign")
		if f.refuse != "" {
			return Signed{Key: in.Key, Refused: f.refuse}, nil
		}
		out := Signed{Key: in.Key, Signature: "sha256:sig"}
		for _, a := range in.Attest {
			out.Attestations = append(out.Attestations, AttestationRef{Kind: a, Digest: "sha256:" + a})
		}
		return out, nil
	}, activity.RegisterOptions{Name: ActivitySignImage})
	env.RegisterActivityWithOptions(func(ctx context.Context, in VerifyInput) (Verification, error) {
		f.signing = append(f.signing, "verify")
		return f.verified, nil
	}, activity.RegisterOptions{Name: ActivityVerifyImage})
	env.RegisterActivityWithOptions(func(ctx context.Context, in DeliverInput) (DeliverResult, error) {
		f.mu.Lock()
		f.delivered = append(f.delivered, in.Trigger.Name)
		f.events = append(f.events, in.Event)
		f.keys = append(f.keys, in.IdempotencyKey)
		f.mu.Unlock()
		if f.deliver != nil {
			return f.deliver(ctx, in)
		}
		return DeliverResult{HTTPStatus: 200, Attempts: 1}, nil
	}, activity.RegisterOptions{Name: ActivityDeliverTrigger})
	env.RegisterActivityWithOptions(func(ctx context.Context, in ScanInput) (ScanSummary, error) {
		f.scanned = append(f.scanned, in.Digest)
		return ScanSummary{Digest: in.Digest, Counts: f.counts, Report: "h:5000/demo/app@sha256:report"}, nil
	}, activity.RegisterOptions{Name: ActivityScanImage})
	env.RegisterActivityWithOptions(func(ctx context.Context, in EvaluateInput) (chain.Decision, error) {
		var fs []chain.Finding
		for sev, n := range f.counts {
			for range n {
				fs = append(fs, chain.Finding{ID: "CVE-" + sev + "-" + string(rune('a'+len(fs))), Package: "p", Severity: sev, FixedVersion: "2"})
			}
		}
		return in.Policy.Evaluate(fs, in.Now), nil
	}, activity.RegisterOptions{Name: ActivityEvaluatePolicy})
	env.RegisterActivityWithOptions(func(ctx context.Context, in BlockInput) (BlockResult, error) {
		f.blocked = append(f.blocked, in.Action)
		return BlockResult{Deleted: in.Tags}, nil
	}, activity.RegisterOptions{Name: ActivityApplyBlock})
	env.RegisterActivityWithOptions(func(ctx context.Context, in AccelerateInput) (Accelerated, error) {
		f.accelerated = append(f.accelerated, in)
		return Accelerated{Format: in.Format, Digest: "sha256:accel", Tags: in.Tags, Layers: 2}, nil
	}, activity.RegisterOptions{Name: ActivityAccelerateImage})
	env.RegisterActivityWithOptions(func(ctx context.Context, in HealthInput) (HealthResult, error) {
		if f.health != nil {
			return f.health(ctx, in)
		}
		return HealthResult{HTTPStatus: 200, Attempts: 1}, nil
	}, activity.RegisterOptions{Name: ActivityCheckHealth})
	if setup != nil {
		setup(env)
	}
	env.ExecuteWorkflow(ChainRun, in)
	if !env.IsWorkflowCompleted() {
		t.Fatal("workflow did not complete")
	}
	var st RunStatus
	err := env.GetWorkflowError()
	if err == nil {
		if gerr := env.GetWorkflowResult(&st); gerr != nil {
			t.Fatal(gerr)
		}
		return &st, nil
	}
	var app *temporal.ApplicationError
	var canceled *temporal.CanceledError
	switch {
	case errors.As(err, &app) && app.HasDetails():
		if derr := app.Details(&st); derr != nil {
			t.Fatal(derr)
		}
	case errors.As(err, &canceled) && canceled.HasDetails():
		if derr := canceled.Details(&st); derr != nil {
			t.Fatal(derr)
		}
	default:
		t.Fatalf("workflow error without status: %v", err)
	}
	return &st, err
}

func stageStates(st *RunStatus) map[string]State {
	m := map[string]State{}
	for _, s := range st.Stages {
		m[s.Name] = s.State
	}
	return m
}

func TestChainRunStagesInOrderAndSkipped(t *testing.T) {
	f := &fakes{}
	st, err := runWorkflow(t, testInput(), f, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.Outcome != OutcomeSucceeded {
		t.Fatalf("outcome %s: %s", st.Outcome, st.Message)
	}
	var names []string
	for _, s := range st.Stages {
		names = append(names, s.Name)
	}
	// Every stage in order, but approve and accelerate: the chain asks for neither.
	if want := slices.DeleteFunc(slices.Clone(Stages), func(s string) bool { return s == StageApprove || s == StageAccelerate }); !slices.Equal(names, want) {
		t.Fatalf("stage order %v, want %v", names, want)
	}
	want := map[string]State{StageResolve: StateSucceeded, StageBuild: StateSkipped, StageScan: StateSkipped,
		StageEvaluate: StateSkipped, StageSign: StateSkipped, StageReplicate: StateSucceeded, StageTrigger: StateSucceeded}
	for k, v := range want {
		if got := stageStates(st)[k]; got != v {
			t.Errorf("stage %s: %s, want %s", k, got, v)
		}
	}
	if len(st.Platforms) != 2 {
		t.Errorf("platforms %v", st.Platforms)
	}
	for _, d := range st.Destinations {
		if d.State != StateSucceeded || d.Digest != digest {
			t.Errorf("destination %+v", d)
		}
	}
}

func TestChainRunFanOutOneDestinationFails(t *testing.T) {
	f := &fakes{replicate: func(ctx context.Context, in ReplicateInput) (ReplicateResult, error) {
		if in.Destination.Name == "frankfurt" {
			return ReplicateResult{}, temporal.NewNonRetryableApplicationError("access denied", "AccessDenied", nil)
		}
		return ReplicateResult{Digest: in.Digest}, nil
	}}
	st, err := runWorkflow(t, testInput(), f, nil)
	var app *temporal.ApplicationError
	if !errors.As(err, &app) || app.Type() != ErrTypeRunFailed {
		t.Fatalf("want a %s error, got %v", ErrTypeRunFailed, err)
	}
	if st.Outcome != OutcomeFailed || st.FailedStage != StageReplicate {
		t.Fatalf("outcome %s at %s", st.Outcome, st.FailedStage)
	}
	got := map[string]State{}
	for _, d := range st.Destinations {
		got[d.Registry] = d.State
	}
	if got["frankfurt"] != StateFailed || got["virginia"] != StateSucceeded {
		t.Fatalf("destinations %v: each branch must end on its own", got)
	}
	if len(f.delivered) != 0 || stageStates(st)[StageTrigger] != StateSkipped {
		t.Fatalf("triggers fired after a failed replication: %v", f.delivered)
	}
}

func TestChainRunReplicationTagFilter(t *testing.T) {
	in := testInput()
	in.Chain.Replication[1].TagFilter = `release-.*`
	f := &fakes{}
	st, err := runWorkflow(t, in, f, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.replicated) != 1 || f.replicated[0] != "frankfurt" {
		t.Fatalf("replicated to %v, want frankfurt only", f.replicated)
	}
	if st.Destinations[1].State != StateSkipped {
		t.Fatalf("virginia: %+v", st.Destinations[1])
	}
}

func TestChainRunTriggerFilters(t *testing.T) {
	for _, tc := range []struct {
		tag  string
		want []string
	}{
		{"v1", []string{"all", "re"}},
		{"latest", []string{"all", "list"}},
		{"v1-rc", []string{"all"}}, // the regexp must match the whole tag
		{"stable", []string{"all", "list"}},
	} {
		in := testInput()
		in.Image.Tag = tc.tag
		f := &fakes{}
		st, err := runWorkflow(t, in, f, nil)
		if err != nil {
			t.Fatal(err)
		}
		fired := map[string]bool{}
		for _, tr := range st.Triggers {
			if tr.State == StateSucceeded {
				fired[tr.Name] = true
			}
		}
		if len(fired) != len(tc.want) {
			t.Errorf("tag %s fired %v, want %v", tc.tag, fired, tc.want)
		}
		for _, n := range tc.want {
			if !fired[n] {
				t.Errorf("tag %s: trigger %s did not fire (%v)", tc.tag, n, fired)
			}
		}
	}
}

func TestChainRunTriggerPermanentFailureKeepsStatus(t *testing.T) {
	f := &fakes{deliver: func(ctx context.Context, in DeliverInput) (DeliverResult, error) {
		if in.Trigger.Name == "re" {
			res := DeliverResult{HTTPStatus: 404, Attempts: 1}
			return res, temporal.NewNonRetryableApplicationError("HTTP 404", "TriggerRejected", nil, res)
		}
		return DeliverResult{HTTPStatus: 200, Attempts: 1}, nil
	}}
	st, err := runWorkflow(t, testInput(), f, nil)
	if err == nil || st.FailedStage != StageTrigger {
		t.Fatalf("want failure at trigger, got %v / %s", err, st.FailedStage)
	}
	for _, tr := range st.Triggers {
		if tr.Name == "re" && (tr.State != StateFailed || tr.HTTPStatus != 404) {
			t.Fatalf("trigger re: %+v", tr)
		}
	}
}

func TestChainRunCancellation(t *testing.T) {
	f := &fakes{replicate: func(ctx context.Context, in ReplicateInput) (ReplicateResult, error) {
		for {
			activity.RecordHeartbeat(ctx, "copying")
			select {
			case <-ctx.Done():
				return ReplicateResult{}, ctx.Err()
			case <-time.After(10 * time.Millisecond):
			}
		}
	}}
	st, err := runWorkflow(t, testInput(), f, func(env *testsuite.TestWorkflowEnvironment) {
		env.RegisterDelayedCallback(env.CancelWorkflow, time.Second)
	})
	if !temporal.IsCanceledError(err) {
		t.Fatalf("want canceled, got %v", err)
	}
	if st.Outcome != OutcomeCanceled || stageStates(st)[StageReplicate] != StateCanceled {
		t.Fatalf("outcome %s, replicate %s", st.Outcome, stageStates(st)[StageReplicate])
	}
	if len(f.delivered) != 0 {
		t.Fatalf("triggers fired after cancel: %v", f.delivered)
	}
}

func TestWorkflowIDIsDeterministic(t *testing.T) {
	img := ImageRef{Repository: "demo/app", Tag: "v1", Digest: digest}
	a, b := WorkflowID("demo", img), WorkflowID("demo", img)
	if a != b || a != "demo:demo/app:v1@sha256:0123456789abcdef" {
		t.Fatalf("ids %q %q", a, b)
	}
	img.Tag = "v2"
	if WorkflowID("demo", img) == a {
		t.Fatal("a different tag must be a different run")
	}
	img.Tag, img.Digest = "v1", "sha256:ffff"+digest[11:]
	if WorkflowID("demo", img) == a {
		t.Fatal("a different digest must be a different run")
	}
	if idempotencyKey("run-1", "t") != idempotencyKey("run-1", "t") || idempotencyKey("run-1", "t") == idempotencyKey("run-2", "t") {
		t.Fatal("idempotency keys must be stable per run and trigger")
	}
}

func scanPolicy(mode string) *chain.Scan {
	return &chain.Scan{Mode: mode, Conditions: []chain.Condition{{Severity: "CRITICAL", Count: 1}}, Action: chain.ActionDeleteTag}
}

func TestChainRunBlockedStopsEverything(t *testing.T) {
	in := testInput()
	in.Chain.Scan = scanPolicy(chain.ModeBlocking)
	f := &fakes{counts: map[string]int{"CRITICAL": 2, "HIGH": 1}}
	st, err := runWorkflow(t, in, f, nil)
	// The workflow fails, as Blocked, with the policy's reason: the Web UI
	// shows it apart from a delivered run.
	var app *temporal.ApplicationError
	if !errors.As(err, &app) || app.Type() != ErrTypeRunBlocked || !strings.Contains(app.Message(), "blocked by the scan policy: 2 CRITICAL") {
		t.Fatalf("a blocked run ends with %v, want a %s failure saying why", err, ErrTypeRunBlocked)
	}
	if st.Outcome != OutcomeBlocked || st.FailedStage != StageEvaluate {
		t.Fatalf("outcome %s at %s: %s", st.Outcome, st.FailedStage, st.Message)
	}
	if len(f.replicated) != 0 || len(f.delivered) != 0 {
		t.Fatalf("a blocked run replicated %v and triggered %v", f.replicated, f.delivered)
	}
	if len(f.blocked) != 1 || f.blocked[0] != chain.ActionDeleteTag || st.Block == nil || len(st.Block.Deleted) != 1 {
		t.Fatalf("block action %v, result %+v", f.blocked, st.Block)
	}
	states := stageStates(st)
	if states[StageEvaluate] != StateBlocked || states[StageReplicate] != StateSkipped || states[StageTrigger] != StateSkipped {
		t.Fatalf("stages %v", states)
	}
	if st.Decision == nil || !st.Decision.Blocked || st.Decision.Counts["CRITICAL"] != 2 || len(f.scanned) != 1 {
		t.Fatalf("decision %+v, scans %v", st.Decision, f.scanned)
	}
}

func TestChainRunScanNotTriggeredOrNonBlockingGoesOn(t *testing.T) {
	for _, tc := range []struct {
		mode   string
		counts map[string]int
	}{
		{chain.ModeBlocking, map[string]int{"HIGH": 5}},        // below the policy
		{chain.ModeNonBlocking, map[string]int{"CRITICAL": 9}}, // above it, but non-blocking
	} {
		in := testInput()
		in.Chain.Scan = scanPolicy(tc.mode)
		f := &fakes{counts: tc.counts}
		st, err := runWorkflow(t, in, f, nil)
		if err != nil || st.Outcome != OutcomeSucceeded {
			t.Fatalf("%s %v: %v %s", tc.mode, tc.counts, err, st.Outcome)
		}
		if len(f.replicated) != 2 || len(f.blocked) != 0 || st.Scan == nil {
			t.Fatalf("%s %v: replicated %v, blocked %v", tc.mode, tc.counts, f.replicated, f.blocked)
		}
	}
}

// A blocked run's current details (what the Web UI shows on its page)
// start with BLOCKED, the reason and its most severe findings.
func TestBlockedCurrentDetails(t *testing.T) {
	st := &RunStatus{Chain: "demo", Outcome: OutcomeBlocked, Message: "blocked by the scan policy: 1 CRITICAL ≥ 1 (action block)",
		Image: ImageRef{Registry: "hz", Repository: "demo/app", Tag: "v2"},
		Scan: &ScanSummary{Top: []chain.Finding{
			{ID: "CVE-2019-10744", Package: "lodash", InstalledVersion: "4.17.11", FixedVersion: "4.17.12", Severity: "CRITICAL", Platform: "linux/amd64"},
			{ID: "CVE-2020-8203", Package: "lodash", InstalledVersion: "4.17.11", Severity: "HIGH"},
		}}}
	d := currentDetails(st)
	if !strings.HasPrefix(d, "**BLOCKED** — blocked by the scan policy: 1 CRITICAL") {
		t.Fatalf("details start:\n%s", d)
	}
	for _, want := range []string{"| CRITICAL | CVE-2019-10744 | lodash | 4.17.11 | 4.17.12 | linux/amd64 |", "| HIGH | CVE-2020-8203 | lodash | 4.17.11 | — | — |"} {
		if !strings.Contains(d, want) {
			t.Errorf("missing %q in:\n%s", want, d)
		}
	}
	st.Outcome = OutcomeSucceeded
	if strings.Contains(currentDetails(st), "BLOCKED") {
		t.Error("a succeeded run says BLOCKED")
	}
}

// A run with one destination copies alone (blobs streamed, not spooled for
// sharing); the branches of a fan-out share their source reads.
func TestChainRunCopiesAloneWithOneDestination(t *testing.T) {
	for _, dests := range []int{1, 2} {
		in := testInput()
		in.Chain.Replication = in.Chain.Replication[:dests]
		var mu sync.Mutex
		var alone []bool
		f := &fakes{replicate: func(ctx context.Context, in ReplicateInput) (ReplicateResult, error) {
			mu.Lock()
			alone = append(alone, in.Alone)
			mu.Unlock()
			return ReplicateResult{Digest: in.Digest}, nil
		}}
		if _, err := runWorkflow(t, in, f, nil); err != nil {
			t.Fatal(err)
		}
		if len(alone) != dests || slices.Contains(alone, dests > 1) {
			t.Fatalf("%d destinations: copies alone %v", dests, alone)
		}
	}
}
