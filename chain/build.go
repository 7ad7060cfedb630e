package chain

import (
	"errors"
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"
)

// Build is a chain's build section: where the source is and which pushes
// build which images.
type Build struct {
	Source BuildSource `yaml:"source" json:"source"`
	Rules  []BuildRule `yaml:"rules" json:"rules"`
	// AutoBuild off (false) pauses the builds a push starts, keeping the
	// rules: a person still starts one (`dchain run start --ref`). Default on.
	AutoBuild *bool `yaml:"autoBuild" json:"autoBuild,omitempty"`
}

// Automatic says whether a push starts builds (build.autoBuild, default on).
func (b *Build) Automatic() bool { return b.AutoBuild == nil || *b.AutoBuild }

// BuildSource is the Git repository the images are built from.
type BuildSource struct {
	// URL is https://…, ssh://… or git@host:…, or a local path / file:// URL.
	// A relative path is relative to the chain file.
	URL string `yaml:"url" json:"url"`
	// Credentials is a reference to "username:token" for https sources.
	Credentials SecretRef `yaml:"credentials" json:"credentials,omitempty"`
}

// Build rule types.
const (
	RuleBranch = "branch"
	RuleTag    = "tag"
)

// Build time formats of a tag template (UTC+8, like the vendor's).
const (
	BuildTimeDate   = "date"   // 20201015
	BuildTimeMinute = "minute" // 202010151613
)

// BuildRule says which pushes build an image, and how.
type BuildRule struct {
	Name string `yaml:"name" json:"name"`
	// Type is "branch" or "tag".
	Type string `yaml:"type" json:"type"`
	// Match is a branch or tag name, or a regular expression matched against
	// the whole name; named groups ((?<name>…) or (?P<name>…)) can be used in
	// tags. It is a regular expression exactly when it holds a character other
	// than letters, digits and "._/-" (see IsRegex): "v9.9.9" is a name and
	// matches only v9.9.9; `v9\.\d+` or `release-.*` are expressions.
	Match string `yaml:"match" json:"match"`
	// Context is the build context directory, relative to the repository root.
	Context string `yaml:"context" json:"context,omitempty"`
	// Dockerfile is the Dockerfile's path relative to Context (default "Dockerfile").
	Dockerfile string        `yaml:"dockerfile" json:"dockerfile,omitempty"`
	Tags       []TagTemplate `yaml:"tags" json:"tags"`
	// Platforms to build, e.g. linux/amd64; one image index covers them all (default linux/amd64).
	Platforms []string          `yaml:"platforms" json:"platforms,omitempty"`
	BuildArgs map[string]string `yaml:"buildArgs" json:"buildArgs,omitempty"`
	NoCache   bool              `yaml:"noCache" json:"noCache,omitempty"`
	// Network is the RUN steps' network: "sandbox" (the default: a network
	// namespace of their own with the internet and nothing of the platform)
	// or "none" (no network at all: a hermetic build).
	Network string `yaml:"network" json:"network,omitempty"`
	// Secrets hand secrets to RUN steps that mount them
	// (RUN --mount=type=secret,id=ID), by ID: references (env:NAME or
	// file:PATH) resolved on the worker at build time, passed through
	// BuildKit's session; never in the image, its log or a history.
	Secrets map[string]SecretRef `yaml:"secrets" json:"secrets,omitempty"`
}

// Build networks of a rule.
const (
	NetworkSandbox = "sandbox"
	NetworkNone    = "none"
)

// TagTemplate makes one image tag: Tag (a literal, with ${group} references
// to the match's named groups), then optionally the push time and the first
// CommitID characters of the commit, joined by "-".
type TagTemplate struct {
	Tag       string `yaml:"tag" json:"tag,omitempty"`
	BuildTime string `yaml:"buildTime" json:"buildTime,omitempty"`
	// CommitID is how many characters of the commit id the tag ends with. In
	// a chain file, `commitId: true` or an empty `commitId:` mean
	// DefaultCommitChars (the seed's "first six characters"), false or 0 none.
	CommitID int `yaml:"commitId" json:"commitId,omitempty"`
}

// DefaultCommitChars is the commit id length of `commitId: true`.
const DefaultCommitChars = 6

// Limits of a build section.
const (
	MaxBuildRules   = 20
	MaxTagTemplates = 3
	MaxBuildArgs    = 20
	MaxCommitChars  = 40
	MaxBuildSecrets = 20
)

// UnmarshalYAML reads a tag template, accepting the seed's spellings of
// the commit id option: `commitId: true` or an empty `commitId:` mean
// DefaultCommitChars, `false` none, a number that many characters.
func (t *TagTemplate) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: a tag template is a mapping (tag, buildTime, commitId)", n.Line)}}
	}
	var errs []string
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		var err error
		switch k.Value {
		case "tag":
			err = v.Decode(&t.Tag)
		case "buildTime":
			err = v.Decode(&t.BuildTime)
		case "commitId":
			switch {
			case v.Tag == "!!null":
				t.CommitID = DefaultCommitChars
			case v.Tag == "!!bool":
				var b bool
				if err = v.Decode(&b); b {
					t.CommitID = DefaultCommitChars
				}
			default:
				if v.Decode(&t.CommitID) != nil {
					errs = append(errs, fmt.Sprintf("line %d: commitId: want true, false or a number of characters, got %q", v.Line, v.Value))
				}
			}
		default:
			errs = append(errs, fmt.Sprintf("line %d: field %s not found in a tag template (tag, buildTime, commitId)", k.Line, k.Value))
		}
		if err != nil {
			var te *yaml.TypeError
			if errors.As(err, &te) {
				errs = append(errs, te.Errors...)
			} else {
				errs = append(errs, err.Error())
			}
		}
	}
	if len(errs) > 0 {
		return &yaml.TypeError{Errors: errs}
	}
	return nil
}

// IsRegex reports whether a rule's match is a regular expression: it is
// when it holds any character other than letters, digits and "._/-", which
// are what branch and tag names are usually made of. A name matches only
// itself ("." included); an expression must match the whole name.
func (r BuildRule) IsRegex() bool {
	return strings.Trim(r.Match, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._/-") != ""
}
