package devstack

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// cliConfig is a dchain.yaml naming the stack's registries (src, eu, us,
// ap) and the chains in chains/*.yaml beside it (cliChain), written once
// per test binary, for the dchain CLI of the benchmarks.
var cliConfig = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "dchain-bench-cli-")
	if err != nil {
		return "", err
	}
	var doc strings.Builder
	doc.WriteString("registries:\n")
	for _, r := range []string{"src", "eu", "us", "ap"} {
		fmt.Fprintf(&doc, "  - {name: %s, address: %q, insecure: true}\n", r, stack.Endpoints.Registries[r])
	}
	doc.WriteString("chains: [chains/*.yaml]\n")
	if err := os.Mkdir(filepath.Join(dir, "chains"), 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(dir, "dchain.yaml")
	return path, os.WriteFile(path, []byte(doc.String()), 0o644)
})

// cliChain adds the chain file doc as chains/<name>.yaml to cliConfig.
func cliChain(b *testing.B, name, doc string) {
	cfg, err := cliConfig()
	if err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(filepath.Dir(cfg), "chains", name+".yaml"), []byte(doc), 0o644); err != nil {
		b.Fatal(err)
	}
}

// dchainCLI runs the dchain client ($DCHAIN_BENCH_DCHAIN, bin/dchain: what
// a user runs) against the stack, as the peers run: a process of its own
// that connects, starts and waits. It returns the standard output.
func dchainCLI(b *testing.B, args ...string) string {
	bin := peerEnv(b, "DCHAIN_BENCH_DCHAIN")
	cfg, err := cliConfig()
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(bin, append([]string{"--config", cfg, "--address", stack.Endpoints.Temporal}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		b.Fatalf("%s: %v\n%s%s", strings.Join(cmd.Args, " "), err, out, stderr.String())
	}
	return string(out)
}

// tool is one side of a side-by-side benchmark: dchain or a peer.
type tool struct {
	name string
	run  func(b *testing.B)
}

// runInTurn runs each tool as a sub-benchmark, dchain (the first) first,
// or, when $DCHAIN_BENCH_PEERS_FIRST is 1 (scripts/bench-peers.sh: every
// other round), the peers first: neither side always meets a machine the
// other has just warmed or loaded.
func runInTurn(b *testing.B, tools []tool) {
	if os.Getenv("DCHAIN_BENCH_PEERS_FIRST") == "1" {
		tools = append(slices.Clone(tools[1:]), tools[0])
	}
	for _, t := range tools {
		b.Run(t.name, t.run)
	}
}
