//go:build dchain_client

package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"syscall"

	"github.com/spf13/cobra"
)

// serverName is the server build's file name, looked for beside dchain.
const serverName = "dchain-server"

// serverCommands stand in for dev and worker in the client build: they
// list them in the help, and hand the command line over to dchain-server.
func serverCommands(*globals) []*cobra.Command {
	var out []*cobra.Command
	for use, short := range serverRoles {
		out = append(out, &cobra.Command{
			Use: use, Short: short + " (runs dchain-server)",
			DisableFlagParsing: true,
			RunE:               func(*cobra.Command, []string) error { return execServer(os.Args[1:]) },
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Use < out[j].Use })
	return out
}

// handOver replaces this process with dchain-server when args run a
// server role, or ask for its help or its shell completions; otherwise it
// returns nil and the client runs the command.
func handOver(root *cobra.Command, args []string) error {
	rest := args
	if len(rest) > 0 && slices.Contains([]string{cobra.ShellCompRequestCmd, cobra.ShellCompNoDescRequestCmd, "help"}, rest[0]) {
		rest = rest[1:]
	}
	cmd, _, err := root.Find(rest)
	if err != nil || cmd == root {
		return nil
	}
	for ; cmd.Parent() != root; cmd = cmd.Parent() {
		if cmd.Parent() == nil {
			return nil
		}
	}
	if _, ok := serverRoles[cmd.Name()]; !ok {
		return nil
	}
	return execServer(args)
}

// kmsHandOver runs this command line in dchain-server, which has the KMS
// providers this build leaves out (a key reference like awskms://…).
func kmsHandOver() error { return execServer(os.Args[1:]) }

// execServer runs dchain-server with args in this process's place (same
// process ID, signals and exit status: a supervisor sees no difference).
func execServer(args []string) error {
	path, err := serverPath()
	if err != nil {
		return err
	}
	if isSelf(path) { // (it would hand over to itself forever)
		return errors.New(path + " is this client build, not " + serverName + ": point DCHAIN_SERVER at the server build (`make build` makes both)")
	}
	err = syscall.Exec(path, append([]string{path}, args...), os.Environ())
	return fmt.Errorf("run %s: %w", path, err)
}

// serverPath is dchain-server: $DCHAIN_SERVER, else the file beside this
// executable, else the one on PATH.
func serverPath() (string, error) {
	if p := os.Getenv("DCHAIN_SERVER"); p != "" {
		return p, nil
	}
	dir := "this executable's directory"
	if self, err := os.Executable(); err == nil {
		if self, err = filepath.EvalSymlinks(self); err == nil {
			dir = filepath.Dir(self)
			if p := filepath.Join(dir, serverName); isFile(p) {
				return p, nil
			}
		}
	}
	if p, err := exec.LookPath(serverName); err == nil {
		return p, nil
	}
	return "", errors.New("dchain dev and dchain worker run in " + serverName + ", the server build of dchain (`make build` puts it beside dchain): it is not in " + dir + " nor on PATH (or set DCHAIN_SERVER to its path)")
}

// isSelf reports whether p is this executable's file.
func isSelf(p string) bool {
	self, err := os.Executable()
	if err != nil {
		return false
	}
	a, errA := os.Stat(self)
	b, errB := os.Stat(p)
	return errA == nil && errB == nil && os.SameFile(a, b)
}

func isFile(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}
