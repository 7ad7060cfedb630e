package chaos

import (
	"encoding/json"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dchain-dev/dchain/workflows"
)

// cli runs the client binary as identity (DCHAIN_IDENTITY) against the
// suite's deployment.
func cli(identity string, args ...string) (string, error) {
	cmd := exec.Command(w.bin, append([]string{"--config", w.config, "--address", w.temporalAddr()}, args...)...)
	cmd.Env = append(os.Environ(), "DCHAIN_IDENTITY="+identity)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// waitingRow is a row of `run list --waiting -o json`.
type waitingRow struct {
	WorkflowID string                    `json:"workflowId"`
	Approval   *workflows.ApprovalStatus `json:"approval"`
}

// A run waiting for approval outlives the whole deployment: Temporal, every
// worker and both API replicas SIGKILLed and started again on the same data.
// Afterwards the CLI lists it as waiting, refuses a person who is not an
// approver, and an approver's approval delivers it.
func TestApprovalAcrossRestart(t *testing.T) {
	img := push(t, "chaos/gate", "v1", 1<<20, 1)
	id := startRun(t, "gate", "chaos/gate:v1")
	waitFor(t, "the run to wait for approval", time.Minute, func() bool { return status(t, id).Approval.Waiting() })
	requested := status(t, id).Approval.RequestedAt

	for _, p := range w.apis {
		w.kill(p)
	}
	for _, p := range w.workers {
		w.kill(p)
	}
	w.kill(w.temporal)
	if err := w.startTemporal(); err != nil {
		t.Fatal(err)
	}
	for name := range w.workers {
		if err := w.startWorker(name); err != nil {
			t.Fatal(err)
		}
	}
	for i := range w.apis {
		if err := w.startAPI(i); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.waitPollers(workflows.DefaultTaskQueue, 1, time.Minute); err != nil {
		t.Fatal(err)
	}

	// Still waiting, since the same moment.
	st := status(t, id)
	if !st.Approval.Waiting() || !st.Approval.RequestedAt.Equal(requested) || st.Stage(workflows.StageApprove).State != workflows.StateWaiting {
		t.Fatalf("after the restart: %+v %+v", st.Approval, st.Stages)
	}
	out, err := cli("alice", "run", "list", "--waiting", "-o", "json")
	var waiting []waitingRow
	if err != nil || json.Unmarshal([]byte(out), &waiting) != nil ||
		!slices.ContainsFunc(waiting, func(r waitingRow) bool {
			return r.WorkflowID == id && r.Approval != nil && r.Approval.Approvers[0] == "alice"
		}) {
		t.Fatalf("run list --waiting: %v\n%s", err, out)
	}
	if out, err := cli("alice", "run", "show", id); err != nil || !strings.Contains(out, "Approval: WAITING since") {
		t.Fatalf("run show: %v\n%s", err, out)
	}
	if out, err := cli("mallory", "run", "approve", id); err == nil || !strings.Contains(out, "mallory may not decide this run; the approvers are alice") {
		t.Fatalf("mallory approved: %v\n%s", err, out)
	}
	if out, err := cli("alice", "run", "reject", id); err == nil || !strings.Contains(out, `"reason" not set`) {
		t.Fatalf("a rejection without --reason: %v\n%s", err, out)
	}
	if out, err := cli("alice", "run", "approve", id, "--comment", "after the maintenance window"); err != nil || !strings.Contains(out, "approved by alice via cli") {
		t.Fatalf("run approve: %v\n%s", err, out)
	}
	if st := wait(t, id, 2*time.Minute); st.Outcome != workflows.OutcomeSucceeded || st.Approval.Decision.By != "alice" {
		t.Fatalf("after approval: %s %s %+v", st.Outcome, st.Message, st.Approval)
	}
	landed(t, w.us.Addr, "chaos/gate", "v1", img)
	if out, err := cli("alice", "run", "approve", id); err == nil || !strings.Contains(out, "has ended (Succeeded): it is not waiting for approval") {
		t.Fatalf("approve an ended run: %v\n%s", err, out)
	}
	// Copy it again (a rerun from replicate): the approval is the earlier run's.
	out, err = cli("bob", "run", "rerun", id, "--from", "replicate", "--watch")
	if err != nil || !strings.Contains(out, "a rerun of "+id+" from replicate") {
		t.Fatalf("run rerun: %v\n%s", err, out)
	}
	if out, err := cli("bob", "run", "show", id); err != nil || !strings.Contains(out, id+"~replicate-") {
		t.Fatalf("run show does not list the rerun: %v\n%s", err, out)
	}
}
