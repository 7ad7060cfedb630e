package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/temporal"

	"github.com/dchain-dev/dchain/chain"
	"github.com/dchain-dev/dchain/workflows"
)

func newChainCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "chain", Short: "List, validate and sync chain definitions"}
	var output string
	list := &cobra.Command{
		Use:   "list",
		Short: "List the chains the config loads",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			l, err := g.load()
			if err != nil {
				return err
			}
			if output == "json" {
				return printJSON(os.Stdout, l.Chains)
			}
			var rows [][]string
			for _, c := range l.Chains {
				var dests, trigs []string
				for _, r := range c.Replication {
					dests = append(dests, r.Destination)
				}
				for _, t := range c.Triggers {
					trigs = append(trigs, t.Name)
				}
				rows = append(rows, []string{c.Name, scopeString(c.Scope), strings.Join(dests, ","), strings.Join(trigs, ","), fmt.Sprintf("%s:%d", c.File, c.Line)})
			}
			table(os.Stdout, "NAME\tSCOPE\tREPLICATES TO\tTRIGGERS\tDEFINED AT", rows)
			return nil
		},
	}
	outputFlag(list, &output)
	validate := &cobra.Command{
		Use:   "validate [FILE...]",
		Short: "Validate chain files against the config's registries (all configured chains when no file is given)",
		RunE: func(cmd *cobra.Command, files []string) error {
			cfg, err := chain.ReadConfig(g.config)
			if err != nil {
				return err
			}
			if len(files) == 0 {
				if files, err = cfg.ChainFiles(); err != nil {
					return err
				}
			}
			chains, err := cfg.LoadChainFiles(files...)
			if err != nil {
				return &exitError{code: 1, msg: err.Error()}
			}
			fmt.Printf("ok: %d chains in %d files\n", len(chains), len(files))
			return nil
		},
	}
	cmd.AddCommand(list, validate, chainSyncCmd(g))
	return cmd
}

func scopeString(s chain.Scope) string {
	if s.AllRepositories {
		out := s.Registry + ":" + s.Namespace + "/*"
		if len(s.Exclude) > 0 {
			out += " except " + strings.Join(s.Exclude, ",")
		}
		return out
	}
	return s.Registry + ":" + s.FullRepository(s.Repository)
}

func chainSyncCmd(g *globals) *cobra.Command {
	var dryRun, watch bool
	var output string
	cmd := &cobra.Command{
		Use:   "sync CHAIN [--dry-run] [--watch]",
		Short: "Replicate what already exists: every tag in the chain's scope its rules cover that a destination lacks",
		Long: `Starts the chain's sync (workflow ChainSync): every existing tag in the chain's scope that a
replication rule covers and its destination lacks — or has at another digest, where the rule may
overwrite — is copied, 4 at once, with the chain's replication (referrers included). With a
blocking scan policy an image is synced only when its stored scan report passes. --dry-run only
plans; the result lists what was (or would be) copied, skipped and refused, and why.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			ctx := cmd.Context()
			s, done, err := g.starter(ctx)
			if err != nil {
				return err
			}
			defer done()
			c := s.Client
			st, err := s.StartSync(ctx, args[0], dryRun)
			if err != nil {
				return err
			}
			if !watch && !dryRun {
				fmt.Printf("started sync %s (run id %s); dchain chain sync %s --watch waits for it\n", st.WorkflowID, st.RunID, args[0])
				return nil
			}
			var res workflows.SyncResult
			err = c.GetWorkflow(ctx, st.WorkflowID, "").Get(ctx, &res)
			var app *temporal.ApplicationError
			if errors.As(err, &app) && app.HasDetails() {
				_ = app.Details(&res)
			} else if err != nil {
				return fmt.Errorf("sync %s: %w", st.WorkflowID, err)
			}
			if output == "json" {
				return printJSON(os.Stdout, res)
			}
			printSync(res)
			if len(res.Failed) > 0 {
				return &exitError{code: 1}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "plan only: list what would be copied, skipped and refused")
	cmd.Flags().BoolVar(&watch, "watch", false, "wait for the sync to end and print what it did")
	outputFlag(cmd, &output)
	return cmd
}

func printSync(res workflows.SyncResult) {
	copied := "COPIED"
	if res.DryRun {
		copied = "WOULD COPY"
	}
	var rows [][]string
	for _, group := range []struct {
		what  string
		items []workflows.SyncItem
	}{{copied, res.Copied}, {"FAILED", res.Failed}, {"REFUSED", res.Refused}, {"SKIPPED", res.Skipped}} {
		for _, i := range group.items {
			rows = append(rows, []string{group.what, i.Repository + ":" + i.Tag, i.Destination, i.Reason})
		}
	}
	table(os.Stdout, "WHAT\tIMAGE\tDESTINATION\tWHY", rows)
	fmt.Printf("\n%d %s, %d failed, %d refused, %d skipped\n", len(res.Copied), strings.ToLower(copied), len(res.Failed), len(res.Refused), len(res.Skipped))
}
