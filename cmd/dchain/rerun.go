package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"

	"github.com/dchain-dev/dchain/runs"
	"github.com/dchain-dev/dchain/starter"
	"github.com/dchain-dev/dchain/workflows"
)

// runRerunCmd is `run rerun` (retry false) or `run retry` (retry true):
// a new run of an ended one, linked to it, that reuses its earlier stages.
func runRerunCmd(g *globals, retry bool) *cobra.Command {
	var from, output string
	var destinations []string
	var watch bool
	use, short := "rerun RUN-ID --from scan|replicate|trigger",
		"Run an ended run again from a stage: the stages before it are the earlier run's (the built digest, the stored scan report, the policy's decision, the signatures, an approval), in a new run linked to it"
	if retry {
		use, short = "retry RUN-ID --destination NAME [--destination NAME…]",
			"Copy an ended run's image again into destinations whose copies failed (a rerun from replicate for those destinations; the others keep the earlier result), then fire the triggers"
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			req := starter.RerunRequest{Run: args[0], From: from, Destinations: destinations}
			if retry {
				req.From = workflows.StageReplicate
				if len(destinations) == 0 {
					return fmt.Errorf("--destination: name at least one destination to copy into again")
				}
			}
			req, err := starter.CheckRerun(req, func(f string) string { return "--" + f })
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			s, done, err := g.starter(ctx)
			if err != nil {
				return err
			}
			defer done()
			req.Cause = workflows.Cause{Kind: "rerun", Actor: actor(), At: time.Now().UTC()}
			st, err := s.StartRerun(ctx, req)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			switch {
			case output == "json":
				if err := json.NewEncoder(out).Encode(st); err != nil {
					return err
				}
			case st.Existing:
				if was, err := runs.Status(ctx, s.Client, st.WorkflowID); err == nil && was.Outcome != workflows.OutcomeSucceeded && was.Outcome != workflows.OutcomeRunning {
					// Nothing started: say so with the exit code, and how to go on.
					return fmt.Errorf("run %s is this rerun of %s, under the chain's same settings, and it ended %s: %s; re-run that run (dchain run rerun|retry %s …), or change what failed first",
						st.WorkflowID, args[0], was.Outcome, was.Message, st.WorkflowID)
				}
				fmt.Fprintf(out, "run %s is this rerun of %s already (run id %s)\n", st.WorkflowID, args[0], st.RunID)
			default:
				fmt.Fprintf(out, "started run %s (run id %s), a rerun of %s from %s\n", st.WorkflowID, st.RunID, args[0], req.From)
			}
			if watch {
				return watchRun(ctx, s.Client, st.WorkflowID, out, output == "json")
			}
			return nil
		},
	}
	if retry {
		cmd.Flags().StringArrayVar(&destinations, "destination", nil, "a destination registry whose copy failed (repeat for more)")
	} else {
		cmd.Flags().StringVar(&from, "from", "", "the first stage to run again: scan, replicate or trigger")
		_ = cmd.MarkFlagRequired("from")
	}
	cmd.Flags().BoolVar(&watch, "watch", false, "watch the new run until it ends (exit code by outcome)")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table, or json")
	return cmd
}

// printReruns lists the reruns of run id (the other way of the link).
func printReruns(ctx context.Context, w io.Writer, c client.Client, id string) {
	list, err := runs.Reruns(ctx, c, id)
	if err != nil || len(list) == 0 {
		return
	}
	fmt.Fprintln(w)
	var rows [][]string
	for _, r := range list {
		rows = append(rows, []string{r.WorkflowID, r.Outcome, r.Stage, r.Started.Local().Format(time.DateTime)})
	}
	table(w, "RERUN\tOUTCOME\tSTAGE\tSTARTED", rows)
}
