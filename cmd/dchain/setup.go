package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/dchain-dev/dchain/worker"
)

func newSetupCmd(g *globals) *cobra.Command {
	var retention, wait time.Duration
	cmd := &cobra.Command{
		Use:   "setup",
		Short: "Prepare a Temporal cluster for dchain: create the namespace if missing, register dchain's search attributes, and make the chains' sync schedules what the config says",
		Long: "setup is idempotent: it says what it changed, and nothing when the cluster is ready.\n" +
			"Workers refuse a namespace without dchain's search attributes; run this once per cluster and namespace,\n" +
			"and again after a chain's sync schedule changes (workers never touch the schedules).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := dialWaiting(cmd.Context(), g, wait, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, ns, out := cmd.Context(), g.namespace(), cmd.OutOrStdout()
			created, err := worker.EnsureNamespace(ctx, c, ns, retention)
			if err != nil {
				return err
			}
			if created {
				fmt.Fprintf(out, "namespace %s: created (retention %s)\n", ns, retention)
			}
			added, err := registerWhenVisible(ctx, c, ns)
			if err != nil {
				return err
			}
			if len(added) > 0 {
				fmt.Fprintf(out, "namespace %s: registered search attributes %s\n", ns, strings.Join(added, ", "))
			}
			if !created && len(added) == 0 {
				fmt.Fprintf(out, "namespace %s: ready (nothing to change)\n", ns)
			}
			// The chains' sync schedules: this command is their one owner.
			return syncSchedules(ctx, c, g)
		},
	}
	cmd.Flags().DurationVar(&retention, "retention", 30*24*time.Hour, "how long a new namespace keeps closed runs' histories")
	cmd.Flags().DurationVar(&wait, "wait", 0, "wait up to this long for Temporal's frontend to answer (a deployment starting up), instead of failing at once")
	return cmd
}

// dialWaiting dials Temporal; while the frontend is unavailable (not up
// yet: refused, or not serving), it tries again every few seconds, saying
// so on log, until wait has passed.
func dialWaiting(ctx context.Context, g *globals, wait time.Duration, log io.Writer) (client.Client, error) {
	deadline := time.Now().Add(wait)
	for {
		c, err := g.dial(ctx)
		if err == nil || !worker.Unavailable(err) || time.Now().After(deadline) {
			return c, err
		}
		fmt.Fprintf(log, "waiting for Temporal (%s left): %v\n", time.Until(deadline).Round(time.Second), err)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(3 * time.Second):
		}
	}
}

// registerWhenVisible registers the search attributes, waiting for a new
// namespace to reach every frontend (its cache refreshes within seconds).
func registerWhenVisible(ctx context.Context, c client.Client, ns string) ([]string, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		added, err := worker.RegisterSearchAttributes(ctx, c, ns)
		var notFound *serviceerror.NamespaceNotFound
		if err == nil || !errors.As(err, &notFound) || time.Now().After(deadline) {
			return added, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}
