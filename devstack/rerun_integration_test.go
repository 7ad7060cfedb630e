package devstack

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/dchain-dev/dchain/chain"
	"github.com/dchain-dev/dchain/runs"
	"github.com/dchain-dev/dchain/starter"
	"github.com/dchain-dev/dchain/workflows"
)

// A build run whose copy into one region fails (the rule may not move a
// tag there); once the rule is fixed, a rerun from replicate copies the built image there
// without building, resolving or scanning again, linked to the earlier run
// both ways; the same rerun asked again is the same run.
func TestRerunFromReplicate(t *testing.T) {
	ctx := context.Background()
	src := filepath.Join(t.TempDir(), "sample-app")
	if err := SampleRepo(ctx, src, ""); err != nil {
		t.Fatal(err)
	}
	l := buildChain(t, "it-rerun", "rerun/web", src, "linux/amd64")
	ch := l.Chains[0]
	ch.Scan = &chain.Scan{Mode: chain.ModeNonBlocking, Conditions: critical, Action: chain.ActionDeleteTag}
	// ap has another image under latest, and the rule may not move it.
	ch.Replication = []chain.ReplicationRule{{Name: "to-eu", Destination: "eu", Level: chain.LevelRepository}, {Name: "to-ap", Destination: "ap", Level: chain.LevelRepository}}
	l.Chains[0] = ch
	other, err := PushSample(ctx, stack.Endpoints.Registries["ap"], "rerun/web", "latest")
	if err != nil {
		t.Fatal(err)
	}

	first := startPush(t, l, "refs/heads/main", false)
	earlier, _ := waitEnded(t, first.WorkflowID)
	if earlier.Outcome != workflows.OutcomeFailed || earlier.FailedStage != workflows.StageReplicate || earlier.Build == nil || earlier.Scan == nil {
		t.Fatalf("the first run: %s at %s: %s", earlier.Outcome, earlier.FailedStage, earlier.Message)
	}
	// The fix: the rule may move the tag now.
	l.Chains[0].Replication[1].Overwrite = true

	s := &starter.Starter{Client: stack.Client, Config: l}
	req := starter.RerunRequest{Run: first.WorkflowID, From: workflows.StageReplicate, Cause: workflows.Cause{Kind: "rerun", Actor: "test", At: time.Now().UTC()}}
	rerun, err := s.StartRerun(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	st := waitRun(t, rerun.WorkflowID, 2*time.Minute)
	if st.Outcome != workflows.OutcomeSucceeded || st.RerunOf == nil || st.RerunOf.Of != first.WorkflowID || st.Image.Digest != earlier.Image.Digest {
		t.Fatalf("the rerun: %s %s %+v", st.Outcome, st.Message, st.RerunOf)
	}
	for _, e := range runHistory(t, rerun.WorkflowID) {
		if a := e.GetActivityTaskScheduledEventAttributes(); a != nil {
			switch a.GetActivityType().GetName() {
			case workflows.ActivityBuildImage, workflows.ActivityScanImage, workflows.ActivityResolveImage, workflows.ActivityEvaluatePolicy:
				t.Fatalf("the rerun ran %s again", a.GetActivityType().GetName())
			}
		}
	}
	for _, stage := range []string{workflows.StageBuild, workflows.StageResolve, workflows.StageScan, workflows.StageEvaluate} {
		if s := st.Stage(stage); s.State != workflows.StateReused {
			t.Fatalf("%s: %+v", stage, s)
		}
	}
	ref, _ := name.ParseReference(stack.Endpoints.Registries["ap"]+"/rerun/web:latest", name.Insecure)
	if d, err := remote.Head(ref); err != nil || d.Digest.String() != earlier.Image.Digest || d.Digest.String() == other {
		t.Fatalf("ap: %v %v", d, err)
	}
	// The same rerun asked again is the same run; the earlier run lists it.
	again, err := s.StartRerun(ctx, req)
	if err != nil || !again.Existing || again.WorkflowID != rerun.WorkflowID {
		t.Fatalf("asked again: %+v %v", again, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		list, err := runs.Reruns(ctx, stack.Client, first.WorkflowID)
		if err == nil && len(list) == 1 && list[0].WorkflowID == rerun.WorkflowID {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("reruns of %s: %+v %v", first.WorkflowID, list, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Nothing is left to retry: every destination has it now.
	_, err = s.StartRerun(ctx, starter.RerunRequest{Run: rerun.WorkflowID, From: workflows.StageReplicate, Destinations: []string{"ap"}})
	var re *starter.RerunError
	if !errors.As(err, &re) {
		t.Fatalf("retry a delivered destination: %v", err)
	}
}
