package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/dchain-dev/dchain/activities"
	"github.com/dchain-dev/dchain/chain"
	"github.com/dchain-dev/dchain/worker"
)

func newWorkerCmd(g *globals) *cobra.Command {
	var regions []string
	var buildkit string
	cmd := &cobra.Command{
		Use:   "worker",
		Short: "Run a worker: chain runs plus replication into every configured registry, or with --region only that region's replication",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := chain.ReadConfig(g.config)
			if err != nil {
				return err
			}
			o := worker.Options{TaskQueue: g.taskQueue, Regions: regions, Chains: len(regions) == 0,
				Activities: &activities.Activities{BuildKitAddr: buildkit}}
			for _, r := range regions {
				if _, ok := cfg.Registry(r); !ok {
					return fmt.Errorf("--region %q: no such registry in %s", r, cfg.Path)
				}
			}
			if o.Chains {
				for _, r := range cfg.Registries {
					o.Regions = append(o.Regions, r.Name)
				}
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			c, err := g.dial(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			if o.Chains {
				if err := worker.EnsureSearchAttributes(ctx, c, g.namespace); err != nil {
					return err
				}
			}
			fmt.Printf("worker serving task queue %s (chains: %v) and replication into %v\n", o.TaskQueue, o.Chains, o.Regions)
			return worker.Run(ctx, c, o)
		},
	}
	cmd.Flags().StringSliceVar(&regions, "region", nil, "serve only replication into this registry (repeatable)")
	cmd.Flags().StringVar(&buildkit, "buildkit-addr", envOr("BUILDKIT_HOST", ""), "buildkitd address for the build stage, e.g. unix:///run/buildkit/buildkitd.sock (env BUILDKIT_HOST)")
	return cmd
}
