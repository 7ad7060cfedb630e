package workflows

import (
	"fmt"
	"strings"
)

// currentDetails renders the run as Markdown for the Web UI's "current details".
func currentDetails(s *RunStatus) string {
	var b strings.Builder
	fmt.Fprintf(&b, "**%s** %s — %s\n\n", s.Chain, s.Image.String(), s.Outcome)
	b.WriteString("| stage | state | note |\n|---|---|---|\n")
	for _, st := range s.Stages {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", st.Name, st.State, st.Message)
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
