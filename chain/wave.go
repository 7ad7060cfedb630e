package chain

import (
	"slices"
	"strconv"
	"time"
)

// Wave is one step of a staged rollout: its destinations are copied (and
// its triggers fired) only after the wave before it succeeded, soaked and
// answered its health check; a failed wave stops the ones after it.
type Wave struct {
	// Name is shown in the run (default wave-1, wave-2, …).
	Name string `yaml:"name" json:"name,omitempty"`
	// Destinations are the registries of the wave: every replication rule
	// into one of them copies in this wave.
	Destinations []string `yaml:"destinations" json:"destinations"`
	// Triggers are the chain's triggers fired once this wave's copies
	// succeeded (with this wave's regions); triggers named by no wave fire
	// after the last wave, as without waves.
	Triggers []string `yaml:"triggers" json:"triggers,omitempty"`
	// Approval, when set, makes the wave wait for an approver first.
	Approval *Approval `yaml:"approval" json:"approval,omitempty"`
	// Soak is how long the next wave waits after this one succeeded.
	Soak Duration `yaml:"soak" json:"soak,omitempty"`
	// Health, when set, must answer 2xx (within its timeout) before the
	// next wave starts.
	Health *HealthCheck `yaml:"health" json:"health,omitempty"`
}

// HealthCheck is a URL that says whether a wave's clusters are healthy.
type HealthCheck struct {
	URL string `yaml:"url" json:"url"`
	// Timeout is how long a non-2xx answer (or none) is retried (default 10m).
	Timeout Duration `yaml:"timeout" json:"timeout,omitempty"`
}

// Wave limits.
const (
	MaxWaves             = 10
	MaxSoak              = 7 * 24 * time.Hour
	DefaultHealthTimeout = 10 * time.Minute
	MaxHealthTimeout     = 24 * time.Hour
)

// WaveName is wave i's name (its own, or wave-N).
func (c Chain) WaveName(i int) string {
	if n := c.Waves[i].Name; n != "" {
		return n
	}
	return "wave-" + strconv.Itoa(i+1)
}

// WaveOf is the index of the wave that copies into destination (-1: none).
func (c Chain) WaveOf(destination string) int {
	return slices.IndexFunc(c.Waves, func(w Wave) bool { return slices.Contains(w.Destinations, destination) })
}

// TriggerWave is the index of the wave that fires trigger (-1: after the last).
func (c Chain) TriggerWave(trigger string) int {
	return slices.IndexFunc(c.Waves, func(w Wave) bool { return slices.Contains(w.Triggers, trigger) })
}

func (v *validator) waves(c *Chain) {
	if len(c.Waves) == 0 {
		return
	}
	v.max("waves", len(c.Waves), MaxWaves)
	if len(c.Replication) == 0 {
		v.add("waves", "a chain without replication rules has no destinations to stage")
	}
	names, dests, triggers := map[string]string{}, map[string]string{}, map[string]string{}
	for i := range c.Waves {
		w := &c.Waves[i]
		f := "waves[" + strconv.Itoa(i) + "]"
		if w.Name != "" {
			v.name(f+".name", w.Name)
		}
		v.unique(names, f+".name", c.WaveName(i))
		if len(w.Destinations) == 0 {
			v.add(f+".destinations", "a wave needs at least one destination")
		}
		for j, d := range w.Destinations {
			g := f + ".destinations[" + strconv.Itoa(j) + "]"
			v.unique(dests, g, d)
			if !slices.ContainsFunc(c.Replication, func(r ReplicationRule) bool { return r.Destination == d }) {
				v.add(g, "%q is the destination of no replication rule of the chain", d)
			}
		}
		for j, t := range w.Triggers {
			g := f + ".triggers[" + strconv.Itoa(j) + "]"
			v.unique(triggers, g, t)
			if !slices.ContainsFunc(c.Triggers, func(x Trigger) bool { return x.Name == t }) {
				v.add(g, "%q is not a trigger of the chain", t)
			}
		}
		if w.Approval != nil {
			v.approval(f+".approval", w.Approval)
		}
		if w.Soak < 0 || time.Duration(w.Soak) > MaxSoak {
			v.add(f+".soak", "%s must be between 0 and %s", time.Duration(w.Soak), MaxSoak)
		}
		if h := w.Health; h != nil {
			v.url(f+".health.url", h.URL)
			if h.Timeout < 0 || time.Duration(h.Timeout) > MaxHealthTimeout {
				v.add(f+".health.timeout", "%s must be between 0 (the default, %s) and %s", time.Duration(h.Timeout), DefaultHealthTimeout, MaxHealthTimeout)
			}
		}
		if i == len(c.Waves)-1 && (w.Soak > 0 || w.Health != nil) {
			v.add(f, "the last wave has no wave after it to hold back: soak and health apply between waves")
		}
	}
	for i, r := range c.Replication {
		if c.WaveOf(r.Destination) < 0 {
			v.add("replication["+strconv.Itoa(i)+"].destination", "%q is in no wave: with waves, every destination is in one", r.Destination)
		}
	}
}
