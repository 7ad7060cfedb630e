package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime/debug"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.temporal.io/sdk/client"

	"github.com/dchain-dev/dchain/chain"
	"github.com/dchain-dev/dchain/starter"
	"github.com/dchain-dev/dchain/worker"
	"github.com/dchain-dev/dchain/workflows"
)

// globals are the connection and config flags every command shares.
type globals struct {
	config    string
	taskQueue string
	conn      worker.Connection
	logFormat string
	logLevel  string
	tls       bool
	flags     *pflag.FlagSet
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
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		return worker.SetupLogging(cmd.ErrOrStderr(), g.logFormat, g.logLevel)
	}
	f := root.PersistentFlags()
	f.StringVar(&g.logFormat, "log-format", envOr("DCHAIN_LOG_FORMAT", "text"), "log format: text or json (env DCHAIN_LOG_FORMAT)")
	f.StringVar(&g.logLevel, "log-level", envOr("DCHAIN_LOG_LEVEL", "info"), "log level: debug, info, warn or error (env DCHAIN_LOG_LEVEL)")
	f.StringVar(&g.config, "config", envOr("DCHAIN_CONFIG", "dchain.yaml"), "config file: registries and chain files (env DCHAIN_CONFIG)")
	g.flags = f
	f.StringVar(&g.conn.Address, "address", "", "Temporal frontend host:port (env TEMPORAL_ADDRESS; default "+worker.DefaultAddress+")")
	f.StringVar(&g.conn.Namespace, "namespace", "", "Temporal namespace (env TEMPORAL_NAMESPACE; default "+worker.DefaultNamespace+")")
	f.BoolVar(&g.tls, "tls", false, "connect to Temporal with TLS (env TEMPORAL_TLS; on by default with a TLS file or an API key)")
	f.StringVar(&g.conn.TLSCertPath, "tls-cert-path", "", "client certificate for mTLS (env TEMPORAL_TLS_CERT)")
	f.StringVar(&g.conn.TLSKeyPath, "tls-key-path", "", "client private key for mTLS (env TEMPORAL_TLS_KEY)")
	f.StringVar(&g.conn.TLSCAPath, "tls-ca-path", "", "CA bundle that verifies the Temporal server (env TEMPORAL_TLS_CA)")
	f.StringVar(&g.conn.TLSServerName, "tls-server-name", "", "server name to verify in Temporal's certificate (env TEMPORAL_TLS_SERVER_NAME)")
	f.BoolVar(&g.conn.TLSDisableHostVerification, "tls-disable-host-verification", false, "do not verify Temporal's certificate (testing only)")
	f.StringVar(&g.conn.APIKeyFile, "api-key-file", "", "file holding the Temporal API key (or env TEMPORAL_API_KEY; never a flag value)")
	f.StringVar(&g.conn.Profile, "profile", "", "profile of the temporal CLI's config file (env TEMPORAL_PROFILE; file: env TEMPORAL_CONFIG_FILE)")
	f.StringVar(&g.taskQueue, "task-queue", envOr("DCHAIN_TASK_QUEUE", workflows.DefaultTaskQueue), "base task queue (env DCHAIN_TASK_QUEUE)")
	defer addCompletions(root, g)
	root.AddCommand(serverCommands(g)...)
	root.AddCommand(newRunCmd(g), newChainCmd(g), newScanCmd(g), newAPICmd(g), newWebhookCmd(g), newReplicateCmd(g), newVerifyCmd(g), newSetupCmd(g), newBuildNetworkCmd())
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

// connection is the Temporal connection the flags, the environment and
// the temporal CLI's config file name.
func (g *globals) connection() worker.Connection {
	c := g.conn
	if g.flags.Changed("tls") {
		c.TLS = &g.tls
	}
	return c
}

// namespace is the Temporal namespace the connection names.
func (g *globals) namespace() string {
	if o, err := g.connection().ClientOptions(); err == nil {
		return o.Namespace
	}
	return worker.DefaultNamespace
}

// dial connects to Temporal.
func (g *globals) dial(ctx context.Context) (client.Client, error) {
	return g.dialWith(ctx, nil, nil)
}

// dialWith connects to Temporal, reporting the SDK's metrics to m and
// tracing through t (each if set).
func (g *globals) dialWith(ctx context.Context, m *worker.Metrics, t *worker.Tracing) (client.Client, error) {
	conn := g.connection()
	if m != nil {
		conn.Metrics = m.Handler
	}
	conn.Tracing = t
	c, err := conn.Dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w; is `dchain dev` running, or are --address and the TLS flags right?", err)
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

// load reads and validates the config and its chains; a chain document
// with problems is left out with a warning per problem (`dchain chain
// validate` fails on them), the rest loads.
func (g *globals) load() (*chain.Loaded, error) {
	l, ps, err := chain.LoadAll(g.config)
	if err != nil {
		return nil, err
	}
	for _, p := range ps {
		slog.Warn("left out of the config: "+p.String(), "file", p.File, "line", p.Line)
	}
	return l, nil
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

// metrics makes the process's metrics, bounded by the config's names (its
// chains where they load, else its registries), and serves them on listen
// ("" serves nothing) until ctx ends.
func (g *globals) metrics(ctx context.Context, cfg *chain.Config, listen string) (*worker.Metrics, error) {
	l, err := g.load()
	if err != nil {
		l = nil
		if cfg != nil {
			l = &chain.Loaded{Config: cfg}
		}
	}
	m, err := worker.NewMetrics(l)
	if err != nil {
		return nil, err
	}
	if listen != "" {
		ln, err := net.Listen("tcp", listen)
		if err != nil {
			m.Close()
			return nil, fmt.Errorf("--metrics-listen: %w", err)
		}
		go func() {
			if err := m.Serve(ctx, ln); err != nil {
				slog.Error("metrics server stopped", "error", err)
			}
		}()
	}
	return m, nil
}
