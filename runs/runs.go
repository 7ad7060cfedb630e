// Package runs reads chain runs back from Temporal: the list of runs by
// dchain's search attributes (visibility), and one run's live or final
// status. The CLI and the HTTP API both use it.
package runs

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"

	"github.com/dchain-dev/dchain/chain"
	"github.com/dchain-dev/dchain/workflows"
)

// Kinds of run, each a workflow type (two for scans): what `run list
// --kind` and GET /api/v1/runs?kind= select.
const (
	KindChain       = "chain"       // a chain's run: build, scan, policy, copies, triggers
	KindReplication = "replication" // `dchain replicate`, and a referrer followed after delivery
	KindSync        = "sync"        // `dchain chain sync` and its schedules
	KindScan        = "scan"        // `dchain scan` of an image or a repository
)

// Kinds are the kinds, in the order lists show them.
var Kinds = []string{KindChain, KindReplication, KindSync, KindScan}

// kindTypes are the workflow types of each kind.
var kindTypes = map[string][]string{
	KindChain:       {"ChainRun"},
	KindReplication: {workflows.WorkflowReplicate},
	KindSync:        {workflows.WorkflowChainSync},
	KindScan:        {workflows.WorkflowScanImage, workflows.WorkflowScanRepository},
}

// kindOf is the kind of a workflow type ("" for none of dchain's).
func kindOf(workflowType string) string {
	for k, ts := range kindTypes {
		if slices.Contains(ts, workflowType) {
			return k
		}
	}
	return ""
}

// Row is one run in a list.
type Row struct {
	WorkflowID string    `json:"workflowId"`
	RunID      string    `json:"runId"`
	Kind       string    `json:"kind"`
	Chain      string    `json:"chain"`
	Repository string    `json:"repository"`
	Tag        string    `json:"tag"`
	Commit     string    `json:"commit,omitempty"`
	Stage      string    `json:"stage"`
	Outcome    string    `json:"outcome"`
	Status     string    `json:"status"`
	Started    time.Time `json:"started"`
}

// Filter selects runs; empty fields match everything.
type Filter struct {
	Kind, Chain, Outcome, Repository, Tag string
	// Waiting selects the chain runs waiting for approval.
	Waiting bool
	Limit   int
}

// Query is the visibility query for ChainRun workflows matching f. A run
// ended outside dchain keeps its recorded outcome Running: Running means
// Temporal's status Running too, and the outcomes only Temporal knows
// (Terminated, TimedOut, ContinuedAsNew) are its execution statuses.
func (f Filter) Query() string {
	var types []string
	for _, k := range Kinds {
		if (f.Kind == "" && !f.Waiting) || f.Kind == k || (f.Waiting && k == KindChain) {
			types = append(types, kindTypes[k]...)
		}
	}
	q := workflows.Query{}.In("WorkflowType", types...)
	outcome := f.Outcome
	switch workflows.Outcome(outcome) {
	case workflows.OutcomeRunning:
		q = q.Eq("ExecutionStatus", "Running")
	case workflows.OutcomeTerminated, workflows.OutcomeTimedOut, workflows.OutcomeContinuedAsNew:
		q, outcome = q.Eq("ExecutionStatus", outcome), ""
	}
	// Syncs and scans record no outcome of their own: Temporal's status is it.
	if status, ok := recordsNoOutcome[workflows.Outcome(outcome)]; ok && (f.Kind == KindSync || f.Kind == KindScan) {
		q, outcome = q.Eq("ExecutionStatus", status), ""
	}
	if f.Waiting {
		q = q.Eq("ExecutionStatus", "Running").Eq(workflows.AttrStage.GetName(), workflows.StageApprove)
	}
	for _, kv := range []struct{ key, value string }{
		{workflows.AttrChain.GetName(), f.Chain}, {workflows.AttrOutcome.GetName(), outcome},
		{workflows.AttrRepository.GetName(), f.Repository}, {workflows.AttrTag.GetName(), f.Tag},
	} {
		if kv.value != "" {
			q = q.Eq(kv.key, kv.value)
		}
	}
	return q.String()
}

// endedOutside is the outcome of a closed execution whose recorded outcome
// is still Running: it was ended by Temporal, not by dchain.
func endedOutside(status enumspb.WorkflowExecutionStatus) (workflows.Outcome, bool) {
	switch status {
	case enumspb.WORKFLOW_EXECUTION_STATUS_TERMINATED:
		return workflows.OutcomeTerminated, true
	case enumspb.WORKFLOW_EXECUTION_STATUS_TIMED_OUT:
		return workflows.OutcomeTimedOut, true
	case enumspb.WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW:
		return workflows.OutcomeContinuedAsNew, true
	case enumspb.WORKFLOW_EXECUTION_STATUS_CANCELED:
		return workflows.OutcomeCanceled, true
	case enumspb.WORKFLOW_EXECUTION_STATUS_FAILED:
		return workflows.OutcomeFailed, true
	}
	return "", false
}

// recordsNoOutcome is the execution status an outcome is, for the kinds
// of run that record none (syncs and scans).
var recordsNoOutcome = map[workflows.Outcome]string{
	workflows.OutcomeSucceeded: "Completed", workflows.OutcomeFailed: "Failed", workflows.OutcomeCanceled: "Canceled",
}

// statusOutcome is the outcome Temporal's status of an execution stands for.
func statusOutcome(status enumspb.WorkflowExecutionStatus) workflows.Outcome {
	switch status {
	case enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING:
		return workflows.OutcomeRunning
	case enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED:
		return workflows.OutcomeSucceeded
	}
	o, _ := endedOutside(status)
	return o
}

// List lists runs matching f, newest first.
func List(ctx context.Context, c client.Client, f Filter) ([]Row, error) {
	if f.Limit <= 0 {
		f.Limit = 50
	}
	return list(ctx, c, f.Query(), f.Limit)
}

// list lists up to limit runs matching the visibility query q.
func list(ctx context.Context, c client.Client, q string, limit int) ([]Row, error) {
	rows := []Row{}
	var token []byte
	for len(rows) < limit {
		resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: q, PageSize: int32(min(limit, 100)), NextPageToken: token})
		if err != nil {
			return nil, fmt.Errorf("list runs (%s): %w", q, err)
		}
		for _, e := range resp.Executions {
			fields := e.GetSearchAttributes().GetIndexedFields()
			get := func(k temporal.SearchAttributeKeyKeyword) string {
				var v string
				if p, ok := fields[k.GetName()]; ok {
					_ = converter.GetDefaultDataConverter().FromPayload(p, &v)
				}
				return v
			}
			rows = append(rows, Row{
				WorkflowID: e.GetExecution().GetWorkflowId(), RunID: e.GetExecution().GetRunId(), Kind: kindOf(e.GetType().GetName()),
				Chain: get(workflows.AttrChain), Repository: get(workflows.AttrRepository), Tag: get(workflows.AttrTag),
				Commit: get(workflows.AttrCommit), Stage: get(workflows.AttrStage), Outcome: get(workflows.AttrOutcome),
				Status: e.GetStatus().String(), Started: e.GetStartTime().AsTime(),
			})
			switch r := &rows[len(rows)-1]; {
			case r.Outcome == string(workflows.OutcomeRunning):
				if o, ok := endedOutside(e.GetStatus()); ok {
					r.Outcome = string(o)
				}
			case r.Outcome == "": // a sync or a scan records none: Temporal's status says it
				r.Outcome = string(statusOutcome(e.GetStatus()))
			}
		}
		if token = resp.NextPageToken; len(token) == 0 {
			break
		}
	}
	return rows[:min(len(rows), limit)], nil
}

// ErrNotFound means there is no run with that id.
var ErrNotFound = errors.New("no such run")

// Status asks the run for its live status; for a run whose workers are gone
// it reads the status from the run's result or failure details.
func Status(ctx context.Context, c client.Client, id string) (workflows.RunStatus, error) {
	var st workflows.RunStatus
	v, qerr := c.QueryWorkflow(ctx, id, "", workflows.QueryStatus)
	if qerr == nil {
		if err := v.Get(&st); err != nil {
			return st, err
		}
		if st.Outcome == workflows.OutcomeRunning {
			// A closed run answers its query with its last state: one ended
			// outside dchain would say Running forever.
			if desc, err := c.DescribeWorkflowExecution(ctx, id, ""); err == nil {
				if o, ok := endedOutside(desc.GetWorkflowExecutionInfo().GetStatus()); ok {
					closedBy(ctx, c, id, o, &st)
					return st, nil
				}
			}
		}
		addLiveReplication(ctx, c, id, &st)
		return st, nil
	}
	desc, err := c.DescribeWorkflowExecution(ctx, id, "")
	if err != nil {
		var nf *serviceerror.NotFound
		if errors.As(err, &nf) {
			return st, fmt.Errorf("run %s: %w", id, ErrNotFound)
		}
		return st, fmt.Errorf("run %s: %w", id, err)
	}
	if desc.GetWorkflowExecutionInfo().GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		return st, fmt.Errorf("run %s is running but did not answer its status query (is a worker running?): %w", id, qerr)
	}
	err = c.GetWorkflow(ctx, id, "").Get(ctx, &st)
	var app *temporal.ApplicationError
	var canceled *temporal.CanceledError
	switch {
	case err == nil:
		return st, nil
	case errors.As(err, &app) && app.HasDetails():
		return st, app.Details(&st)
	case errors.As(err, &canceled) && canceled.HasDetails():
		return st, canceled.Details(&st)
	}
	return st, fmt.Errorf("run %s: %w", id, err)
}

// Outcomes are the outcomes a run can have, as the filter accepts them.
var Outcomes = []workflows.Outcome{workflows.OutcomeRunning, workflows.OutcomeSucceeded, workflows.OutcomeFailed, workflows.OutcomeCanceled, workflows.OutcomeBlocked,
	workflows.OutcomeRejected, workflows.OutcomeTerminated, workflows.OutcomeTimedOut, workflows.OutcomeContinuedAsNew}

// Check checks a filter from outside (CLI flags, query parameters) with
// the shared validator; name gives each field's outside name ("kind",
// "chain", "outcome", "repository", "tag", "limit") for errors. The outcome is
// matched in any case and comes out as the run records it.
func (f Filter) Check(name func(field string) string) (Filter, error) {
	var err error
	if f.Kind != "" {
		i := slices.IndexFunc(Kinds, func(k string) bool { return strings.EqualFold(k, f.Kind) })
		if i < 0 {
			return f, &chain.InputError{Field: name("kind"), Reason: fmt.Sprintf("%q is not a kind of run: one of %v", f.Kind, Kinds)}
		}
		f.Kind = Kinds[i]
	}
	if f.Chain != "" {
		if f.Chain, err = chain.ParseName(name("chain"), f.Chain); err != nil {
			return f, err
		}
	}
	if f.Repository != "" {
		if f.Repository, err = chain.ParseRepository(name("repository"), f.Repository); err != nil {
			return f, err
		}
	}
	if f.Tag != "" {
		if f.Tag, err = chain.ParseTag(name("tag"), f.Tag); err != nil {
			return f, err
		}
	}
	if f.Outcome != "" {
		i := slices.IndexFunc(Outcomes, func(o workflows.Outcome) bool { return strings.EqualFold(string(o), f.Outcome) })
		if i < 0 {
			return f, &chain.InputError{Field: name("outcome"), Reason: fmt.Sprintf("%q is not an outcome: one of %v", f.Outcome, Outcomes)}
		}
		f.Outcome = string(Outcomes[i])
	}
	if f.Waiting && f.Kind != "" && f.Kind != KindChain {
		return f, &chain.InputError{Field: name("waiting"), Reason: "only chain runs wait for approval (kind " + f.Kind + " does not)"}
	}
	if f.Limit < 0 || f.Limit > 1000 {
		return f, &chain.InputError{Field: name("limit"), Reason: fmt.Sprintf("%d: want 1 to 1000 (0: the default, 50)", f.Limit)}
	}
	return f, nil
}

// closedBy records in st how Temporal ended the run: its outcome, and the
// close event's reason and identity, in the message.
func closedBy(ctx context.Context, c client.Client, id string, o workflows.Outcome, st *workflows.RunStatus) {
	st.Outcome = o
	st.Message = fmt.Sprintf("ended outside dchain: Temporal says %s", o)
	it := c.GetWorkflowHistory(ctx, id, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_CLOSE_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			return
		}
		if a := ev.GetWorkflowExecutionTerminatedEventAttributes(); a != nil {
			st.Message = fmt.Sprintf("terminated outside dchain by %q: %s", a.GetIdentity(), a.GetReason())
		}
	}
}
