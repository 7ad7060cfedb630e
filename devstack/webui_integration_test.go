package devstack

import (
	"context"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// browse renders a page of the stack's Temporal Web UI in a real browser
// (headless Chromium) and returns its DOM once the page's scripts ran; with
// DCHAIN_SCREENSHOTS set it also saves a screenshot there as <shot>.png
// (docs/webui.md shows them).
func browse(t *testing.T, path, shot string) string {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium is needed to check the Web UI (make deps installs it):", err)
	}
	u := stack.Endpoints.UI + path
	if _, err := url.Parse(u); err != nil {
		t.Fatal(err)
	}
	args := []string{"--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
		"--user-data-dir=" + t.TempDir(), "--window-size=1440,1000", "--virtual-time-budget=15000"}
	run := func(extra ...string) []byte {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, append(append(args, extra...), u)...)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("chromium %s: %v", u, err)
		}
		return out
	}
	// The UI server answers its first pages with a 500 now and then while
	// it warms up: that is not what is looked at here.
	var dom string
	for range 3 {
		if dom = string(run("--dump-dom")); !strings.Contains(dom, "Internal Error") {
			break
		}
	}
	if dir := os.Getenv("DCHAIN_SCREENSHOTS"); dir != "" && shot != "" {
		run("--screenshot=" + filepath.Join(dir, shot+".png"))
	}
	return dom
}

var (
	scriptOrStyle = regexp.MustCompile(`(?s)<(script|style)\b.*?</(script|style)>`)
	tag           = regexp.MustCompile(`(?s)<[^>]*>`)
	tableRow      = regexp.MustCompile(`(?s)<tr\b.*?</tr>`)
)

// visibleText is HTML without its tags, scripts and styles, with runs of
// white space folded: roughly what a person reads.
func visibleText(html string) string {
	return strings.Join(strings.Fields(tag.ReplaceAllString(scriptOrStyle.ReplaceAllString(html, " "), " ")), " ")
}

// tableRowOf is the visible text of the first table row of dom that names
// what ("" when none does).
func tableRowOf(dom, what string) string {
	for _, r := range tableRow.FindAllString(dom, -1) {
		if t := visibleText(r); strings.Contains(t, what) {
			return t
		}
	}
	return ""
}
