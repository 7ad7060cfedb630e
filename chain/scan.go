package chain

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Severities, most severe first. Trivy reports five levels; the vendor's
// console shows four (High, Medium, Low, Unknown). dchain keeps CRITICAL as
// its own level: a condition counts findings of exactly its severity, so
// "High or worse" is two conditions (CRITICAL, HIGH) with logic OR.
var Severities = []string{"CRITICAL", "HIGH", "MEDIUM", "LOW", "UNKNOWN"}

// SortFindings orders findings the way every view shows them: most severe
// first, then by id, package and platform.
func SortFindings(fs []Finding) {
	rank := func(s string) int { return slices.Index(Severities, normSeverity(s)) }
	slices.SortStableFunc(fs, func(a, b Finding) int {
		return cmp.Or(cmp.Compare(rank(a.Severity), rank(b.Severity)), cmp.Compare(a.ID, b.ID),
			cmp.Compare(a.Package, b.Package), cmp.Compare(a.Platform, b.Platform))
	})
}

// Scan policy modes, logics and actions.
const (
	ModeBlocking    = "blocking"
	ModeNonBlocking = "non-blocking"
	LogicOR         = "OR"
	LogicAND        = "AND"

	ActionBlock       = "block"                // stop the chain, keep the tag
	ActionDeleteTag   = "block-and-delete-tag" // stop the chain, delete the run's tags
	ActionBackup      = "block-and-backup"     // stop the chain, copy the image to Backup.Repository, then delete the tags
	MaxConditions     = 5
	MaxAllowlistItems = 500
)

// Scan is a chain's scan section: scan every image of a run with Trivy and
// apply the blocking policy before anything is replicated.
type Scan struct {
	// Mode is "blocking" (default) or "non-blocking" (record, never stop).
	Mode string `yaml:"mode" json:"mode,omitempty"`
	// Logic combines Conditions: "OR" (default: any) or "AND" (all).
	Logic      string      `yaml:"logic" json:"logic,omitempty"`
	Conditions []Condition `yaml:"conditions" json:"conditions"`
	// Action when the policy triggers (default "block").
	Action string `yaml:"action" json:"action,omitempty"`
	// Backup is where block-and-backup copies the image.
	Backup *Backup `yaml:"backup" json:"backup,omitempty"`
	// Allowlist is vulnerabilities that do not count, each until it expires.
	Allowlist []AllowEntry `yaml:"allowlist" json:"allowlist,omitempty"`
	// OnlyFixed ignores findings that have no fixed version yet.
	OnlyFixed bool `yaml:"onlyFixed" json:"onlyFixed,omitempty"`
	// Unscannable is what a platform the scan could not analyse at all (no
	// OS it knows, no packages) counts for: "block" (the default) makes it
	// a condition that holds, "allow" lets it through as clean.
	Unscannable string `yaml:"unscannable" json:"unscannable,omitempty"`
}

// What Scan.Unscannable may say.
const (
	UnscannableBlock = "block"
	UnscannableAllow = "allow"
)

// Condition triggers when at least Count findings have Severity.
type Condition struct {
	Severity string `yaml:"severity" json:"severity"`
	Count    int    `yaml:"count" json:"count"`
}

// Backup is the quarantine repository of block-and-backup, in the source registry.
type Backup struct {
	Repository string `yaml:"repository" json:"repository"`
}

// AllowEntry lets one vulnerability id through, until Expires (a date, YYYY-MM-DD, inclusive).
type AllowEntry struct {
	ID      string `yaml:"id" json:"id"`
	Expires string `yaml:"expires" json:"expires,omitempty"`
	Reason  string `yaml:"reason" json:"reason,omitempty"`
}

// Finding is one vulnerability found in an image, as the policy sees it.
type Finding struct {
	ID               string `json:"id"`
	Package          string `json:"package"`
	InstalledVersion string `json:"installedVersion"`
	FixedVersion     string `json:"fixedVersion,omitempty"`
	Severity         string `json:"severity"`
	Title            string `json:"title,omitempty"`
	// Target is what Trivy scanned (the OS, or a language package's path); Platform the image's platform.
	Target   string `json:"target,omitempty"`
	Platform string `json:"platform,omitempty"`
}

// Decision is what the policy made of a scan.
type Decision struct {
	// Triggered is true when the conditions hold; Blocked when, in addition, the mode is blocking.
	Triggered bool   `json:"triggered"`
	Blocked   bool   `json:"blocked"`
	Action    string `json:"action,omitempty"`
	// Counts are the findings per severity that count (after allowlist and onlyFixed).
	Counts map[string]int `json:"counts"`
	// Reasons say which conditions held (and how many findings they saw).
	Reasons []string `json:"reasons"`
	// Ignored are the findings the allowlist or onlyFixed took out, with why.
	Ignored []string `json:"ignored,omitempty"`
}

// Evaluate applies the policy to the findings at time now (for allowlist
// expiry). A finding is counted once per vulnerability id and package,
// whatever the platform.
func (s Scan) Evaluate(findings []Finding, now time.Time) Decision {
	return s.EvaluateReport(findings, nil, now)
}

// EvaluateReport is Evaluate for a report that also says which platforms
// the scan could not analyse at all (unanalysed): unless the policy's
// unscannable is "allow", each is a condition that holds — an image whose
// OS the scanner does not know is not a clean image.
func (s Scan) EvaluateReport(findings []Finding, unanalysed []string, now time.Time) Decision {
	d := Decision{Counts: map[string]int{}, Action: s.action()}
	for _, sev := range Severities {
		d.Counts[sev] = 0
	}
	allowed := map[string]AllowEntry{}
	for _, a := range s.Allowlist {
		if a.active(now) {
			allowed[a.ID] = a
		}
	}
	seen := map[string]bool{}
	for _, f := range findings {
		key := f.ID + "\x00" + f.Package + "\x00" + f.InstalledVersion
		if seen[key] {
			continue
		}
		seen[key] = true
		if a, ok := allowed[f.ID]; ok {
			d.Ignored = append(d.Ignored, fmt.Sprintf("%s (%s): allowlisted until %s: %s", f.ID, f.Package, orForever(a.Expires), a.Reason))
			continue
		}
		if s.OnlyFixed && f.FixedVersion == "" {
			d.Ignored = append(d.Ignored, fmt.Sprintf("%s (%s): no fixed version yet (onlyFixed)", f.ID, f.Package))
			continue
		}
		d.Counts[normSeverity(f.Severity)]++
	}
	held := 0
	for _, c := range s.Conditions {
		n := d.Counts[strings.ToUpper(c.Severity)]
		if n >= c.Count {
			held++
			d.Reasons = append(d.Reasons, fmt.Sprintf("%d %s ≥ %d", n, strings.ToUpper(c.Severity), c.Count))
		}
	}
	switch {
	case len(s.Conditions) == 0:
	case s.logic() == LogicAND:
		d.Triggered = held == len(s.Conditions)
	default:
		d.Triggered = held > 0
	}
	if len(unanalysed) > 0 && s.Unscannable != UnscannableAllow {
		d.Triggered = true
		d.Reasons = append(d.Reasons, fmt.Sprintf("nothing could be analysed in %s: no OS the scanner knows, no packages (unscannable: block)", strings.Join(unanalysed, ", ")))
	}
	d.Blocked = d.Triggered && s.mode() == ModeBlocking
	if !d.Triggered {
		d.Reasons = append(d.Reasons, "no blocking condition holds")
	} else if !d.Blocked {
		d.Reasons = append(d.Reasons, "non-blocking: recorded, the chain goes on")
	}
	return d
}

func (s Scan) mode() string {
	if s.Mode == "" {
		return ModeBlocking
	}
	return s.Mode
}

func (s Scan) logic() string {
	if strings.ToUpper(s.Logic) == LogicAND {
		return LogicAND
	}
	return LogicOR
}

func (s Scan) action() string {
	if s.Action == "" {
		return ActionBlock
	}
	return s.Action
}

// active reports whether the entry applies at now: no expiry, or now is on
// or before the expiry date (UTC).
func (a AllowEntry) active(now time.Time) bool {
	if a.Expires == "" {
		return true
	}
	exp, err := time.Parse(time.DateOnly, a.Expires)
	return err == nil && !now.UTC().After(exp.Add(24*time.Hour-time.Nanosecond))
}

func orForever(s string) string {
	if s == "" {
		return "forever"
	}
	return s
}

// normSeverity maps a severity to one of Severities.
func normSeverity(s string) string {
	s = strings.ToUpper(s)
	if slices.Contains(Severities, s) {
		return s
	}
	return "UNKNOWN"
}
