package workflows

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strings"

	"go.temporal.io/sdk/workflow"
)

// Rerun says a run runs an earlier one again from a stage: the stages
// before it are not run again, their results (the built digest, the stored
// scan report, the policy's decision, the signatures, an approval) are the
// earlier run's.
type Rerun struct {
	// Of and OfRun are the earlier run's workflow and run IDs.
	Of    string `json:"of"`
	OfRun string `json:"ofRun"`
	// From is the first stage run again: scan, replicate or trigger.
	From string `json:"from"`
	// Destinations, when set (run retry), are the only registries copied
	// into; the others keep the earlier run's result.
	Destinations []string `json:"destinations,omitempty"`
	// Earlier is the earlier run's final status.
	Earlier RunStatus `json:"earlier"`
	// ApprovalChanged says the chain's approval settings are not those the
	// earlier run was approved under: the rerun asks again.
	ApprovalChanged bool `json:"approvalChanged,omitempty"`
}

// RerunOf is what a run re-runs: the earlier run and the stage it starts at.
type RerunOf struct {
	Of           string   `json:"of"`
	OfRun        string   `json:"ofRun"`
	From         string   `json:"from"`
	Destinations []string `json:"destinations,omitempty"`
}

// RerunStages are the stages a rerun may start from.
var RerunStages = []string{StageScan, StageReplicate, StageTrigger}

// RerunWorkflowID is the ID of the rerun of earlier from stage for
// destinations, where key says which execution of earlier and under which
// settings: "<earlier>~<from>-<8 hex digits>". The same request twice is
// one rerun; its prefix finds every rerun of earlier (RerunsQuery).
func RerunWorkflowID(earlier, key, from string, destinations []string) string {
	sum := sha256.Sum256([]byte(key + "\x00" + from + "\x00" + strings.Join(destinations, ",")))
	return earlier + "~" + from + "-" + hex.EncodeToString(sum[:4])
}

// RerunsQuery selects the reruns of the run with workflow ID earlier.
func RerunsQuery(earlier string) Query {
	return Query{}.Eq("WorkflowType", "ChainRun").StartsWith("WorkflowId", earlier+"~")
}

// reusedStages drops from stages and steps those a rerun takes from the
// earlier run, recording them Reused, and fills the status with their
// results. An approval is taken only where the earlier run's was approved:
// otherwise the approve stage asks again.
func (r *run) reusedStages(ctx workflow.Context, stages []string, steps []func(workflow.Context) error) ([]string, []func(workflow.Context) error) {
	rr := r.in.Rerun
	e := &rr.Earlier
	r.status.RerunOf = &RerunOf{Of: rr.Of, OfRun: rr.OfRun, From: rr.From, Destinations: rr.Destinations}
	r.status.Image.Digest, r.status.MediaType, r.status.Platforms = e.Image.Digest, e.MediaType, e.Platforms
	if len(e.Tags) > 0 {
		r.status.Tags = e.Tags
	}
	r.status.Build, r.status.Scan, r.status.Decision, r.status.Signing = e.Build, e.Scan, e.Decision, e.Signing
	if rr.From == StageTrigger {
		r.status.Destinations, r.status.Waves = e.Destinations, e.Waves
	}
	first := slices.Index(stages, rr.From)
	var keptStages []string
	var keptSteps []func(workflow.Context) error
	now := workflow.Now(ctx)
	for i, name := range stages {
		// The accelerate stage runs again (its record makes that cheap): the
		// chain's setting now decides whether there is a variant.
		reuse := i < first && name != StageAccelerate
		if name == StageApprove && reuse {
			if s := e.Stage(StageApprove); s == nil || (s.State != StateSucceeded && s.State != StateReused) || rr.ApprovalChanged {
				reuse = false // not approved before: ask again
			} else {
				r.status.Approval = e.Approval
			}
		}
		if !reuse {
			keptStages, keptSteps = append(keptStages, name), append(keptSteps, steps[i])
			continue
		}
		s := r.stageStatus(name)
		s.State, s.StartedAt, s.EndedAt = StateReused, now, now
		s.Message = "from run " + rr.Of
		if es := e.Stage(name); es != nil && es.Message != "" {
			s.Message += ": " + es.Message
		}
	}
	return keptStages, keptSteps
}

// retried says whether a rerun copies into destination again (every
// destination but in run retry, which names them).
func (r *run) retried(destination string) bool {
	rr := r.in.Rerun
	return rr == nil || len(rr.Destinations) == 0 || slices.Contains(rr.Destinations, destination)
}

// earlierDestination is the earlier run's record of rule's copy.
func (r *run) earlierDestination(rule string) (DestinationStatus, bool) {
	for _, d := range r.in.Rerun.Earlier.Destinations {
		if d.Rule == rule {
			return d, true
		}
	}
	return DestinationStatus{}, false
}
