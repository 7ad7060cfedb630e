package devstack

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/dchain-dev/dchain/activities"
	"github.com/dchain-dev/dchain/chain"
	"github.com/dchain-dev/dchain/workflows"
)

// The integration tests of the trust boundary: what comes from outside
// (webhooks, REST, registry answers) against the real stack.

// gitIn runs git in dir (as a committer "t") and returns its output.
func gitIn(t testing.TB, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-c", "user.name=t", "-c", "user.email=t@t"}, args...)...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v %s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// A hostile value in a visibility query matches only itself: with a run of
// another chain building, queries carrying the refs of issue #8's attack
// parse on the real server and find nothing, and a ref that Git allows with
// a quote in it is queued and superseded like any other.
func TestHostileRefsCannotReachOtherRuns(t *testing.T) {
	src := filepath.Join(t.TempDir(), "victim")
	writeRepo(t, src, map[string]string{"Dockerfile": slowDockerfile("60")})
	victim := buildChain(t, "it-victim", "bound/victim", src, "linux/amd64")
	victim.Chains[0].Build.Rules[0].NoCache = true
	victim.Chains[0].Replication, victim.Chains[0].Triggers = nil, nil
	run := startPush(t, victim, "refs/heads/main", false).WorkflowID
	defer stack.Client.CancelWorkflow(context.Background(), run, "")
	waitStage(t, run, workflows.StageBuild)

	ctx := context.Background()
	for _, ref := range []string{`refs/heads/a\' OR WorkflowType = "ChainRun" -- `, `refs/heads/a\`, `refs/heads/x' OR '1'='1`, "refs/heads/it-victim"} {
		q := workflows.OlderRunsQuery("it-attacker", ref, "it-attacker:x", time.Time{}).Eq(workflows.AttrStage.GetName(), workflows.StageBuild)
		resp, err := stack.Client.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: q.String()})
		if err != nil {
			t.Fatalf("ref %q: the server refused the query: %v", ref, err)
		}
		if len(resp.Executions) != 0 {
			t.Fatalf("ref %q matched %s of another chain", ref, resp.Executions[0].GetExecution().GetWorkflowId())
		}
	}
	// The victim is found by its own chain and ref: the query is not just empty.
	q := workflows.OlderRunsQuery("it-victim", "refs/heads/main", "other", time.Time{})
	if resp, err := stack.Client.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: q.String()}); err != nil || len(resp.Executions) != 1 {
		t.Fatalf("own query: %v %v", resp, err)
	}

	// A quote is legal in a Git ref: such a branch supersedes its own older run.
	qsrc := filepath.Join(t.TempDir(), "quoted")
	writeRepo(t, qsrc, map[string]string{"Dockerfile": slowDockerfile("60")})
	gitIn(t, qsrc, "checkout", "-q", "-b", "it's")
	l := buildChain(t, "it-quoted", "bound/quoted", qsrc, "linux/amd64")
	l.Chains[0].Build.Rules[0].Match = "it's"
	l.Chains[0].Build.Rules[0].Tags = []chain.TagTemplate{{Tag: "quoted"}}
	l.Chains[0].Build.Rules[0].NoCache = true
	l.Chains[0].Concurrency = chain.ConcurrencySupersede
	l.Chains[0].Replication, l.Chains[0].Triggers = nil, nil
	first := startPush(t, l, "refs/heads/it's", false).WorkflowID
	waitStage(t, first, workflows.StageBuild)
	commit(t, qsrc, map[string]string{"Dockerfile": slowDockerfile("0")})
	second := startPush(t, l, "refs/heads/it's", false).WorkflowID
	if err := stack.Client.GetWorkflow(ctx, first, "").Get(ctx, nil); err == nil || !strings.Contains(err.Error(), "canceled") {
		t.Fatalf("the older run of refs/heads/it's was not superseded: %v", err)
	}
	if st := waitRun(t, second, 3*time.Minute); st.Outcome != workflows.OutcomeSucceeded {
		t.Fatalf("the newer run: %s %s", st.Outcome, st.Message)
	}
	// The victim of the other chain is still building.
	if searchAttr(t, run, "DchainOutcome") != string(workflows.OutcomeRunning) {
		t.Fatal("the other chain's run was touched")
	}
}

// The REST API refuses an option-shaped commit or ref, and an unknown
// commit, with 400 naming the field — before any run exists.
func TestRESTRefusesHostileAndUnknownCommits(t *testing.T) {
	src := filepath.Join(t.TempDir(), "sample-app")
	if err := SampleRepo(context.Background(), src, ""); err != nil {
		t.Fatal(err)
	}
	l := buildChain(t, "it-inject", "bound/inject", src, "linux/amd64")
	srv, _ := apiServer(t, l, stack.Client)
	marker := filepath.Join(t.TempDir(), "pwned")
	for _, tc := range []struct {
		body  map[string]any
		field string
	}{
		{map[string]any{"chain": "it-inject", "ref": "refs/heads/main", "commit": "--upload-pack=touch " + marker + ";true"}, "commit"},
		{map[string]any{"chain": "it-inject", "ref": "refs/heads/--upload-pack=touch " + marker}, "ref"},
		{map[string]any{"chain": "it-inject", "ref": "refs/heads/main", "commit": strings.Repeat("0123456789", 4)}, "commit"}, // not in the repository
		{map[string]any{"chain": "it-inject", "ref": "refs/heads/main\\"}, "ref"},
		{map[string]any{"chain": "it-inject", "image": "bound/inject:sha256-" + strings.Repeat("ab", 32)}, "image"},
		{map[string]any{"chain": "it-inject", "image": "bound/inject:-v1"}, "image"},
	} {
		code, out := call(t, "POST", srv.URL+"/api/v1/runs", "api-token", tc.body)
		e, _ := out["error"].(map[string]any)
		if code != http.StatusBadRequest || e == nil || e["field"] != tc.field {
			t.Errorf("%v: %d %v, want 400 naming %s", tc.body, code, out, tc.field)
		}
	}
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Fatal("the injected command ran")
	}
	// The run list's filters too: any case for an outcome, a 400 for the rest.
	if code, out := call(t, "GET", srv.URL+"/api/v1/runs?outcome=blocked", "api-token", nil); code != http.StatusOK {
		t.Errorf("outcome=blocked: %d %v", code, out)
	}
	for _, q := range []string{"outcome=blockd", "chain=a'b", "limit=x", "tag=-x"} {
		code, out := call(t, "GET", srv.URL+"/api/v1/runs?"+q, "api-token", nil)
		if e, _ := out["error"].(map[string]any); code != http.StatusBadRequest || e["field"] == nil {
			t.Errorf("%s: %d %v", q, code, out)
		}
	}
	list, err := stack.Client.ListWorkflow(context.Background(), &workflowservice.ListWorkflowExecutionsRequest{
		Query: workflows.Query{}.Eq(workflows.AttrChain.GetName(), "it-inject").String()})
	if err != nil || len(list.Executions) != 0 {
		t.Fatalf("a refused start left runs behind: %v %v", list, err)
	}
	// A known commit, named explicitly, starts.
	commitID := gitIn(t, src, "rev-parse", "main")
	code, out := call(t, "POST", srv.URL+"/api/v1/runs", "api-token", map[string]any{"chain": "it-inject", "ref": "refs/heads/main", "commit": commitID, "asPush": true})
	if code != http.StatusAccepted {
		t.Fatalf("a real commit: %d %v", code, out)
	}
	if st := waitRun(t, out["runs"].([]any)[0].(map[string]any)["workflowId"].(string), 3*time.Minute); st.Outcome != workflows.OutcomeSucceeded || st.Commit != commitID {
		t.Fatalf("the run of a named commit: %s %s", st.Outcome, st.Message)
	}
}

// A new branch at a commit another branch already built gets its own run,
// which reuses the image instead of building it, adds its tags everywhere,
// and says so; its redelivery is still one run. Another rule with the same
// inputs reuses it too; under immutableTags a build that would move a tag
// fails before building.
func TestNewRefAtABuiltCommitReusesTheImage(t *testing.T) {
	src := filepath.Join(t.TempDir(), "sample-app")
	if err := SampleRepo(context.Background(), src, ""); err != nil {
		t.Fatal(err)
	}
	gitIn(t, src, "branch", "release-v4", "release-v1")
	l := buildChain(t, "it-reuse", "bound/reuse", src, "linux/amd64", "linux/arm64")
	l.Chains[0].Build.Rules[0] = chain.BuildRule{Name: "release", Type: chain.RuleBranch, Match: `release-(?<v>v\d+)`,
		Tags: []chain.TagTemplate{{Tag: "${v}"}}, Platforms: []string{"linux/amd64", "linux/arm64"},
		BuildArgs: map[string]string{"BASE": stack.Endpoints.BaseImage}}
	l.Chains[0].Triggers = nil
	first := startPush(t, l, "refs/heads/release-v1", false)
	a := waitRun(t, first.WorkflowID, 3*time.Minute)
	if a.Outcome != workflows.OutcomeSucceeded || a.Build.ReusedFrom != "" || a.Build.Steps == 0 {
		t.Fatalf("first build: %s %s %+v", a.Outcome, a.Message, a.Build)
	}
	second := startPush(t, l, "refs/heads/release-v4", false)
	if second.Existing || second.WorkflowID == first.WorkflowID {
		t.Fatalf("the new branch got no run of its own: %+v", second)
	}
	b := waitRun(t, second.WorkflowID, 3*time.Minute)
	if b.Outcome != workflows.OutcomeSucceeded || b.Commit != a.Commit || b.Build.ReusedFrom != a.Image.Digest || b.Image.Digest != a.Image.Digest {
		t.Fatalf("second run: %s %s %+v", b.Outcome, b.Message, b.Build)
	}
	if msg := b.Stages[0].Message; !strings.Contains(msg, "reused "+a.Image.Digest) {
		t.Fatalf("the run does not say it reused the image: %q", msg)
	}
	recordHistory(t, second.WorkflowID, "chainrun-build-reused.json")
	for _, reg := range []string{"src", "eu", "us"} {
		assertReplicated(t, reg, "bound/reuse", "v4", a.Image.Digest)
	}
	if again := startPush(t, l, "refs/heads/release-v4", false); !again.Existing || again.WorkflowID != second.WorkflowID {
		t.Fatalf("a redelivery started another run: %+v", again)
	}

	// Reuse is keyed on what is built, not on the rule: another rule with
	// the same inputs (a tag rule here) reuses the image too.
	gitIn(t, src, "tag", "hotfix-h1", "release-v1")
	l.Chains[0].Build.Rules = append(l.Chains[0].Build.Rules, chain.BuildRule{Name: "hotfix", Type: chain.RuleTag, Match: `hotfix-(?<h>\w+)`,
		Tags: []chain.TagTemplate{{Tag: "hotfix-${h}"}}, Platforms: []string{"linux/amd64", "linux/arm64"},
		BuildArgs: map[string]string{"BASE": stack.Endpoints.BaseImage}})
	c := waitRun(t, startPush(t, l, "refs/tags/hotfix-h1", false).WorkflowID, 3*time.Minute)
	if c.Outcome != workflows.OutcomeSucceeded || c.Build.ReusedFrom != a.Image.Digest || c.Build.Log == "" {
		t.Fatalf("another rule with the same inputs: %s %s %+v", c.Outcome, c.Message, c.Build)
	}

	// Immutable tags: a build that would move v1 (to main's commit) fails
	// before building, saying so.
	l.Chains[0].ImmutableTags = true
	l.Chains[0].Build.Rules = append(l.Chains[0].Build.Rules, chain.BuildRule{Name: "main", Type: chain.RuleBranch, Match: "main",
		Tags: []chain.TagTemplate{{Tag: "v1"}}, Platforms: []string{"linux/amd64"}, BuildArgs: map[string]string{"BASE": stack.Endpoints.BaseImage}})
	st := waitFailed(t, startPush(t, l, "refs/heads/main", false).WorkflowID)
	if st.FailedStage != workflows.StageBuild || !strings.Contains(st.Message, "is immutable") || digestAt(t, "src", "bound/reuse", "v1") != a.Image.Digest {
		t.Fatalf("a build moving an immutable tag: %s at %s: %s", st.Outcome, st.FailedStage, st.Message)
	}
}

// Referrer tags (the OCI 1.1 fallback the scan reports use) and dchain's
// own repositories never start a chain run and are never scanned as images; a
// Harbor push by digest is accepted and ignored; a malformed digest is a
// 400; GitHub's form-encoded delivery is accepted.
func TestRegistryEventsThatAreNotImages(t *testing.T) {
	l, _ := testChain("it-notimg", "bound/notimg")
	srv, _ := apiServer(t, l, stack.Client)
	digest, err := PushSample(context.Background(), stack.Endpoints.Registries["src"], "bound/notimg", "v1")
	if err != nil {
		t.Fatal(err)
	}
	hex := strings.TrimPrefix(digest, "sha256:")
	if code, ans, body := deliver(t, srv.URL, "registry", "distribution", "hook-secret", distributionEvent("dchain-logs/bound/notimg", "release-0123456789ab", digest)); code != http.StatusOK || len(ans.Runs) != 0 || len(ans.Ignored) != 1 {
		t.Errorf("a build log: %d %s", code, body)
	}
	// A referrer tag is no image either: it follows the image's referrers
	// to its destinations (a run of its own, never a chain run of it).
	for _, tag := range []string{"sha256-" + hex, "sha256-" + hex + ".sig"} {
		code, ans, body := deliver(t, srv.URL, "registry", "distribution", "hook-secret", distributionEvent("bound/notimg", tag, digest))
		if code != http.StatusAccepted || len(ans.Runs) != 1 || !strings.HasPrefix(ans.Runs[0].WorkflowID, "referrers:") {
			t.Errorf("%s: %d %s", tag, code, body)
		}
	}
	for _, bad := range []string{"sha256:", "sha256:zz"} {
		if code, _, body := deliver(t, srv.URL, "registry", "distribution", "hook-secret", distributionEvent("bound/notimg", "v1", bad)); code != http.StatusBadRequest || !strings.Contains(body, "digest") {
			t.Errorf("digest %q: %d %s", bad, code, body)
		}
	}
	harbor := fmt.Sprintf(`{"type":"PUSH_ARTIFACT","occur_at":%d,"operator":"admin","event_data":{"resources":[{"digest":%q,"tag":%q}],"repository":{"repo_full_name":"bound/notimg"}}}`,
		time.Now().Unix(), digest, digest)
	if code, ans, body := deliver(t, srv.URL, "harbor", "harbor", "hook-secret", []byte(harbor)); code != http.StatusOK || len(ans.Runs) != 0 || len(ans.Ignored) != 1 {
		t.Errorf("Harbor push by digest: %d %s", code, body)
	}
	form := []byte(url.Values{"payload": {string(sample(t, "github-push.json"))}}.Encode())
	if code, ans, body := deliver(t, srv.URL, "gh", "github", "hook-secret", form, "Content-Type", "application/x-www-form-urlencoded"); code != http.StatusOK || len(ans.Ignored) != 1 {
		t.Errorf("GitHub form-encoded delivery: %d %s", code, body)
	}

	// A report attached the OCI 1.1 way leaves a sha256-<hex> tag behind on a
	// registry without the referrers API: a repository scan lists only images.
	ref, _ := name.ParseReference(stack.Endpoints.Registries["src"]+"/bound/notimg@"+digest, name.Insecure)
	desc, err := remote.Head(ref)
	if err != nil {
		t.Fatal(err)
	}
	report := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), "application/vnd.dchain.test")
	report = mutate.Subject(report, v1.Descriptor{MediaType: desc.MediaType, Digest: desc.Digest, Size: desc.Size}).(v1.Image)
	rd, _ := report.Digest()
	at, _ := name.ParseReference(stack.Endpoints.Registries["src"]+"/bound/notimg@"+rd.String(), name.Insecure)
	if err := remote.Write(at, report); err != nil {
		t.Fatal(err)
	}
	all, err := remote.List(at.Context())
	if err != nil || !slices.Contains(all, "sha256-"+hex) {
		t.Fatalf("the registry holds no fallback tag: %v %v", all, err)
	}
	reg, _ := testChainRegistry("src")
	tags, err := (&activities.Activities{}).ListTags(context.Background(), workflows.ListTagsInput{Registry: reg, Repository: "bound/notimg"})
	if err != nil || strings.Join(tags, ",") != "v1" {
		t.Fatalf("tags of a repository scan: %v %v", tags, err)
	}
}

// Secrets never enter a run's history: the trigger's signing key and the
// registry's credentials are resolved inside the activities that use them.
func TestSecretsStayOutOfHistory(t *testing.T) {
	const regSecret = "ci:reg-s3cret-0451"
	t.Setenv("DCHAIN_IT_REGISTRY_CRED", regSecret)
	l, _ := testChain("it-secrets", "bound/secrets")
	l.Config.Registries[0].Credentials = "env:DCHAIN_IT_REGISTRY_CRED"
	if _, err := PushSample(context.Background(), stack.Endpoints.Registries["src"], "bound/secrets", "v1"); err != nil {
		t.Fatal(err)
	}
	id := startRun(t, l, "bound/secrets:v1").WorkflowID
	if st := waitRun(t, id, time.Minute); st.Outcome != workflows.OutcomeSucceeded || len(st.Triggers) != 2 {
		t.Fatalf("run: %s %s", st.Outcome, st.Message)
	}
	history := historyText(t, id)
	if !strings.Contains(history, "env:DCHAIN_IT_REGISTRY_CRED") {
		t.Fatal("the history does not even hold the reference: wrong run?")
	}
	for _, secret := range []string{regSecret, "reg-s3cret-0451", os.Getenv(TriggerSecretEnv)} {
		if strings.Contains(history, secret) {
			t.Fatalf("the history of %s holds a secret value", id)
		}
	}
}

// historyText is the run's history as JSON, with every payload's data
// (base64 there) decoded, for a search of what it holds.
func historyText(t testing.TB, id string) string {
	t.Helper()
	var history strings.Builder
	for _, ev := range runHistory(t, id) {
		js := protojson.Format(ev)
		history.WriteString(js)
		for _, m := range payloadData.FindAllStringSubmatch(js, -1) {
			b, _ := base64.StdEncoding.DecodeString(m[1])
			history.Write(b)
		}
	}
	return history.String()
}

var payloadData = regexp.MustCompile(`"data":\s*"([A-Za-z0-9+/=]*)"`)

// A registry that refuses connections during a build (here the base
// image's) is a transient failure: the build is retried, not failed.
func TestBuildRetriesWhenARegistryIsUnreachable(t *testing.T) {
	src := filepath.Join(t.TempDir(), "unreachable")
	writeRepo(t, src, map[string]string{"Dockerfile": "ARG BASE\nFROM ${BASE}\nRUN true\n"})
	l := buildChain(t, "it-unreachable", "bound/unreachable", src, "linux/amd64")
	closed, _ := FreePort("127.0.0.1")
	l.Chains[0].Build.Rules[0].BuildArgs["BASE"] = fmt.Sprintf("127.0.0.1:%d/base/busybox:1", closed)
	l.Chains[0].Build.Rules[0].NoCache = true
	id := startPush(t, l, "refs/heads/main", false).WorkflowID
	defer stack.Client.CancelWorkflow(context.Background(), id, "")
	deadline := time.Now().Add(time.Minute)
	for {
		desc, err := stack.Client.DescribeWorkflowExecution(context.Background(), id, "")
		if err != nil {
			t.Fatal(err)
		}
		if desc.GetWorkflowExecutionInfo().GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
			t.Fatalf("the run ended (%s) instead of retrying the build", desc.GetWorkflowExecutionInfo().GetStatus())
		}
		for _, p := range desc.GetPendingActivities() {
			f := p.GetLastFailure()
			if p.GetActivityType().GetName() == workflows.ActivityBuildImage && p.GetAttempt() >= 2 &&
				f.GetApplicationFailureInfo().GetType() == activities.ErrTransient && strings.Contains(f.GetMessage(), "connection refused") {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no retried build with a transient failure: %v", desc.GetPendingActivities())
		}
		time.Sleep(200 * time.Millisecond)
	}
}
