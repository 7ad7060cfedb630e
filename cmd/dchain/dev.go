//go:build !dchain_client

package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/dchain-dev/dchain/chain"
	"github.com/dchain-dev/dchain/devstack"
	"github.com/dchain-dev/dchain/worker"
)

func newDevCmd(g *globals) *cobra.Command {
	o := devstack.Options{}
	var regions []string
	var noUI, noBuildKit, noScan, noAPI, noWorker bool
	var metricsListen string
	var buildAllow, buildDeny []string
	cmd := &cobra.Command{
		Use:   "dev",
		Short: serverRoles["dev"],
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if o.Regions, err = parseRegions(regions); err != nil {
				return err
			}
			if noUI {
				o.UIPort = 0
			}
			o.Namespace, o.TaskQueue = g.namespace(), g.taskQueue
			if !noWorker {
				o.Worker = &worker.Options{Chains: true}
			}
			if o.NoRegistries {
				noBuildKit, noScan = true, true // both need a dev registry
			}
			o.BuildKit, o.Scan = !noBuildKit, !noScan
			if o.BuildNetwork.Allow, o.BuildNetwork.Deny, err = parseBuildNetwork("build-", buildAllow, buildDeny); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			for k, v := range devSecrets {
				if os.Getenv(k) == "" {
					os.Setenv(k, v)
				}
			}
			// The data dir, the API's config and its port are checked before anything starts.
			if o.DataDirLock, err = devstack.LockDataDir(o.DataDir); err != nil {
				return err
			}
			defer o.DataDirLock.Close() // (the stack releases it first when it started)
			var l *chain.Loaded
			var ln net.Listener
			if !noAPI {
				if l, err = g.load(); err != nil {
					return fmt.Errorf("the API needs the config: %w (or pass --no-api)", err)
				}
				if ln, err = listenAPI(l, ""); err != nil {
					return fmt.Errorf("%w (or pass --no-api)", err)
				}
				defer ln.Close()
			}
			metrics, err := g.metrics(ctx, nil, metricsListen)
			if err != nil {
				return err
			}
			defer metrics.Close()
			o.Metrics = metrics.Handler
			if o.Tracing, err = worker.StartTracing(ctx); err != nil {
				return err
			}
			defer o.Tracing.Close()
			s, err := devstack.Start(ctx, o)
			if err != nil {
				return err
			}
			defer s.Stop()
			if l != nil {
				if err := syncSchedules(ctx, s.Client, g); err != nil {
					return err
				}
			}
			if ln != nil {
				s.Endpoints.API = "http://" + ln.Addr().String()
				if err := s.WriteEndpoints(); err != nil {
					return err
				}
				warnRegistryMismatch(l, s.Endpoints)
			}
			printEndpoints(s.Endpoints, g.config)
			apiErr := make(chan error, 1)
			if ln != nil {
				go func() {
					apiErr <- serveAPI(ctx, s.Client, l, g, ln, metrics.Registry, o.Tracing, watchConfig(ctx, g.config, 2*time.Second))
				}()
			}
			select {
			case <-ctx.Done():
				fmt.Println("\nshutting down…")
				return nil
			case err := <-apiErr:
				return fmt.Errorf("api stopped: %w", err)
			}
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.DataDir, "data-dir", "./.dchain", "where runs (SQLite), registry contents and deliveries are kept")
	f.IntVar(&o.TemporalPort, "temporal-port", devstack.DefaultTemporalPort, "Temporal frontend gRPC port")
	f.IntVar(&o.UIPort, "ui-port", devstack.DefaultUIPort, "Temporal Web UI port")
	f.BoolVar(&noUI, "headless", false, "do not serve the Web UI")
	f.BoolVar(&noBuildKit, "no-buildkit", false, "do not start buildkitd (chains with a build section cannot run)")
	f.BoolVar(&noScan, "no-scan", false, "no Trivy scanner (chains with a scan section cannot run)")
	f.BoolVar(&noAPI, "no-api", false, "do not serve the webhook receiver and HTTP API")
	f.StringVar(&metricsListen, "metrics-listen", "", "serve Prometheus metrics (the SDK's and dchain's) at http://HOST:PORT/metrics")
	f.BoolVar(&noWorker, "no-worker", false, "run no worker in this process (run `dchain worker` processes against it)")
	f.BoolVar(&o.NoRegistries, "no-registries", false, "start no dev registry (implies --no-buildkit --no-scan; use your own registries)")
	f.BoolVar(&o.NoReceiver, "no-receiver", false, "start no trigger receiver")
	f.IntVar(&o.ReceiverPort, "receiver-port", devstack.DefaultReceiverPort, "trigger receiver port")
	f.StringSliceVar(&buildAllow, "build-allow", nil, "a destination builds may reach although it is private (an internal package mirror): IP or CIDR, optionally :PORT (repeatable)")
	f.StringSliceVar(&buildDeny, "build-deny", nil, "a destination builds may not reach, besides the host and the private ranges: IP or CIDR (repeatable)")
	f.StringSliceVar(&regions, "region", nil, "a regional registry as NAME=PORT (repeatable; default hangzhou=5001,frankfurt=5002,virginia=5003)")
	cmd.AddCommand(newDevSeedCmd())
	return cmd
}

// devSecrets are the dev stack's default secrets, set when the environment has none.
var devSecrets = map[string]string{
	"DCHAIN_API_TOKEN":            "dchain-dev-token",
	"DCHAIN_DEMO_WEBHOOK_SECRET":  "dchain-dev-webhook-secret",
	"DCHAIN_DEMO_REGISTRY_SECRET": "dchain-dev-registry-secret",
}

func parseRegions(specs []string) ([]devstack.Region, error) {
	var out []devstack.Region
	for _, s := range specs {
		n, p, ok := strings.Cut(s, "=")
		port, err := strconv.Atoi(p)
		if !ok || n == "" || err != nil || port <= 0 || port > 65535 {
			return nil, fmt.Errorf("--region %q: want NAME=PORT, e.g. hangzhou=5001", s)
		}
		out = append(out, devstack.Region{Name: n, Port: port})
	}
	return out, nil
}

func printEndpoints(e devstack.Endpoints, config string) {
	fmt.Println("dchain dev stack is up (Ctrl-C stops it; data in " + e.DataDir + ")")
	fmt.Println()
	if e.UI != "" {
		fmt.Printf("  Temporal Web UI   %s/namespaces/%s/workflows\n", e.UI, e.Namespace)
	}
	fmt.Printf("  Temporal          %s (namespace %s)\n", e.Temporal, e.Namespace)
	for name, addr := range e.Registries {
		fmt.Printf("  registry %-9s http://%s\n", name, addr)
	}
	if e.Receiver != "" {
		fmt.Printf("  trigger receiver  %s (GET /deliveries)\n", e.Receiver)
	}
	if e.BuildKit != "" {
		fmt.Printf("  buildkitd         %s\n", e.BuildKit)
		fmt.Printf("  build network     %s (RUN steps: the internet; not this host, not a private range)\n", e.BuildNetwork)
		fmt.Printf("  base image        %s (FROM this; offline busybox)\n", e.BaseImage)
		fmt.Printf("  sample app repo   %s/git/sample-app (branches main, release-v1 clean, release-v2 vulnerable)\n", e.DataDir)
	}
	if e.TrivyDB != "" {
		fmt.Printf("  vulnerability DB  %s (DEMO DATA built from fixture advisories)\n", e.TrivyDB)
	}
	if e.API != "" {
		fmt.Printf("  webhooks + API    %s (/webhooks/<source>, /api/v1)\n", e.API)
	}
	fmt.Printf("  endpoints         %s/endpoints.json\n", e.DataDir)
	fmt.Println()
	// The hints name what is not the default, so they work as printed.
	flags := "--config " + config
	if e.Temporal != fmt.Sprintf("127.0.0.1:%d", devstack.DefaultTemporalPort) {
		flags += " --address " + e.Temporal
	}
	seed := ""
	if e.DataDir != "./.dchain" && e.DataDir != ".dchain" {
		seed = " --data-dir " + e.DataDir
	}
	fmt.Println("Start a run:")
	fmt.Printf("  dchain %s run start --chain demo --ref refs/heads/release-v1 --as-push --watch   # build → replicate → trigger\n", flags)
	fmt.Printf("  dchain dev seed%s --image demo/app:v1\n", seed)
	fmt.Printf("  dchain %s run start --chain demo --image demo/app:v1 --watch                    # an image pushed from elsewhere\n", flags)
}

// warnRegistryMismatch warns when the config names a dev registry at
// another address than the one the stack serves it at (after --region).
func warnRegistryMismatch(l *chain.Loaded, e devstack.Endpoints) {
	for name, addr := range e.Registries {
		if r, ok := l.Config.Registry(name); ok && r.Address != addr {
			slog.Warn("the config names a dev registry at another address: runs will not reach it",
				"registry", name, "config", r.Address, "dev", addr, "file", l.Config.Path)
		}
	}
}

func newDevSeedCmd() *cobra.Command {
	var dataDir, registry, image string
	cmd := &cobra.Command{
		Use:   "seed",
		Short: "Push the sample multi-arch image (linux/amd64 + linux/arm64, 3 layers each) into a dev registry",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			e, err := devstack.ReadEndpoints(dataDir)
			if err != nil {
				return err
			}
			addr, ok := e.Registries[registry]
			if !ok {
				return fmt.Errorf("--registry %q: the dev stack has %v", registry, e.Registries)
			}
			i := strings.LastIndex(image, ":")
			if i < 0 {
				return fmt.Errorf("--image %q: want namespace/repository:tag", image)
			}
			d, err := devstack.PushSample(context.Background(), addr, image[:i], image[i+1:])
			if err != nil {
				return err
			}
			fmt.Printf("pushed %s/%s@%s\n", addr, image, d)
			return nil
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", "./.dchain", "the running dev stack's data dir")
	cmd.Flags().StringVar(&registry, "registry", "hangzhou", "dev registry to push to")
	cmd.Flags().StringVar(&image, "image", "demo/app:v1", "namespace/repository:tag to push")
	return cmd
}

// watchConfig signals when the config file or a chain file it names
// changes (size, modification time, added or removed), checking every
// interval, until ctx ends. The in-process worker is not reloaded (runs
// carry a snapshot of their chain); the API is.
func watchConfig(ctx context.Context, config string, interval time.Duration) <-chan struct{} {
	changed := make(chan struct{}, 1)
	last := configFingerprint(config)
	go every(ctx, interval, func() {
		if now := configFingerprint(config); now != last {
			last = now
			select {
			case changed <- struct{}{}:
			default:
			}
		}
	})
	return changed
}

// configFingerprint names the config file and its chain files with their
// sizes and modification times.
func configFingerprint(config string) string {
	files := []string{config}
	if cfg, err := chain.ReadConfig(config); err == nil {
		if more, err := cfg.ChainFiles(); err == nil {
			files = append(files, more...)
		}
	}
	var b strings.Builder
	for _, f := range files {
		if fi, err := os.Stat(f); err == nil {
			fmt.Fprintf(&b, "%s %d %d\n", f, fi.Size(), fi.ModTime().UnixNano())
		}
	}
	return b.String()
}
