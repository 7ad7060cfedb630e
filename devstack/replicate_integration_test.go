package devstack

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/dchain-dev/dchain/chain"
	"github.com/dchain-dev/dchain/runs"
	"github.com/dchain-dev/dchain/starter"
	"github.com/dchain-dev/dchain/workflows"
)

// digestAt is the digest repo:tag points at in a stack registry ("" when absent).
func digestAt(t *testing.T, registry, repo, tag string) string {
	t.Helper()
	ref, err := name.ParseReference(stack.Endpoints.Registries[registry]+"/"+repo+":"+tag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	d, err := remote.Head(ref)
	if err != nil {
		return ""
	}
	return d.Digest.String()
}

// `dchain replicate` / POST /api/v1/replications: one image to several
// destinations under names of the user's choosing, by tag or digest, with
// its referrers, as a recorded run; bad requests are refused before
// anything is written.
func TestManualReplication(t *testing.T) {
	digest, sbom, direct, nested := signedImage(t, "manual/app", "v1")
	l, _ := testChain("it-manual", "manual/app")
	s := &starter.Starter{Client: stack.Client, Config: l}
	ctx := context.Background()
	start := func(src string, overwrite bool, to ...string) (starter.Started, error) {
		return s.StartReplication(ctx, starter.ReplicationRequest{Source: src, To: to, Overwrite: overwrite, SourceField: "image", ToField: "--to"})
	}

	st, err := start("src/manual/app:v1", false, "eu", "us/mirror/app:stable")
	if err != nil {
		t.Fatal(err)
	}
	run := waitRun(t, st.WorkflowID, time.Minute)
	if run.Outcome != workflows.OutcomeSucceeded || len(run.Destinations) != 2 || run.Image.Digest != digest {
		t.Fatalf("replication: %s %s %+v", run.Outcome, run.Message, run.Destinations)
	}
	if digestAt(t, "eu", "manual/app", "v1") != digest || digestAt(t, "us", "mirror/app", "stable") != digest {
		t.Fatal("the image is not where it was sent")
	}
	us := repoIn(t, stack.Endpoints.Registries["us"], "mirror/app")
	if got := referrersOf(t, us, digest); !slices.Equal(got, direct) {
		t.Fatalf("referrers at the destination %v, want %v", got, direct)
	}
	if got := referrersOf(t, us, sbom); !slices.Equal(got, nested) {
		t.Fatalf("referrers of the SBOM at the destination %v, want %v", got, nested)
	}

	// By digest, to a tag of the user's choosing.
	st, err = start("src/manual/app@"+digest, false, stack.Endpoints.Registries["ap"]+"/pinned/app:release")
	if err != nil {
		t.Fatal(err)
	}
	if run := waitRun(t, st.WorkflowID, time.Minute); run.Outcome != workflows.OutcomeSucceeded || digestAt(t, "ap", "pinned/app", "release") != digest {
		t.Fatalf("by digest: %s %s", run.Outcome, run.Message)
	}

	// Refused before anything is written, naming the field.
	other, err := PushSample(ctx, stack.Endpoints.Registries["eu"], "manual/app", "taken")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		src string
		to  []string
	}{
		{"src/manual/app:v1", []string{"nowhere/manual/app:v1"}}, // unknown destination
		{"src/manual/app:v1", []string{"eu/Manual/App:v1"}},      // invalid name
		{"src/manual/app:v1", []string{"eu/manual/app:taken"}},   // exists at another digest
		{"src/manual/app@" + digest, []string{"eu/manual/app"}},  // a digest needs a target tag
		{"src/manual/app:v1", []string{"src"}},                   // the source itself
		{"src/manual/app:v1", nil},                               // no destination
		{"elsewhere/manual/app:v1", []string{"eu"}},              // unknown source registry
		{"src/manual/app:nope", []string{"eu"}},                  // no such source tag
		{"src/manual/app@sha256:", []string{"eu/manual/app:x"}},  // malformed digest
	} {
		_, err := start(tc.src, false, tc.to...)
		var in *chain.InputError
		if !errors.As(err, &in) {
			t.Errorf("%s → %v: %v, want a refused field", tc.src, tc.to, err)
		}
	}
	if digestAt(t, "eu", "manual/app", "taken") != other || digestAt(t, "eu", "manual/app", "x") != "" {
		t.Fatal("a refused replication wrote a tag")
	}
	st, err = start("src/manual/app:v1", true, "eu/manual/app:taken")
	if err != nil {
		t.Fatal(err)
	}
	if run := waitRun(t, st.WorkflowID, time.Minute); run.Outcome != workflows.OutcomeSucceeded || digestAt(t, "eu", "manual/app", "taken") != digest {
		t.Fatalf("overwrite: %s %s", run.Outcome, run.Message)
	}

	// The same through the REST API.
	srv, _ := apiServer(t, l, stack.Client)
	code, out := call(t, "POST", srv.URL+"/api/v1/replications", "api-token", map[string]any{"source": "src/manual/app:v1", "to": []string{"us/rest/app:v1"}})
	if code != http.StatusAccepted {
		t.Fatalf("REST replication: %d %v", code, out)
	}
	id := out["runs"].([]any)[0].(map[string]any)["workflowId"].(string)
	if run := waitRun(t, id, time.Minute); run.Outcome != workflows.OutcomeSucceeded || digestAt(t, "us", "rest/app", "v1") != digest {
		t.Fatalf("REST replication run: %s %s", run.Outcome, run.Message)
	}
	code, out = call(t, "POST", srv.URL+"/api/v1/replications", "api-token", map[string]any{"source": "src/manual/app:v1", "to": []string{"nowhere"}})
	if e, _ := out["error"].(map[string]any); code != http.StatusBadRequest || e["field"] != "to" {
		t.Fatalf("REST bad destination: %d %v", code, out)
	}
}

// While a copy retries, the run says which attempt it is on and why the
// last one failed; a destination no worker serves says so instead of
// staying "Running" in silence.
func TestLiveReplicationStatus(t *testing.T) {
	l, _ := testChain("it-live", "live/app")
	closed, _ := FreePort("127.0.0.1")
	for i := range l.Config.Registries {
		if l.Config.Registries[i].Name == "ap" {
			l.Config.Registries[i].Address = fmt.Sprintf("127.0.0.1:%d", closed) // served by the worker, but down
		}
	}
	l.Config.Registries = append(l.Config.Registries, chain.Registry{Name: "lonely", Address: stack.Endpoints.Registries["eu"], Insecure: true})
	l.Chains[0].Replication = []chain.ReplicationRule{
		{Name: "to-eu", Destination: "eu", Level: chain.LevelNamespace},
		{Name: "to-ap", Destination: "ap", Level: chain.LevelNamespace},
		{Name: "to-lonely", Destination: "lonely", Level: chain.LevelNamespace},
	}
	l.Chains[0].Triggers = nil
	if _, err := PushSample(context.Background(), stack.Endpoints.Registries["src"], "live/app", "v1"); err != nil {
		t.Fatal(err)
	}
	id := startRun(t, l, "live/app:v1").WorkflowID
	defer stack.Client.CancelWorkflow(context.Background(), id, "")
	deadline := time.Now().Add(time.Minute)
	for {
		st, err := runs.Status(context.Background(), stack.Client, id)
		if err != nil {
			t.Fatal(err)
		}
		byName := map[string]workflows.DestinationStatus{}
		for _, d := range st.Destinations {
			byName[d.Registry] = d
		}
		eu, ap, lonely := byName["eu"], byName["ap"], byName["lonely"]
		if eu.State == workflows.StateSucceeded && eu.BytesTotal > 0 &&
			ap.State == workflows.StateRunning && ap.Attempt >= 2 && strings.Contains(ap.LastError, "connection refused") &&
			strings.Contains(lonely.Message, "no worker is polling dchain.replicate.lonely") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("live status never showed the retry and the missing worker: %+v", st.Destinations)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// Two replications of different images into one tag, at once, with
// overwrite off: one delivers, the other fails with the conflict, and the
// tag holds the image of the one that says it delivered (the tag is looked
// at again right before it is written, not only before the copy).
func TestConcurrentReplicationsIntoOneTag(t *testing.T) {
	ctx := context.Background()
	var digests []string
	for i := range 2 {
		img, err := random.Image(8<<20, 3) // long enough for the copies to overlap
		if err != nil {
			t.Fatal(err)
		}
		ref, _ := name.ParseReference(fmt.Sprintf("%s/race/app:c%d", stack.Endpoints.Registries["src"], i), name.Insecure)
		if err := remote.Write(ref, img); err != nil {
			t.Fatal(err)
		}
		d, _ := img.Digest()
		digests = append(digests, d.String())
	}
	l, _ := testChain("it-race", "race/app")
	s := &starter.Starter{Client: stack.Client, Config: l}
	ids := make([]string, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := s.StartReplication(ctx, starter.ReplicationRequest{Source: fmt.Sprintf("src/race/app:c%d", i),
				To: []string{"eu/race/app:live"}, SourceField: "image", ToField: "--to"})
			ids[i], errs[i] = st.WorkflowID, err
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	var won []int
	for i, id := range ids {
		run, _ := waitEnded(t, id)
		switch {
		case run.Outcome == workflows.OutcomeSucceeded:
			won = append(won, i)
		case run.Outcome == workflows.OutcomeFailed && strings.Contains(run.Message, "overwrite is off"):
			t.Logf("run %d: %s", i, run.Message)
		default:
			t.Fatalf("run %d: %s %s", i, run.Outcome, run.Message)
		}
	}
	if len(won) != 1 {
		t.Fatalf("%d runs say they delivered into one tag with overwrite off", len(won))
	}
	if got := digestAt(t, "eu", "race/app", "live"); got != digests[won[0]] {
		t.Fatalf("the tag holds %s, but the run that says it delivered copied %s", got, digests[won[0]])
	}
}
