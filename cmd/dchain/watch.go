package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/dchain-dev/dchain/runs"
	"github.com/dchain-dev/dchain/workflows"
)

// watchRun follows a run as it happens and returns an exitError by its
// outcome. It long-polls the run's history, so a stage change (and the
// end) is seen when it happens; while a build, scan or copy runs it also
// reads the heartbeats' progress every second. Text: a line per change,
// then the whole status; JSON: one RunStatus per change, the last the
// result.
func watchRun(ctx context.Context, c client.Client, id string, out io.Writer, asJSON bool) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	changed := make(chan struct{}, 1)
	go func() {
		it := c.GetWorkflowHistory(ctx, id, "", true, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		for it.HasNext() {
			if _, err := it.Next(); err != nil {
				return // the periodic read carries on
			}
			select {
			case changed <- struct{}{}:
			default:
			}
		}
	}()
	var last workflows.RunStatus
	lines := map[string]string{}
	for first := true; ; first = false {
		st, err := runs.Status(ctx, c, id)
		if err != nil {
			return err
		}
		if asJSON {
			if first || !reflect.DeepEqual(st, last) {
				if err := json.NewEncoder(out).Encode(st); err != nil {
					return err
				}
			}
		} else {
			printChanges(out, st, lines)
		}
		last = st
		if st.Outcome != workflows.OutcomeRunning {
			if !asJSON {
				fmt.Fprintln(out)
				printStatus(out, id, st)
			}
			return outcomeExit(st.Outcome)
		}
		// Heartbeat progress makes no history event: read it every second
		// while something is under way; otherwise wait for the next event
		// (with a slow read in case the long poll broke off).
		every := 30 * time.Second
		if busy(st) {
			every = time.Second
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		case <-time.After(every):
		}
	}
}

// printChanges prints a line for each stage and destination whose state,
// note or progress changed since the last call (lines keeps what was said).
func printChanges(out io.Writer, st workflows.RunStatus, lines map[string]string) {
	now := time.Now().Format("15:04:05")
	for _, s := range st.Stages {
		line := string(s.State) + " " + s.Message
		if s.State != workflows.StatePending && lines[s.Name] != line {
			fmt.Fprintf(out, "%s  %-9s %s\n", now, s.Name, line)
			lines[s.Name] = line
		}
	}
	for _, w := range st.Waves {
		line := string(w.State) + " " + w.Message
		if k := "wave/" + w.Name; w.State != workflows.StatePending && lines[k] != line {
			fmt.Fprintf(out, "%s  wave %-4s %s\n", now, w.Name, line)
			lines[k] = line
		}
	}
	for _, d := range st.Destinations {
		// The previous attempt's error is said once, when the attempt
		// starts; the progress lines of the attempt that follows carry
		// only its number.
		k := "dest/" + d.Reference
		retry := k + "/attempt"
		note := d.Message
		if d.Attempt > 1 && d.LastError != "" && d.State == workflows.StateRunning {
			if a := fmt.Sprint(d.Attempt); lines[retry] != a {
				lines[retry] = a
				fmt.Fprintf(out, "%s    → %-9s attempt %d; the previous one failed: %s\n", now, d.Registry, d.Attempt, d.LastError)
			}
			note = strings.TrimPrefix(note+fmt.Sprintf("; attempt %d", d.Attempt), "; ")
		} else {
			note = destinationNote(d)
		}
		line := string(d.State) + " " + note
		if d.State == workflows.StateRunning && d.BlobsTotal > 0 {
			line += " (" + copyProgress(d) + ")"
		}
		if d.State != workflows.StatePending && lines[k] != line {
			fmt.Fprintf(out, "%s    → %-9s %s\n", now, d.Registry, line)
			lines[k] = line
		}
	}
}

// busy says whether work that reports progress by heartbeat is running.
func busy(st workflows.RunStatus) bool {
	for _, s := range st.Stages {
		if s.State == workflows.StateRunning {
			return true
		}
	}
	return false
}

// outcomeExit is the exit code of an ended run: 0 Succeeded, 1 Failed
// (or ended outside dchain: Terminated, TimedOut, ContinuedAsNew), 3
// Canceled, 4 Blocked, 5 Rejected (by an approver or the approval's timeout).
func outcomeExit(o workflows.Outcome) error {
	switch o {
	case workflows.OutcomeSucceeded:
		return nil
	case workflows.OutcomeCanceled:
		return &exitError{code: 3}
	case workflows.OutcomeBlocked:
		return &exitError{code: 4}
	case workflows.OutcomeRejected:
		return &exitError{code: 5}
	default:
		return &exitError{code: 1}
	}
}
