package devstack

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/temporal"

	"github.com/dchain-dev/dchain/chain"
	"github.com/dchain-dev/dchain/workflows"
)

// commit writes files on the repository's current branch and commits them.
func commit(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	for p, c := range files {
		if err := os.WriteFile(filepath.Join(dir, p), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	gitIn(t, dir, "add", ".")
	gitIn(t, dir, "commit", "-q", "-m", "next")
}

func slowDockerfile(seconds string) string {
	return "ARG BASE\nFROM ${BASE}\nRUN echo " + seconds + " && sleep " + seconds + "\n"
}

// twoPushes pushes a commit that builds for seconds to branch main of a new
// repository, waits until its run is building, then pushes a quick commit:
// it returns both runs' IDs.
func twoPushes(t *testing.T, name, policy, seconds string) (first, second string) {
	t.Helper()
	src := filepath.Join(t.TempDir(), name)
	writeRepo(t, src, map[string]string{"Dockerfile": slowDockerfile(seconds)})
	l := buildChain(t, "it-"+name, "conc/"+name, src, "linux/amd64")
	l.Chains[0].Concurrency = policy
	l.Chains[0].Build.Rules[0].NoCache = true
	l.Chains[0].Replication, l.Chains[0].Triggers = nil, nil
	first = startPush(t, l, "refs/heads/main", false).WorkflowID
	waitStage(t, first, workflows.StageBuild)
	commit(t, src, map[string]string{"Dockerfile": slowDockerfile("0")})
	return first, startPush(t, l, "refs/heads/main", false).WorkflowID
}

func TestQueuedPushesRunOneAfterTheOther(t *testing.T) {
	first, second := twoPushes(t, "queue", chain.ConcurrencyQueue, "3")
	a := waitRun(t, first, 3*time.Minute)
	b := waitRun(t, second, 3*time.Minute)
	if a.Outcome != workflows.OutcomeSucceeded || b.Outcome != workflows.OutcomeSucceeded {
		t.Fatalf("outcomes %s %s", a.Outcome, b.Outcome)
	}
	// The second push's (fast) build waited for the first's (slow) run.
	if !b.EndedAt.After(a.EndedAt) {
		t.Fatalf("the queued run ended at %s, before the run ahead of it (%s)", b.EndedAt, a.EndedAt)
	}
}

func TestNewerPushSupersedesABuildingRun(t *testing.T) {
	first, second := twoPushes(t, "supersede", chain.ConcurrencySupersede, "120")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := stack.Client.GetWorkflow(ctx, first, "").Get(ctx, nil)
	var canceled *temporal.CanceledError
	if !errors.As(err, &canceled) {
		t.Fatalf("the older run was not superseded: %v", err)
	}
	if st := waitRun(t, second, 3*time.Minute); st.Outcome != workflows.OutcomeSucceeded {
		t.Fatalf("the newer run: %s %s", st.Outcome, st.Message)
	}
}

// waitStage waits until the run's search attributes say it is in stage, so
// that visibility (which queue and supersede use) sees it there.
func waitStage(t *testing.T, id, stage string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		if got := searchAttr(t, id, "DchainStage"); got == stage {
			q := workflows.Query{}.Eq(workflows.AttrStage.GetName(), stage).Eq("WorkflowId", id)
			if n, err := stack.Client.CountWorkflow(context.Background(), countRequest(q.String())); err == nil && n.GetCount() == 1 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %s never reached stage %s", id, stage)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func countRequest(q string) *workflowservice.CountWorkflowExecutionsRequest {
	return &workflowservice.CountWorkflowExecutionsRequest{Query: q}
}
