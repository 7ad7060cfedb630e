package workflows

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

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
	replicated []string
	delivered  []string
	replicate  func(ctx context.Context, in ReplicateInput) (ReplicateResult, error)
	deliver    func(ctx context.Context, in DeliverInput) (DeliverResult, error)
}

func runWorkflow(t *testing.T, in ChainRunInput, f *fakes, setup func(env *testsuite.TestWorkflowEnvironment)) (*RunStatus, error) {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.RegisterWorkflow(ChainRun)
	env.RegisterActivityWithOptions(func(ctx context.Context, in ResolveImageInput) (ImageInfo, error) {
		return ImageInfo{Digest: in.Image.Digest, MediaType: "application/vnd.oci.image.index.v1+json", Platforms: []string{"linux/amd64", "linux/arm64"}}, nil
	}, activity.RegisterOptions{Name: ActivityResolveImage})
	env.RegisterActivityWithOptions(func(ctx context.Context, in ReplicateInput) (ReplicateResult, error) {
		f.replicated = append(f.replicated, in.Destination.Name)
		if f.replicate != nil {
			return f.replicate(ctx, in)
		}
		return ReplicateResult{Digest: in.Digest, BlobsCopied: 3}, nil
	}, activity.RegisterOptions{Name: ActivityReplicateImage})
	env.RegisterActivityWithOptions(func(ctx context.Context, in DeliverInput) (DeliverResult, error) {
		f.delivered = append(f.delivered, in.Trigger.Name)
		if f.deliver != nil {
			return f.deliver(ctx, in)
		}
		return DeliverResult{HTTPStatus: 200, Attempts: 1}, nil
	}, activity.RegisterOptions{Name: ActivityDeliverTrigger})
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
	if len(names) != len(Stages) {
		t.Fatalf("stages %v", names)
	}
	for i := range Stages {
		if names[i] != Stages[i] {
			t.Fatalf("stage order %v, want %v", names, Stages)
		}
	}
	want := map[string]State{StageResolve: StateSucceeded, StageBuild: StateSkipped, StageScan: StateSkipped,
		StageEvaluate: StateSkipped, StageReplicate: StateSucceeded, StageTrigger: StateSucceeded}
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
