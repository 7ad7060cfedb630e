package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/dchain-dev/dchain/starter"
)

func newReplicateCmd(g *globals) *cobra.Command {
	var to []string
	var overwrite, watch bool
	cmd := &cobra.Command{
		Use:   "replicate REGISTRY/NAMESPACE/REPO(:TAG|@DIGEST) --to REGISTRY[/NAMESPACE/REPO[:TAG]] [--to …]",
		Short: "Copy one image to other registries under names of your choosing, as a recorded, retried run",
		Long: `Copies the image (by tag or digest) from a configured registry to each --to, in parallel,
with the same copy, retries, verification and referrers as a chain's replication, recorded as a
Temporal workflow ("Replicate"). REGISTRY is a registry's name or address from the config; the
target's repository and tag default to the source's. A target tag that points at another digest
is refused before anything is written, unless --overwrite.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(to) == 0 {
				return errors.New("--to: name at least one destination")
			}
			ctx := cmd.Context()
			s, done, err := g.starter(ctx)
			if err != nil {
				return err
			}
			defer done()
			st, err := s.StartReplication(ctx, starter.ReplicationRequest{Source: args[0], To: to, Overwrite: overwrite, SourceField: "image", ToField: "--to"})
			if err != nil {
				return err
			}
			if st.Existing {
				fmt.Printf("the same replication is running: %s (run id %s)\n", st.WorkflowID, st.RunID)
			} else {
				fmt.Printf("started replication %s (run id %s)\n", st.WorkflowID, st.RunID)
			}
			if watch {
				return watchRun(ctx, s.Client, st.WorkflowID, cmd.OutOrStdout(), false)
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&to, "to", nil, "destination REGISTRY[/NAMESPACE/REPO[:TAG]] (repeatable: several copy in parallel)")
	cmd.Flags().BoolVar(&overwrite, "overwrite", false, "replace a destination tag that points at another digest")
	cmd.Flags().BoolVar(&watch, "watch", false, "watch the replication until it ends (exit code by outcome)")
	return cmd
}
