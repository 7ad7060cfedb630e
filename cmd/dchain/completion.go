package main

import (
	"context"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/dchain-dev/dchain/chain"
	"github.com/dchain-dev/dchain/runs"
)

// addCompletions makes shell completion (`dchain completion bash|zsh|fish|
// powershell`, cobra's) complete values from the config and from Temporal:
// chain names for --chain and a CHAIN argument, registry names for
// --registry and --region, recent run IDs for a RUN-ID argument.
func addCompletions(root *cobra.Command, g *globals) {
	var walk func(*cobra.Command)
	walk = func(cmd *cobra.Command) {
		switch {
		case strings.Contains(cmd.Use, "RUN-ID"):
			cmd.ValidArgsFunction = g.completeRuns
		case strings.Contains(cmd.Use, " CHAIN"):
			cmd.ValidArgsFunction = g.completeChains
		}
		cmd.LocalFlags().VisitAll(func(f *pflag.Flag) {
			switch f.Name {
			case "chain":
				_ = cmd.RegisterFlagCompletionFunc(f.Name, g.completeChains)
			case "registry", "region":
				_ = cmd.RegisterFlagCompletionFunc(f.Name, g.completeRegistries)
			}
		})
		for _, c := range cmd.Commands() {
			walk(c)
		}
	}
	walk(root)
}

func (g *globals) completeChains(_ *cobra.Command, args []string, prefix string) ([]string, cobra.ShellCompDirective) {
	l, err := chain.Load(g.config)
	if l == nil || err != nil && len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var out []string
	for _, c := range l.Chains {
		if strings.HasPrefix(c.Name, prefix) {
			out = append(out, c.Name+"\t"+c.Description)
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

func (g *globals) completeRegistries(_ *cobra.Command, _ []string, prefix string) ([]string, cobra.ShellCompDirective) {
	cfg, err := chain.ReadConfig(g.config)
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var out []string
	for _, r := range cfg.Registries {
		if strings.HasPrefix(r.Name, prefix) {
			out = append(out, r.Name+"\t"+r.RegionName()+" "+r.Address)
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

// completeRuns offers the 50 newest runs (asking Temporal, 3 s at most).
func (g *globals) completeRuns(cmd *cobra.Command, args []string, prefix string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	c, err := g.dial(ctx)
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	defer c.Close()
	rows, err := runs.List(ctx, c, runs.Filter{Limit: 50})
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var out []string
	for _, r := range rows {
		if strings.HasPrefix(r.WorkflowID, prefix) {
			out = append(out, r.WorkflowID+"\t"+r.Outcome+" "+r.Started.Format("2006-01-02 15:04"))
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}
