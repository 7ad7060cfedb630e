package devstack

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"

	"github.com/dchain-dev/dchain/runs"
	"github.com/dchain-dev/dchain/workflows"
)

// bigImage pushes an image of layers × mib MiB of random (incompressible,
// uncompressed) data to src as repo:tag and returns its digest.
func bigImage(t testing.TB, repo, tag string, layers, mib int) string {
	t.Helper()
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	for range layers {
		b := make([]byte, mib<<20)
		if _, err := rand.Read(b); err != nil {
			t.Fatal(err)
		}
		var err error
		if img, err = mutate.AppendLayers(img, static.NewLayer(b, types.OCIUncompressedLayer)); err != nil {
			t.Fatal(err)
		}
	}
	ref, err := name.ParseReference(stack.Endpoints.Registries["src"]+"/"+repo+":"+tag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, remote.WithJobs(4)); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	return d.String()
}

// waitCopying waits until a ReplicateImage activity of the run is running.
func waitCopying(t *testing.T, id string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		desc, err := stack.Client.DescribeWorkflowExecution(context.Background(), id, "")
		if err != nil {
			t.Fatal(err)
		}
		for _, pa := range desc.GetPendingActivities() {
			if pa.GetActivityType().GetName() == workflows.ActivityReplicateImage && pa.GetState() == enumspb.PENDING_ACTIVITY_STATE_STARTED {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("run %s never started copying", id)
}

// A run canceled while it copies a large image stops its copies within the
// heartbeat timeout, ends Canceled with its destinations Canceled, and no
// destination tag is written — before or after the run ends. Several times.
func TestCancelStopsCopies(t *testing.T) {
	for trial := 1; trial <= 3; trial++ {
		// A repository of its own each time: no destination has its blobs yet.
		repo, tag := fmt.Sprintf("cancel/app%d", trial), "v1"
		bigImage(t, repo, tag, 3, 64)
		l, _ := testChain(fmt.Sprintf("it-cancel-copy-%d", trial), repo)
		l.Chains[0].Triggers = nil
		id := startRun(t, l, repo+":"+tag).WorkflowID
		waitCopying(t, id)
		canceledAt := time.Now()
		if err := stack.Client.CancelWorkflow(context.Background(), id, ""); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		var st workflows.RunStatus
		err := stack.Client.GetWorkflow(ctx, id, "").Get(ctx, &st)
		cancel()
		var canceled *temporal.CanceledError
		if !errors.As(err, &canceled) || !canceled.HasDetails() || canceled.Details(&st) != nil {
			t.Fatalf("trial %d: the run ended with %v", trial, err)
		}
		took := time.Since(canceledAt)
		t.Logf("trial %d: run ended %s after the cancel", trial, took.Round(time.Millisecond))
		if took > 3*heartbeatTimeoutForTests {
			t.Errorf("trial %d: the copies went on for %s after the cancel", trial, took)
		}
		for _, d := range st.Destinations {
			if d.State != workflows.StateCanceled {
				t.Errorf("trial %d: %s ended %s, want canceled", trial, d.Registry, d.State)
			}
		}
		time.Sleep(time.Second) // a copy that went on would write its tag now
		for _, reg := range []string{"eu", "us"} {
			if got := digestAt(t, reg, repo, tag); got != "" {
				t.Errorf("trial %d: %s has %s:%s (%s) though the run was canceled", trial, reg, repo, tag, got)
			}
		}
	}
}

// heartbeatTimeoutForTests is the workflows' heartbeat timeout (10 s): a
// canceled copy learns of it within that.
const heartbeatTimeoutForTests = 10 * time.Second

// A run ended outside dchain (Temporal's terminate, as the Web UI or the
// temporal CLI does it) reads as Terminated everywhere dchain shows runs —
// its status (run show, run watch, GET /api/v1/runs/<id>), run list and the
// outcome filter — with who ended it and why; never Running forever.
func TestRunTerminatedOutsideDchain(t *testing.T) {
	src := filepath.Join(t.TempDir(), "slow")
	writeRepo(t, src, map[string]string{"Dockerfile": "ARG BASE\nFROM ${BASE}\nRUN sleep 120\n"})
	l := buildChain(t, "it-terminated", "shop/terminated", src, "linux/amd64")
	l.Chains[0].Build.Rules[0].NoCache = true
	id := startPush(t, l, "refs/heads/main", false).WorkflowID
	ctx := context.Background()
	for deadline := time.Now().Add(time.Minute); searchAttr(t, id, "DchainStage") != string(workflows.StageBuild); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the run never reached its build")
		}
	}
	if err := stack.Client.TerminateWorkflow(ctx, id, "", "stuck, ended by an operator"); err != nil {
		t.Fatal(err)
	}
	st, err := runs.Status(ctx, stack.Client, id)
	if err != nil || st.Outcome != workflows.OutcomeTerminated || !strings.Contains(st.Message, "stuck, ended by an operator") {
		t.Fatalf("status: %s %q (%v)", st.Outcome, st.Message, err)
	}
	list := func(outcome string) []runs.Row {
		t.Helper()
		var rows []runs.Row
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) { // visibility is eventually consistent
			rows, err = runs.List(ctx, stack.Client, runs.Filter{Chain: "it-terminated", Outcome: outcome})
			if err != nil {
				t.Fatal(err)
			}
			if len(rows) > 0 && rows[0].Status != "Running" || time.Now().After(deadline) {
				return rows
			}
		}
	}
	if rows := list(""); len(rows) != 1 || rows[0].Outcome != string(workflows.OutcomeTerminated) {
		t.Fatalf("run list: %+v", rows)
	}
	if rows := list("Terminated"); len(rows) != 1 {
		t.Fatalf("--outcome Terminated: %+v", rows)
	}
	if rows, err := runs.List(ctx, stack.Client, runs.Filter{Chain: "it-terminated", Outcome: "Running"}); err != nil || len(rows) != 0 {
		t.Fatalf("--outcome Running still lists the terminated run: %+v %v", rows, err)
	}
	srv, _ := apiServer(t, l, stack.Client)
	code, out := call(t, "GET", srv.URL+"/api/v1/runs/"+url.PathEscape(id), "api-token", nil)
	if run, _ := out["run"].(map[string]any); code != http.StatusOK || run["outcome"] != "Terminated" {
		t.Fatalf("GET /api/v1/runs/<id>: %d %v", code, out)
	}
}
