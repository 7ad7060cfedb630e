package chain

import (
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

var vulnIDRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{2,63}$`)

func (v *validator) scan(s *Scan, scope *Scope) {
	switch s.Mode {
	case "", ModeBlocking, ModeNonBlocking:
	default:
		v.add("scan.mode", "%q is not a mode; use blocking or non-blocking", s.Mode)
	}
	switch strings.ToUpper(s.Logic) {
	case "", LogicOR, LogicAND:
	default:
		v.add("scan.logic", "%q is not a logic; use AND or OR", s.Logic)
	}
	if len(s.Conditions) == 0 {
		v.add("scan.conditions", "at least one condition (severity and count) is required")
	}
	v.max("scan.conditions", len(s.Conditions), MaxConditions)
	for i, c := range s.Conditions {
		f := "scan.conditions[" + strconv.Itoa(i) + "]"
		if !slices.Contains(Severities, strings.ToUpper(c.Severity)) {
			v.add(f+".severity", "%q is not a severity; use one of %s", c.Severity, strings.Join(Severities, ", "))
		}
		if c.Count < 1 {
			v.add(f+".count", "must be at least 1 (got %d)", c.Count)
		}
	}
	switch s.Action {
	case "", ActionBlock, ActionDeleteTag:
		if s.Backup != nil {
			v.add("scan.backup", "only applies to action: %s", ActionBackup)
		}
	case ActionBackup:
		switch {
		case s.Backup == nil || s.Backup.Repository == "":
			v.add("scan.backup.repository", "is required for action %s: the quarantine repository (namespace/name) in the source registry", ActionBackup)
		case !repositoryRe.MatchString(s.Backup.Repository) || !strings.Contains(s.Backup.Repository, "/"):
			v.add("scan.backup.repository", "%q is not a repository path namespace/name", s.Backup.Repository)
		case scope.Repository != "" && s.Backup.Repository == scope.FullRepository(scope.Repository):
			v.add("scan.backup.repository", "is the scanned repository itself; quarantine into another one")
		}
	default:
		v.add("scan.action", "%q is not an action; use %s, %s or %s", s.Action, ActionBlock, ActionDeleteTag, ActionBackup)
	}
	switch s.Unscannable {
	case "", UnscannableBlock, UnscannableAllow:
	default:
		v.add("scan.unscannable", "%q is not a choice; use %s (the default) or %s", s.Unscannable, UnscannableBlock, UnscannableAllow)
	}
	v.max("scan.allowlist", len(s.Allowlist), MaxAllowlistItems)
	seen := map[string]string{}
	for i, a := range s.Allowlist {
		f := "scan.allowlist[" + strconv.Itoa(i) + "]"
		if v.required(f+".id", a.ID) && !vulnIDRe.MatchString(a.ID) {
			v.add(f+".id", "%q is not a vulnerability id (e.g. CVE-2024-1234, GHSA-xxxx-xxxx-xxxx)", a.ID)
		}
		v.unique(seen, f+".id", a.ID)
		if a.Expires != "" {
			if _, err := time.Parse(time.DateOnly, a.Expires); err != nil {
				v.add(f+".expires", "%q is not a date (YYYY-MM-DD)", a.Expires)
			}
		}
	}
}
