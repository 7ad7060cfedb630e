package devstack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/dchain-dev/dchain/activities"
	"github.com/dchain-dev/dchain/api"
	"github.com/dchain-dev/dchain/chain"
	"github.com/dchain-dev/dchain/runs"
	"github.com/dchain-dev/dchain/workflows"
)

// decideOver POSTs an approval decision with token; it returns the status
// and the body.
func decideOver(t *testing.T, url, id, token, body string) (int, string) {
	t.Helper()
	return postJSON(t, url+"/api/v1/runs/"+id+"/approval", token, body)
}

// postJSON POSTs body to url with the bearer token.
func postJSON(t *testing.T, url, token, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(raw)
}

// waitWaiting waits until the run waits for approval, and returns its status.
func waitWaiting(t *testing.T, id string) workflows.RunStatus {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		st, err := runs.Status(context.Background(), stack.Client, id)
		if err == nil && st.Approval.Waiting() {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %s never waited for approval: %+v %v", id, st, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A chain with an approval gate on the embedded stack: the run waits with
// nothing copied, the approval request reaches its receiver signed, only a
// listed approver's token decides, and the approved run delivers; a
// decision on an ended run is refused with the reason; a rejected run ends
// Rejected with nothing copied.
func TestApprovalGate(t *testing.T) {
	l, ch := testChain("it-approval", "approval/app")
	ch.Approval = &chain.Approval{Approvers: []string{"alice"}, Notify: &chain.ApprovalNotify{
		URL: stack.Receiver.URL + "/it-approval/approval", Secret: "env:" + TriggerSecretEnv}}
	l.Chains[0] = ch
	t.Setenv("DCHAIN_IT_ALICE", "alice-token")
	t.Setenv("DCHAIN_IT_MALLORY", "mallory-token")
	l.Config.API.Tokens = []chain.APIToken{{Name: "alice", Token: "env:DCHAIN_IT_ALICE"}, {Name: "mallory", Token: "env:DCHAIN_IT_MALLORY"}}
	srv, _ := apiServer(t, l, stack.Client)
	ctx := context.Background()
	digest, err := PushSample(ctx, stack.Endpoints.Registries["src"], "approval/app", "v1")
	if err != nil {
		t.Fatal(err)
	}
	id := startRun(t, l, "approval/app:v1").WorkflowID
	st := waitWaiting(t, id)
	if s := st.Stage(workflows.StageApprove); s.State != workflows.StateWaiting || st.Stage(workflows.StageReplicate).State != workflows.StatePending {
		t.Fatalf("waiting: %+v", st.Stages)
	}
	for _, reg := range []string{"eu", "us"} {
		ref, _ := name.ParseReference(stack.Endpoints.Registries[reg]+"/approval/app:v1", name.Insecure)
		if _, err := remote.Head(ref); err == nil {
			t.Fatalf("%s has the image before anybody approved it", reg)
		}
	}
	// Listed as waiting (visibility catches up within a second or so).
	deadline := time.Now().Add(30 * time.Second)
	for {
		list, err := runs.List(ctx, stack.Client, runs.Filter{Waiting: true, Chain: "it-approval"})
		if err == nil && slices.ContainsFunc(list, func(r runs.Row) bool { return r.WorkflowID == id }) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("run list --waiting never listed %s: %+v %v", id, list, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The request reached the receiver, signed, as a CloudEvent.
	var req activities.CloudEvent
	for d := range slices.Values(stack.Receiver.Deliveries()) {
		if d.Path == "/it-approval/approval" && d.Run == id {
			if !d.SignatureValid {
				t.Fatal("the approval request's signature does not verify")
			}
			_ = json.Unmarshal(d.Body, &req)
		}
	}
	if req.Type != activities.CloudEventTypeApproval || req.Data.Approval == nil || req.Data.Approval.Approvers[0] != "alice" || req.Data.Digest != digest {
		t.Fatalf("approval request %+v", req)
	}

	for _, tc := range []struct {
		what, token, body string
		code              int
		want              string
	}{
		{"not an approver", "mallory-token", `{"decision":"approve"}`, http.StatusForbidden, `mallory may not decide this run; the approvers are alice`},
		{"a rejection without its reason", "alice-token", `{"decision":"reject"}`, http.StatusBadRequest, `"field":"comment"`},
		{"no decision", "alice-token", `{"decision":"maybe"}`, http.StatusBadRequest, `"field":"decision"`},
		{"an unknown member", "alice-token", `{"decision":"approve","by":"bob"}`, http.StatusBadRequest, `by`},
		{"a bad token", "nope", `{"decision":"approve"}`, http.StatusUnauthorized, "bearer token"},
	} {
		if code, body := decideOver(t, srv.URL, id, tc.token, tc.body); code != tc.code || !strings.Contains(body, tc.want) {
			t.Errorf("%s: %d %s", tc.what, code, body)
		}
	}
	if code, body := decideOver(t, srv.URL, "it-approval:nope", "alice-token", `{"decision":"approve"}`); code != http.StatusNotFound {
		t.Errorf("an unknown run: %d %s", code, body)
	}
	code, body := decideOver(t, srv.URL, id, "alice-token", `{"decision":"approve","comment":"checked the canary"}`)
	var ans api.ApprovalAnswer
	if err := json.Unmarshal([]byte(body), &ans); code != http.StatusOK || err != nil || ans.Decision.By != "alice" || ans.Decision.Via != "api" {
		t.Fatalf("approve: %d %s", code, body)
	}
	st = waitRun(t, id, 2*time.Minute)
	if st.Outcome != workflows.OutcomeSucceeded || st.Approval.Decision.Comment != "checked the canary" {
		t.Fatalf("after approval: %s %s %+v", st.Outcome, st.Message, st.Approval)
	}
	assertReplicated(t, "eu", "approval/app", "v1", digest)
	recordHistory(t, id, "chainrun-approved.json")
	if code, body := decideOver(t, srv.URL, id, "alice-token", `{"decision":"approve"}`); code != http.StatusConflict || !strings.Contains(body, "has ended (Succeeded)") {
		t.Errorf("a decision on an ended run: %d %s", code, body)
	}
	// Fire its triggers again (a rerun from trigger, through the API): the
	// approval is the earlier run's, nothing is copied.
	for _, tc := range []struct {
		body string
		code int
		want string
	}{
		{`{"from":"build"}`, http.StatusBadRequest, `"field":"from"`},
		{`{"from":"trigger","destinations":["eu"]}`, http.StatusBadRequest, `"field":"destinations"`},
		{`{"from":"trigger"}`, http.StatusAccepted, `~trigger-`},
		{`{"from":"trigger"}`, http.StatusOK, `"existing":true`},
	} {
		if code, body := postJSON(t, srv.URL+"/api/v1/runs/"+id+"/rerun", "alice-token", tc.body); code != tc.code || !strings.Contains(body, tc.want) {
			t.Errorf("rerun %s: %d %s", tc.body, code, body)
		}
	}

	// Rejected (as the CLI does it): Rejected, nothing copied.
	if _, err := PushSample(ctx, stack.Endpoints.Registries["src"], "approval/app", "v2"); err != nil {
		t.Fatal(err)
	}
	id2 := startRun(t, l, "approval/app:v2").WorkflowID
	waitWaiting(t, id2)
	if _, err := runs.Decide(ctx, stack.Client, id2, workflows.ApprovalDecision{By: "alice", Via: "cli", Comment: "freeze until Monday"}); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	err = stack.Client.GetWorkflow(wctx, id2, "").Get(wctx, nil)
	st2, serr := runs.Status(ctx, stack.Client, id2)
	if err == nil || serr != nil || st2.Outcome != workflows.OutcomeRejected || st2.Message != "rejected by alice via cli: freeze until Monday" {
		t.Fatalf("rejected run: %v / %+v %v", err, st2, serr)
	}
	recordHistory(t, id2, "chainrun-rejected.json")
	ref, _ := name.ParseReference(stack.Endpoints.Registries["eu"]+"/approval/app:v2", name.Insecure)
	if _, err := remote.Head(ref); err == nil {
		t.Fatal("a rejected image reached eu")
	}
	var de *runs.DecisionError
	if _, err := runs.Decide(ctx, stack.Client, id2, workflows.ApprovalDecision{Approve: true, By: "alice"}); !errors.As(err, &de) || de.Kind != workflows.ErrTypeNotWaiting {
		t.Fatalf("a decision on a rejected run: %v", err)
	}
}

// Waves on the embedded stack: the canary region gets the image and its
// trigger first, soaks, passes its health check; the next wave waits for
// its approver with nothing copied, then copies. A canary whose health
// check never passes stops the rollout there.
func TestWaves(t *testing.T) {
	l, ch := testChain("it-waves", "waves/app")
	ch.Waves = []chain.Wave{
		{Name: "canary", Destinations: []string{"eu"}, Triggers: []string{"ce"}, Soak: chain.Duration(time.Second),
			Health: &chain.HealthCheck{URL: stack.Receiver.URL + "/deliveries"}}, // GET answers 200
		{Destinations: []string{"us"}, Approval: &chain.Approval{Approvers: []string{"alice"}}},
	}
	l.Chains[0] = ch
	ctx := context.Background()
	digest, err := PushSample(ctx, stack.Endpoints.Registries["src"], "waves/app", "v1")
	if err != nil {
		t.Fatal(err)
	}
	id := startRun(t, l, "waves/app:v1").WorkflowID
	deadline := time.Now().Add(time.Minute)
	var st workflows.RunStatus
	for {
		st, err = runs.Status(ctx, stack.Client, id)
		if a, wave := st.PendingApproval(); err == nil && a != nil && wave == "wave-2" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("wave-2 never waited: %+v %v", st, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	canary := st.Waves[0]
	if canary.State != workflows.StateSucceeded || canary.Health == nil || canary.Health.HTTPStatus != http.StatusOK ||
		canary.SoakUntil.Sub(canary.StartedAt) < time.Second {
		t.Fatalf("canary %+v", canary)
	}
	assertReplicated(t, "eu", "waves/app", "v1", digest)
	ref, _ := name.ParseReference(stack.Endpoints.Registries["us"]+"/waves/app:v1", name.Insecure)
	if _, err := remote.Head(ref); err == nil {
		t.Fatal("us has the image while its wave waits for approval")
	}
	var ce activities.CloudEvent
	for d := range slices.Values(stack.Receiver.Deliveries()) {
		if d.Path == "/it-waves/ce" && d.Run == id {
			_ = json.Unmarshal(d.Body, &ce)
		}
	}
	if ce.Data.Wave != "canary" || strings.Join(ce.Data.Regions, ",") != "region-eu" {
		t.Fatalf("the canary's trigger: %+v", ce.Data)
	}
	if _, err := runs.Decide(ctx, stack.Client, id, workflows.ApprovalDecision{Approve: true, By: "alice", Via: "cli"}); err != nil {
		t.Fatal(err)
	}
	st = waitRun(t, id, 2*time.Minute)
	if st.Outcome != workflows.OutcomeSucceeded || st.Waves[1].State != workflows.StateSucceeded {
		t.Fatalf("after approval: %s %s %+v", st.Outcome, st.Message, st.Waves)
	}
	assertReplicated(t, "us", "waves/app", "v1", digest)
	recordHistory(t, id, "chainrun-waves.json")

	// A canary that never turns healthy.
	port, err := FreePort("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	ch.Name, ch.Waves[0].Health = "it-waves-sick", &chain.HealthCheck{URL: fmt.Sprintf("http://127.0.0.1:%d/healthz", port), Timeout: chain.Duration(3 * time.Second)}
	l.Chains[0] = ch
	if _, err := PushSample(ctx, stack.Endpoints.Registries["src"], "waves/app", "v2"); err != nil {
		t.Fatal(err)
	}
	id2 := startRun(t, l, "waves/app:v2").WorkflowID
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	_ = stack.Client.GetWorkflow(wctx, id2, "").Get(wctx, nil)
	st2, err := runs.Status(ctx, stack.Client, id2)
	if err != nil || st2.Outcome != workflows.OutcomeFailed || !strings.Contains(st2.Message, "wave canary failed: health check") ||
		st2.Waves[1].State != workflows.StateSkipped {
		t.Fatalf("a sick canary: %v %s %s %+v", err, st2.Outcome, st2.Message, st2.Waves)
	}
	ref, _ = name.ParseReference(stack.Endpoints.Registries["us"]+"/waves/app:v2", name.Insecure)
	if _, err := remote.Head(ref); err == nil {
		t.Fatal("us got the image past a sick canary")
	}
}
