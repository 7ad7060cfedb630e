package workflows

import (
	"fmt"
	"strings"
	"time"
)

// currentDetails renders the run as Markdown for the Web UI's "current details".
func currentDetails(s *RunStatus) string {
	var b strings.Builder
	if s.Outcome == OutcomeBlocked {
		// What the Web UI shows first: that it was stopped, why, and what was found.
		fmt.Fprintf(&b, "**BLOCKED** — %s\n\n", s.Message)
		if s.Scan != nil && len(s.Scan.Top) > 0 {
			b.WriteString("| severity | vulnerability | package | installed | fixed in | platform |\n|---|---|---|---|---|---|\n")
			for _, f := range s.Scan.Top[:min(len(s.Scan.Top), maxDetailFindings)] {
				fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", f.Severity, f.ID, f.Package, f.InstalledVersion, orDash(f.FixedVersion), orDash(f.Platform))
			}
			b.WriteString("\n")
		}
	}
	if a, wave := s.PendingApproval(); a != nil {
		what := "the run"
		if wave != "" {
			what = "wave " + wave
		}
		fmt.Fprintf(&b, "**WAITING FOR APPROVAL** since %s by %s; at %s %s is %s (`dchain run approve|reject`)\n\n",
			a.RequestedAt.UTC().Format(time.RFC3339), strings.Join(a.Approvers, " or "), a.Deadline.UTC().Format(time.RFC3339), what, a.TimeoutOutcome())
	} else if a := s.Approval; a != nil && a.Decision != nil {
		fmt.Fprintf(&b, "Approval: %s at %s\n\n", a.Decision, a.Decision.At.UTC().Format(time.RFC3339))
	}
	fmt.Fprintf(&b, "**%s** %s — %s\n\n", s.Chain, s.Image.String(), s.Outcome)
	if r := s.RerunOf; r != nil {
		fmt.Fprintf(&b, "Rerun of `%s` (run id `%s`) from %s; its reruns: `WorkflowId STARTS_WITH \"%s~\"`\n\n", r.Of, r.OfRun, r.From, r.Of)
	}
	if a := s.Accelerated; a != nil {
		fmt.Fprintf(&b, "Accelerated: %s\n\n", a)
	}
	if s.Scan != nil && len(s.Scan.Inventory) > 0 {
		b.WriteString("Analysed: " + strings.Join(InventoryLines(s.Scan.Inventory), "; ") + "\n\n")
	}
	b.WriteString("| stage | state | note |\n|---|---|---|\n")
	for _, st := range s.Stages {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", st.Name, st.State, st.Message)
	}
	if len(s.Waves) > 0 {
		b.WriteString("\n| wave | destinations | state | note |\n|---|---|---|---|\n")
		for _, w := range s.Waves {
			fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", w.Name, strings.Join(w.Destinations, ", "), w.State, w.Message)
		}
	}
	if len(s.Destinations) > 0 {
		b.WriteString("\n| destination | region | state | digest | referrers | note |\n|---|---|---|---|---|---|\n")
		for _, d := range s.Destinations {
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %d | %s |\n", d.Registry, d.Region, d.State, d.Digest, d.Referrers, d.Message)
		}
	}
	if len(s.Triggers) > 0 {
		b.WriteString("\n| trigger | state | http | attempts | note |\n|---|---|---|---|---|\n")
		for _, t := range s.Triggers {
			fmt.Fprintf(&b, "| %s | %s | %d | %d | %s |\n", t.Name, t.State, t.HTTPStatus, t.Attempts, t.Message)
		}
	}
	return b.String()
}

// maxDetailFindings is how many of a blocked run's most severe findings
// its current details show.
const maxDetailFindings = 5

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}
