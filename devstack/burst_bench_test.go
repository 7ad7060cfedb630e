package devstack

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"go.temporal.io/api/enums/v1"

	"github.com/dchain-dev/dchain/chain"
	"github.com/dchain-dev/dchain/workflows"
)

// BenchmarkBurst100 starts 100 runs of a tiny image (a sample index of its
// own each, no trigger) at once on the embedded stack and waits for all of
// them: "resolve" runs only resolve the image (the orchestration alone),
// "replicate" runs also copy it into one region. It reports runs completed
// per second (first start request to last completion) and the latency of
// each run's first workflow task (from the run's start to the task's start,
// read off the histories): p50 and p99 over the iteration's runs.
func BenchmarkBurst100(b *testing.B) {
	for _, dests := range []int{0, 1} {
		name := map[int]string{0: "resolve", 1: "replicate"}[dests]
		b.Run(name, func(b *testing.B) {
			l, ch := testChain("bench-burst-"+name, "bench/burst-"+name)
			ch.Replication, ch.Triggers = ch.Replication[:dests], nil
			l.Chains[0] = ch
			burst(b, l, "bench/burst-"+name)
		})
	}
}

func burst(b *testing.B, l *chain.Loaded, repo string) {
	const runs = 100
	var tasks firstTasks
	var overhead []time.Duration
	var elapsed time.Duration
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		tags := make([]string, runs)
		for j := range tags {
			tags[j] = fmt.Sprintf("b%d-%d-%d", i, j, time.Now().UnixNano())
			if _, err := PushSample(context.Background(), stack.Endpoints.Registries["src"], repo, tags[j]); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		t0 := time.Now()
		ids := make([]string, runs)
		var wg sync.WaitGroup
		for j, tag := range tags {
			wg.Go(func() {
				ids[j] = startRun(b, l, repo+":"+tag).WorkflowID
				if st := waitRun(b, ids[j], 5*time.Minute); st.Outcome != workflows.OutcomeSucceeded {
					b.Errorf("run %s: %s %s", ids[j], st.Outcome, st.Message)
				}
			})
		}
		wg.Wait()
		elapsed += time.Since(t0)
		b.StopTimer()
		for _, id := range ids {
			tasks.add(b, id)
			overhead = append(overhead, orchestration(b, id))
		}
		b.StartTimer()
	}
	reportLatency(b, "overhead-", overhead)
	b.ReportMetric(float64(runs*b.N)/elapsed.Seconds(), "runs/s")
	tasks.report(b)
}

// firstTasks are the first workflow tasks of runs (firstTaskLatency).
type firstTasks struct {
	started, done []time.Duration
	timeouts      int
}

func (f *firstTasks) add(b *testing.B, id string) {
	started, done, timeouts := firstTaskLatency(b, id)
	f.started, f.done, f.timeouts = append(f.started, started), append(f.done, done), f.timeouts+timeouts
}

// report reports first-task-p50/p99-ms (to the task's start),
// first-done-p50/p99-ms (to its end) and task-timeouts.
func (f *firstTasks) report(b *testing.B) {
	reportLatency(b, "first-task-", f.started)
	reportLatency(b, "first-done-", f.done)
	b.ReportMetric(float64(f.timeouts), "task-timeouts")
}

// firstTaskLatency reads a run's history: the time from its start to the
// start of its first workflow task (what a worker's poll picked up; with an
// eager start, the start's own transaction) and to that task's end (a
// worker ran it), and how many of its workflow tasks timed out (each costs
// the run 5 s on a sticky queue, 10 s otherwise).
func firstTaskLatency(b *testing.B, id string) (first, done time.Duration, timeouts int) {
	var started time.Time
	for _, ev := range runHistory(b, id) {
		switch ev.GetEventType() {
		case enums.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
			started = ev.GetEventTime().AsTime()
		case enums.EVENT_TYPE_WORKFLOW_TASK_STARTED:
			if first == 0 {
				first = ev.GetEventTime().AsTime().Sub(started)
			}
		case enums.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
			if done == 0 {
				done = ev.GetEventTime().AsTime().Sub(started)
			}
		case enums.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT:
			timeouts++
			b.Logf("run %s: workflow task timed out (event %d at %s, %s)", id, ev.GetEventId(), ev.GetEventTime().AsTime().Format("15:04:05.000"), ev.GetWorkflowTaskTimedOutEventAttributes().GetTimeoutType())
		}
	}
	if done == 0 {
		b.Fatalf("run %s: no workflow task completed", id)
	}
	return first, done, timeouts
}

// orchestration is a run's time not covered by its activities: its
// duration (start to close) less the union of its activities' intervals
// from start to end — waiting for workflow tasks, for activity slots, for
// the server.
func orchestration(b *testing.B, id string) time.Duration {
	var start, end time.Time
	began := map[int64]time.Time{} // scheduled event ID → activity start
	type span struct{ from, to time.Time }
	var spans []span
	for _, ev := range runHistory(b, id) {
		at := ev.GetEventTime().AsTime()
		switch ev.GetEventType() {
		case enums.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
			start = at
		case enums.EVENT_TYPE_ACTIVITY_TASK_STARTED:
			began[ev.GetActivityTaskStartedEventAttributes().GetScheduledEventId()] = at
		case enums.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
			spans = append(spans, span{began[ev.GetActivityTaskCompletedEventAttributes().GetScheduledEventId()], at})
		case enums.EVENT_TYPE_ACTIVITY_TASK_FAILED:
			spans = append(spans, span{began[ev.GetActivityTaskFailedEventAttributes().GetScheduledEventId()], at})
		case enums.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT:
			spans = append(spans, span{began[ev.GetActivityTaskTimedOutEventAttributes().GetScheduledEventId()], at})
		case enums.EVENT_TYPE_ACTIVITY_TASK_CANCELED:
			spans = append(spans, span{began[ev.GetActivityTaskCanceledEventAttributes().GetScheduledEventId()], at})
		}
		end = at
	}
	slices.SortFunc(spans, func(x, y span) int { return x.from.Compare(y.from) })
	var covered time.Duration
	var last time.Time
	for _, s := range spans {
		if s.from.IsZero() {
			continue // (an activity that never started covers nothing)
		}
		if s.from.Before(last) {
			s.from = last
		}
		if s.to.After(s.from) {
			covered += s.to.Sub(s.from)
			last = s.to
		}
	}
	return end.Sub(start) - covered
}
