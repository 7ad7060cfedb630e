package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"

	"github.com/dchain-dev/dchain/runs"
	"github.com/dchain-dev/dchain/workflows"
)

// runDecideCmd is `run approve` (approve true) or `run reject`: the
// decision goes to the run as the CLI's identity ($DCHAIN_IDENTITY, else
// the user name), which the chain's approval.approvers must list.
func runDecideCmd(g *globals, approve bool) *cobra.Command {
	var text string
	use, short, flag, usage := "approve RUN-ID", "Approve a run waiting for approval: it goes on to replicate", "comment", "a comment, recorded with the decision"
	if !approve {
		use, short, flag, usage = "reject RUN-ID --reason TEXT", "Reject a run waiting for approval: it ends Rejected, copying nothing more (with waves, the waves before the one waiting keep their copies)", "reason", "why (required), recorded with the decision"
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: g.withClient(func(cmd *cobra.Command, c client.Client, args []string) error {
			d, err := workflows.CheckDecision(workflows.ApprovalDecision{Approve: approve, By: actor(), Via: "cli", Comment: text},
				func(f string) string {
					if f == "by" {
						return "DCHAIN_IDENTITY"
					}
					return "--" + flag
				})
			if err != nil {
				return err
			}
			got, err := runs.Decide(cmd.Context(), c, args[0], d)
			var de *runs.DecisionError
			if errors.As(err, &de) {
				return errors.New(de.Message)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %s\n", args[0], got)
			return nil
		}),
	}
	cmd.Flags().StringVar(&text, flag, "", usage)
	if !approve {
		_ = cmd.MarkFlagRequired(flag)
	}
	return cmd
}

// WaitingRun is a row of `run list --waiting`: the run and its request.
type WaitingRun struct {
	runs.Row
	Approval *workflows.ApprovalStatus `json:"approval,omitempty"`
	// Wave is the wave that waits ("": the run, before any copy).
	Wave string `json:"wave,omitempty"`
}

// printWaiting prints the waiting runs with each one's request, read from
// the run itself (who may approve, since when, until when).
func printWaiting(ctx context.Context, c client.Client, list []runs.Row, asJSON bool) error {
	out := make([]WaitingRun, 0, len(list))
	for _, r := range list {
		w := WaitingRun{Row: r}
		if st, err := runs.Status(ctx, c, r.WorkflowID); err == nil {
			w.Approval, w.Wave = st.PendingApproval()
		}
		out = append(out, w)
	}
	if asJSON {
		return printJSON(os.Stdout, out)
	}
	var rows [][]string
	for _, w := range out {
		who, since, until := "?", "?", "?"
		if a := w.Approval; a != nil {
			who, since = strings.Join(a.Approvers, ","), a.RequestedAt.Local().Format(time.DateTime)
			until = a.Deadline.Local().Format(time.DateTime) + " (then " + a.TimeoutOutcome() + ")"
		}
		before := "any copy"
		if w.Wave != "" {
			before = "wave " + w.Wave
		}
		rows = append(rows, []string{w.WorkflowID, w.Chain, w.Repository + ":" + w.Tag, before, who, since, until})
	}
	table(os.Stdout, "RUN\tCHAIN\tIMAGE\tBEFORE\tAPPROVERS\tWAITING SINCE\tUNTIL", rows)
	return nil
}

// printWaves is `run show`'s waves: each one's state, approval, soak and health.
func printWaves(w io.Writer, id string, waves []workflows.WaveStatus, running bool) {
	if len(waves) == 0 {
		return
	}
	fmt.Fprintln(w)
	var rows [][]string
	for _, v := range waves {
		health := ""
		if v.Health != nil {
			health = fmt.Sprintf("HTTP %d after %d attempts", v.Health.HTTPStatus, v.Health.Attempts)
		}
		soak := ""
		if !v.SoakUntil.IsZero() {
			soak = "until " + v.SoakUntil.Local().Format(time.DateTime)
		}
		rows = append(rows, []string{v.Name, strings.Join(v.Destinations, ","), string(v.State), soak, health, v.Message})
	}
	table(w, "WAVE\tDESTINATIONS\tSTATE\tSOAK\tHEALTH\tNOTE", rows)
	for _, v := range waves {
		printApproval(w, id, v.Approval, v.Name, running)
	}
}

// printApproval is `run show`'s approval (of the run, or of wave): the
// request and the decision.
func printApproval(w io.Writer, id string, a *workflows.ApprovalStatus, wave string, running bool) {
	if a == nil {
		return
	}
	if wave != "" {
		fmt.Fprintf(w, "Wave %s: ", wave)
	}
	switch d := a.Decision; {
	case d == nil && a.Canceled:
		fmt.Fprintf(w, "Approval: nobody decided: the run was canceled while it waited (requested %s)\n", a.RequestedAt.Local().Format(time.DateTime))
	case d == nil && !running:
		fmt.Fprintf(w, "Approval: nobody decided (requested %s)\n", a.RequestedAt.Local().Format(time.DateTime))
	case d == nil:
		fmt.Fprintf(w, "Approval: WAITING since %s for %s; at %s it is %s (dchain run approve|reject %s)\n",
			a.RequestedAt.Local().Format(time.DateTime), strings.Join(a.Approvers, " or "), a.Deadline.Local().Format(time.DateTime), a.TimeoutOutcome(), id)
	default:
		fmt.Fprintf(w, "Approval: %s, %s (requested %s)\n", d, d.At.Local().Format(time.DateTime), a.RequestedAt.Local().Format(time.DateTime))
	}
	if n := a.Notify; n != nil {
		fmt.Fprintf(w, "          request to %s: %s %s\n", n.URL, n.State, n.Message)
	}
}
