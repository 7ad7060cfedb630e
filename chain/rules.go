package chain

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Push is a source push: the ref that moved, the commit it moved to, and when.
type Push struct {
	// Ref is the full ref: refs/heads/NAME or refs/tags/NAME.
	Ref    Ref       `json:"ref"`
	Commit Commit    `json:"commit"`
	At     time.Time `json:"at"`
	Pusher string    `json:"pusher,omitempty"`
}

// BuildPlan is what one matching rule builds for a push.
type BuildPlan struct {
	Rule       string            `json:"rule"`
	Tags       []string          `json:"tags"`
	Context    string            `json:"context,omitempty"`
	Dockerfile string            `json:"dockerfile"`
	Platforms  []string          `json:"platforms"`
	BuildArgs  map[string]string `json:"buildArgs,omitempty"`
	NoCache    bool              `json:"noCache,omitempty"`
	Network    string            `json:"network,omitempty"`
	// Secrets are references only (env:NAME, file:PATH), by secret ID.
	Secrets map[string]SecretRef `json:"secrets,omitempty"`
}

// BuildZone is the time zone of build-time tags (UTC+8, like the vendor's).
var BuildZone = time.FixedZone("UTC+8", 8*3600)

var groupRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// ManualAllowed reports whether a person may start the rule by hand: the
// vendor allows that only for a plain branch or tag name and literal tags,
// since a regular expression, build time or commit id needs a real push.
func (r BuildRule) ManualAllowed() (bool, string) {
	if r.IsRegex() {
		return false, "its branch/tag is a regular expression"
	}
	for _, t := range r.Tags {
		switch {
		case t.BuildTime != "":
			return false, "a tag uses the build time"
		case t.CommitID > 0:
			return false, "a tag uses the commit id"
		}
	}
	return true, ""
}

// PlanBuilds returns a plan for every build rule of c that the push matches,
// with its tags computed. manual says a person (not a push) asks: rules
// that only a push may trigger are then left out, and refused with an
// error naming them when they are all that match. only, when set, is the
// one rule to plan (a person's choice): it must exist and match the ref.
func PlanBuilds(c Chain, p Push, manual bool, only string) ([]BuildPlan, error) {
	if c.Build == nil {
		return nil, fmt.Errorf("chain %s has no build section", c.Name)
	}
	if only != "" && !slices.ContainsFunc(c.Build.Rules, func(r BuildRule) bool { return r.Name == only }) {
		return nil, &InputError{Field: "rule", Reason: fmt.Sprintf("chain %s has no build rule %q", c.Name, only)}
	}
	typ, name := p.Ref.Split()
	var plans []BuildPlan
	var refused []string
	for _, r := range c.Build.Rules {
		if r.Type != typ || (only != "" && r.Name != only) {
			continue
		}
		groups, ok, err := r.matchName(name)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		if ok, why := r.ManualAllowed(); manual && !ok {
			refused = append(refused, fmt.Sprintf("rule %s cannot be started by hand: %s; only a push can trigger it", r.Name, why))
			continue
		}
		plan := BuildPlan{Rule: r.Name, Context: r.Context, Dockerfile: r.Dockerfile, Platforms: r.Platforms, BuildArgs: r.BuildArgs, NoCache: r.NoCache,
			Network: r.Network, Secrets: r.Secrets}
		if plan.Dockerfile == "" {
			plan.Dockerfile = "Dockerfile"
		}
		if len(plan.Platforms) == 0 {
			plan.Platforms = []string{"linux/amd64"}
		}
		for i, t := range r.Tags {
			tag, err := t.Render(groups, p)
			if err != nil {
				return nil, fmt.Errorf("rule %s, tag %d: %w", r.Name, i+1, err)
			}
			plan.Tags = append(plan.Tags, tag)
		}
		plans = append(plans, plan)
	}
	if len(plans) == 0 && len(refused) > 0 {
		return nil, errors.New(strings.Join(refused, "; "))
	}
	if len(plans) == 0 && only != "" {
		return nil, &InputError{Field: "rule", Reason: fmt.Sprintf("build rule %s does not match %s", only, p.Ref)}
	}
	return plans, nil
}

// matchName matches a branch or tag name against the rule: a name by
// equality, an expression in full, returning its named groups.
func (r BuildRule) matchName(name string) (map[string]string, bool, error) {
	groups := map[string]string{}
	if !r.IsRegex() {
		return groups, name == r.Match, nil
	}
	re, err := regexp.Compile(`^(?:` + r.Match + `)$`)
	if err != nil {
		return nil, false, fmt.Errorf("rule %s: %w", r.Name, err)
	}
	m := re.FindStringSubmatch(name)
	if m == nil {
		return nil, false, nil
	}
	for i, g := range re.SubexpNames() {
		if g != "" {
			groups[g] = m[i]
		}
	}
	return groups, true, nil
}

// Render computes the tag for a push whose match captured groups.
func (t TagTemplate) Render(groups map[string]string, p Push) (string, error) {
	var parts []string
	if t.Tag != "" {
		parts = append(parts, groupRef.ReplaceAllStringFunc(t.Tag, func(ref string) string {
			return groups[groupRef.FindStringSubmatch(ref)[1]]
		}))
	}
	switch t.BuildTime {
	case BuildTimeDate:
		parts = append(parts, p.At.In(BuildZone).Format("20060102"))
	case BuildTimeMinute:
		parts = append(parts, p.At.In(BuildZone).Format("200601021504"))
	}
	if t.CommitID > 0 {
		if len(p.Commit) < t.CommitID {
			return "", fmt.Errorf("commit %q is shorter than the %d characters the tag takes", p.Commit, t.CommitID)
		}
		parts = append(parts, string(p.Commit[:t.CommitID]))
	}
	tag := strings.Join(parts, "-")
	if !TagRe.MatchString(tag) {
		return "", fmt.Errorf("computed tag %q is not a legal OCI tag (letters, digits, _ . -, at most 128, not starting with . or -)", tag)
	}
	return tag, nil
}
