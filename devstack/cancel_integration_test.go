package devstack

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
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
