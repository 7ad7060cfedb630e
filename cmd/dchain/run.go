package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"

	"github.com/dchain-dev/dchain/activities"
	"github.com/dchain-dev/dchain/chain"
	"github.com/dchain-dev/dchain/runs"
	"github.com/dchain-dev/dchain/starter"
	"github.com/dchain-dev/dchain/workflows"
)

func newRunCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "run", Short: "Start, cancel, approve, re-run, list, show and watch chain runs"}
	cmd.AddCommand(runStartCmd(g), runCancelCmd(g), runDecideCmd(g, true), runDecideCmd(g, false), runRerunCmd(g, false), runRerunCmd(g, true), runListCmd(g), runShowCmd(g), runWatchCmd(g), runLogsCmd(g))
	return cmd
}

func runStartCmd(g *globals) *cobra.Command {
	var chainName, image, ref, commit, rule, output string
	var rerun, watch, asPush bool
	cmd := &cobra.Command{
		Use:   "start --chain NAME (--image NAMESPACE/REPO:TAG | --ref REF [--commit SHA])",
		Short: "Start a chain run: for an image already in the source registry, or a build of a source ref",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if chainName == "" || (image == "") == (ref == "") {
				return errors.New("--chain and exactly one of --image or --ref are required")
			}
			if err := checkOutput(output); err != nil {
				return err
			}
			if image != "" && (commit != "" || asPush) {
				return errors.New("--commit and --as-push only apply with --ref")
			}
			// Flags are checked before anything else happens.
			var repo, tag string
			var push starter.PushRequest
			var err error
			if image != "" {
				repo, tag, err = chain.ParseImage("--image", image)
			} else {
				push, err = starter.ParsePushFields("--ref", ref, "--commit", commit)
				if err == nil && rule != "" {
					push.Rule, err = chain.ParseName("--rule", rule)
					push.RuleField = "--rule"
				}
			}
			if err != nil {
				return err
			}
			if image != "" && rule != "" {
				return errors.New("--rule only applies with --ref")
			}
			ctx := cmd.Context()
			s, done, err := g.starter(ctx)
			if err != nil {
				return err
			}
			defer done()
			c := s.Client
			cause := workflows.Cause{Kind: "manual", Actor: actor(), At: time.Now().UTC()}
			var runs []starter.Started
			if image != "" {
				st, err := s.StartImage(ctx, starter.ImageRequest{Chain: chainName, Repository: repo, Tag: tag, Rerun: rerun, Cause: cause})
				if err != nil {
					return err
				}
				runs = append(runs, st)
			} else {
				if asPush {
					cause.Kind = "push"
				}
				push.Chain, push.At, push.Pusher, push.Manual, push.Cause, push.Rerun = chainName, cause.At, cause.Actor, !asPush, cause, rerun
				if runs, err = s.StartPush(ctx, push); err != nil {
					return err
				}
			}
			out := cmd.OutOrStdout()
			for _, st := range runs {
				switch {
				case output == "json":
					if err := json.NewEncoder(out).Encode(st); err != nil {
						return err
					}
				case st.Existing:
					fmt.Fprintf(out, "run %s already exists for this event (run id %s); pass --rerun to run it again\n", st.WorkflowID, st.RunID)
				default:
					fmt.Fprintf(out, "started run %s (run id %s)\n", st.WorkflowID, st.RunID)
				}
			}
			if watch {
				for _, st := range runs {
					if err := watchRun(ctx, c, st.WorkflowID, out, output == "json"); err != nil {
						return err
					}
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&chainName, "chain", "", "chain name")
	cmd.Flags().StringVar(&image, "image", "", "image in the chain's source registry: namespace/repository:tag")
	cmd.Flags().StringVar(&ref, "ref", "", "build the source at this ref: refs/heads/NAME or refs/tags/NAME")
	cmd.Flags().StringVar(&commit, "commit", "", "with --ref: the commit to build (default: what the ref points at now)")
	cmd.Flags().StringVar(&rule, "rule", "", "with --ref: build with this rule only (where several rules of the chain match the ref)")
	cmd.Flags().BoolVar(&asPush, "as-push", false, "with --ref: deliver it as the source push event a webhook would, so push-only rules (regex, build time, commit id) run")
	cmd.Flags().BoolVar(&rerun, "rerun", false, "run again even if this event already had a run")
	cmd.Flags().BoolVar(&watch, "watch", false, "watch the run until it ends (exit code by outcome)")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table, or json (one document per started run, then with --watch one per change of the run)")
	return cmd
}

// actor is who the CLI acts as: $DCHAIN_IDENTITY, else the user name (a
// run's cause, an approval's decider).
func actor() string {
	if id := os.Getenv("DCHAIN_IDENTITY"); id != "" {
		return id
	}
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return "cli"
}

func runCancelCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "cancel RUN-ID",
		Short: "Cancel a run: in-flight copies and deliveries stop, the run ends Canceled",
		Args:  cobra.ExactArgs(1),
		RunE: g.withClient(func(cmd *cobra.Command, c client.Client, args []string) error {
			if err := c.CancelWorkflow(cmd.Context(), args[0], ""); err != nil {
				return fmt.Errorf("cancel %s: %w", args[0], err)
			}
			fmt.Printf("cancellation requested for %s\n", args[0])
			return nil
		}),
	}
}

func runListCmd(g *globals) *cobra.Command {
	var kind, chainName, outcome, repo, tag, output string
	var limit int
	var waiting bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List runs (Temporal visibility, filtered by dchain's search attributes)",
		Args:  cobra.NoArgs,
		RunE: g.withClient(func(cmd *cobra.Command, c client.Client, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			f, err := runs.Filter{Kind: kind, Chain: chainName, Outcome: outcome, Repository: repo, Tag: tag, Waiting: waiting, Limit: limit}.Check(func(f string) string { return "--" + f })
			if err != nil {
				return err
			}
			list, err := runs.List(cmd.Context(), c, f)
			if err != nil {
				return err
			}
			if waiting {
				return printWaiting(cmd.Context(), c, list, output == "json")
			}
			if output == "json" {
				return printJSON(os.Stdout, list)
			}
			var rows [][]string
			for _, r := range list {
				img := r.Repository
				if r.Tag != "" {
					img += ":" + r.Tag
				}
				rows = append(rows, []string{r.WorkflowID, r.Kind, r.Chain, img, r.Outcome, r.Stage, r.Started.Local().Format(time.DateTime)})
			}
			table(os.Stdout, "RUN\tKIND\tCHAIN\tIMAGE\tOUTCOME\tSTAGE\tSTARTED", rows)
			g.printBacklog(cmd.Context(), c)
			return nil
		}),
	}
	cmd.Flags().StringVar(&kind, "kind", "", "only runs of this kind: chain, replication, sync or scan (default: every kind)")
	cmd.Flags().StringVar(&chainName, "chain", "", "only runs of this chain")
	cmd.Flags().StringVar(&outcome, "outcome", "", "only runs with this outcome (Running, Succeeded, Failed, Canceled, Blocked, Rejected; any case)")
	cmd.Flags().StringVar(&repo, "repository", "", "only runs of this repository (namespace/name)")
	cmd.Flags().StringVar(&tag, "tag", "", "only runs of this tag")
	cmd.Flags().IntVar(&limit, "limit", 50, "at most this many runs")
	cmd.Flags().BoolVar(&waiting, "waiting", false, "only chain runs waiting for approval, with who may approve and since when")
	outputFlag(cmd, &output)
	return cmd
}

func runShowCmd(g *globals) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "show RUN-ID",
		Short: "Show a run's stages, destinations and triggers",
		Args:  cobra.ExactArgs(1),
		RunE: g.withClient(func(cmd *cobra.Command, c client.Client, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			st, err := runs.Status(cmd.Context(), c, args[0])
			if err != nil {
				return err
			}
			if output == "json" {
				return printJSON(os.Stdout, st)
			}
			printStatus(cmd.OutOrStdout(), args[0], st)
			printReruns(cmd.Context(), cmd.OutOrStdout(), c, args[0])
			return nil
		}),
	}
	outputFlag(cmd, &output)
	return cmd
}

func runWatchCmd(g *globals) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "watch RUN-ID",
		Short: "Follow a run as it happens (stages, build, scan and copy progress) until it ends; exit code 0 Succeeded, 1 Failed, 3 Canceled, 4 Blocked, 5 Rejected",
		Args:  cobra.ExactArgs(1),
		RunE: g.withClient(func(cmd *cobra.Command, c client.Client, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			return watchRun(cmd.Context(), c, args[0], cmd.OutOrStdout(), output == "json")
		}),
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table, or json (one RunStatus document per change; the last is the result)")
	return cmd
}

func printStatus(w io.Writer, id string, st workflows.RunStatus) {
	fmt.Fprintf(w, "Run:      %s\nChain:    %s\nImage:    %s\n", id, st.Chain, st.Image)
	if len(st.Tags) > 1 {
		fmt.Fprintf(w, "Tags:     %s\n", strings.Join(st.Tags, ", "))
	}
	if st.Commit != "" {
		fmt.Fprintf(w, "Commit:   %s\n", st.Commit)
	}
	if r := st.RerunOf; r != nil {
		fmt.Fprintf(w, "Rerun of: %s (run id %s) from %s", r.Of, r.OfRun, r.From)
		if len(r.Destinations) > 0 {
			fmt.Fprintf(w, ", copying into %s again", strings.Join(r.Destinations, ", "))
		}
		fmt.Fprintln(w)
	}
	if b := st.Build; b != nil {
		if b.ReusedFrom != "" {
			fmt.Fprintf(w, "Build:    reused %s: the rule had built this commit with the same inputs, so nothing was rebuilt; log: dchain run logs %s\n", b.ReusedFrom, id)
		} else {
			fmt.Fprintf(w, "Build:    %d steps, %d cached; log: dchain run logs %s\n", b.Steps, b.Cached, id)
		}
		for _, p := range slices.Sorted(maps.Keys(b.Platforms)) {
			fmt.Fprintf(w, "          %-14s %s\n", p, b.Platforms[p])
		}
	}
	if len(st.Platforms) > 0 {
		fmt.Fprintf(w, "Platforms: %s\n", strings.Join(st.Platforms, ", "))
	}
	if sc := st.Scan; sc != nil && len(sc.Top) > 0 {
		defer func() { fmt.Fprintln(w); printFindings(sc.Top) }()
	}
	if sc := st.Scan; sc != nil {
		var parts []string
		for _, sev := range chain.Severities {
			parts = append(parts, fmt.Sprintf("%s %d", sev, sc.Counts[sev]))
		}
		demo := ""
		if sc.DB.Demo {
			demo = " (DEMO DB)"
		}
		fmt.Fprintf(w, "Scan:     %d findings: %s%s; report %s\n", sc.Total, strings.Join(parts, ", "), demo, sc.Report)
		for _, l := range workflows.InventoryLines(sc.Inventory) {
			fmt.Fprintf(w, "Analysed: %s\n", l)
		}
	}
	if d := st.Decision; d != nil {
		fmt.Fprintf(w, "Policy:   %s\n", strings.Join(d.Reasons, "; "))
		for _, ig := range d.Ignored { // allowlisted, or without a fix under onlyFixed
			fmt.Fprintf(w, "Ignored:  %s\n", ig)
		}
	}
	if b := st.Block; b != nil {
		if len(b.BackedUp) > 0 {
			fmt.Fprintf(w, "Backup:   %s\n", strings.Join(b.BackedUp, ", "))
		}
		if len(b.Deleted) > 0 {
			fmt.Fprintf(w, "Deleted:  %s\n", strings.Join(b.Deleted, ", "))
		}
	}
	printSigning(w, st.Signing)
	if a := st.Accelerated; a != nil {
		fmt.Fprintf(w, "Accelerated: %s\n", a)
		for _, p := range slices.Sorted(maps.Keys(a.Platforms)) {
			fmt.Fprintf(w, "          %-14s %s\n", p, a.Platforms[p])
		}
	}
	printApproval(w, id, st.Approval, "", st.Outcome == workflows.OutcomeRunning)
	fmt.Fprintf(w, "Outcome:  %s", st.Outcome)
	if st.Message != "" {
		fmt.Fprintf(w, " — %s", st.Message)
	}
	fmt.Fprintln(w)
	if !st.EndedAt.IsZero() {
		fmt.Fprintf(w, "Duration: %s\n", st.EndedAt.Sub(st.StartedAt).Round(time.Millisecond))
	}
	fmt.Fprintln(w)
	var rows [][]string
	for _, s := range st.Stages {
		d := ""
		if !s.EndedAt.IsZero() && !s.StartedAt.IsZero() {
			d = s.EndedAt.Sub(s.StartedAt).Round(time.Millisecond).String()
		}
		rows = append(rows, []string{s.Name, string(s.State), d, s.Message})
	}
	table(w, "STAGE\tSTATE\tTOOK\tNOTE", rows)
	printWaves(w, id, st.Waves, st.Outcome == workflows.OutcomeRunning)
	if len(st.Destinations) > 0 {
		fmt.Fprintln(w)
		rows = nil
		for _, d := range st.Destinations {
			took := "" // (a copy still going has taken nothing yet: its progress says how far it is)
			if d.State != workflows.StateRunning && d.State != workflows.StatePending {
				took = d.Duration.Round(time.Millisecond).String()
			}
			reg := d.Registry
			if d.Wave != "" {
				reg += " (" + d.Wave + ")"
			}
			rows = append(rows, []string{reg, d.Region, d.Reference, string(d.State), d.Digest, took,
				copyProgress(d), strconv.Itoa(d.Referrers), destinationNote(d)})
		}
		table(w, "DESTINATION\tREGION\tTARGET\tSTATE\tDIGEST\tTOOK\tBLOBS\tREFERRERS\tNOTE", rows)
	}
	if len(st.Triggers) > 0 {
		fmt.Fprintln(w)
		rows = nil
		for _, t := range st.Triggers {
			name := t.Name
			if t.Wave != "" {
				name += " (after " + t.Wave + ")"
			}
			rows = append(rows, []string{name, string(t.State), fmt.Sprint(t.HTTPStatus), fmt.Sprint(t.Attempts), t.URL, t.Message})
		}
		table(w, "TRIGGER\tSTATE\tHTTP\tATTEMPTS\tURL\tNOTE", rows)
	}
}

// printSigning prints what the sign stage verified and attached: each
// referrer's digest, which `cosign verify` and a cluster's admission
// controller find with the image in every region.
func printSigning(w io.Writer, s *workflows.Signing) {
	if s == nil {
		return
	}
	if v := s.Verification; v != nil {
		if v.Verified {
			fmt.Fprintf(w, "Verified: signature %s by %s", v.Signature, v.SignedBy)
			if v.Provenance != "" {
				fmt.Fprintf(w, "; provenance %s", v.Provenance)
			}
			fmt.Fprintln(w)
		} else {
			fmt.Fprintf(w, "Verified: no — %s\n", v.Reason)
		}
	}
	if x := s.Signed; x != nil && x.Refused != "" {
		fmt.Fprintf(w, "Signed:   no — %s\n", x.Refused)
	} else if x != nil {
		fmt.Fprintf(w, "Signed:   %s with %s\n", x.Signature, x.Key)
		for _, a := range x.Attestations {
			note := ""
			if a.Reused {
				note = " (carried already)"
			}
			platform := a.Platform
			if platform == "" {
				platform = "image"
			}
			fmt.Fprintf(w, "Attested: %-10s %-12s %s%s\n", a.Kind, platform, a.Digest, note)
		}
		for _, m := range x.Missing {
			fmt.Fprintf(w, "Attested: not %s\n", m)
		}
	}
}

// copyProgress says how far a copy came: blobs and bytes, of the total
// while it runs.
func copyProgress(d workflows.DestinationStatus) string {
	switch {
	case d.State == workflows.StateRunning && d.BlobsTotal > 0:
		return fmt.Sprintf("%d of %d copied, %s of %s", d.BlobsCopied, d.BlobsTotal, humanBytes(d.BytesCopied), humanBytes(d.BytesTotal))
	case d.BytesTotal > 0:
		return fmt.Sprintf("%d copied, %d skipped, %s (image %s)", d.BlobsCopied, d.BlobsSkipped, humanBytes(d.BytesCopied), humanBytes(d.BytesTotal))
	}
	return fmt.Sprintf("%d copied, %d skipped, %s", d.BlobsCopied, d.BlobsSkipped, humanBytes(d.BytesCopied))
}

// destinationNote is the destination's message, with the attempt and last
// error while its copy retries.
func destinationNote(d workflows.DestinationStatus) string {
	if v := d.Accelerated; v != nil && d.State == workflows.StateSucceeded {
		n := destinationNoteOf(d)
		return strings.TrimPrefix(n+"; accelerated variant "+v.Digest+" too", "; ")
	}
	return destinationNoteOf(d)
}

// destinationNoteOf is the note of the image's own copy.
func destinationNoteOf(d workflows.DestinationStatus) string {
	note := d.Message
	if d.Attempt > 1 && d.LastError != "" {
		retry := fmt.Sprintf("attempt %d, last error: %s", d.Attempt, d.LastError)
		if note == "" {
			return retry
		}
		return note + "; " + retry
	}
	return note
}

// humanBytes is n in B, KiB, MiB or GiB.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 2; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMG"[exp])
}

func runLogsCmd(g *globals) *cobra.Command {
	var follow bool
	cmd := &cobra.Command{
		Use:   "logs RUN-ID",
		Short: "Print the build log of a run (BuildKit's steps and output), kept as an artifact in the source registry",
		Args:  cobra.ExactArgs(1),
		RunE: g.withClient(func(cmd *cobra.Command, c client.Client, args []string) error {
			printed, missed := 0, 0
			if follow {
				var err error
				if printed, missed, err = followBuild(cmd.Context(), c, args[0], cmd.OutOrStdout(), cmd.ErrOrStderr()); err != nil {
					return err
				}
			}
			st, err := runs.Status(cmd.Context(), c, args[0])
			if err != nil {
				return err
			}
			if st.Build == nil || st.Build.Log == "" {
				return fmt.Errorf("run %s has no build log (it built nothing, or the build has not ended)", args[0])
			}
			l, err := g.load()
			if err != nil {
				return err
			}
			reg, ok := l.Config.Registry(st.Image.Registry)
			if !ok {
				return fmt.Errorf("registry %s of run %s is not in %s", st.Image.Registry, args[0], l.Config.Path)
			}
			b, err := (&activities.Activities{}).ReadBuildLog(cmd.Context(), reg, st.Build.Log)
			if err != nil {
				return err
			}
			if missed > 0 {
				// Lines went by between two heartbeats: the whole log, now kept.
				fmt.Fprintf(cmd.ErrOrStderr(), "(%d lines came too fast to follow; the whole log:)\n", missed)
				printed = 0
			}
			_, err = io.WriteString(cmd.OutOrStdout(), unprinted(string(b), printed))
			return err
		}),
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "while the build runs, print its output as it comes (a few seconds behind: the build's heartbeats carry it) and its progress on stderr; then the rest of the log")
	return cmd
}

// unprinted is log without its first printed lines.
func unprinted(log string, printed int) string {
	for ; printed > 0 && log != ""; printed-- {
		_, log, _ = strings.Cut(log, "\n")
	}
	return log
}

// followBuild prints a running build's output (the lines its heartbeats
// carry) on out and its progress on w until the build stage has ended;
// it returns how many lines of the log it printed, and how many went by
// unseen.
func followBuild(ctx context.Context, c client.Client, id string, out, w io.Writer) (printed, missed int, err error) {
	last := ""
	for {
		st, err := runs.Status(ctx, c, id)
		if err != nil {
			return printed, missed, err
		}
		build := st.Stage(workflows.StageBuild)
		if build == nil || (build.State != workflows.StateRunning && build.State != workflows.StatePending) || st.Outcome != workflows.OutcomeRunning {
			return printed, missed, nil
		}
		if p, ok := runs.BuildProgress(ctx, c, id); ok {
			lines, gone := p.NewLines(printed)
			for _, line := range lines {
				fmt.Fprintln(out, line)
			}
			printed, missed = max(printed, p.Lines), missed+gone
			line := fmt.Sprintf("build: %d of %d steps done (%d cached)", p.Completed, p.Steps, p.Cached)
			if p.Current != "" {
				line += ": " + p.Current
			}
			if line != last {
				fmt.Fprintln(w, line)
				last = line
			}
		}
		select {
		case <-ctx.Done():
			return printed, missed, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// printBacklog says, under a run list, which queues have work waiting for a
// worker (runs not started yet, copies not copying yet): the chain queue
// and, where the config loads, each registry's replication queue.
func (g *globals) printBacklog(ctx context.Context, c client.Client) {
	var regions []string
	if l, _, err := chain.LoadAll(g.config); err == nil {
		for _, r := range l.Config.Registries {
			regions = append(regions, r.Name)
		}
	}
	bs, err := runs.Backlogs(ctx, c, g.namespace(), g.taskQueue, regions)
	if err != nil {
		slog.Debug("no backlog", "error", err)
		return
	}
	for _, b := range bs {
		if b.Tasks > 0 {
			fmt.Println("backlog: " + b.String())
		}
	}
}
