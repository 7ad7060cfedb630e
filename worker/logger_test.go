package worker

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
)

// --log-format json writes one JSON object per line at the chosen level;
// the SDK's log starts at warn unless the level is debug; bad values are
// refused naming the flag.
func TestSetupLogging(t *testing.T) {
	defer SetupLogging(&bytes.Buffer{}, "text", "info")
	var buf bytes.Buffer
	if err := SetupLogging(&buf, "json", "info"); err != nil {
		t.Fatal(err)
	}
	slog.Debug("hidden")
	slog.Info("shown", "run", "demo:x")
	QuietLogger().Info("sdk info is hidden")
	QuietLogger().Warn("sdk warning")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("lines: %q", lines)
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil || rec["msg"] != "shown" || rec["run"] != "demo:x" || rec["level"] != "INFO" {
		t.Fatalf("%s: %v", lines[0], err)
	}
	buf.Reset()
	if err := SetupLogging(&buf, "text", "debug"); err != nil {
		t.Fatal(err)
	}
	QuietLogger().Debug("sdk debug")
	if !strings.Contains(buf.String(), "sdk debug") {
		t.Fatalf("at debug the SDK's debug log shows: %q", buf.String())
	}
	for _, bad := range [][2]string{{"yaml", "info"}, {"json", "loud"}} {
		if err := SetupLogging(&buf, bad[0], bad[1]); err == nil || !strings.Contains(err.Error(), "--log-") {
			t.Errorf("%v: %v", bad, err)
		}
	}
}
