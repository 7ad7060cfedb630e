package devstack

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	controlapi "github.com/moby/buildkit/api/services/control"
	bk "github.com/moby/buildkit/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"

	"github.com/dchain-dev/dchain/activities"
	"github.com/dchain-dev/dchain/chain"
	"github.com/dchain-dev/dchain/starter"
	"github.com/dchain-dev/dchain/workflows"
)

// buildChain is testChain with a build section: the sample app's
// repository, and a rule for branch main that tags latest and the commit.
func buildChain(t testing.TB, name, repo, src string, platforms ...string) *chain.Loaded {
	t.Helper()
	l, ch := testChain(name, repo)
	ch.Build = &chain.Build{Source: chain.BuildSource{URL: src}, Rules: []chain.BuildRule{{
		Name: "main", Type: chain.RuleBranch, Match: "main",
		Tags:      []chain.TagTemplate{{Tag: "latest"}, {Tag: "main", CommitID: 8}},
		Platforms: platforms,
		BuildArgs: map[string]string{"BASE": stack.Endpoints.BaseImage, "GREETING": "hi"},
	}}}
	l.Chains[0] = ch
	return l
}

func startPush(t testing.TB, l *chain.Loaded, ref chain.Ref, rerun bool) starter.Started {
	t.Helper()
	s := &starter.Starter{Client: stack.Client, Config: l}
	runs, err := s.StartPush(context.Background(), starter.PushRequest{
		Chain: l.Chains[0].Name, Ref: ref, At: time.Now(), Rerun: rerun,
		Cause: workflows.Cause{Kind: "push", Actor: "test", At: time.Now().UTC()},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 1 {
		t.Fatalf("runs %+v", runs)
	}
	return runs[0]
}

// fileInImage returns the content of path in the image of platform under ref.
func fileInImage(t *testing.T, ref, platform, path string) string {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	os, arch, _ := strings.Cut(platform, "/")
	img, err := remote.Image(r, remote.WithPlatform(v1Platform(os, arch)))
	if err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for i := len(layers) - 1; i >= 0; i-- {
		rc, err := layers[i].Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if h.Name == path {
				b, _ := io.ReadAll(tr)
				rc.Close()
				return strings.TrimSpace(string(b))
			}
		}
		rc.Close()
	}
	t.Fatalf("%s has no %s for %s", ref, path, platform)
	return ""
}

func TestBuildPushReplicateTrigger(t *testing.T) {
	src := filepath.Join(t.TempDir(), "sample-app")
	if err := SampleRepo(context.Background(), src, ""); err != nil {
		t.Fatal(err)
	}
	l := buildChain(t, "it-build", "shop/web", src, "linux/amd64", "linux/arm64")
	started := startPush(t, l, "refs/heads/main", false)
	st := waitRun(t, started.WorkflowID, 3*time.Minute)
	if st.Outcome != workflows.OutcomeSucceeded {
		t.Fatalf("outcome %s: %s", st.Outcome, st.Message)
	}
	commit, err := activities.ResolveRef(context.Background(), l.Chains[0].Build.Source, "refs/heads/main")
	if err != nil {
		t.Fatal(err)
	}
	if st.Commit != string(commit) || started.WorkflowID != workflows.BuildWorkflowID("it-build", "main", "refs/heads/main", commit) {
		t.Fatalf("commit %s, run %s", st.Commit, started.WorkflowID)
	}
	tags := []string{"latest", "main-" + string(commit[:8])}
	if strings.Join(st.Tags, ",") != strings.Join(tags, ",") {
		t.Fatalf("tags %v, want %v", st.Tags, tags)
	}
	if st.Build == nil || len(st.Build.Platforms) != 2 || st.Build.Digest != st.Image.Digest {
		t.Fatalf("build result %+v", st.Build)
	}

	// One index per tag covering both platforms, in the source registry and
	// in every region; and the arm64 image really ran arm64 code.
	for _, reg := range []string{"src", "eu", "us"} {
		for _, tag := range tags {
			assertReplicated(t, reg, "shop/web", tag, st.Image.Digest)
		}
	}
	ref := stack.Endpoints.Registries["eu"] + "/shop/web:latest"
	if got := fileInImage(t, ref, "linux/arm64", "app/arch.txt"); got != "built for aarch64 (linux/arm64)" {
		t.Fatalf("arm64 image: %q", got)
	}
	if got := fileInImage(t, ref, "linux/amd64", "app/arch.txt"); got != "built for x86_64 (linux/amd64)" {
		t.Fatalf("amd64 image: %q", got)
	}
	if got := fileInImage(t, ref, "linux/amd64", "app/greeting.txt"); got != "hi" {
		t.Fatalf("build arg GREETING: %q", got)
	}

	// The trigger fired for the built tag, and the build log is readable.
	found := false
	for _, d := range stack.Receiver.Deliveries() {
		found = found || (d.Path == "/it-build/ce" && strings.Contains(string(d.Body), st.Image.Digest))
	}
	if !found {
		t.Fatal("no CloudEvents delivery for the built image")
	}
	src0, _ := l.Config.Registry("src")
	log, err := (&activities.Activities{}).ReadBuildLog(context.Background(), src0, st.Build.Log)
	if err != nil || !strings.Contains(string(log), "RUN mkdir -p /app") || !strings.Contains(string(log), "exporting to image") {
		t.Fatalf("build log (%v):\n%s", err, log)
	}

	recordHistory(t, started.WorkflowID, "chainrun-build-batched.json")

	// The same push again starts nothing; a rerun with the same inputs reuses
	// the image; a rebuild of the same commit with other inputs (here the same
	// Dockerfile, named differently) builds and hits the cache.
	if again := startPush(t, l, "refs/heads/main", false); !again.Existing {
		t.Fatalf("a redelivered push started a new run: %+v", again)
	}
	rerun := startPush(t, l, "refs/heads/main", true)
	st2 := waitRun(t, rerun.WorkflowID, 3*time.Minute)
	if st2.Outcome != workflows.OutcomeSucceeded || st2.Build.ReusedFrom != st.Image.Digest || st2.Image.Digest != st.Image.Digest {
		t.Fatalf("rerun: outcome %s, reused %q, digest %s (first %s)", st2.Outcome, st2.Build.ReusedFrom, st2.Image.Digest, st.Image.Digest)
	}
	l.Chains[0].Build.Rules[0].Dockerfile = "./Dockerfile"
	rebuild := startPush(t, l, "refs/heads/main", true)
	st3 := waitRun(t, rebuild.WorkflowID, 3*time.Minute)
	if st3.Outcome != workflows.OutcomeSucceeded || st3.Build.ReusedFrom != "" || st3.Build.Cached == 0 || st3.Image.Digest != st.Image.Digest {
		t.Fatalf("rebuild: outcome %s, %d of %d steps cached, digest %s (first %s)", st3.Outcome, st3.Build.Cached, st3.Build.Steps, st3.Image.Digest, st.Image.Digest)
	}
}

func TestBuildFailsPermanentlyOnMissingDockerfile(t *testing.T) {
	src := filepath.Join(t.TempDir(), "sample-app")
	if err := SampleRepo(context.Background(), src, ""); err != nil {
		t.Fatal(err)
	}
	l := buildChain(t, "it-nodockerfile", "shop/nodf", src)
	l.Chains[0].Build.Rules[0].Dockerfile = "missing/Dockerfile"
	st := waitFailed(t, startPush(t, l, "refs/heads/main", false).WorkflowID)
	if st.FailedStage != workflows.StageBuild || !strings.Contains(st.Message, "has no missing/Dockerfile at commit") {
		t.Fatalf("failure %s: %s", st.FailedStage, st.Message)
	}
}

func TestCancelStopsTheBuildkitdJob(t *testing.T) {
	src := filepath.Join(t.TempDir(), "slow")
	writeRepo(t, src, map[string]string{"Dockerfile": "ARG BASE\nFROM ${BASE}\nRUN echo started && sleep 120 && echo finished\n"})
	l := buildChain(t, "it-cancel", "shop/slow", src, "linux/amd64")
	l.Chains[0].Build.Rules[0].NoCache = true
	started := startPush(t, l, "refs/heads/main", false)

	c, err := bk.New(context.Background(), stack.BuildKit.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Wait until buildkitd is running the job, then cancel the run.
	var ref string
	deadline := time.Now().Add(time.Minute)
	for ref == "" {
		ref = activeBuild(t, c)
		if time.Now().After(deadline) {
			t.Fatal("the build never started in buildkitd")
		}
		time.Sleep(100 * time.Millisecond)
	}
	// ... and the RUN step is under way (the build's heartbeat says so,
	// and carries what it printed so far: `run logs -f` shows it live), so
	// its log has something to keep.
	for {
		p := buildHeartbeat(t, started.WorkflowID)
		if strings.Contains(p.Current, "sleep 120") && slices.ContainsFunc(p.Tail, func(l string) bool { return strings.HasSuffix(l, "| started") }) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the RUN step never started, or its output never reached a heartbeat: %+v", p)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := stack.Client.CancelWorkflow(context.Background(), started.WorkflowID, ""); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var st workflows.RunStatus
	err = stack.Client.GetWorkflow(ctx, started.WorkflowID, "").Get(ctx, &st)
	var canceled *temporal.CanceledError
	if !errors.As(err, &canceled) || canceled.Details(&st) != nil {
		t.Fatalf("want the run canceled with its status, got %v", err)
	}
	// What was built until then is in the log the run keeps.
	if st.Build == nil || st.Build.Log == "" {
		t.Fatalf("a canceled build left no log: %+v", st.Build)
	}
	srcReg, _ := testChainRegistry("src")
	if b, err := (&activities.Activities{}).ReadBuildLog(context.Background(), srcReg, st.Build.Log); err != nil || !strings.Contains(string(b), "sleep 120") {
		t.Fatalf("the canceled build's log %s: %v\n%s", st.Build.Log, err, b)
	}
	// buildkitd recorded the job as ended with an error (canceled), not finished.
	for {
		rec := buildRecord(t, c, ref)
		if rec != nil && rec.CompletedAt != nil {
			if rec.Error == nil {
				t.Fatalf("the canceled build completed successfully in buildkitd")
			}
			break
		}
		if ctx.Err() != nil {
			t.Fatal("buildkitd kept the build running after the run was canceled")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if a := activeBuild(t, c); a == ref {
		t.Fatal("build still active in buildkitd")
	}
}

// buildHeartbeat is the progress the run's build last heartbeated (zero
// before its first).
func buildHeartbeat(t *testing.T, id string) workflows.BuildProgress {
	t.Helper()
	var p workflows.BuildProgress
	desc, err := stack.Client.DescribeWorkflowExecution(context.Background(), id, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, pa := range desc.GetPendingActivities() {
		if pa.GetActivityType().GetName() == workflows.ActivityBuildImage && pa.GetHeartbeatDetails() != nil {
			_ = converter.GetDefaultDataConverter().FromPayloads(pa.GetHeartbeatDetails(), &p)
		}
	}
	return p
}

// waitFailed waits for a run that must fail and returns its status.
func waitFailed(t *testing.T, id string) workflows.RunStatus {
	t.Helper()
	st, failed := waitEnded(t, id)
	if !failed {
		t.Fatalf("run %s: want a failure, got %s", id, st.Outcome)
	}
	return st
}

// waitEnded waits for a run to end, delivered or failed, and returns its
// status and whether the workflow failed.
func waitEnded(t *testing.T, id string) (workflows.RunStatus, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var st workflows.RunStatus
	err := stack.Client.GetWorkflow(ctx, id, "").Get(ctx, &st)
	if err == nil {
		return st, false
	}
	var app *temporal.ApplicationError
	if !errors.As(err, &app) || app.Details(&st) != nil {
		t.Fatalf("run %s: want a failure with status, got %v", id, err)
	}
	return st, true
}

// activeBuild returns the ref of a build buildkitd is running, or "".
func activeBuild(t *testing.T, c *bk.Client) string {
	t.Helper()
	recs := buildHistory(t, c, true)
	for _, r := range recs {
		if r.CompletedAt == nil {
			return r.Ref
		}
	}
	return ""
}

func buildRecord(t *testing.T, c *bk.Client, ref string) *controlapi.BuildHistoryRecord {
	t.Helper()
	for _, r := range buildHistory(t, c, false) {
		if r.Ref == ref {
			return r
		}
	}
	return nil
}

func buildHistory(t *testing.T, c *bk.Client, activeOnly bool) []*controlapi.BuildHistoryRecord {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := c.ControlClient().ListenBuildHistory(ctx, &controlapi.BuildHistoryRequest{ActiveOnly: activeOnly, EarlyExit: true})
	if err != nil {
		t.Fatal(err)
	}
	var recs []*controlapi.BuildHistoryRecord
	for {
		ev, err := stream.Recv()
		if err != nil {
			break
		}
		if ev.Record != nil {
			recs = append(recs, ev.Record)
		}
	}
	return recs
}

// writeRepo makes a Git repository at dir with files on branch main.
func writeRepo(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	for p, content := range files {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, p), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	gitIn(t, dir, "init", "-q", "-b", "main")
	gitIn(t, dir, "add", ".")
	gitIn(t, dir, "commit", "-q", "-m", "init")
}

func v1Platform(os, arch string) v1.Platform { return v1.Platform{OS: os, Architecture: arch} }
