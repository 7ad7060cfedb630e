package chain

// Build is a chain's build section: where the source is and which pushes
// build which images.
type Build struct {
	Source BuildSource `yaml:"source" json:"source"`
	Rules  []BuildRule `yaml:"rules" json:"rules"`
}

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
	// the whole name; named groups ((?<name>…) or (?P<name>…)) can be used in tags.
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
}

// TagTemplate makes one image tag: Tag (a literal, with ${group} references
// to the match's named groups), then optionally the push time and the first
// CommitID characters of the commit, joined by "-".
type TagTemplate struct {
	Tag       string `yaml:"tag" json:"tag,omitempty"`
	BuildTime string `yaml:"buildTime" json:"buildTime,omitempty"`
	CommitID  int    `yaml:"commitId" json:"commitId,omitempty"`
}

// Limits of a build section.
const (
	MaxBuildRules   = 20
	MaxTagTemplates = 3
	MaxBuildArgs    = 20
	MaxCommitChars  = 40
)
