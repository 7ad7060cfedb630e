package devstack

import (
	"archive/tar"
	"context"
	"errors"
	"maps"
	"net/url"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/dchain-dev/dchain/activities"
	"github.com/dchain-dev/dchain/chain"
	"github.com/dchain-dev/dchain/scanner"
	"github.com/dchain-dev/dchain/workflows"
)

// vulnerableImage is an Alpine-style image (apk database with openssl and
// busybox) with two npm packages, all with advisories in the demo DB.
func vulnerableImage(t *testing.T) v1.Image {
	t.Helper()
	apk := "P:openssl\nV:3.1.0-r0\nA:x86_64\no:openssl\n\nP:busybox\nV:1.36.1-r2\nA:x86_64\no:busybox\n\n"
	return filesImage(t, map[string][]byte{
		"etc/alpine-release":                   []byte("3.18.4\n"),
		"etc/os-release":                       []byte("NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.18.4\n"),
		"lib/apk/db/installed":                 []byte(apk),
		"app/node_modules/lodash/package.json": []byte(`{"name":"lodash","version":"4.17.11"}`),
		"app/node_modules/qs/package.json":     []byte(`{"name":"qs","version":"6.10.1"}`),
	})
}

// filesImage is a linux/amd64 image of one layer holding files (and the
// directories above them).
func filesImage(t *testing.T, files map[string][]byte) v1.Image {
	t.Helper()
	dirs := map[string]bool{}
	for f := range files {
		for d := path.Dir(f); d != "."; d = path.Dir(d) {
			dirs[d+"/"] = true
		}
	}
	var hs []*tar.Header
	for _, d := range slices.Sorted(maps.Keys(dirs)) {
		hs = append(hs, &tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755})
	}
	for _, f := range slices.Sorted(maps.Keys(files)) {
		hs = append(hs, &tar.Header{Typeflag: tar.TypeReg, Name: f, Mode: 0o644})
	}
	layer, err := tarLayer(hs, files)
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), layer)
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	return img
}

func pushVulnerable(t *testing.T, repo, tag string) string {
	t.Helper()
	img := vulnerableImage(t)
	ref, _ := name.ParseReference(stack.Endpoints.Registries["src"]+"/"+repo+":"+tag, name.Insecure)
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	return d.String()
}

// want are the demo DB's findings in vulnerableImage.
var want = map[string]string{
	"CVE-2019-10744": "CRITICAL", "CVE-2020-8203": "HIGH", "CVE-2021-23337": "HIGH", "CVE-2022-24999": "HIGH",
	"CVE-2023-5678": "MEDIUM", "CVE-2023-42363": "MEDIUM", "CVE-2023-6129": "LOW",
}

func TestScanFindsKnownVulnerabilities(t *testing.T) {
	digest := pushVulnerable(t, "scan/vuln", "v1")
	src, _ := testChainRegistry("src")
	ctx := context.Background()
	run, err := stack.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "it-scan-" + digest[7:19], TaskQueue: workflows.DefaultTaskQueue},
		workflows.WorkflowScanImage, workflows.ScanImageRequest{Registry: src, Repository: "scan/vuln", Tag: "v1"})
	if err != nil {
		t.Fatal(err)
	}
	var sum workflows.ScanSummary
	if err := run.Get(ctx, &sum); err != nil {
		t.Fatal(err)
	}
	if sum.Digest != digest || !sum.DB.Demo || sum.Total != len(want) {
		t.Fatalf("summary %+v", sum)
	}
	for sev, n := range map[string]int{"CRITICAL": 1, "HIGH": 3, "MEDIUM": 2, "LOW": 1, "UNKNOWN": 0} {
		if sum.Counts[sev] != n {
			t.Errorf("%s: %d, want %d", sev, sum.Counts[sev], n)
		}
	}
	a := &activities.Activities{}
	report, err := a.ReadScanReport(ctx, src, sum.Report)
	if err != nil {
		t.Fatal(err)
	}
	// What the scan could look at is in the report and the summary.
	if len(report.Inventory) != 1 || report.Inventory[0].OS != "alpine 3.18.4" || report.Inventory[0].Packages["alpine"] != 2 ||
		report.Inventory[0].Packages["node-pkg"] != 2 || !reflect.DeepEqual(sum.Inventory, report.Inventory) {
		t.Errorf("inventory %+v, summary %+v", report.Inventory, sum.Inventory)
	}
	got := map[string]string{}
	for _, f := range report.Findings {
		got[f.ID] = f.Severity
		if f.ID == "CVE-2023-5678" && (f.Package != "openssl" || f.InstalledVersion != "3.1.0-r0" || f.FixedVersion != "3.1.4-r1") {
			t.Errorf("openssl finding %+v", f)
		}
		if f.ID == "CVE-2019-10744" && (f.Package != "lodash" || f.InstalledVersion != "4.17.11" || f.FixedVersion == "") {
			t.Errorf("lodash finding %+v", f)
		}
	}
	for id, sev := range want {
		if got[id] != sev {
			t.Errorf("%s: %q, want %s", id, got[id], sev)
		}
	}

	// The report is a referrer of the image, found through the referrers API
	// (distribution serves it through the OCI 1.1 tag-schema fallback).
	ref, _ := name.NewDigest(stack.Endpoints.Registries["src"]+"/scan/vuln@"+digest, name.Insecure)
	idx, err := remote.Referrers(ref)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := idx.IndexManifest()
	found := false
	for _, d := range m.Manifests {
		found = found || (d.ArtifactType == activities.ScanReportArtifactType && strings.HasSuffix(sum.Report, d.Digest.String()))
	}
	if !found {
		t.Fatalf("the report %s is not among the image's referrers %+v", sum.Report, m.Manifests)
	}
}

func testChainRegistry(n string) (chain.Registry, bool) {
	l, _ := testChain("x", "x/y")
	return l.Config.Registry(n)
}

// scanChain is testChain with a scan section.
func scanChain(name, repo string, s chain.Scan) *chain.Loaded {
	l, ch := testChain(name, repo)
	ch.Scan = &s
	l.Chains[0] = ch
	return l
}

var critical = []chain.Condition{{Severity: "CRITICAL", Count: 1}}

func tagStatus(t *testing.T, registry, repo, tag string) (string, bool) {
	t.Helper()
	ref, _ := name.ParseReference(stack.Endpoints.Registries[registry]+"/"+repo+":"+tag, name.Insecure)
	d, err := remote.Head(ref)
	if err != nil {
		return "", false
	}
	return d.Digest.String(), true
}

func assertNoDeliveries(t *testing.T, chainName string) {
	t.Helper()
	for _, d := range stack.Receiver.Deliveries() {
		if strings.HasPrefix(d.Path, "/"+chainName+"/") {
			t.Fatalf("trigger receiver got %s for a blocked run", d.Path)
		}
	}
}

// waitBlocked waits for a run the policy must block: its workflow fails as
// Blocked (what the Web UI shows in the list and the header, apart from a
// delivered run), with the policy's reason as the message and the status
// as the details.
func waitBlocked(t *testing.T, id string) workflows.RunStatus {
	t.Helper()
	st := waitFailed(t, id)
	if st.Outcome != workflows.OutcomeBlocked {
		t.Fatalf("outcome %s: %s", st.Outcome, st.Message)
	}
	desc, err := stack.Client.DescribeWorkflowExecution(context.Background(), id, "")
	if err != nil {
		t.Fatal(err)
	}
	if got := desc.GetWorkflowExecutionInfo().GetStatus(); got != enumspb.WORKFLOW_EXECUTION_STATUS_FAILED {
		t.Fatalf("a blocked run's execution is %s in Temporal, want Failed", got)
	}
	err = stack.Client.GetWorkflow(context.Background(), id, "").Get(context.Background(), nil)
	var app *temporal.ApplicationError
	if !errors.As(err, &app) || app.Type() != workflows.ErrTypeRunBlocked || app.Message() != st.Message || !strings.HasPrefix(app.Message(), "blocked by the ") {
		t.Fatalf("a blocked run's failure: %v", err)
	}
	return st
}

func TestBlockedRunDeletesTheTagAndReachesNoOne(t *testing.T) {
	pushVulnerable(t, "scan/blocked", "v1")
	l := scanChain("it-block", "scan/blocked", chain.Scan{Conditions: critical, Action: chain.ActionDeleteTag})
	id := startRun(t, l, "scan/blocked:v1").WorkflowID
	st := waitBlocked(t, id)
	if st.Decision == nil || !st.Decision.Blocked {
		t.Fatalf("outcome %s: %s", st.Outcome, st.Message)
	}
	recordHistory(t, id, "chainrun-blocked-fails.json")
	// Where a person looks first — the list of runs and the run's page in
	// the Web UI, in a real browser — it says Failed, not Completed like a
	// delivered run, and the page says why.
	ns := "/namespaces/" + stack.Endpoints.Namespace + "/workflows"
	if row := tableRowOf(browse(t, ns+"?query="+url.QueryEscape("WorkflowId = '"+id+"'"), "blocked-list"), id); !strings.Contains(row, "Failed") || strings.Contains(row, "Completed") {
		t.Errorf("the Web UI lists the blocked run as %q", row)
	}
	if page := visibleText(browse(t, ns+"/"+url.PathEscape(id), "blocked-run")); !strings.Contains(page, st.Message) {
		t.Errorf("the run's page in the Web UI does not say %q", st.Message)
	}
	if _, ok := tagStatus(t, "src", "scan/blocked", "v1"); ok {
		t.Fatal("the blocked tag is still in the source registry")
	}
	for _, reg := range []string{"eu", "us"} {
		if _, ok := tagStatus(t, reg, "scan/blocked", "v1"); ok {
			t.Fatalf("destination %s got the blocked image", reg)
		}
	}
	assertNoDeliveries(t, "it-block")
}

func TestBlockAndBackupQuarantines(t *testing.T) {
	digest := pushVulnerable(t, "scan/backup", "v1")
	l := scanChain("it-backup", "scan/backup", chain.Scan{Conditions: critical, Action: chain.ActionBackup, Backup: &chain.Backup{Repository: "quarantine/backup"}})
	st := waitBlocked(t, startRun(t, l, "scan/backup:v1").WorkflowID)
	if st.Block == nil || len(st.Block.BackedUp) != 1 {
		t.Fatalf("outcome %s, block %+v: %s", st.Outcome, st.Block, st.Message)
	}
	if d, ok := tagStatus(t, "src", "quarantine/backup", "v1"); !ok || d != digest {
		t.Fatalf("quarantine copy: %s %v", d, ok)
	}
	if _, ok := tagStatus(t, "src", "scan/backup", "v1"); ok {
		t.Fatal("the original tag was not deleted after the backup")
	}
	src, _ := testChainRegistry("src")
	if reports, err := (&activities.Activities{}).ScanReports(context.Background(), src, "quarantine/backup", digest); err != nil || len(reports) != 1 {
		t.Fatalf("the quarantined image's scan report: %v %v", reports, err)
	}
	if _, ok := tagStatus(t, "eu", "scan/backup", "v1"); ok {
		t.Fatal("destination got the blocked image")
	}
	assertNoDeliveries(t, "it-backup")
}

func TestNonBlockingPolicyReplicates(t *testing.T) {
	digest := pushVulnerable(t, "scan/nonblocking", "v1")
	l := scanChain("it-nonblocking", "scan/nonblocking", chain.Scan{Mode: chain.ModeNonBlocking, Conditions: critical, Action: chain.ActionDeleteTag})
	st := waitRun(t, startRun(t, l, "scan/nonblocking:v1").WorkflowID, 2*time.Minute)
	if st.Outcome != workflows.OutcomeSucceeded || st.Scan == nil || st.Scan.Counts["CRITICAL"] != 1 || st.Decision.Blocked || !st.Decision.Triggered {
		t.Fatalf("outcome %s, scan %+v, decision %+v", st.Outcome, st.Scan, st.Decision)
	}
	for _, reg := range []string{"src", "eu", "us"} {
		if d, ok := tagStatus(t, reg, "scan/nonblocking", "v1"); !ok || d != digest {
			t.Fatalf("%s: %s %v", reg, d, ok)
		}
	}
	if v := searchAttrOf[int64](t, workflows.WorkflowID(st.Chain, st.Image), "DchainCritical"); v != 1 {
		t.Fatalf("DchainCritical = %d", v)
	}
}

func TestFreshScannerDownloadsTheDB(t *testing.T) {
	digest := pushVulnerable(t, "scan/fresh", "v1")
	s, err := scanner.New(context.Background(), scanner.Options{
		CacheDir: filepath.Join(t.TempDir(), "trivy"), DBRepository: stack.Endpoints.TrivyDB, InsecureDB: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	db := s.DB()
	if !db.Demo || db.DownloadedAt.IsZero() || db.Repository != stack.Endpoints.TrivyDB {
		t.Fatalf("DB %+v", db)
	}
	fs, err := s.Scan(context.Background(), stack.Endpoints.Registries["src"]+"/scan/fresh@"+digest, "", authn.AuthConfig{}, nil, true)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, f := range fs.Findings {
		ids[f.ID] = true
	}
	if !ids["CVE-2019-10744"] || !ids["CVE-2023-5678"] {
		t.Fatalf("findings %v", ids)
	}
}

func TestScheduledRepositoryScanRecordsNewFindings(t *testing.T) {
	digest := pushVulnerable(t, "scan/periodic", "v1")
	pushVulnerable(t, "scan/periodic", "v1-again") // same digest, second tag
	if _, err := PushSample(context.Background(), stack.Endpoints.Registries["src"], "scan/periodic", "clean"); err != nil {
		t.Fatal(err)
	}
	src, _ := testChainRegistry("src")
	ctx := context.Background()
	id := "it-schedule-periodic"
	h, err := stack.Client.ScheduleClient().Create(ctx, client.ScheduleOptions{
		ID: id, Spec: client.ScheduleSpec{CronExpressions: []string{"0 3 * * *"}}, Paused: true,
		Action: &client.ScheduleWorkflowAction{ID: id, Workflow: workflows.WorkflowScanRepository, TaskQueue: workflows.DefaultTaskQueue,
			Args: []any{workflows.ScanRepositoryRequest{Registry: src, Repository: "scan/periodic"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Delete(ctx)
	scanOnce := func() workflows.RepositoryScan {
		t.Helper()
		before := time.Now()
		if err := h.Trigger(ctx, client.ScheduleTriggerOptions{}); err != nil {
			t.Fatal(err)
		}
		// The schedule starts "<id>-<time>"; find the newest run and wait for it.
		deadline := time.Now().Add(time.Minute)
		for {
			d, err := h.Describe(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range d.Info.RecentActions {
				if !a.ActualTime.Before(before.Add(-time.Second)) && a.StartWorkflowResult != nil {
					var res workflows.RepositoryScan
					if err := stack.Client.GetWorkflow(ctx, a.StartWorkflowResult.WorkflowID, a.StartWorkflowResult.FirstExecutionRunID).Get(ctx, &res); err != nil {
						t.Fatal(err)
					}
					return res
				}
			}
			if time.Now().After(deadline) {
				t.Fatal("the schedule did not start a scan")
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	first := scanOnce()
	if len(first.Tags) != 3 {
		t.Fatalf("tags scanned: %+v", first.Tags)
	}
	for _, ts := range first.Tags {
		if ts.Tag != "clean" && (ts.Summary.Digest != digest || ts.Summary.Counts["CRITICAL"] != 1) {
			t.Errorf("tag %s: %+v", ts.Tag, ts.Summary)
		}
	}
	if !slices.Contains(first.New, "CVE-2019-10744") {
		t.Fatalf("first scan: new %v", first.New)
	}
	time.Sleep(1100 * time.Millisecond) // report timestamps are per second
	if second := scanOnce(); len(second.New) != 0 {
		t.Fatalf("second scan found new findings on unchanged images: %v", second.New)
	}
}

// An image already scanned against the same DB is not scanned again: the
// run reuses the stored report and says so; no second report is stored.
func TestScanReusesAReportOfTheSameDB(t *testing.T) {
	digest := pushVulnerable(t, "scan/reuse", "v1")
	ref, err := name.ParseReference(stack.Endpoints.Registries["src"]+"/scan/reuse:v1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Get(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Tag(ref.Context().Tag("v1-again"), desc); err != nil {
		t.Fatal(err)
	}
	l := scanChain("it-reuse", "scan/reuse", chain.Scan{Mode: chain.ModeNonBlocking, Conditions: critical, Action: chain.ActionDeleteTag})
	first := waitRun(t, startRun(t, l, "scan/reuse:v1").WorkflowID, 2*time.Minute)
	second := waitRun(t, startRun(t, l, "scan/reuse:v1-again").WorkflowID, 2*time.Minute)
	if first.Scan == nil || second.Scan == nil || first.Scan.Reused || !second.Scan.Reused {
		t.Fatalf("first %+v, second %+v", first.Scan, second.Scan)
	}
	if second.Scan.Report != first.Scan.Report || second.Scan.Counts["CRITICAL"] != first.Scan.Counts["CRITICAL"] || second.Scan.Counts["CRITICAL"] == 0 {
		t.Fatalf("the reused summary differs: %+v vs %+v", second.Scan, first.Scan)
	}
	if msg := second.Stage(workflows.StageScan).Message; !strings.Contains(msg, "reused the report") {
		t.Fatalf("the scan stage says %q", msg)
	}
	reg, _ := testChainRegistry("src")
	ds, err := (&activities.Activities{}).ScanReports(context.Background(), reg, "scan/reuse", digest)
	if err != nil || len(ds) != 1 {
		t.Fatalf("%d reports stored (%v), want 1", len(ds), err)
	}
}

// debianWithoutVersion is a Debian image Trivy cannot identify (an
// os-release, no /etc/debian_version) with a dpkg database: its packages
// cannot be matched, and it scans "clean" for want of anything analysed.
func debianWithoutVersion(t *testing.T) v1.Image {
	t.Helper()
	return filesImage(t, map[string][]byte{
		"etc/os-release":      []byte("PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n"),
		"var/lib/dpkg/status": []byte("Package: openssl\nStatus: install ok installed\nVersion: 3.0.11-1~deb12u1\nArchitecture: amd64\n\n"),
	})
}

// An image the scanner can analyse nothing of is not a clean image: under
// a blocking policy it is blocked, saying so (unscannable: block, the
// default), unless the policy says unscannable: allow; the record says
// what the scan could see.
func TestUnscannableImageIsBlocked(t *testing.T) {
	img := debianWithoutVersion(t)
	for _, repo := range []string{"scan/unscannable", "scan/unscannable-allowed"} {
		ref, _ := name.ParseReference(stack.Endpoints.Registries["src"]+"/"+repo+":v1", name.Insecure)
		if err := remote.Write(ref, img); err != nil {
			t.Fatal(err)
		}
	}
	l := scanChain("it-unscannable", "scan/unscannable", chain.Scan{Conditions: critical})
	st := waitBlocked(t, startRun(t, l, "scan/unscannable:v1").WorkflowID)
	if st.Scan == nil || st.Scan.Total != 0 || len(st.Scan.Inventory) != 1 || st.Scan.Inventory[0].Analysed() {
		t.Fatalf("scan %+v", st.Scan)
	}
	if why := strings.Join(st.Decision.Reasons, "; "); !strings.Contains(why, "nothing could be analysed in image") || !strings.Contains(st.Message, "nothing could be analysed") {
		t.Fatalf("reasons %q, message %q", why, st.Message)
	}
	if _, ok := tagStatus(t, "eu", "scan/unscannable", "v1"); ok {
		t.Fatal("an unscannable image was delivered")
	}

	l = scanChain("it-unscannable-allowed", "scan/unscannable-allowed", chain.Scan{Conditions: critical, Unscannable: chain.UnscannableAllow})
	if st := waitRun(t, startRun(t, l, "scan/unscannable-allowed:v1").WorkflowID, 2*time.Minute); st.Outcome != workflows.OutcomeSucceeded {
		t.Fatalf("unscannable: allow: %s %s", st.Outcome, st.Message)
	}
}
