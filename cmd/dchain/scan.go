package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/dchain-dev/dchain/activities"
	"github.com/dchain-dev/dchain/chain"
	"github.com/dchain-dev/dchain/workflows"
)

func newScanCmd(g *globals) *cobra.Command {
	var registry, output string
	var exitCode int
	var severities []string
	cmd := &cobra.Command{
		Use:   "scan NAMESPACE/REPO:TAG [--exit-code N [--severity CRITICAL,HIGH]]",
		Short: "Scan an image now (as a recorded workflow) and print the summary; -o json prints the full report",
		Args:  cobra.ExactArgs(1),
		RunE: g.withClient(func(cmd *cobra.Command, c client.Client, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			sevs, err := parseSeverities(severities)
			if err != nil {
				return err
			}
			reg, repo, tag, err := g.scanTarget(registry, args[0])
			if err != nil {
				return err
			}
			id := fmt.Sprintf("scan:%s:%s:%d", repo, tag, time.Now().UnixNano())
			run, err := c.ExecuteWorkflow(cmd.Context(), client.StartWorkflowOptions{ID: id, TaskQueue: g.taskQueue,
				StaticSummary: "scan " + repo + ":" + tag + " in " + reg.Name},
				workflows.WorkflowScanImage, workflows.ScanImageRequest{Registry: reg, Repository: repo, Tag: tag, TaskQueue: g.taskQueue})
			if err != nil {
				return err
			}
			var sum workflows.ScanSummary
			if err := run.Get(cmd.Context(), &sum); err != nil {
				return fmt.Errorf("scan %s: %w", id, err)
			}
			if output == "json" {
				r, err := (&activities.Activities{}).ReadScanReport(cmd.Context(), reg, sum.Report)
				if err != nil {
					return err
				}
				if err := printJSON(os.Stdout, r); err != nil {
					return err
				}
			} else {
				fmt.Printf("Scan:     %s\n", id)
				printScanSummary(sum)
			}
			// Like trivy: a non-zero exit when findings of the given severities exist.
			for _, sev := range sevs {
				if exitCode != 0 && sum.Counts[sev] > 0 {
					return &exitError{code: exitCode}
				}
			}
			return nil
		}),
	}
	cmd.Flags().IntVar(&exitCode, "exit-code", 0, "exit with this code when findings of --severity exist (like trivy; 0: always 0)")
	cmd.Flags().StringSliceVar(&severities, "severity", chain.Severities, "severities --exit-code counts (CRITICAL,HIGH,MEDIUM,LOW,UNKNOWN; any case)")
	cmd.Flags().StringVar(&registry, "registry", "", "registry of the image (default: the first registry of the config)")
	outputFlag(cmd, &output)
	cmd.AddCommand(scanReportCmd(g), scanScheduleCmd(g))
	return cmd
}

// scanTarget resolves --registry and NAMESPACE/REPO:TAG against the config.
func (g *globals) scanTarget(registry, image string) (chain.Registry, string, string, error) {
	cfg, err := chain.ReadConfig(g.config)
	if err != nil {
		return chain.Registry{}, "", "", err
	}
	if registry == "" {
		registry = cfg.Registries[0].Name
	}
	reg, ok := cfg.Registry(registry)
	if !ok {
		return reg, "", "", fmt.Errorf("--registry %q is not in %s", registry, cfg.Path)
	}
	if image == "" {
		return reg, "", "", nil
	}
	repo, tag, err := chain.ParseImage("image", image)
	return reg, repo, tag, err
}

func printScanSummary(sum workflows.ScanSummary) {
	var db string
	switch {
	case sum.DB.Offline != "":
		db = fmt.Sprintf("offline copy in %s on the worker (updated %s; the worker never downloads it)", sum.DB.Offline, sum.DB.UpdatedAt.Local().Format(time.DateTime))
	case sum.DB.Server != "":
		db = "trivy server " + sum.DB.Server
	default:
		db = sum.DB.Repository
	}
	if sum.DB.Demo && (sum.DB.Offline != "" || sum.DB.Server == "") {
		db += " — DEMO DATA, not a real vulnerability feed"
	}
	fmt.Printf("Image:    %s\nDB:       %s\nReport:   %s\n", sum.Digest, db, sum.Report)
	if sum.Reused {
		fmt.Printf("Reused:   the report of %s (this image was scanned against the same DB)\n", sum.ScannedAt.Local().Format(time.DateTime))
	}
	var parts []string
	for _, s := range chain.Severities {
		parts = append(parts, fmt.Sprintf("%s %d", s, sum.Counts[s]))
	}
	fmt.Printf("Findings: %d (%s)\n", sum.Total, strings.Join(parts, ", "))
	for _, l := range workflows.InventoryLines(sum.Inventory) {
		fmt.Printf("Analysed: %s\n", l)
	}
	if len(sum.New) > 0 {
		fmt.Printf("New:      %s\n", strings.Join(sum.New, ", "))
	}
	if len(sum.Top) > 0 {
		fmt.Println()
		printFindings(sum.Top)
	}
}

func printFindings(fs []chain.Finding) {
	var rows [][]string
	for _, f := range fs {
		rows = append(rows, []string{f.Severity, f.ID, f.Package, f.InstalledVersion, orNone(f.FixedVersion), f.Platform, f.Title})
	}
	table(os.Stdout, "SEVERITY\tID\tPACKAGE\tINSTALLED\tFIXED IN\tPLATFORM\tTITLE", rows)
}

func orNone(s string) string {
	if s == "" {
		return "(no fix)"
	}
	return s
}

func scanReportCmd(g *globals) *cobra.Command {
	var registry, output string
	cmd := &cobra.Command{
		Use:   "report NAMESPACE/REPO:TAG",
		Short: "Print the newest scan report attached to an image (found through the registry's referrers)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			reg, repo, tag, err := g.scanTarget(registry, args[0])
			if err != nil {
				return err
			}
			a := &activities.Activities{}
			info, err := a.ResolveImage(cmd.Context(), workflows.ResolveImageInput{Registry: reg, Image: workflows.ImageRef{Registry: reg.Name, Repository: repo, Tag: tag}})
			if err != nil {
				return err
			}
			ds, err := a.ScanReports(cmd.Context(), reg, repo, info.Digest)
			if err != nil {
				return err
			}
			if len(ds) == 0 {
				return fmt.Errorf("%s:%s (%s) has no scan report; run `dchain scan %s`", repo, tag, info.Digest, args[0])
			}
			r, err := a.ReadScanReport(cmd.Context(), reg, reg.Address+"/"+repo+"@"+ds[0].Digest.String())
			if err != nil {
				return err
			}
			if output == "json" {
				return printJSON(os.Stdout, r)
			}
			fmt.Printf("Image:    %s\nScanned:  %s (%d reports in all)\n", r.Image, r.ScannedAt.Local().Format(time.DateTime), len(ds))
			if r.DB.Demo {
				fmt.Println("DB:       DEMO DATA, not a real vulnerability feed")
			}
			for _, l := range workflows.InventoryLines(r.Inventory) {
				fmt.Printf("Analysed: %s\n", l)
			}
			fmt.Println()
			chain.SortFindings(r.Findings) // the order of `dchain scan` and `run show`
			printFindings(r.Findings)
			return nil
		},
	}
	cmd.Flags().StringVar(&registry, "registry", "", "registry of the image (default: the first registry of the config)")
	outputFlag(cmd, &output)
	return cmd
}

func scanScheduleCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "schedule", Short: "Periodic re-scans of a repository's tags (Temporal Schedules)"}
	var registry, repo, cron, id string
	create := &cobra.Command{
		Use:   "create --repository NAMESPACE/REPO --cron SPEC",
		Short: "Re-scan every tag of a repository on a cron schedule; each run records new findings",
		Args:  cobra.NoArgs,
		RunE: g.withClient(func(cmd *cobra.Command, c client.Client, _ []string) error {
			if repo == "" || cron == "" {
				return errors.New("--repository and --cron are required")
			}
			reg, _, _, err := g.scanTarget(registry, "")
			if err != nil {
				return err
			}
			if id == "" {
				id = "scan:" + reg.Name + ":" + repo
			}
			_, err = c.ScheduleClient().Create(cmd.Context(), client.ScheduleOptions{
				ID:   id,
				Spec: client.ScheduleSpec{CronExpressions: []string{cron}},
				// The server keeps a cron as calendars; the memo keeps it as written.
				Memo: map[string]any{workflows.MemoCron: cron},
				Action: &client.ScheduleWorkflowAction{
					ID: id, Workflow: workflows.WorkflowScanRepository, TaskQueue: g.taskQueue,
					Args: []any{workflows.ScanRepositoryRequest{Registry: reg, Repository: repo, TaskQueue: g.taskQueue}},
				},
			})
			if err != nil {
				return fmt.Errorf("create schedule %s: %w", id, err)
			}
			fmt.Printf("schedule %s: scans every tag of %s in %s on %q\n", id, repo, reg.Name, cron)
			return nil
		}),
	}
	create.Flags().StringVar(&registry, "registry", "", "registry of the repository (default: the first registry of the config)")
	create.Flags().StringVar(&repo, "repository", "", "namespace/repository to re-scan")
	create.Flags().StringVar(&cron, "cron", "", `cron spec, e.g. "0 3 * * *" (daily at 03:00 UTC)`)
	create.Flags().StringVar(&id, "id", "", "schedule id (default scan:<registry>:<repository>)")
	var output string
	list := &cobra.Command{
		Use:   "list",
		Short: "List scan schedules",
		Args:  cobra.NoArgs,
		RunE: g.withClient(func(cmd *cobra.Command, c client.Client, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			rows, err := listSchedules(cmd.Context(), c)
			if err != nil {
				return err
			}
			if output == "json" {
				return printJSON(os.Stdout, rows)
			}
			var out [][]string
			for _, r := range rows {
				out = append(out, []string{r.ID, r.Spec, r.Next, fmt.Sprint(r.Paused)})
			}
			table(os.Stdout, "SCHEDULE\tSPEC\tNEXT RUN\tPAUSED", out)
			return nil
		}),
	}
	outputFlag(list, &output)
	del := &cobra.Command{
		Use:   "delete SCHEDULE-ID",
		Short: "Delete a scan schedule",
		Args:  cobra.ExactArgs(1),
		RunE: g.withClient(func(cmd *cobra.Command, c client.Client, args []string) error {
			if err := c.ScheduleClient().GetHandle(cmd.Context(), args[0]).Delete(cmd.Context()); err != nil {
				return fmt.Errorf("delete schedule %s: %w", args[0], err)
			}
			fmt.Printf("deleted schedule %s\n", args[0])
			return nil
		}),
	}
	cmd.AddCommand(create, list, del)
	return cmd
}

type scheduleRow struct {
	ID     string `json:"id"`
	Spec   string `json:"spec"`
	Next   string `json:"nextRun"`
	Paused bool   `json:"paused"`
}

// listSchedules lists the schedules of dchain's repository scans.
func listSchedules(ctx context.Context, c client.Client) ([]scheduleRow, error) {
	it, err := c.ScheduleClient().List(ctx, client.ScheduleListOptions{})
	if err != nil {
		return nil, err
	}
	var rows []scheduleRow
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			return nil, err
		}
		if e.WorkflowType.Name != workflows.WorkflowScanRepository {
			continue
		}
		r := scheduleRow{ID: e.ID, Paused: e.Paused}
		if p, ok := e.Memo.GetFields()[workflows.MemoCron]; ok {
			_ = converter.GetDefaultDataConverter().FromPayload(p, &r.Spec)
		}
		switch {
		case r.Spec != "":
		case e.Spec != nil && len(e.Spec.CronExpressions) > 0:
			r.Spec = strings.Join(e.Spec.CronExpressions, "; ")
		case e.Spec != nil && len(e.Spec.Calendars) > 0:
			r.Spec = fmt.Sprintf("%d calendar specs", len(e.Spec.Calendars))
		}
		if len(e.NextActionTimes) > 0 {
			r.Next = e.NextActionTimes[0].Local().Format(time.DateTime)
		}
		rows = append(rows, r)
	}
	return rows, nil
}

// parseSeverities checks --severity: Trivy's levels, in any case.
func parseSeverities(in []string) ([]string, error) {
	var out []string
	for _, s := range in {
		i := slices.IndexFunc(chain.Severities, func(k string) bool { return strings.EqualFold(k, strings.TrimSpace(s)) })
		if i < 0 {
			return nil, fmt.Errorf("--severity: %q is not a severity: one of %v", s, chain.Severities)
		}
		out = append(out, chain.Severities[i])
	}
	return out, nil
}
