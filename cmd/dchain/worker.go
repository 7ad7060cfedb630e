//go:build !dchain_client

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"

	"github.com/dchain-dev/dchain/activities"
	"github.com/dchain-dev/dchain/activities/buildkit"
	"github.com/dchain-dev/dchain/chain"
	"github.com/dchain-dev/dchain/scanner"
	"github.com/dchain-dev/dchain/worker"
)

func newWorkerCmd(g *globals) *cobra.Command {
	var regions []string
	var buildkitAddr, workDir, metricsListen string
	var noScan, register, chainsOnly bool
	var trivy scanner.Options
	var conc worker.Concurrency
	var stall time.Duration
	cmd := &cobra.Command{
		Use:   "worker",
		Short: serverRoles["worker"],
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := chain.ReadConfig(g.config)
			if err != nil {
				return err
			}
			o := worker.Options{TaskQueue: g.taskQueue, Regions: regions, Chains: len(regions) == 0, WorkDir: workDir,
				Activities: &activities.Activities{StallTimeout: stall}, Concurrency: conc}
			if stall < time.Second {
				return fmt.Errorf("--stall-timeout %s: want at least 1s", stall)
			}
			if buildkitAddr != "" {
				o.Activities.Builder = &buildkit.Builder{Addr: buildkitAddr}
			}
			o.Activities.SetRegistries(cfg.Registries)
			for _, r := range regions {
				if _, ok := cfg.Registry(r); !ok {
					return fmt.Errorf("--region %q: no such registry in %s", r, cfg.Path)
				}
			}
			for flag, n := range map[string]int{"--max-concurrent-activities": conc.ChainActivities,
				"--max-concurrent-workflow-tasks": conc.WorkflowTasks, "--max-concurrent-copies": conc.Copies,
				"--workflow-task-pollers": conc.WorkflowPollers, "--activity-task-pollers": conc.ActivityPollers} {
				if n < 1 {
					return fmt.Errorf("%s %d: want at least 1", flag, n)
				}
			}
			if conc.Builds < 0 {
				return fmt.Errorf("--max-concurrent-builds %d: want 0 (no bound) or more", conc.Builds)
			}
			if chainsOnly && len(regions) > 0 {
				return fmt.Errorf("--chains-only and --region exclude each other: run one worker for the chain queue and one per region")
			}
			if o.Chains && !chainsOnly {
				for _, r := range cfg.Registries {
					o.Regions = append(o.Regions, r.Name)
				}
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if o.Chains && !noScan {
				s, err := scanner.New(ctx, trivy)
				if err != nil {
					return err
				}
				o.Activities.Scanner = s
				go keepDBFresh(ctx, s)
			}
			metrics, err := g.metrics(ctx, cfg, metricsListen)
			if err != nil {
				return err
			}
			defer metrics.Close()
			tracing, err := worker.StartTracing(ctx)
			if err != nil {
				return err
			}
			defer tracing.Close()
			o.Activities.Trace = tracing.Transport
			c, err := g.dialWith(ctx, metrics, tracing)
			if err != nil {
				return err
			}
			defer c.Close()
			if err := searchAttributes(ctx, cmd.OutOrStdout(), c, g.namespace(), register); err != nil {
				return err
			}
			metrics.SetHealth(workerHealth(c, o.Activities, cfg, o.Regions))
			fmt.Printf("worker serving task queue %s (chains: %v) and replication into %v\n", o.TaskQueue, o.Chains, o.Regions)
			go reloadOnHUP(ctx, func() error { return reloadWorker(ctx, g, c, o, metrics) })
			return worker.Run(ctx, c, o)
		},
	}
	cmd.Flags().StringVar(&workDir, "work-dir", envOr("DCHAIN_WORK_DIR", ""), "temporary work (source checkouts); what a killed worker left there is removed at start (default: <temp dir>/dchain-work)")
	cmd.Flags().BoolVar(&register, "register-search-attributes", false, "add dchain's search attributes to the namespace when missing (else a worker refuses to start without them; see `dchain setup`)")
	cmd.Flags().StringVar(&metricsListen, "metrics-listen", envOr("DCHAIN_METRICS_LISTEN", ""), "serve Prometheus metrics (the SDK's and dchain's) at http://HOST:PORT/metrics, and /healthz: 200 when Temporal and the registries this worker copies into answer, else 503 saying which")
	cmd.Flags().IntVar(&conc.ChainActivities, "max-concurrent-activities", worker.DefaultConcurrency.ChainActivities, "on the chain queue: builds, scans, resolves and triggers at once")
	cmd.Flags().IntVar(&conc.WorkflowTasks, "max-concurrent-workflow-tasks", worker.DefaultConcurrency.WorkflowTasks, "on the chain queue: workflow tasks at once")
	cmd.Flags().IntVar(&conc.Builds, "max-concurrent-builds", 0, "builds solving at once, more wait their turn (0: no bound); set it where buildkitd shares this worker's cores: a burst of builds solving at once starves the runs' workflow tasks")
	cmd.Flags().IntVar(&conc.Copies, "max-concurrent-copies", worker.DefaultConcurrency.Copies, "copies at once into each region this worker serves (each streams several blobs at once)")
	cmd.Flags().IntVar(&conc.WorkflowPollers, "workflow-task-pollers", worker.DefaultConcurrency.WorkflowPollers, "long polls for workflow tasks kept open on the chain queue")
	cmd.Flags().IntVar(&conc.ActivityPollers, "activity-task-pollers", worker.DefaultConcurrency.ActivityPollers, "long polls for activity tasks kept open on each queue")
	cmd.Flags().DurationVar(&stall, "stall-timeout", activities.DefaultStallTimeout, "a copy that moves no bytes for this long ends its attempt, to be retried")
	cmd.Flags().BoolVar(&chainsOnly, "chains-only", false, "serve only the chain queue (runs, builds, scans, triggers); replication is left to `worker --region` processes")
	cmd.Flags().StringSliceVar(&regions, "region", nil, "serve only replication into this registry (repeatable)")
	cmd.Flags().BoolVar(&noScan, "no-scan", false, "do not scan (no vulnerability DB is loaded)")
	cmd.Flags().StringVar(&trivy.CacheDir, "trivy-cache-dir", envOr("DCHAIN_TRIVY_CACHE_DIR", ""), "Trivy DB and layer cache (default: the user cache dir)")
	cmd.Flags().StringVar(&trivy.DBRepository, "trivy-db-repository", envOr("DCHAIN_TRIVY_DB_REPOSITORY", scanner.DefaultDBRepository), "OCI repository of the vulnerability DB")
	cmd.Flags().BoolVar(&trivy.InsecureDB, "trivy-db-insecure", false, "the DB repository is served over plain HTTP")
	cmd.Flags().BoolVar(&trivy.Offline, "trivy-offline", false, "never download the DB: use the one in the cache dir")
	cmd.Flags().StringVar(&trivy.ServerAddr, "trivy-server", envOr("DCHAIN_TRIVY_SERVER", ""), "scan through this `trivy server` (client/server mode)")
	cmd.Flags().StringVar(&buildkitAddr, "buildkit-addr", envOr("BUILDKIT_HOST", ""), "buildkitd address for the build stage, e.g. unix:///run/buildkit/buildkitd.sock (env BUILDKIT_HOST)")
	return cmd
}

// keepDBFresh checks for a newer vulnerability DB every hour; scans running
// during a swap finish on the old one.
func keepDBFresh(ctx context.Context, s *scanner.Scanner) {
	every(ctx, time.Hour, func() {
		if err := s.Update(ctx); err != nil {
			slog.Error("vulnerability DB update failed", "error", err)
		}
	})
}

// searchAttributes refuses a namespace without dchain's search attributes,
// or with register adds them and says so.
func searchAttributes(ctx context.Context, out io.Writer, c client.Client, namespace string, register bool) error {
	if !register {
		return worker.CheckSearchAttributes(ctx, c, namespace)
	}
	added, err := worker.RegisterSearchAttributes(ctx, c, namespace)
	if len(added) > 0 {
		fmt.Fprintf(out, "namespace %s: registered search attributes %s\n", namespace, strings.Join(added, ", "))
	}
	return err
}

// workerHealth is what /healthz of a worker checks: Temporal answers, and
// every registry whose copies it serves answers its API root.
func workerHealth(c client.Client, a *activities.Activities, cfg *chain.Config, regions []string) func(context.Context) error {
	return func(ctx context.Context) error {
		if _, err := c.CheckHealth(ctx, &client.CheckHealthRequest{}); err != nil {
			return fmt.Errorf("temporal: %w", err)
		}
		var errs []error
		for _, r := range regions {
			if reg, ok := cfg.Registry(r); ok {
				errs = append(errs, a.Reachable(ctx, reg))
			}
		}
		return errors.Join(errs...)
	}
}

// reloadWorker reads the config again (SIGHUP): the registries BuildKit
// signs in to and the metrics' label bounds follow it (the sync schedules
// are `dchain setup`'s). Runs carry their own snapshot of the config, so
// runs under way are not affected; the queues a worker serves are fixed.
func reloadWorker(ctx context.Context, g *globals, c client.Client, o worker.Options, m *worker.Metrics) error {
	l, err := g.load()
	if err != nil {
		return err
	}
	o.Activities.SetRegistries(l.Config.Registries)
	m.SetBounds(l)
	return nil
}
