package chain

import (
	"path"
	"regexp"
	"strconv"
	"strings"
)

var (
	buildArgRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	secretIDRe = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$`)
	// tagLiteralRe is what a tag template's literal part may hold besides ${group} references.
	tagLiteralRe = regexp.MustCompile(`^[A-Za-z0-9_.-]*$`)
)

func (v *validator) build(b *Build, s *Scope) {
	if s.AllRepositories {
		v.add("build", "a chain that builds must name one repository in scope.repository, not allRepositories")
	}
	if v.required("build.source.url", b.Source.URL) {
		v.sourceURL("build.source.url", b.Source.URL)
	}
	v.secret("build.source.credentials", b.Source.Credentials)
	if len(b.Rules) == 0 {
		v.add("build.rules", "at least one build rule is required")
	}
	v.max("build.rules", len(b.Rules), MaxBuildRules)
	seen := map[string]string{}
	for i := range b.Rules {
		v.buildRule("build.rules["+strconv.Itoa(i)+"]", &b.Rules[i], seen)
	}
}

func (v *validator) buildRule(f string, r *BuildRule, seen map[string]string) {
	v.name(f+".name", r.Name)
	v.unique(seen, f+".name", r.Name)
	switch r.Type {
	case RuleBranch, RuleTag:
	case "":
		v.add(f+".type", "is required: branch or tag")
	default:
		v.add(f+".type", "%q is not a type; use branch or tag", r.Type)
	}
	var groups map[string]bool
	if r.Match != "" && !r.IsRegex() {
		groups = map[string]bool{} // a name has no groups
	}
	if v.required(f+".match", r.Match) && r.IsRegex() {
		if re, err := regexp.Compile(r.Match); err != nil {
			v.add(f+".match", "bad regular expression %q: %v", r.Match, err)
		} else {
			groups = map[string]bool{}
			for _, g := range re.SubexpNames() {
				groups[g] = g != ""
			}
		}
	}
	v.relativePath(f+".context", r.Context)
	v.relativePath(f+".dockerfile", r.Dockerfile)
	if len(r.Tags) == 0 {
		v.add(f+".tags", "at least one tag is required")
	}
	v.max(f+".tags", len(r.Tags), MaxTagTemplates)
	for i, t := range r.Tags {
		v.tagTemplate(f+".tags["+strconv.Itoa(i)+"]", t, groups)
	}
	for i, p := range r.Platforms {
		if why := checkPlatform(p); why != "" {
			v.add(f+".platforms["+strconv.Itoa(i)+"]", "%s", why)
		}
	}
	v.max(f+".buildArgs", len(r.BuildArgs), MaxBuildArgs)
	for k := range r.BuildArgs {
		if !buildArgRe.MatchString(k) {
			v.add(f+".buildArgs."+k, "%q is not a build argument name (letters, digits, _)", k)
		}
	}
	switch r.Network {
	case "", NetworkSandbox, NetworkNone:
	default:
		v.add(f+".network", "%q is not a build network; use sandbox (the default: the internet, nothing of the platform) or none", r.Network)
	}
	v.max(f+".secrets", len(r.Secrets), MaxBuildSecrets)
	for id, ref := range r.Secrets {
		if !secretIDRe.MatchString(id) {
			v.add(f+".secrets."+id, "%q is not a secret ID (letters, digits, _ . -; up to 64)", id)
		}
		if v.required(f+".secrets."+id, string(ref)) {
			v.secret(f+".secrets."+id, ref)
		}
	}
}

func (v *validator) tagTemplate(f string, t TagTemplate, groups map[string]bool) {
	if t.Tag == "" && t.BuildTime == "" && t.CommitID == 0 {
		v.add(f, "needs a tag, a buildTime or a commitId")
	}
	if !tagLiteralRe.MatchString(groupRef.ReplaceAllString(t.Tag, "")) {
		v.add(f+".tag", "%q may hold only letters, digits, _ . - and ${group} references", t.Tag)
	}
	for _, m := range groupRef.FindAllStringSubmatch(t.Tag, -1) {
		if groups != nil && !groups[m[1]] {
			v.add(f+".tag", "${%s} is not a named group of the rule's match", m[1])
		}
	}
	switch t.BuildTime {
	case "", BuildTimeDate, BuildTimeMinute:
	default:
		v.add(f+".buildTime", "%q is not a format; use date (20201015) or minute (202010151613)", t.BuildTime)
	}
	if t.CommitID < 0 || t.CommitID > MaxCommitChars {
		v.add(f+".commitId", "%d characters: use 1 to %d (0 or absent: no commit id)", t.CommitID, MaxCommitChars)
	}
}

// sourceURL accepts the Git transports a build may fetch over — https,
// http, ssh, git, file URLs, scp-like user@host:path and local paths —
// and refuses what git could read as an option ("-…") or as a transport
// that runs a command ("ext::…", "fd::…").
func (v *validator) sourceURL(f, u string) {
	switch {
	case strings.HasPrefix(u, "-"):
		v.add(f, "%q must not start with \"-\"", u)
	case strings.Contains(u, "::"):
		v.add(f, "%q: transport helpers (\"<transport>::<address>\") are not allowed", u)
	case strings.ContainsAny(u, "\x00\n\r"):
		v.add(f, "%q holds a control character", u)
	case strings.Contains(u, "://"):
		scheme, rest, _ := strings.Cut(u, "://")
		switch scheme {
		case "https", "http", "ssh", "git", "file":
		default:
			v.add(f, "%q: scheme %q is not one of https, http, ssh, git, file", u, scheme)
			return
		}
		authority, _, _ := strings.Cut(rest, "/")
		v.sourceHost(f, u, authority)
	default:
		// scp-like user@host:path (a ':' before any '/'); else a local path.
		if before, _, ok := strings.Cut(u, ":"); ok && !strings.Contains(before, "/") {
			v.sourceHost(f, u, before)
		}
	}
}

// sourceHost refuses a user or host that git would hand to ssh as an
// option ("ssh://-oProxyCommand=…/x", "git@-oProxyCommand=…:x").
func (v *validator) sourceHost(f, u, authority string) {
	user, host, ok := strings.Cut(authority, "@")
	if !ok {
		user, host = "", authority
	}
	if strings.HasPrefix(user, "-") || strings.HasPrefix(host, "-") {
		v.add(f, "%q: the host and the user must not start with \"-\" (ssh would read them as options)", u)
	}
}

// relativePath rejects absolute paths and paths that climb out of the repository.
func (v *validator) relativePath(f, p string) {
	if p == "" {
		return
	}
	clean := path.Clean(p)
	if path.IsAbs(clean) || clean == ".." || strings.HasPrefix(clean, "../") {
		v.add(f, "%q must be a path inside the repository (relative, no ..)", p)
	}
}
