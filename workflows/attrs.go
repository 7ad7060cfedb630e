package workflows

import (
	"slices"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// StartAttributes are the search attributes a run starts with: the starter
// sets them in the start request, so a run is listed by chain, image and
// commit from its first moment, before a worker has picked it up.
func StartAttributes(in ChainRunInput) temporal.SearchAttributes {
	return temporal.NewSearchAttributes(startUpdates(in)...)
}

func startUpdates(in ChainRunInput) []temporal.SearchAttributeUpdate {
	attrs := []temporal.SearchAttributeUpdate{
		AttrChain.ValueSet(in.Chain.Name),
		AttrRepository.ValueSet(in.Image.Repository),
		AttrTag.ValueSet(in.Image.Tag),
		AttrOutcome.ValueSet(string(OutcomeRunning)),
	}
	if in.Push != nil {
		attrs = append(attrs, AttrCommit.ValueSet(string(in.Push.Commit)), AttrRef.ValueSet(string(in.Push.Ref)))
	}
	return attrs
}

// attrs holds a run's search attribute changes until the run next waits.
// Every upsert is a history event and a visibility write: a tiny run made
// nine, most of them in the same workflow task (a skipped stage's Stage
// overwritten by the next one's). Batched, a run writes the attributes once
// per workflow task that schedules work, and once at the end. Runs started
// before batching (their input does not say AttributesAtStart) upsert each
// change at once, as they did: their histories replay.
type attrs struct {
	batch   bool
	pending []attr // one per name, in the order first set: the upsert is deterministic
}

// attr is one search attribute's new value.
type attr struct {
	name   string
	update temporal.SearchAttributeUpdate
}

func keyword(k temporal.SearchAttributeKeyKeyword, v string) attr {
	return attr{k.GetName(), k.ValueSet(v)}
}
func integer(k temporal.SearchAttributeKeyInt64, v int64) attr {
	return attr{k.GetName(), k.ValueSet(v)}
}

// set records new values; unbatched, it upserts them now, in one command.
func (a *attrs) set(ctx workflow.Context, values ...attr) {
	if !a.batch {
		upsert(ctx, values)
		return
	}
	for _, v := range values {
		i := slices.IndexFunc(a.pending, func(p attr) bool { return p.name == v.name })
		if i < 0 {
			a.pending = append(a.pending, v)
		} else {
			a.pending[i] = v
		}
	}
}

// flush upserts what is pending, in one command.
func (a *attrs) flush(ctx workflow.Context) {
	if len(a.pending) > 0 {
		upsert(ctx, a.pending)
		a.pending = nil
	}
}

func upsert(ctx workflow.Context, values []attr) {
	us := make([]temporal.SearchAttributeUpdate, len(values))
	for i, v := range values {
		us[i] = v.update
	}
	_ = workflow.UpsertTypedSearchAttributes(ctx, us...)
}

// execute schedules an activity of the run, with the attribute changes made
// since the run last waited.
func (r *run) execute(ctx workflow.Context, activity string, in any) workflow.Future {
	r.attrs.flush(ctx)
	return workflow.ExecuteActivity(ctx, activity, in)
}
