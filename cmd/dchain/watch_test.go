package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dchain-dev/dchain/devstack"
	"github.com/dchain-dev/dchain/worker"
	"github.com/dchain-dev/dchain/workflows"
)

// `run start --watch -o json` prints the started run, then one RunStatus
// per change as the run happens (the first still running, the last the
// result); `run watch` of an ended run prints its status and exits by
// outcome.
func TestRunWatch(t *testing.T) {
	dir := t.TempDir()
	_ = worker.SetupLogging(os.Stderr, "text", "warn")
	s, err := devstack.Start(context.Background(), devstack.Options{DataDir: filepath.Join(dir, "data"), TemporalPort: freePort(t), UIPort: 0,
		Regions: []devstack.Region{{Name: "src", Port: freePort(t)}, {Name: "eu", Port: freePort(t)}}, NoReceiver: true,
		Worker: &worker.Options{Chains: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	if _, err := devstack.PushSample(context.Background(), s.Endpoints.Registries["src"], "watch/app", "v1"); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "dchain.yaml")
	doc := fmt.Sprintf("registries:\n  - {name: src, address: %q, insecure: true}\n  - {name: eu, address: %q, insecure: true}\nchains: [chains/*.yaml]\n",
		s.Endpoints.Registries["src"], s.Endpoints.Registries["eu"])
	ch := "name: watch\nscope: {registry: src, namespace: watch, repository: app}\nreplication:\n  - {name: to-eu, destination: eu, level: repository}\n"
	if err := os.MkdirAll(filepath.Join(dir, "chains"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "chains", "watch.yaml"), []byte(ch), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"--config", cfg, "--address", s.Endpoints.Temporal}

	out, err := dchain(t, append(args, "run", "start", "--chain", "watch", "--image", "watch/app:v1", "--watch", "-o", "json")...)
	if err != nil {
		t.Fatalf("run start --watch -o json: %v\n%s", err, out)
	}
	dec := json.NewDecoder(strings.NewReader(out))
	var started struct{ WorkflowID string }
	if err := dec.Decode(&started); err != nil || started.WorkflowID == "" {
		t.Fatalf("first document: %+v %v\n%s", started, err, out)
	}
	var docs []workflows.RunStatus
	for dec.More() {
		var st workflows.RunStatus
		if err := dec.Decode(&st); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		docs = append(docs, st)
	}
	if len(docs) < 2 || docs[0].Outcome != workflows.OutcomeRunning || docs[len(docs)-1].Outcome != workflows.OutcomeSucceeded {
		t.Fatalf("%d status documents, want the run as it went, ending Succeeded:\n%s", len(docs), out)
	}
	if d := docs[len(docs)-1].Destinations; len(d) != 1 || d[0].State != workflows.StateSucceeded {
		t.Fatalf("last document's destinations: %+v", d)
	}

	out, err = dchain(t, append(args, "run", "watch", started.WorkflowID)...)
	if err != nil || !strings.Contains(out, "Succeeded") || !strings.Contains(out, "Run:      "+started.WorkflowID) {
		t.Fatalf("run watch of an ended run: %v\n%s", err, out)
	}
	// Shell completion offers the run IDs, the chains and the registries.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "watch", ""}, started.WorkflowID},
		{[]string{"run", "start", "--chain", "w"}, "watch"},
		{[]string{"chain", "sync", ""}, "watch"},
		{[]string{"scan", "--registry", ""}, "src"},
	} {
		out, err := dchain(t, append(append([]string{"__complete"}, args...), tc.args...)...)
		if err != nil || !strings.Contains(out, tc.want) {
			t.Errorf("completion of %v: %v\n%s", tc.args, err, out)
		}
	}
	var exit *exitError
	if _, err := dchain(t, append(args, "run", "watch", "watch:nope")...); err == nil || errors.As(err, &exit) {
		t.Fatalf("run watch of no run: %v", err)
	}
}

// While a copy retries, watch says the previous attempt's error once, when
// the attempt starts; its progress lines carry the attempt, not the error.
func TestWatchSaysAnAttemptsErrorOnce(t *testing.T) {
	var b strings.Builder
	lines := map[string]string{}
	st := workflows.RunStatus{Destinations: []workflows.DestinationStatus{{Registry: "eu", Reference: "eu/app:v1", State: workflows.StateRunning,
		Attempt: 2, LastError: "503 Service Unavailable", BlobsTotal: 4, BytesTotal: 4 << 20}}}
	for i := range 3 {
		st.Destinations[0].BlobsCopied, st.Destinations[0].BytesCopied = i, int64(i)<<20
		printChanges(&b, st, lines)
	}
	st.Destinations[0].Attempt, st.Destinations[0].LastError = 3, "connection reset"
	printChanges(&b, st, lines)
	out := b.String()
	if n := strings.Count(out, "503 Service Unavailable"); n != 1 {
		t.Errorf("the error of attempt 1 said %d times:\n%s", n, out)
	}
	if n := strings.Count(out, "connection reset"); n != 1 || strings.Count(out, "attempt 2") < 3 {
		t.Errorf("attempts:\n%s", out)
	}
}

// After following a build, `run logs -f` prints the kept log from the
// first line it had not shown.
func TestUnprinted(t *testing.T) {
	log := "START a\n  | one\n  | two\nDONE a\n"
	for printed, want := range map[int]string{0: log, 2: "  | two\nDONE a\n", 4: "", 9: ""} {
		if got := unprinted(log, printed); got != want {
			t.Errorf("unprinted(%d) = %q, want %q", printed, got, want)
		}
	}
}
