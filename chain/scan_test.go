package chain

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

func findings(spec map[string]int) []Finding {
	var fs []Finding
	for sev, n := range spec {
		for i := range n {
			fs = append(fs, Finding{ID: fmt.Sprintf("CVE-%s-%d", sev, i), Package: "pkg", InstalledVersion: "1", FixedVersion: "2", Severity: sev})
		}
	}
	return fs
}

var now = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func TestEvaluateLogicAndThresholds(t *testing.T) {
	crit1 := Condition{Severity: "CRITICAL", Count: 1}
	high3 := Condition{Severity: "HIGH", Count: 3}
	for _, tc := range []struct {
		logic     string
		conds     []Condition
		found     map[string]int
		triggered bool
	}{
		// OR: any condition
		{"OR", []Condition{crit1, high3}, map[string]int{}, false},
		{"OR", []Condition{crit1, high3}, map[string]int{"CRITICAL": 1}, true},
		{"OR", []Condition{crit1, high3}, map[string]int{"HIGH": 2}, false}, // just below
		{"OR", []Condition{crit1, high3}, map[string]int{"HIGH": 3}, true},  // at the boundary
		{"OR", []Condition{crit1, high3}, map[string]int{"HIGH": 4, "LOW": 9}, true},
		{"", []Condition{crit1, high3}, map[string]int{"HIGH": 3}, true}, // OR is the default
		// AND: every condition
		{"AND", []Condition{crit1, high3}, map[string]int{"CRITICAL": 1}, false},
		{"AND", []Condition{crit1, high3}, map[string]int{"HIGH": 3}, false},
		{"AND", []Condition{crit1, high3}, map[string]int{"CRITICAL": 1, "HIGH": 2}, false},
		{"AND", []Condition{crit1, high3}, map[string]int{"CRITICAL": 1, "HIGH": 3}, true},
		{"and", []Condition{crit1, high3}, map[string]int{"CRITICAL": 2, "HIGH": 5}, true},
		// a condition counts its own severity only: CRITICAL is not HIGH
		{"OR", []Condition{{Severity: "HIGH", Count: 1}}, map[string]int{"CRITICAL": 5}, false},
		{"OR", []Condition{{Severity: "unknown", Count: 2}}, map[string]int{"UNKNOWN": 2}, true},
		{"OR", []Condition{{Severity: "MEDIUM", Count: 1}, {Severity: "LOW", Count: 10}}, map[string]int{"LOW": 9}, false},
	} {
		s := Scan{Logic: tc.logic, Conditions: tc.conds}
		d := s.Evaluate(findings(tc.found), now)
		if d.Triggered != tc.triggered || d.Blocked != tc.triggered {
			t.Errorf("%s %v on %v: triggered %v blocked %v, want %v (%v)", tc.logic, tc.conds, tc.found, d.Triggered, d.Blocked, tc.triggered, d.Reasons)
		}
		for sev, n := range tc.found {
			if d.Counts[strings.ToUpper(sev)] != n {
				t.Errorf("count %s = %d, want %d", sev, d.Counts[sev], n)
			}
		}
	}
}

func TestEvaluateNonBlocking(t *testing.T) {
	s := Scan{Mode: ModeNonBlocking, Conditions: []Condition{{Severity: "CRITICAL", Count: 1}}}
	d := s.Evaluate(findings(map[string]int{"CRITICAL": 3}), now)
	if !d.Triggered || d.Blocked || !strings.Contains(strings.Join(d.Reasons, ";"), "non-blocking") {
		t.Fatalf("non-blocking: %+v", d)
	}
	if d.Action != ActionBlock {
		t.Fatalf("default action %q", d.Action)
	}
}

func TestEvaluateAllowlist(t *testing.T) {
	fs := []Finding{
		{ID: "CVE-1", Package: "a", Severity: "CRITICAL", FixedVersion: "2"},
		{ID: "CVE-2", Package: "b", Severity: "CRITICAL", FixedVersion: "2"},
	}
	policy := func(allow ...AllowEntry) Scan {
		return Scan{Conditions: []Condition{{Severity: "CRITICAL", Count: 1}}, Allowlist: allow}
	}
	for _, tc := range []struct {
		name    string
		allow   []AllowEntry
		counted int
	}{
		{"none", nil, 2},
		{"one, no expiry", []AllowEntry{{ID: "CVE-1", Reason: "not reachable"}}, 1},
		{"both, no expiry", []AllowEntry{{ID: "CVE-1"}, {ID: "CVE-2"}}, 0},
		{"expires later", []AllowEntry{{ID: "CVE-1", Expires: "2026-12-01"}, {ID: "CVE-2", Expires: "2027-01-01"}}, 0},
		{"expires today: still applies", []AllowEntry{{ID: "CVE-1", Expires: "2026-11-22"}, {ID: "CVE-2"}}, 0},
		{"expired yesterday", []AllowEntry{{ID: "CVE-1", Expires: "2026-11-21"}, {ID: "CVE-2"}}, 1},
		{"other id", []AllowEntry{{ID: "CVE-3"}}, 2},
	} {
		d := policy(tc.allow...).Evaluate(fs, now)
		if d.Counts["CRITICAL"] != tc.counted || d.Blocked != (tc.counted > 0) || len(d.Ignored) != 2-tc.counted {
			t.Errorf("%s: counted %d blocked %v ignored %v, want %d", tc.name, d.Counts["CRITICAL"], d.Blocked, d.Ignored, tc.counted)
		}
	}
}

func TestEvaluateOnlyFixedAndDuplicates(t *testing.T) {
	fs := []Finding{
		{ID: "CVE-1", Package: "a", InstalledVersion: "1", Severity: "HIGH", FixedVersion: "", Platform: "linux/amd64"},
		{ID: "CVE-2", Package: "b", InstalledVersion: "1", Severity: "HIGH", FixedVersion: "1.1", Platform: "linux/amd64"},
		{ID: "CVE-2", Package: "b", InstalledVersion: "1", Severity: "HIGH", FixedVersion: "1.1", Platform: "linux/arm64"}, // same finding, other platform
	}
	s := Scan{Conditions: []Condition{{Severity: "HIGH", Count: 2}}}
	if d := s.Evaluate(fs, now); d.Counts["HIGH"] != 2 || !d.Blocked {
		t.Fatalf("without onlyFixed: %+v", d)
	}
	s.OnlyFixed = true
	if d := s.Evaluate(fs, now); d.Counts["HIGH"] != 1 || d.Blocked || len(d.Ignored) != 1 {
		t.Fatalf("with onlyFixed: %+v", d)
	}
}

func TestScanValidation(t *testing.T) {
	cfg := testConfig(t)
	for _, tc := range []struct{ name, scan, field, msg string }{
		{"unknown severity", "scan:\n  conditions: [{severity: SEVERE, count: 1}]\n", "scan.conditions[0].severity", "not a severity"},
		{"count below 1", "scan:\n  conditions: [{severity: HIGH, count: 0}]\n", "scan.conditions[0].count", "at least 1"},
		{"no conditions", "scan:\n  mode: blocking\n", "scan.conditions", "at least one condition"},
		{"bad logic", "scan:\n  logic: XOR\n  conditions: [{severity: HIGH, count: 1}]\n", "scan.logic", "not a logic"},
		{"bad mode", "scan:\n  mode: loud\n  conditions: [{severity: HIGH, count: 1}]\n", "scan.mode", "not a mode"},
		{"backup without target", "scan:\n  action: block-and-backup\n  conditions: [{severity: HIGH, count: 1}]\n", "scan.backup.repository", "is required"},
		{"backup into itself", "scan:\n  action: block-and-backup\n  backup: {repository: demo/app}\n  conditions: [{severity: HIGH, count: 1}]\n", "scan.backup.repository", "itself"},
		{"bad action", "scan:\n  action: quarantine\n  conditions: [{severity: HIGH, count: 1}]\n", "scan.action", "not an action"},
		{"bad expiry", "scan:\n  conditions: [{severity: HIGH, count: 1}]\n  allowlist: [{id: CVE-2024-1, expires: tomorrow}]\n", "scan.allowlist[0].expires", "not a date"},
		{"duplicate allow", "scan:\n  conditions: [{severity: HIGH, count: 1}]\n  allowlist: [{id: CVE-2024-1}, {id: CVE-2024-1}]\n", "scan.allowlist[1].id", "duplicate"},
		{"bad unscannable", "scan:\n  conditions: [{severity: HIGH, count: 1}]\n  unscannable: ignore\n", "scan.unscannable", "not a choice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, ps := cfg.ParseChains("c.yaml", []byte(base+tc.scan))
			for _, p := range ps {
				if p.Field == tc.field && strings.Contains(p.Message, tc.msg) && p.Line > 0 {
					return
				}
			}
			t.Fatalf("no problem on %q containing %q; got:\n%v", tc.field, tc.msg, ps)
		})
	}
	ok := base + "scan:\n  mode: blocking\n  logic: AND\n  conditions: [{severity: CRITICAL, count: 1}, {severity: high, count: 3}]\n  action: block-and-backup\n  backup: {repository: quarantine/app}\n  allowlist: [{id: CVE-2024-1, expires: 2027-01-01, reason: vendor says not reachable}]\n  onlyFixed: true\n  unscannable: allow\n"
	if chains, ps := cfg.ParseChains("c.yaml", []byte(ok)); len(ps) != 0 || chains[0].Scan.Backup.Repository != "quarantine/app" {
		t.Fatalf("a valid scan section: %v", ps)
	}
}

// A platform the scan could analyse nothing of holds as a condition
// (blocking under a blocking policy, recorded under a non-blocking one)
// unless the policy says unscannable: allow.
func TestEvaluateUnscannable(t *testing.T) {
	now := time.Now()
	high := []Condition{{Severity: "HIGH", Count: 1}}
	d := Scan{Conditions: high}.EvaluateReport(nil, []string{"linux/arm64"}, now)
	if !d.Triggered || !d.Blocked || !strings.Contains(strings.Join(d.Reasons, ";"), "nothing could be analysed in linux/arm64") {
		t.Fatalf("default: %+v", d)
	}
	if d := (Scan{Conditions: high, Mode: ModeNonBlocking}).EvaluateReport(nil, []string{"image"}, now); !d.Triggered || d.Blocked {
		t.Fatalf("non-blocking: %+v", d)
	}
	if d := (Scan{Conditions: high, Unscannable: UnscannableAllow}).EvaluateReport(nil, []string{"image"}, now); d.Triggered || d.Blocked {
		t.Fatalf("allow: %+v", d)
	}
	if d := (Scan{Conditions: high}).EvaluateReport(nil, nil, now); d.Triggered {
		t.Fatalf("all analysed: %+v", d)
	}
}

// Every view orders findings the same way: most severe first, then by id.
func TestSortFindings(t *testing.T) {
	fs := []Finding{{ID: "CVE-3", Severity: "LOW"}, {ID: "CVE-2", Severity: "critical"}, {ID: "CVE-1", Severity: "LOW"}, {ID: "X", Severity: "weird"}, {ID: "CVE-9", Severity: "CRITICAL"}}
	SortFindings(fs)
	var got []string
	for _, f := range fs {
		got = append(got, f.ID)
	}
	if want := []string{"CVE-2", "CVE-9", "CVE-1", "CVE-3", "X"}; !slices.Equal(got, want) {
		t.Fatalf("%v, want %v", got, want)
	}
}
