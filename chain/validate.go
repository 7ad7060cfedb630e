package chain

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

var (
	// nameRe is what chain, registry, rule and trigger names may be: they end up
	// in workflow IDs, task queue names and search attributes.
	nameRe = regexp.MustCompile(`^[a-z0-9]([a-z0-9._-]{0,62})$`)
	// pathComponentRe is one OCI repository path component.
	pathComponentRe = regexp.MustCompile(`^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$`)
	// repositoryRe is a repository path of one or more components.
	repositoryRe = regexp.MustCompile(`^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$`)
	// TagRe is a legal OCI tag.
	TagRe = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$`)
)

// validator collects problems for one document.
type validator struct {
	file     string
	lines    lines
	cfg      *Config
	problems Problems
}

func (v *validator) add(field, format string, args ...any) {
	v.problems = append(v.problems, Problem{File: v.file, Line: v.lines.of(field), Field: field, Message: fmt.Sprintf(format, args...)})
}

func (v *validator) required(field, value string) bool {
	if value == "" {
		v.add(field, "is required")
		return false
	}
	return true
}

func (v *validator) name(field, value string) {
	if v.required(field, value) && !nameRe.MatchString(value) {
		v.add(field, "%q must be 1-63 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit", value)
	}
}

func (v *validator) regex(field, expr string) {
	if _, err := regexp.Compile(expr); err != nil {
		v.add(field, "bad regular expression %q: %v", expr, err)
	}
}

func (v *validator) max(field string, n, limit int) {
	if n > limit {
		v.add(field, "has %d items; at most %d are allowed", n, limit)
	}
}

func (v *validator) secret(field string, r SecretRef) {
	if err := r.Check(); err != nil {
		v.add(field, "%v", err)
	}
}

// unique reports a duplicate name at field.
func (v *validator) unique(seen map[string]string, field, value string) {
	if value == "" {
		return
	}
	if prev, dup := seen[value]; dup {
		v.add(field, "duplicate name %q (also used at %s)", value, prev)
		return
	}
	seen[value] = field
}

func (v *validator) registry(field, name string) {
	if !v.required(field, name) || v.cfg == nil {
		return
	}
	if _, ok := v.cfg.Registry(name); !ok {
		known := make([]string, len(v.cfg.Registries))
		for i, r := range v.cfg.Registries {
			known[i] = r.Name
		}
		v.add(field, "unknown registry %q (declared registries: %v)", name, known)
	}
}

func (v *validator) config(c *Config) {
	seen := map[string]string{}
	for i, r := range c.Registries {
		f := "registries[" + strconv.Itoa(i) + "]"
		v.name(f+".name", r.Name)
		v.unique(seen, f+".name", r.Name)
		if v.required(f+".address", r.Address) {
			if _, err := url.Parse("//" + r.Address); err != nil || r.Address[len(r.Address)-1] == '/' {
				v.add(f+".address", "%q must be host[:port], without scheme or path", r.Address)
			} else if host, port, err := net.SplitHostPort(r.Address); err == nil && (host == "" || port == "") {
				v.add(f+".address", "%q must be host[:port]", r.Address)
			}
		}
		v.secret(f+".credentials", r.Credentials)
		v.secret(f+".ca", r.CA)
		if r.CA != "" && r.Insecure {
			v.add(f+".ca", "a CA bundle is for TLS; insecure: true is plain HTTP (use one or the other)")
		}
	}
	if len(c.Registries) == 0 {
		v.add("registries", "at least one registry is required")
	}
	seen = map[string]string{}
	for i, src := range c.Sources {
		f := "sources[" + strconv.Itoa(i) + "]"
		v.name(f+".name", src.Name)
		v.unique(seen, f+".name", src.Name)
		switch {
		case slices.Contains(GitProviders, src.Provider):
			if src.Registry != "" {
				v.add(f+".registry", "only applies to image-push providers (%v)", RegistryProviders)
			}
		case slices.Contains(RegistryProviders, src.Provider):
			v.registry(f+".registry", src.Registry)
		case src.Provider == "":
			v.add(f+".provider", "is required: one of %v or %v", GitProviders, RegistryProviders)
		default:
			v.add(f+".provider", "%q is not a provider; use one of %v or %v", src.Provider, GitProviders, RegistryProviders)
		}
		if src.Secret == "" {
			v.add(f+".secret", "is required: deliveries are verified with it (a reference env:NAME or file:PATH)")
		}
		v.secret(f+".secret", src.Secret)
	}
	v.secret("api.token", c.API.Token)
	seen = map[string]string{}
	if c.API.Token != "" {
		seen[TokenIdentity] = "api.token"
	}
	for i, t := range c.API.Tokens {
		f := "api.tokens[" + strconv.Itoa(i) + "]"
		v.identity(f+".name", t.Name)
		v.unique(seen, f+".name", t.Name)
		if v.required(f+".token", string(t.Token)) {
			v.secret(f+".token", t.Token)
		}
	}
	if c.API.MaxBodyBytes < 0 {
		v.add("api.maxBodyBytes", "must be positive")
	}
}

func (v *validator) chain(c *Chain) {
	v.name("name", c.Name)
	v.scope(&c.Scope)
	if c.Build != nil {
		v.build(c.Build, &c.Scope)
	}
	if c.Scan != nil {
		v.scan(c.Scan, &c.Scope)
	}
	if c.Signing != nil {
		v.signing(c.Signing, c.Build != nil)
	}
	if c.Verify != nil {
		v.verify(c.Verify)
	}
	v.signingRequired(c)
	if c.Approval != nil {
		v.approval("approval", c.Approval)
		if len(c.Replication) == 0 {
			v.add("approval", "a chain without replication rules has nothing to approve")
		}
	}
	switch c.Concurrency {
	case "", ConcurrencyQueue, ConcurrencySupersede:
	default:
		v.add("concurrency", "%q is not a policy; use queue or supersede", c.Concurrency)
	}
	v.max("replication", len(c.Replication), MaxReplicationRules)
	seen := map[string]string{}
	for i := range c.Replication {
		v.replication("replication["+strconv.Itoa(i)+"]", &c.Replication[i], &c.Scope, seen)
	}
	if c.Sync != nil {
		if f := strings.Fields(c.Sync.Schedule); len(f) != 5 && !(len(f) >= 1 && strings.HasPrefix(f[0], "@")) {
			v.add("sync.schedule", "%q is not a schedule: a cron expression of 5 fields (\"0 3 * * *\") or a descriptor (@hourly, @daily, @every 30m)", c.Sync.Schedule)
		}
		if len(c.Replication) == 0 {
			v.add("sync", "a chain without replication rules has nothing to sync")
		}
	}
	v.max("triggers", len(c.Triggers), MaxTriggers)
	seen = map[string]string{}
	for i := range c.Triggers {
		v.trigger("triggers["+strconv.Itoa(i)+"]", &c.Triggers[i], seen)
	}
	v.waves(c)
	v.accelerate(c)
}

func (v *validator) scope(s *Scope) {
	v.registry("scope.registry", s.Registry)
	if v.required("scope.namespace", s.Namespace) && !pathComponentRe.MatchString(s.Namespace) {
		v.add("scope.namespace", "%q is not a valid namespace (lowercase letters, digits, separators . _ -)", s.Namespace)
	}
	switch {
	case s.AllRepositories && s.Repository != "":
		v.add("scope.repository", "set either repository or allRepositories: true, not both")
	case !s.AllRepositories && s.Repository == "":
		v.add("scope.repository", "is required unless allRepositories is true")
	case s.Repository != "" && !repositoryRe.MatchString(s.Repository):
		v.add("scope.repository", "%q is not a valid repository name", s.Repository)
	case !s.AllRepositories && len(s.Exclude) > 0:
		v.add("scope.exclude", "only applies with allRepositories: true")
	}
	v.max("scope.exclude", len(s.Exclude), MaxExcludes)
	for i, e := range s.Exclude {
		if !repositoryRe.MatchString(e) {
			v.add("scope.exclude["+strconv.Itoa(i)+"]", "%q is not a valid repository name", e)
		}
	}
}

func (v *validator) replication(f string, r *ReplicationRule, s *Scope, seen map[string]string) {
	v.name(f+".name", r.Name)
	v.unique(seen, f+".name", r.Name)
	v.registry(f+".destination", r.Destination)
	if r.Destination != "" && r.Destination == s.Registry {
		v.add(f+".destination", "is the chain's source registry %q; replicate to another instance", r.Destination)
	}
	switch r.Level {
	case LevelNamespace:
		if r.Repository != "" {
			v.add(f+".repository", "only applies to level: repository")
		}
	case LevelRepository:
		if r.Repository == "" && s.AllRepositories {
			v.add(f+".repository", "is required for a repository-level rule when the scope covers all repositories")
		} else if r.Repository != "" && !repositoryRe.MatchString(r.Repository) {
			v.add(f+".repository", "%q is not a valid repository name", r.Repository)
		}
	case "":
		v.add(f+".level", "is required: namespace or repository")
	default:
		v.add(f+".level", "%q is not a level; use namespace or repository", r.Level)
	}
	v.regex(f+".tagFilter", r.TagFilter)
}

// url checks a delivery URL: absolute, http or https.
func (v *validator) url(f, value string) {
	if v.required(f, value) {
		u, err := url.Parse(value)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			v.add(f, "%q must be an absolute http:// or https:// URL", value)
		}
	}
}

func (v *validator) trigger(f string, t *Trigger, seen map[string]string) {
	v.name(f+".name", t.Name)
	v.unique(seen, f+".name", t.Name)
	v.url(f+".url", t.URL)
	switch t.Mode {
	case TriggerAll:
	case TriggerRegexp:
		if v.required(f+".regexp", t.Regexp) {
			v.regex(f+".regexp", t.Regexp)
		}
	case TriggerTags:
		if len(t.Tags) == 0 {
			v.add(f+".tags", "mode tags needs at least one tag")
		}
		v.max(f+".tags", len(t.Tags), MaxTriggerTags)
		for i, tag := range t.Tags {
			if !TagRe.MatchString(tag) {
				v.add(f+".tags["+strconv.Itoa(i)+"]", "%q is not a valid tag", tag)
			}
		}
	case "":
		v.add(f+".mode", "is required: all, regexp or tags")
	default:
		v.add(f+".mode", "%q is not a mode; use all, regexp or tags", t.Mode)
	}
	if t.Mode != TriggerRegexp && t.Regexp != "" {
		v.add(f+".regexp", "only applies to mode: regexp")
	}
	if t.Mode != TriggerTags && len(t.Tags) > 0 {
		v.add(f+".tags", "only applies to mode: tags")
	}
	switch t.Format {
	case "", FormatACR, FormatCloudEvents:
	default:
		v.add(f+".format", "%q is not a format; use acr or cloudevents", t.Format)
	}
	v.secret(f+".secret", t.Secret)
}
