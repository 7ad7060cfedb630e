package activities

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// A worker killed with SIGKILL mid-build leaves its checkouts; the next
// worker to start removes them, and never the work of a worker that runs.
func TestClaimWorkDirRemovesWhatDeadWorkersLeft(t *testing.T) {
	if base := os.Getenv("DCHAIN_TEST_WORKDIR_CHILD"); base != "" {
		dir, err := ClaimWorkDir(base)
		if err != nil {
			os.Exit(3)
		}
		os.MkdirAll(filepath.Join(dir, "src-123", "app"), 0o755)
		os.WriteFile(filepath.Join(base, "child"), []byte(dir), 0o644)
		time.Sleep(time.Minute)
		os.Exit(0)
	}
	base := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestClaimWorkDirRemovesWhatDeadWorkersLeft$")
	cmd.Env = append(os.Environ(), "DCHAIN_TEST_WORKDIR_CHILD="+base)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var childDir []byte
	for i := 0; i < 200 && len(childDir) == 0; i++ {
		time.Sleep(50 * time.Millisecond)
		childDir, _ = os.ReadFile(filepath.Join(base, "child"))
	}
	if len(childDir) == 0 {
		cmd.Process.Kill()
		t.Fatal("the child worker did not claim a work dir")
	}

	live, err := ClaimWorkDir(base) // the child is alive: its work stays
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(string(childDir), "src-123")); err != nil {
		t.Fatalf("a running worker's checkout was removed: %v", err)
	}
	cmd.Process.Kill() // SIGKILL: no cleanup of its own
	cmd.Wait()

	if _, err := ClaimWorkDir(base); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(string(childDir)); !os.IsNotExist(err) {
		t.Fatalf("the killed worker's work dir is still there (%v)", err)
	}
	if _, err := os.Stat(live); err != nil {
		t.Fatalf("this process's own work dir was removed: %v", err)
	}
}
