package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	enumspb "go.temporal.io/api/enums/v1"

	"github.com/dchain-dev/dchain/api"
	"github.com/dchain-dev/dchain/starter"
	"github.com/dchain-dev/dchain/workflows"
)

// push writes a random image of layers × size bytes to src as repo:tag.
func push(t *testing.T, repo, tag string, size int64, layers int) v1.Image {
	t.Helper()
	img, err := random.Image(size, int64(layers))
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(w.src.Addr+"/"+repo+":"+tag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	return img
}

// startRun starts a run through the first API replica's REST API.
func startRun(t *testing.T, chainName, image string) string {
	t.Helper()
	body, _ := json.Marshal(api.StartRequest{Chain: chainName, Image: image})
	for _, url := range w.apiURLs {
		req, _ := http.NewRequest(http.MethodPost, url+"/api/v1/runs", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+apiToken)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			continue // that replica is down: the other one
		}
		var ans api.WebhookAnswer
		err = json.NewDecoder(resp.Body).Decode(&ans)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted || err != nil || len(ans.Runs) != 1 {
			t.Fatalf("start %s %s: %s %+v %v", chainName, image, resp.Status, ans, err)
		}
		return ans.Runs[0].WorkflowID
	}
	t.Fatal("no API replica answered")
	return ""
}

// wait waits for the run's result, riding out a Temporal server that is
// down for a while.
func wait(t *testing.T, id string, d time.Duration) workflows.RunStatus {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		var st workflows.RunStatus
		err := w.client.GetWorkflow(ctx, id, "").Get(ctx, &st)
		cancel()
		if err == nil {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %s: %v", id, err)
		}
		time.Sleep(time.Second)
	}
}

// status is the run's live status (as `dchain run show` reads it).
func status(t *testing.T, id string) workflows.RunStatus {
	t.Helper()
	out, err := exec.Command(w.bin, "--config", w.config, "--address", w.temporalAddr(), "run", "show", id, "-o", "json").Output()
	if err != nil {
		return workflows.RunStatus{}
	}
	var st workflows.RunStatus
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("run show -o json: %v\n%s", err, out)
	}
	return st
}

func destination(st workflows.RunStatus, registry string) workflows.DestinationStatus {
	for _, d := range st.Destinations {
		if d.Registry == registry {
			return d
		}
	}
	return workflows.DestinationStatus{}
}

// landed checks that registry holds repo:tag at want's digest, every blob
// readable and matching its digest.
func landed(t *testing.T, reg, repo, tag string, want v1.Image) {
	t.Helper()
	ref, err := name.ParseReference(reg+"/"+repo+":"+tag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(ref)
	if err != nil {
		t.Fatalf("%s: %v", ref, err)
	}
	wd, _ := want.Digest()
	if d, _ := img.Digest(); d != wd {
		t.Fatalf("%s is %s, want %s", ref, d, wd)
	}
	if err := validate.Image(img); err != nil {
		t.Fatalf("%s: a blob is corrupt: %v", ref, err)
	}
}

// waitFor polls cond every 100 ms until it holds.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A region's worker SIGKILLed three times during a 200 MB copy: the copy
// resumes on the restarted worker each time and completes, byte for byte;
// the other region finishes meanwhile.
func TestKillRegionWorkerMidCopy(t *testing.T) {
	img := push(t, "chaos/big", "v1", 25<<20, 8)
	w.euProxy.rate.Store(8 << 20) // per connection: the copy takes long enough to be interrupted
	defer w.euProxy.rate.Store(0)
	before := w.euProxy.sent.Load()
	id := startRun(t, "big", "chaos/big:v1")
	for kill := 1; kill <= 3; kill++ {
		mark := w.euProxy.sent.Load()
		waitFor(t, fmt.Sprintf("kill %d: 16 MiB more uploaded to eu", kill), 2*time.Minute, func() bool { return w.euProxy.sent.Load() > mark+16<<20 })
		w.kill(w.workers["eu"])
		if err := w.startWorker("eu"); err != nil {
			t.Fatal(err)
		}
	}
	live := status(t, id)
	if d := destination(live, "us"); d.State != workflows.StateSucceeded {
		t.Errorf("us is %s while eu is interrupted; the other region should finish meanwhile", d.State)
	}
	if d := destination(live, "eu"); d.State == workflows.StateSucceeded {
		t.Fatal("eu finished before the third kill: the copy was not interrupted")
	}
	st := wait(t, id, 5*time.Minute)
	if st.Outcome != workflows.OutcomeSucceeded {
		t.Fatalf("after 3 kills: %s %s", st.Outcome, st.Message)
	}
	landed(t, w.eu.Addr, "chaos/big", "v1", img)
	landed(t, w.us.Addr, "chaos/big", "v1", img)
	t.Logf("200 MiB to eu through 3 worker kills: %d MiB uploaded to eu in all (resumed, not restarted from zero each time)", (w.euProxy.sent.Load()-before)>>20)
}

// Two workers on one region's queue share its copies: both execute some.
func TestTwoWorkersShareAQueue(t *testing.T) {
	img := push(t, "chaos/us", "base", 1<<20, 2)
	var ids []string
	for i := range 12 {
		tag := fmt.Sprintf("s%d", i)
		ref, _ := name.ParseReference(w.src.Addr+"/chaos/us:"+tag, name.Insecure)
		if err := remote.Write(ref, img); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, startRun(t, "us", "chaos/us:"+tag))
	}
	pids := map[string]int{}
	for _, id := range ids {
		if st := wait(t, id, 2*time.Minute); st.Outcome != workflows.OutcomeSucceeded {
			t.Fatalf("%s: %s %s", id, st.Outcome, st.Message)
		}
		for _, who := range replicators(t, id) {
			pids[who]++
		}
	}
	want := map[string]bool{}
	for _, n := range []string{"us-1", "us-2"} {
		want[fmt.Sprint(w.workers[n].cmd.Process.Pid)] = true
	}
	for pid := range want {
		if pids[pid] == 0 {
			t.Errorf("worker pid %s executed no copy (copies by pid: %v)", pid, pids)
		}
	}
	t.Logf("12 copies into us by worker pid: %v", pids)
}

// replicators are the pids of the workers that ran a run's ReplicateImage
// attempts (the history's ActivityTaskStarted identities, "pid@host@").
func replicators(t *testing.T, id string) []string {
	t.Helper()
	scheduled := map[int64]bool{}
	var pids []string
	it := w.client.GetWorkflowHistory(context.Background(), id, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		if a := e.GetActivityTaskScheduledEventAttributes(); a != nil && a.GetActivityType().GetName() == workflows.ActivityReplicateImage {
			scheduled[e.GetEventId()] = true
		}
		if a := e.GetActivityTaskStartedEventAttributes(); a != nil && scheduled[a.GetScheduledEventId()] {
			pid, _, _ := strings.Cut(a.GetIdentity(), "@")
			pids = append(pids, pid)
		}
	}
	return pids
}

// A destination unreachable for 20 s: the branch keeps retrying, `dchain
// run show` says so and why, and the run completes once it is back.
func TestDestinationDown(t *testing.T) {
	img := push(t, "chaos/us", "down", 2<<20, 2)
	w.usProxy.Close()
	id := startRun(t, "us", "chaos/us:down")
	var seen workflows.DestinationStatus
	waitFor(t, "run show: retrying, connection refused", time.Minute, func() bool {
		seen = destination(status(t, id), "us")
		return seen.Attempt >= 2 && strings.Contains(seen.LastError, "connection refused")
	})
	out, err := exec.Command(w.bin, "--config", w.config, "--address", w.temporalAddr(), "run", "show", id).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "connection refused") || !strings.Contains(string(out), "attempt") {
		t.Errorf("run show (text) while us is down: %v\n%s", err, out)
	}
	time.Sleep(20 * time.Second)
	w.usProxy.Open(t)
	if st := wait(t, id, 2*time.Minute); st.Outcome != workflows.OutcomeSucceeded {
		t.Fatalf("after the outage: %s %s", st.Outcome, st.Message)
	}
	landed(t, w.us.Addr, "chaos/us", "down", img)
	t.Logf("while down: attempt %d, %q", seen.Attempt, seen.LastError)
}

// A receiver answering 500 three times: delivered on the fourth attempt,
// with the same idempotency key every time, and never again after.
func TestTriggerReceiverFails(t *testing.T) {
	push(t, "chaos/hook", "v1", 1<<10, 1)
	w.receiver.failNext(3)
	id := startRun(t, "hook", "chaos/hook:v1")
	st := wait(t, id, 2*time.Minute)
	if st.Outcome != workflows.OutcomeSucceeded || len(st.Triggers) != 1 || st.Triggers[0].State != workflows.StateSucceeded {
		t.Fatalf("%s %s %+v", st.Outcome, st.Message, st.Triggers)
	}
	time.Sleep(3 * time.Second) // a redelivery after success would arrive by now (retries are 1 s apart)
	got := w.receiver.of(id)
	if len(got) != 4 {
		t.Fatalf("%d deliveries, want 3 refused and 1 accepted: %+v", len(got), got)
	}
	for i, d := range got {
		if d.key == "" || d.key != got[0].key || !d.signed {
			t.Errorf("delivery %d: key %q (first %q), signed %v", i, d.key, got[0].key, d.signed)
		}
		if want := map[bool]int{true: http.StatusAccepted, false: http.StatusInternalServerError}[i == 3]; d.status != want {
			t.Errorf("delivery %d answered %d, want %d", i, d.status, want)
		}
	}
}

// Webhooks to either API replica while one is SIGKILLed: a sender retries
// a refused connection (or a 503) on the other replica, and every event
// becomes a run.
func TestAPIReplicaKilled(t *testing.T) {
	img := push(t, "chaos/intake", "base", 1<<10, 1)
	digest, _ := img.Digest()
	const events = 40
	runs := map[string]bool{}
	failovers := 0
	for i := range events {
		tag := fmt.Sprintf("e%d", i)
		ref, _ := name.ParseReference(w.src.Addr+"/chaos/intake:"+tag, name.Insecure)
		if err := remote.Write(ref, img); err != nil {
			t.Fatal(err)
		}
		if i == 10 {
			w.kill(w.apis[0])
		}
		body := []byte(fmt.Sprintf(`{"events":[{"id":"%s","timestamp":"%s","action":"push","target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","repository":"chaos/intake","tag":"%s"},"actor":{"name":"ci"}}]}`,
			tag, time.Now().UTC().Format(time.RFC3339Nano), digest, tag))
		id, tries, err := sendWebhook(body, i%2)
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		failovers += tries - 1
		runs[id] = true
	}
	if len(runs) != events {
		t.Fatalf("%d distinct runs for %d events", len(runs), events)
	}
	for id := range runs {
		if _, err := w.client.DescribeWorkflowExecution(context.Background(), id, ""); err != nil {
			t.Errorf("run %s: %v", id, err)
		}
	}
	if failovers == 0 {
		t.Error("no event needed the other replica: the kill was not exercised")
	}
	t.Logf("%d events, %d runs, %d sent again to the other replica", events, len(runs), failovers)
}

// sendWebhook delivers a signed distribution notification, starting with
// replica first and trying the other on a refused connection or a 503, as
// a registry's notification retry would.
func sendWebhook(body []byte, first int) (id string, tries int, err error) {
	h, err := starter.SignedHeaders(starter.ProviderDistribution, hookSecret, body, time.Now())
	if err != nil {
		return "", 0, err
	}
	for tries = 1; tries <= 4; tries++ {
		url := w.apiURLs[(first+tries-1)%len(w.apiURLs)] + "/webhooks/registry"
		req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
		req.Header = h.Clone()
		resp, rerr := http.DefaultClient.Do(req)
		if rerr != nil {
			err = rerr
			continue
		}
		var ans api.WebhookAnswer
		derr := json.NewDecoder(resp.Body).Decode(&ans)
		resp.Body.Close()
		if resp.StatusCode == http.StatusServiceUnavailable {
			err = errors.New(resp.Status)
			continue
		}
		if resp.StatusCode != http.StatusAccepted || derr != nil || len(ans.Runs) != 1 {
			return "", tries, fmt.Errorf("%s: %s %+v", url, resp.Status, ans)
		}
		return ans.Runs[0].WorkflowID, tries, nil
	}
	return "", tries - 1, err
}

// SIGHUP reloads the config of a running API and worker: a source and a
// chain added to the files answer and run without a restart.
func TestReloadOnSIGHUP(t *testing.T) {
	img := push(t, "chaos/late", "v1", 1<<10, 1)
	digest, _ := img.Digest()
	body := []byte(fmt.Sprintf(`{"events":[{"id":"late-1","timestamp":"%s","action":"push","target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","repository":"chaos/late","tag":"v1"},"actor":{"name":"ci"}}]}`,
		time.Now().UTC().Format(time.RFC3339Nano), digest))
	replica := w.apis[1]
	url := w.apiURLs[1] + "/webhooks/late"
	post := func() (int, api.WebhookAnswer) {
		h, _ := starter.SignedHeaders(starter.ProviderDistribution, hookSecret, body, time.Now())
		req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
		req.Header = h
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var ans api.WebhookAnswer
		json.NewDecoder(resp.Body).Decode(&ans)
		return resp.StatusCode, ans
	}
	if code, _ := post(); code != http.StatusNotFound {
		t.Fatalf("before the reload: %d, want 404 (no such source)", code)
	}
	cfg, err := os.ReadFile(w.config)
	if err != nil {
		t.Fatal(err)
	}
	cfg = append(cfg, []byte("  - {name: late, provider: distribution, registry: src, secret: env:DCHAIN_CHAOS_HOOK_SECRET}\n")...)
	late := "name: late\nscope: {registry: src, namespace: chaos, repository: late}\nreplication:\n  - {name: to-us, destination: us, level: repository}\n"
	if err := os.WriteFile(filepath.Join(filepath.Dir(w.config), "chains", "late.yaml"), []byte(late), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(w.config, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []*process{replica, w.workers["chains"]} {
		if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	var ans api.WebhookAnswer
	waitFor(t, "the new source answers after SIGHUP", 10*time.Second, func() bool {
		code, a := post()
		ans = a
		return code == http.StatusAccepted
	})
	if st := wait(t, ans.Runs[0].WorkflowID, time.Minute); st.Outcome != workflows.OutcomeSucceeded {
		t.Fatalf("the reloaded chain's run: %s %s", st.Outcome, st.Message)
	}
	if !strings.Contains(w.workers["chains"].tail(), "config reloaded") || !strings.Contains(replica.tail(), "config reloaded") {
		t.Errorf("the processes did not say they reloaded:\n%s\n%s", w.workers["chains"].tail(), replica.tail())
	}
}

// The Temporal server SIGKILLed mid-copy and started again on the same
// data: the run completes.
func TestKillTemporalServer(t *testing.T) {
	img := push(t, "chaos/eu", "v1", 10<<20, 4)
	w.euProxy.rate.Store(2 << 20)
	defer w.euProxy.rate.Store(0)
	mark := w.euProxy.sent.Load()
	id := startRun(t, "eu", "chaos/eu:v1")
	waitFor(t, "4 MiB uploaded to eu", time.Minute, func() bool { return w.euProxy.sent.Load() > mark+4<<20 })
	if d := destination(status(t, id), "eu"); d.State == workflows.StateSucceeded {
		t.Fatal("the copy ended before the server was killed")
	}
	w.kill(w.temporal)
	if err := w.startTemporal(); err != nil {
		t.Fatal(err)
	}
	w.euProxy.rate.Store(0)
	if st := wait(t, id, 3*time.Minute); st.Outcome != workflows.OutcomeSucceeded {
		t.Fatalf("after the server was killed: %s %s", st.Outcome, st.Message)
	}
	landed(t, w.eu.Addr, "chaos/eu", "v1", img)
}
