package main

import (
	"context"
	"fmt"
	"os"
	"runtime/debug"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"

	"github.com/dchain-dev/dchain/chain"
	"github.com/dchain-dev/dchain/starter"
	"github.com/dchain-dev/dchain/worker"
	"github.com/dchain-dev/dchain/workflows"
)

// globals are the connection and config flags every command shares.
type globals struct {
	config    string
	address   string
	namespace string
	taskQueue string
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func newRoot() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "dchain",
		Short:         "Durable container-image delivery chains on Temporal",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version(),
	}
	root.SetVersionTemplate("dchain {{.Version}}\n")
	f := root.PersistentFlags()
	f.StringVar(&g.config, "config", envOr("DCHAIN_CONFIG", "dchain.yaml"), "config file: registries and chain files (env DCHAIN_CONFIG)")
	f.StringVar(&g.address, "address", envOr("TEMPORAL_ADDRESS", "127.0.0.1:7233"), "Temporal frontend host:port (env TEMPORAL_ADDRESS)")
	f.StringVar(&g.namespace, "namespace", envOr("TEMPORAL_NAMESPACE", "default"), "Temporal namespace (env TEMPORAL_NAMESPACE)")
	f.StringVar(&g.taskQueue, "task-queue", envOr("DCHAIN_TASK_QUEUE", workflows.DefaultTaskQueue), "base task queue (env DCHAIN_TASK_QUEUE)")
	root.AddCommand(newDevCmd(g), newWorkerCmd(g), newRunCmd(g), newChainCmd(g), newScanCmd(g), newAPICmd(g), newWebhookCmd(g), newReplicateCmd(g))
	return root
}

// version is the module version, the commit it was built from and the Go
// version, from the binary's build info.
func version() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "(no build info)"
	}
	v, commit, dirty := info.Main.Version, "unknown", ""
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			commit = s.Value[:min(12, len(s.Value))]
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	return fmt.Sprintf("%s (commit %s%s, %s)", v, commit, dirty, info.GoVersion)
}

// dial connects to Temporal.
func (g *globals) dial(ctx context.Context) (client.Client, error) {
	c, err := client.DialContext(ctx, client.Options{HostPort: g.address, Namespace: g.namespace, Logger: worker.QuietLogger()})
	if err != nil {
		return nil, fmt.Errorf("connect to Temporal at %s (namespace %s): %w; is `dchain dev` running?", g.address, g.namespace, err)
	}
	return c, nil
}

// starter loads the config and its chains, dials Temporal and returns a
// starter of runs; call done when done.
func (g *globals) starter(ctx context.Context) (s *starter.Starter, done func(), err error) {
	l, err := g.load()
	if err != nil {
		return nil, nil, err
	}
	c, err := g.dial(ctx)
	if err != nil {
		return nil, nil, err
	}
	return &starter.Starter{Client: c, Config: l, TaskQueue: g.taskQueue}, c.Close, nil
}

// load reads and validates the config and its chains.
func (g *globals) load() (*chain.Loaded, error) {
	return chain.Load(g.config)
}

// withClient is the RunE of a command that talks to Temporal: it dials,
// runs fn, and closes the connection.
func (g *globals) withClient(fn func(cmd *cobra.Command, c client.Client, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		c, err := g.dial(cmd.Context())
		if err != nil {
			return err
		}
		defer c.Close()
		return fn(cmd, c, args)
	}
}
