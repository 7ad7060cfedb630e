package chain

// Config is the top-level dchain config file (dchain.yaml).
type Config struct {
	// Registries are the registry instances, one per region, referred to by name.
	Registries []Registry `yaml:"registries" json:"registries"`
	// Chains are file globs, relative to the config file, of chain documents.
	Chains []string `yaml:"chains" json:"chains,omitempty"`
	// Retry tunes how long transient failures are retried.
	Retry RetrySettings `yaml:"retry" json:"retry"`
	// Sources are the webhook senders `dchain api` accepts, at /webhooks/<name>.
	Sources []Source `yaml:"sources" json:"sources,omitempty"`
	// API configures `dchain api`.
	API API `yaml:"api" json:"api"`

	// Path is the file the config was read from.
	Path string `yaml:"-" json:"-"`
}

// Registry is one OCI registry instance.
type Registry struct {
	Name string `yaml:"name" json:"name"`
	// Address is host[:port] of the registry.
	Address string `yaml:"address" json:"address"`
	// Region names where the instance lives (e.g. cn-hangzhou); defaults to Name.
	Region string `yaml:"region" json:"region"`
	// Insecure allows plain HTTP (loopback dev registries).
	Insecure bool `yaml:"insecure" json:"insecure"`
	// Credentials is a secret reference resolving to "username:password".
	// Empty means the keychain: the docker config and its credential
	// helpers (DOCKER_CONFIG), then the cloud keychains (GCR/Artifact
	// Registry, ECR, ACR); anonymous when none knows the registry.
	Credentials SecretRef `yaml:"credentials" json:"credentials,omitempty"`
	// CA is a reference (file:PATH or env:NAME) to the PEM bundle that
	// verifies a registry with a private TLS certificate, trusted besides
	// the system's roots. Exclusive with Insecure (plain HTTP).
	CA SecretRef `yaml:"ca" json:"ca,omitempty"`
	// RequireSignature makes every chain that delivers into this registry
	// sign its images or verify their signatures (chain validation).
	RequireSignature bool `yaml:"requireSignature" json:"requireSignature,omitempty"`
}

// RetrySettings bound the retries of transient failures. Durations are Go
// duration strings ("90s", "2m", "24h").
type RetrySettings struct {
	// MaxInterval is the longest wait between two attempts (default 2m).
	MaxInterval Duration `yaml:"maxInterval" json:"maxInterval,omitempty"`
	// ReplicationTimeout is how long a replication keeps retrying before the
	// destination is given up (default 24h).
	ReplicationTimeout Duration `yaml:"replicationTimeout" json:"replicationTimeout,omitempty"`
	// TriggerTimeout is how long a trigger delivery keeps retrying (default 1h).
	TriggerTimeout Duration `yaml:"triggerTimeout" json:"triggerTimeout,omitempty"`
}

// Chain is one delivery chain: build → scan → evaluate → replicate → trigger.
type Chain struct {
	Name        string `yaml:"name" json:"name"`
	Description string `yaml:"description" json:"description,omitempty"`
	Scope       Scope  `yaml:"scope" json:"scope"`
	// Build, when set, builds the images from a Git source on push.
	Build *Build `yaml:"build" json:"build,omitempty"`
	// Scan, when set, scans every image with Trivy and applies the blocking policy.
	Scan *Scan `yaml:"scan" json:"scan,omitempty"`
	// Signing, when set, signs and attests every image the chain delivers.
	Signing *Signing `yaml:"signing" json:"signing,omitempty"`
	// Verify, when set, requires a valid signature before replication.
	Verify      *Verify           `yaml:"verify" json:"verify,omitempty"`
	Replication []ReplicationRule `yaml:"replication" json:"replication,omitempty"`
	// Approval, when set, makes every run wait for a listed approver
	// before it copies anything.
	Approval *Approval `yaml:"approval" json:"approval,omitempty"`
	// Accelerate, when set ("estargz"), makes a lazily-pullable variant of
	// every delivered image once the policy passes, tagged
	// <tag>_accelerated, and delivers it with the image.
	Accelerate string `yaml:"accelerate" json:"accelerate,omitempty"`
	// Waves, when set, copy the destinations in ordered groups (a canary
	// region first): each wave after the one before succeeded.
	Waves []Wave `yaml:"waves" json:"waves,omitempty"`
	// Concurrency says what a newer push to the same ref does while an older
	// run of this chain is still going: "queue" (default: wait for it) or
	// "supersede" (cancel it if it is still building).
	Concurrency string    `yaml:"concurrency" json:"concurrency,omitempty"`
	Triggers    []Trigger `yaml:"triggers" json:"triggers,omitempty"`
	// Sync, when set, replicates what already exists in the scope on a
	// schedule (`dchain chain sync` does it once).
	Sync *Sync `yaml:"sync" json:"sync,omitempty"`
	// ImmutableTags makes every tag but latest of the chain's repositories
	// immutable, in the source and every destination: a build or a copy
	// that would point an existing tag at another image fails saying so
	// (whatever a rule's overwrite says).
	ImmutableTags bool `yaml:"immutableTags" json:"immutableTags,omitempty"`

	// File and Line say where the chain was declared.
	File string `yaml:"-" json:"-"`
	Line int    `yaml:"-" json:"-"`
}

// Immutable says whether tag may not be moved once it exists (the chain's
// immutableTags: every tag but latest).
func (c Chain) Immutable(tag string) bool { return c.ImmutableTags && !Movable(tag) }

// Movable says whether tag moves whatever immutableTags says: latest, and
// latest's accelerated variant.
func Movable(tag string) bool { return tag == "latest" || tag == "latest"+AcceleratedSuffix }

// Sync runs the chain's sync (every existing tag its rules cover that a
// destination lacks) as a Temporal Schedule.
type Sync struct {
	// Schedule is a cron expression (5 fields, UTC) or a descriptor such as @hourly.
	Schedule string `yaml:"schedule" json:"schedule"`
}

// Scope is the set of repositories a chain covers.
type Scope struct {
	// Registry is the source registry's name.
	Registry  string `yaml:"registry" json:"registry"`
	Namespace string `yaml:"namespace" json:"namespace"`
	// Repository is the one repository (inside Namespace) the chain covers.
	Repository string `yaml:"repository" json:"repository,omitempty"`
	// AllRepositories ("All Effective") covers every repository of Namespace
	// except those in Exclude.
	AllRepositories bool     `yaml:"allRepositories" json:"allRepositories,omitempty"`
	Exclude         []string `yaml:"exclude" json:"exclude,omitempty"`
}

// Replication levels.
const (
	LevelNamespace  = "namespace"
	LevelRepository = "repository"
)

// ReplicationRule copies images to one destination registry.
type ReplicationRule struct {
	Name        string `yaml:"name" json:"name"`
	Destination string `yaml:"destination" json:"destination"`
	// Level is "namespace" (every repository of the scope's namespace) or
	// "repository" (only Repository).
	Level string `yaml:"level" json:"level"`
	// Repository is the repository a repository-level rule covers; defaults to
	// the scope's repository.
	Repository string `yaml:"repository" json:"repository,omitempty"`
	// TagFilter is a regular expression a tag must match in full; empty means all tags.
	TagFilter string `yaml:"tagFilter" json:"tagFilter,omitempty"`
	// Overwrite allows replacing a destination tag that points at another digest.
	Overwrite bool `yaml:"overwrite" json:"overwrite"`
	// Referrers says whether the artifacts attached to an image (signatures,
	// SBOMs, attestations, scan reports: OCI 1.1 referrers, recursively) are
	// copied with it; default true, false leaves them behind.
	Referrers *bool `yaml:"referrers" json:"referrers,omitempty"`
}

// CopiesReferrers reports whether the rule copies an image's referrers with it.
func (r ReplicationRule) CopiesReferrers() bool { return r.Referrers == nil || *r.Referrers }

// Trigger modes.
const (
	TriggerAll    = "all"
	TriggerRegexp = "regexp"
	TriggerTags   = "tags"
)

// Trigger payload formats.
const (
	FormatACR         = "acr"
	FormatCloudEvents = "cloudevents"
)

// Trigger is a distribution trigger: an HTTP POST that makes clusters redeploy.
type Trigger struct {
	Name string `yaml:"name" json:"name"`
	URL  string `yaml:"url" json:"url"`
	// Mode is "all", "regexp" (Regexp must match the tag in full) or "tags"
	// (the tag must be in Tags).
	Mode   string   `yaml:"mode" json:"mode"`
	Regexp string   `yaml:"regexp" json:"regexp,omitempty"`
	Tags   []string `yaml:"tags" json:"tags,omitempty"`
	// Format is "acr" (default) or "cloudevents".
	Format string `yaml:"format" json:"format"`
	// Secret, when set, is a reference to the HMAC-SHA256 signing key.
	Secret SecretRef `yaml:"secret" json:"secret,omitempty"`
}

// Concurrency policies.
const (
	ConcurrencyQueue     = "queue"
	ConcurrencySupersede = "supersede"
)

// Limits on list lengths.
const (
	MaxReplicationRules = 20
	MaxTriggers         = 20
	MaxTriggerTags      = 10
	MaxExcludes         = 100
)

// Source is a webhook sender: a Git host or a registry.
type Source struct {
	Name string `yaml:"name" json:"name"`
	// Provider is github, gitlab, gitee, bitbucket (Git pushes), distribution
	// or harbor (image pushes).
	Provider string `yaml:"provider" json:"provider"`
	// Secret verifies deliveries (HMAC key, token or auth header, per provider).
	Secret SecretRef `yaml:"secret" json:"secret,omitempty"`
	// Registry is the registry an image-push source reports on.
	Registry string `yaml:"registry" json:"registry,omitempty"`
	// Chains limits the chains the source may start (default: every chain whose source or scope matches).
	Chains []string `yaml:"chains" json:"chains,omitempty"`
}

// API configures the HTTP API and webhook receiver.
type API struct {
	// Listen is host:port (default 127.0.0.1:8080).
	Listen string `yaml:"listen" json:"listen,omitempty"`
	// Token guards /api/v1 (a bearer token); webhooks use their sources'
	// secrets. A request with it acts as TokenIdentity.
	Token SecretRef `yaml:"token" json:"token,omitempty"`
	// Tokens are more bearer tokens, each with the name a request made
	// with it acts as (what approval.approvers list).
	Tokens []APIToken `yaml:"tokens" json:"tokens,omitempty"`
	// MaxBodyBytes limits a request body (default 1 MiB).
	MaxBodyBytes int64 `yaml:"maxBodyBytes" json:"maxBodyBytes,omitempty"`
	// UIURL is the Temporal Web UI, for links to runs (default http://127.0.0.1:8233).
	UIURL string `yaml:"uiURL" json:"uiURL,omitempty"`
}

// APIToken is a named bearer token of /api/v1.
type APIToken struct {
	Name  string    `yaml:"name" json:"name"`
	Token SecretRef `yaml:"token" json:"token"`
}

// TokenIdentity is who a request with api.token (the unnamed one) acts as.
const TokenIdentity = "api"

// Providers of webhook sources.
var (
	GitProviders      = []string{"github", "gitlab", "gitee", "bitbucket"}
	RegistryProviders = []string{"distribution", "harbor"}
)
