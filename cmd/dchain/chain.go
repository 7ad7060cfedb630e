package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/dchain-dev/dchain/chain"
)

func newChainCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "chain", Short: "List and validate chain definitions"}
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
	cmd.AddCommand(list, validate)
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
