package devstack

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/dchain-dev/dchain/chain"
	"github.com/dchain-dev/dchain/starter"
	"github.com/dchain-dev/dchain/workflows"
)

// syncOnce runs the chain's sync to its end and returns what it did.
func syncOnce(t *testing.T, l *chain.Loaded, dryRun bool) workflows.SyncResult {
	t.Helper()
	s := &starter.Starter{Client: stack.Client, Config: l}
	st, err := s.StartSync(context.Background(), l.Chains[0].Name, dryRun)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var res workflows.SyncResult
	err = stack.Client.GetWorkflow(ctx, st.WorkflowID, "").Get(ctx, &res)
	var app *temporal.ApplicationError
	if errors.As(err, &app) && app.HasDetails() {
		_ = app.Details(&res)
	} else if err != nil {
		t.Fatal(err)
	}
	return res
}

// items renders sync items as sorted "repo:tag→destination" strings.
func items(is []workflows.SyncItem) string {
	var out []string
	for _, i := range is {
		out = append(out, i.Repository+":"+i.Tag+"→"+i.Destination)
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

// A rule added today acts on what exists too: `dchain chain sync` copies
// every tag of the scope its rules cover that a destination lacks, skips
// what is there, refuses a tag at another digest without overwrite, leaves
// referrer tags and excluded repositories alone, and a dry run copies nothing.
func TestChainSyncCopiesWhatExists(t *testing.T) {
	ctx := context.Background()
	srcAddr := stack.Endpoints.Registries["src"]
	digests := map[string]string{}
	for _, img := range []string{"sync/a:v1", "sync/a:v2", "sync/b:v1", "sync/skipme:v1", "sync/a:dev"} {
		repo, tag, _ := strings.Cut(img, ":")
		d, err := PushSample(ctx, srcAddr, repo, tag)
		if err != nil {
			t.Fatal(err)
		}
		digests[img] = d
	}
	attach(t, repoIn(t, srcAddr, "sync/a"), digests["sync/a:v1"], "application/spdx+json", "sbom") // a sha256-… tag in sync/a
	// us has sync/b:v1 already, at another digest.
	other, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(repoIn(t, stack.Endpoints.Registries["us"], "sync/b").Tag("v1"), other); err != nil {
		t.Fatal(err)
	}
	l, _ := testChain("it-sync", "sync/a")
	l.Chains[0].Scope = chain.Scope{Registry: "src", Namespace: "sync", AllRepositories: true, Exclude: []string{"skipme"}}
	l.Chains[0].Replication = []chain.ReplicationRule{
		{Name: "to-eu", Destination: "eu", Level: chain.LevelNamespace, TagFilter: `v\d+`},
		{Name: "to-us", Destination: "us", Level: chain.LevelNamespace},
	}
	l.Chains[0].Triggers = nil

	plan := syncOnce(t, l, true)
	wantCopy := "sync/a:dev→us sync/a:v1→eu sync/a:v1→us sync/a:v2→eu sync/a:v2→us sync/b:v1→eu"
	if !plan.DryRun || items(plan.Copied) != wantCopy {
		t.Fatalf("dry run would copy %q, want %q", items(plan.Copied), wantCopy)
	}
	if digestAt(t, "eu", "sync/a", "v1") != "" {
		t.Fatal("the dry run copied")
	}

	res := syncOnce(t, l, false)
	if items(res.Copied) != wantCopy || len(res.Failed) != 0 {
		t.Fatalf("sync copied %q (failed %v), want %q", items(res.Copied), res.Failed, wantCopy)
	}
	if items(res.Refused) != "sync/b:v1→us" || !strings.Contains(res.Refused[0].Reason, "overwrite is off") {
		t.Fatalf("refused %q, want sync/b:v1→us (another digest, overwrite off)", items(res.Refused))
	}
	if s := items(res.Skipped); !strings.Contains(s, "sync/a:dev→eu") {
		t.Fatalf("skipped %q: the tag filter's misses are skipped", s)
	}
	for _, c := range res.Copied {
		if got := digestAt(t, c.Destination, c.Repository, c.Tag); got != digests[c.Repository+":"+c.Tag] {
			t.Errorf("%s:%s in %s is %q, want %s", c.Repository, c.Tag, c.Destination, got, digests[c.Repository+":"+c.Tag])
		}
	}
	if digestAt(t, "eu", "sync/skipme", "v1") != "" || digestAt(t, "us", "sync/skipme", "v1") != "" {
		t.Fatal("an excluded repository was synced")
	}
	if refs := referrersOf(t, repoIn(t, stack.Endpoints.Registries["eu"], "sync/a"), digests["sync/a:v1"]); len(refs) != 1 {
		t.Fatalf("the SBOM did not travel with sync/a:v1: %v", refs)
	}
	for _, i := range append(append(res.Copied, res.Skipped...), res.Refused...) {
		if chain.IsReferrerTag(i.Tag) {
			t.Fatalf("a referrer tag was treated as an image: %+v", i)
		}
	}

	again := syncOnce(t, l, false)
	if len(again.Copied) != 0 || !strings.Contains(items(again.Skipped), "sync/a:v1→eu") {
		t.Fatalf("a second sync copied %q", items(again.Copied))
	}
}

// With a blocking scan policy, sync is gated by the stored scan reports:
// a clean image is synced, a vulnerable one and an unscanned one are not.
func TestChainSyncKeepsTheScanGate(t *testing.T) {
	ctx := context.Background()
	vuln := pushVulnerable(t, "gate/vuln", "v1")
	clean, err := PushSample(ctx, stack.Endpoints.Registries["src"], "gate/clean", "v1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := PushSample(ctx, stack.Endpoints.Registries["src"], "gate/unscanned", "v1"); err != nil {
		t.Fatal(err)
	}
	src, _ := testChainRegistry("src")
	for _, repo := range []string{"gate/vuln", "gate/clean"} {
		run, err := stack.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "it-gate-scan-" + repo, TaskQueue: workflows.DefaultTaskQueue},
			workflows.WorkflowScanImage, workflows.ScanImageRequest{Registry: src, Repository: repo, Tag: "v1"})
		if err != nil {
			t.Fatal(err)
		}
		if err := run.Get(ctx, nil); err != nil {
			t.Fatal(err)
		}
	}
	l := scanChain("it-gate", "gate/clean", chain.Scan{Conditions: critical, Action: chain.ActionBlock})
	l.Chains[0].Scope = chain.Scope{Registry: "src", Namespace: "gate", AllRepositories: true}
	l.Chains[0].Replication = []chain.ReplicationRule{{Name: "to-eu", Destination: "eu", Level: chain.LevelNamespace}}
	l.Chains[0].Triggers = nil
	res := syncOnce(t, l, false)
	if items(res.Copied) != "gate/clean:v1→eu" || digestAt(t, "eu", "gate/clean", "v1") != clean {
		t.Fatalf("copied %q", items(res.Copied))
	}
	why := map[string]string{}
	for _, r := range res.Refused {
		why[r.Repository] = r.Reason
	}
	if !strings.Contains(why["gate/vuln"], "blocked by the scan policy") || !strings.Contains(why["gate/unscanned"], "not scanned") {
		t.Fatalf("refused %+v", res.Refused)
	}
	if digestAt(t, "eu", "gate/vuln", "v1") != "" {
		t.Fatalf("the vulnerable image %s was synced", vuln)
	}
}

// A chain's sync.schedule is a Temporal Schedule that follows the config.
func TestChainSyncSchedules(t *testing.T) {
	l, _ := testChain("it-sync-sched", "sched/app")
	l.Chains[0].Sync = &chain.Sync{Schedule: "0 3 * * *"}
	s := &starter.Starter{Client: stack.Client, Config: l}
	ctx := context.Background()
	did, err := s.SyncSchedules(ctx)
	if err != nil || fmt.Sprint(did) != "[created dchain-sync-it-sync-sched (0 3 * * *)]" {
		t.Fatalf("first reconcile: %v %v", did, err)
	}
	h := stack.Client.ScheduleClient().GetHandle(ctx, workflows.SyncScheduleID("it-sync-sched"))
	desc, err := h.Describe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := desc.Schedule.Spec.CronExpressions; len(got) != 1 && len(desc.Schedule.Spec.Calendars) == 0 {
		t.Fatalf("spec %+v", desc.Schedule.Spec)
	}
	// A scheduled sync that cannot finish ends, rather than skipping every
	// later one for ever.
	if a, ok := desc.Schedule.Action.(*client.ScheduleWorkflowAction); !ok || a.Workflow != workflows.WorkflowChainSync ||
		a.WorkflowExecutionTimeout != starter.SyncTimeout(l.Config.Retry) || a.TaskQueue != workflows.DefaultTaskQueue {
		t.Fatalf("action %+v", desc.Schedule.Action)
	}
	l.Chains[0].Sync.Schedule = "@hourly"
	if did, err := s.SyncSchedules(ctx); err != nil || fmt.Sprint(did) != "[updated dchain-sync-it-sync-sched (@hourly)]" {
		t.Fatalf("update: %v %v", did, err)
	}
	l.Chains[0].Sync = nil
	if did, err := s.SyncSchedules(ctx); err != nil || fmt.Sprint(did) != "[deleted dchain-sync-it-sync-sched]" {
		t.Fatalf("delete: %v %v", did, err)
	}
}
