//go:build !dchain_client

package main

import "github.com/spf13/cobra"

// serverCommands are dev and worker themselves: this is dchain-server.
func serverCommands(g *globals) []*cobra.Command {
	return []*cobra.Command{newDevCmd(g), newWorkerCmd(g)}
}

// handOver has nothing to hand over in dchain-server: it runs every command.
func handOver(*cobra.Command, []string) error { return nil }

// kmsHandOver has nothing to hand over: dchain-server has the KMS providers.
func kmsHandOver() error { return nil }
