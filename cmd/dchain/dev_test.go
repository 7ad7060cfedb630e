package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// `dchain dev` whose API port is taken says so and exits non-zero before
// it starts anything (it used to go on without an API).
func TestDevRefusesATakenAPIPort(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "dchain.yaml")
	doc := "registries: [{name: hz, address: '127.0.0.1:5999', insecure: true}]\napi: {listen: '" + busy.Addr().String() + "'}\n"
	if err := os.WriteFile(cfg, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	root := newRoot()
	root.SetArgs([]string{"--config", cfg, "dev", "--data-dir", filepath.Join(dir, "data"), "--headless", "--no-buildkit", "--no-scan"})
	root.SilenceUsage, root.SilenceErrors = true, true
	err = root.Execute()
	if err == nil || !strings.Contains(err.Error(), busy.Addr().String()) || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("dev with a taken API port: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "temporal")); !os.IsNotExist(err) {
		t.Fatalf("something started before the API port was checked (%v)", err)
	}
}
