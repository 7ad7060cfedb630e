package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"

	"github.com/dchain-dev/dchain/api"
	"github.com/dchain-dev/dchain/chain"
	"github.com/dchain-dev/dchain/starter"
	"github.com/dchain-dev/dchain/worker"
)

const defaultListen = "127.0.0.1:8080"

func newAPICmd(g *globals) *cobra.Command {
	var listen, metricsListen string
	cmd := &cobra.Command{
		Use:   "api",
		Short: "Serve the webhook receiver (/webhooks/<source>) and the HTTP API (/api/v1, /healthz, /readyz, /metrics)",
		Long: "api serves plain HTTP: webhook secrets and the API token travel in its requests, so anything beyond\n" +
			"this host must reach it through a TLS-terminating proxy or Ingress (README: Deploy).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := g.load()
			if err != nil {
				return err
			}
			ln, err := listenAPI(l, listen)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			metrics, err := g.metrics(ctx, l.Config, metricsListen)
			if err != nil {
				ln.Close()
				return err
			}
			defer metrics.Close()
			tracing, err := worker.StartTracing(ctx)
			if err != nil {
				ln.Close()
				return err
			}
			defer tracing.Close()
			c, err := g.dialWith(ctx, metrics, tracing)
			if err != nil {
				ln.Close()
				return err
			}
			defer c.Close()
			return serveAPI(ctx, c, l, g, ln, metrics.Registry, tracing, nil)
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "", "host:port (default: api.listen of the config, else "+defaultListen+")")
	cmd.Flags().StringVar(&metricsListen, "metrics-listen", envOr("DCHAIN_METRICS_LISTEN", ""), "also serve the metrics at http://HOST:PORT/metrics (they are always at /metrics of the API)")
	return cmd
}

// listenAPI binds the API's address (--listen, else api.listen of the
// config, else the default), so a taken port fails before anything starts.
func listenAPI(l *chain.Loaded, listen string) (net.Listener, error) {
	if listen == "" {
		listen = l.Config.API.Listen
	}
	if listen == "" {
		listen = defaultListen
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("api: %w (set --listen or api.listen)", err)
	}
	return ln, nil
}

// serveAPI serves the API on ln until ctx ends.
// changed, if set, signals a change of the config files (dchain dev
// watches them); SIGHUP always reloads.
func serveAPI(ctx context.Context, c client.Client, l *chain.Loaded, g *globals, ln net.Listener, reg *prometheus.Registry, tracing *worker.Tracing, changed <-chan struct{}) error {
	s, err := api.NewServer(&starter.Starter{Client: c, Config: l, TaskQueue: g.taskQueue}, l, g.namespace(), reg)
	if err != nil {
		ln.Close()
		return err
	}
	// SIGHUP swaps in a server for the config as it is now (sources,
	// secrets, chains); a config that does not load keeps the old one.
	var current atomic.Pointer[http.Handler]
	h := http.Handler(s.Handler())
	current.Store(&h)
	go reloadOnHUP(ctx, func() error {
		l, err := g.load()
		if err != nil {
			return err
		}
		next, err := s.WithConfig(l)
		if err != nil {
			return err
		}
		h := http.Handler(next.Handler())
		current.Store(&h)
		s = next
		return nil
	}, changed)
	srv := api.NewHTTPServer(tracing.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { (*current.Load()).ServeHTTP(w, r) })),
		api.DefaultTimeouts)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	fmt.Printf("dchain api on http://%s (webhooks at /webhooks/<source>, API at /api/v1)\n", ln.Addr())
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	}
}

func newWebhookCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "webhook", Short: "Check a webhook setup"}
	var source, file, url string
	test := &cobra.Command{
		Use:   "test --source NAME --file PAYLOAD.json",
		Short: "Send a delivery signed with the source's secret to a running `dchain api`, and print the answer",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if source == "" || file == "" {
				return errors.New("--source and --file are required")
			}
			cfg, err := chain.ReadConfig(g.config)
			if err != nil {
				return err
			}
			var src *chain.Source
			for i := range cfg.Sources {
				if cfg.Sources[i].Name == source {
					src = &cfg.Sources[i]
				}
			}
			if src == nil {
				return fmt.Errorf("--source %q is not in %s", source, cfg.Path)
			}
			secret, err := src.Secret.Resolve()
			if err != nil {
				return err
			}
			body, err := os.ReadFile(file)
			if err != nil {
				return err
			}
			h, err := starter.SignedHeaders(src.Provider, secret, body, time.Now())
			if err != nil {
				return err
			}
			if url == "" {
				listen := cfg.API.Listen
				if listen == "" {
					listen = defaultListen
				}
				url = "http://" + listen
			}
			req, err := http.NewRequestWithContext(cmd.Context(), http.MethodPost, url+"/webhooks/"+source, bytes.NewReader(body))
			if err != nil {
				return err
			}
			req.Header = h
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return fmt.Errorf("is `dchain api` (or `dchain dev`) running at %s? %w", url, err)
			}
			defer resp.Body.Close()
			out, _ := io.ReadAll(resp.Body)
			fmt.Printf("HTTP %d\n%s", resp.StatusCode, out)
			if resp.StatusCode >= 300 {
				return &exitError{code: 1}
			}
			return nil
		},
	}
	test.Flags().StringVar(&source, "source", "", "webhook source name (sources in the config)")
	test.Flags().StringVar(&file, "file", "", "payload file in the provider's format")
	test.Flags().StringVar(&url, "url", "", "API base URL (default: http://<api.listen>)")
	cmd.AddCommand(test)
	return cmd
}
