package devstack

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
)

// A second stack on the same data dir is refused and told who holds it.
func TestDataDirLock(t *testing.T) {
	dir := t.TempDir()
	first, err := LockDataDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = LockDataDir(dir)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", os.Getpid())) {
		t.Fatalf("second lock: %v", err)
	}
	first.Close()
	again, err := LockDataDir(dir)
	if err != nil {
		t.Fatalf("the lock outlived its holder: %v", err)
	}
	again.Close()
	// The running test stack holds its own data dir.
	if _, err := Start(context.Background(), Options{DataDir: stack.Endpoints.DataDir, UIPort: 0}); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("a second stack on a running stack's data dir: %v", err)
	}
	if _, err := os.Stat(stack.Endpoints.DataDir + "/endpoints.json"); err != nil {
		t.Fatalf("the refused stack removed the running one's endpoints.json: %v", err)
	}
}

// A port in use ends Start with an error naming it — no panic — and
// whatever had started is stopped again.
func TestStartOnBusyPorts(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	port := busy.Addr().(*net.TCPAddr).Port
	if _, err := Start(context.Background(), Options{DataDir: t.TempDir(), TemporalPort: port}); err == nil || !strings.Contains(err.Error(), fmt.Sprint(port)) {
		t.Fatalf("busy Temporal port: %v", err)
	}
	tp, _ := FreePort("127.0.0.1")
	dir := t.TempDir()
	_, err = Start(context.Background(), Options{DataDir: dir, TemporalPort: tp, Regions: []Region{{Name: "busy", Port: port}}})
	if err == nil || !strings.Contains(err.Error(), "registry busy") || !strings.Contains(err.Error(), fmt.Sprint(port)) {
		t.Fatalf("busy registry port: %v", err)
	}
	if err := portFree("127.0.0.1", tp); err != nil {
		t.Fatalf("Temporal was left running after a failed start: %v", err)
	}
	if l, err := LockDataDir(dir); err != nil {
		t.Fatalf("a failed start kept its data dir locked: %v", err)
	} else {
		l.Close()
	}
}
