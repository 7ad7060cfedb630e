package chain

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// fullMatch reports whether expr matches all of s. expr is validated before
// use, so a compile error here means "no match".
func fullMatch(expr, s string) bool {
	re, err := regexp.Compile(`^(?:` + expr + `)$`)
	return err == nil && re.MatchString(s)
}

// FullRepository is the repository path inside the registry: namespace/repository.
func (s Scope) FullRepository(repository string) string {
	return s.Namespace + "/" + repository
}

// Covers reports whether the scope covers repo (a path "namespace/name").
func (s Scope) Covers(repo string) bool {
	ns, name, ok := strings.Cut(repo, "/")
	if !ok || ns != s.Namespace {
		return false
	}
	if s.AllRepositories {
		return !slices.Contains(s.Exclude, name)
	}
	return name == s.Repository
}

// Applies reports whether the rule replicates repo:tag (repo is
// "namespace/name" inside the scope), and if not, why.
func (r ReplicationRule) Applies(s Scope, repo, tag string) (bool, string) {
	if ok, why := r.CoversRepository(s, repo); !ok {
		return false, why
	}
	if r.TagFilter != "" && !fullMatch(r.TagFilter, tag) {
		return false, fmt.Sprintf("tag %q does not match filter %q", tag, r.TagFilter)
	}
	return true, ""
}

// CoversRepository reports whether the rule copies images of repo (any
// tag), and if not, why.
func (r ReplicationRule) CoversRepository(s Scope, repo string) (bool, string) {
	if r.Level == LevelRepository {
		want := r.Repository
		if want == "" {
			want = s.Repository
		}
		if repo != s.FullRepository(want) {
			return false, fmt.Sprintf("rule covers repository %s only", s.FullRepository(want))
		}
	}
	return true, ""
}

// Matches reports whether the trigger fires for tag. A referrer tag
// (IsReferrerTag) is never an image to redeploy.
func (t Trigger) Matches(tag string) bool {
	if IsReferrerTag(tag) {
		return false
	}
	switch t.Mode {
	case TriggerRegexp:
		return fullMatch(t.Regexp, tag)
	case TriggerTags:
		return slices.Contains(t.Tags, tag)
	default:
		return true
	}
}

// PayloadFormat is the trigger's format, "acr" when unset.
func (t Trigger) PayloadFormat() string {
	if t.Format == "" {
		return FormatACR
	}
	return t.Format
}

// RegionName is the registry's region, or its name when none is set.
func (r Registry) RegionName() string {
	if r.Region == "" {
		return r.Name
	}
	return r.Region
}
