package starter

import (
	"errors"
	"strings"
	"testing"

	"github.com/dchain-dev/dchain/chain"
	"github.com/dchain-dev/dchain/workflows"
)

// A rerun never gets past what the earlier run did not pass: a blocking
// policy, a scan or signing the chain asks for now, a failed copy.
func TestRerunnable(t *testing.T) {
	ch := chain.Chain{Name: "demo", Scan: &chain.Scan{}, Replication: []chain.ReplicationRule{{Name: "eu", Destination: "eu"}, {Name: "us", Destination: "us"}}}
	run := func(outcome workflows.Outcome, states map[string]workflows.State) workflows.RunStatus {
		st := workflows.RunStatus{Outcome: outcome, Image: workflows.ImageRef{Digest: "sha256:1"},
			Destinations: []workflows.DestinationStatus{{Registry: "eu", State: workflows.StateSucceeded}, {Registry: "us", State: workflows.StateFailed}}}
		for _, s := range workflows.Stages {
			state, ok := states[s]
			if !ok {
				state = workflows.StateSucceeded
			}
			st.Stages = append(st.Stages, workflows.StageStatus{Name: s, State: state})
		}
		return st
	}
	failedCopy := run(workflows.OutcomeFailed, map[string]workflows.State{workflows.StageReplicate: workflows.StateFailed, workflows.StageTrigger: workflows.StateSkipped})
	blocked := run(workflows.OutcomeBlocked, map[string]workflows.State{workflows.StageEvaluate: workflows.StateBlocked})
	unscanned := run(workflows.OutcomeSucceeded, map[string]workflows.State{workflows.StageScan: workflows.StateSkipped, workflows.StageEvaluate: workflows.StateSkipped})
	noImage := failedCopy
	noImage.Image.Digest = ""
	running := failedCopy
	running.Outcome = workflows.OutcomeRunning
	for _, tc := range []struct {
		what    string
		earlier workflows.RunStatus
		from    string
		dests   []string
		want    string // "" allowed
	}{
		{"retry a failed copy", failedCopy, "replicate", []string{"us"}, ""},
		{"rerun copies", failedCopy, "replicate", nil, ""},
		{"triggers without every copy", failedCopy, "trigger", nil, "its copies did not all succeed"},
		{"a delivered destination", failedCopy, "replicate", []string{"eu"}, "eu already has the image"},
		{"an unknown destination", failedCopy, "replicate", []string{"ap"}, `no destination "ap"`},
		{"past the policy", blocked, "replicate", nil, "the blocking policy stopped it"},
		{"scan again after a block", blocked, "scan", nil, ""},
		{"the chain scans now", unscanned, "replicate", nil, "this run's scan did not pass"},
		{"still running", running, "replicate", nil, "still running"},
		{"no image", noImage, "scan", nil, "before it had an image"},
	} {
		err := rerunnable(ch, tc.earlier, RerunRequest{Run: "r1", From: tc.from, Destinations: tc.dests})
		var re *RerunError
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.what, err)
		case tc.want != "" && (!errors.As(err, &re) || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want %q", tc.what, err, tc.want)
		}
	}
	for _, bad := range []RerunRequest{{From: "build"}, {From: "scan", Destinations: []string{"us"}}, {From: "replicate", Destinations: []string{"US EAST"}}} {
		var in *chain.InputError
		if _, err := CheckRerun(bad, func(f string) string { return "--" + f }); !errors.As(err, &in) {
			t.Errorf("%+v: %v", bad, err)
		}
	}
}

// Settings tightened since the earlier run: its scan, policy or signing do
// not stand for them, so a rerun that would reuse them is refused.
func TestRerunSameSettings(t *testing.T) {
	then := chain.Chain{Name: "demo", Scan: &chain.Scan{Mode: chain.ModeNonBlocking}}
	now := chain.Chain{Name: "demo", Scan: &chain.Scan{Mode: chain.ModeBlocking}}
	var re *RerunError
	if err := sameSettings(then, now, RerunRequest{Run: "r1", From: "replicate"}); !errors.As(err, &re) || !strings.Contains(err.Error(), "scan settings changed") {
		t.Fatalf("a tightened policy: %v", err)
	}
	if err := sameSettings(then, now, RerunRequest{Run: "r1", From: "scan"}); err != nil {
		t.Fatalf("from scan: %v", err)
	}
	now = chain.Chain{Name: "demo", Scan: then.Scan, Verify: &chain.Verify{Keys: []chain.KeyRef{"env:K"}}}
	if err := sameSettings(then, now, RerunRequest{Run: "r1", From: "trigger"}); !errors.As(err, &re) || !strings.Contains(err.Error(), "signing or verify") {
		t.Fatalf("a verify section added: %v", err)
	}
	if err := sameSettings(then, chain.Chain{Name: "demo", Scan: &chain.Scan{Mode: chain.ModeNonBlocking}}, RerunRequest{Run: "r1", From: "replicate"}); err != nil {
		t.Fatalf("the same settings: %v", err)
	}
}
