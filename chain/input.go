package chain

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// This file is dchain's one validator of values from outside: webhook
// payloads, REST bodies, CLI flags and registry answers pass through it once,
// at the boundary, and come out typed (Ref, Commit) or refused with an
// *InputError naming the field and what is wrong. The starter, the API, the
// CLI and the webhook parsers all call it; nothing downstream re-checks.

// InputError is a refused value from outside: which field, and why.
type InputError struct {
	Field  string `json:"field"`
	Reason string `json:"reason"`
}

func (e *InputError) Error() string { return e.Field + ": " + e.Reason }

func refuse(field, format string, args ...any) *InputError {
	return &InputError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// Ref is a full Git ref that passed ParseRef: refs/heads/NAME or refs/tags/NAME.
type Ref string

// Commit is a full commit id that passed ParseCommit: 40 (SHA-1) or 64
// (SHA-256) lowercase hexadecimal characters.
type Commit string

// Short is the commit's first 12 characters.
func (c Commit) Short() string { return string(c[:min(12, len(c))]) }

// MaxRefBytes bounds a ref: it ends up in run IDs and search attributes.
const MaxRefBytes = 255

// ParseRef checks a ref from outside against Git's ref-name rules
// (git check-ref-format) and dchain's own: it must be refs/heads/NAME or
// refs/tags/NAME, valid UTF-8, at most MaxRefBytes, and no component may
// start with "-" (so it can never read as an option).
func ParseRef(field, s string) (Ref, error) {
	bad := func(why string, args ...any) (Ref, error) {
		return "", refuse(field, "%q is not a valid ref: "+why, append([]any{s}, args...)...)
	}
	switch {
	case s == "":
		return "", refuse(field, "is required: refs/heads/NAME or refs/tags/NAME")
	case len(s) > MaxRefBytes:
		return bad("longer than %d bytes", MaxRefBytes)
	case !utf8.ValidString(s):
		return bad("not valid UTF-8")
	case !strings.HasPrefix(s, "refs/heads/") && !strings.HasPrefix(s, "refs/tags/"):
		return bad("want refs/heads/NAME or refs/tags/NAME")
	case strings.Contains(s, ".."):
		return bad(`".." is not allowed`)
	case strings.Contains(s, "@{"):
		return bad(`"@{" is not allowed`)
	case strings.Contains(s, "//"), strings.HasSuffix(s, "/"):
		return bad("empty path component")
	case strings.HasSuffix(s, "."):
		return bad(`it ends with "."`)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || strings.ContainsRune(" ~^:?*[\\", r) {
			return bad("character %q is not allowed", r)
		}
	}
	for _, c := range strings.Split(s, "/")[2:] {
		switch {
		case strings.HasPrefix(c, "."):
			return bad("component %q starts with \".\"", c)
		case strings.HasPrefix(c, "-"):
			return bad("component %q starts with \"-\"", c)
		case strings.HasSuffix(c, ".lock"):
			return bad("component %q ends with \".lock\"", c)
		case c == "@":
			return bad(`component "@" is not allowed`)
		}
	}
	return Ref(s), nil
}

// Split returns the rule type ("branch" or "tag") and the short name.
func (r Ref) Split() (typ, name string) {
	if n, ok := strings.CutPrefix(string(r), "refs/heads/"); ok {
		return RuleBranch, n
	}
	return RuleTag, strings.TrimPrefix(string(r), "refs/tags/")
}

// ParseCommit checks a commit id from outside: 40 or 64 hexadecimal
// characters (upper case is folded to lower). Abbreviated ids are refused:
// a run builds exactly one commit.
func ParseCommit(field, s string) (Commit, error) {
	if s == "" {
		return "", refuse(field, "is required: a full commit id (40 or 64 hexadecimal characters)")
	}
	if (len(s) != 40 && len(s) != 64) || strings.Trim(strings.ToLower(s), "0123456789abcdef") != "" {
		return "", refuse(field, "%q is not a commit id: want 40 or 64 hexadecimal characters", clip(s))
	}
	return Commit(strings.ToLower(s)), nil
}

// ParseDigest checks an image digest from outside: sha256:<64 hex>.
func ParseDigest(field, s string) (string, error) {
	h, err := v1.NewHash(s)
	if err != nil || h.Algorithm != "sha256" {
		return "", refuse(field, "%q is not a sha256 digest (sha256:<64 hexadecimal characters>)", clip(s))
	}
	return h.String(), nil
}

// ParseTag checks an image tag from outside (the OCI tag grammar).
func ParseTag(field, s string) (string, error) {
	if !TagRe.MatchString(s) {
		return "", refuse(field, "%q is not a valid tag (letters, digits, _ . -, at most 128, not starting with . or -)", clip(s))
	}
	return s, nil
}

// ParseRepository checks a repository path from outside ("namespace/name",
// as go-containerregistry parses it, lowercase components).
func ParseRepository(field, s string) (string, error) {
	if !strings.Contains(s, "/") || !repositoryRe.MatchString(s) {
		return "", refuse(field, "%q is not a repository: want namespace/name in lowercase letters, digits and separators", clip(s))
	}
	if _, err := name.NewRepository("registry.invalid/"+s, name.StrictValidation); err != nil {
		return "", refuse(field, "%q is not a repository: %v", clip(s), err)
	}
	return s, nil
}

// ParseImage splits "namespace/name:tag" (no registry host) from outside.
func ParseImage(field, s string) (repo, tag string, err error) {
	i := strings.LastIndex(s, ":")
	if i < 0 || strings.Contains(s[i:], "/") {
		return "", "", refuse(field, "%q: want namespace/repository:tag", clip(s))
	}
	if repo, err = ParseRepository(field, s[:i]); err != nil {
		return "", "", err
	}
	if tag, err = ParseTag(field, s[i+1:]); err != nil {
		return "", "", err
	}
	return repo, tag, nil
}

// clip shortens a refused value for an error message.
func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// Repositories dchain keeps next to an image's own, in the same registry:
// build logs, build cache. They are dchain's artifacts, never images to run
// a chain on.
const (
	LogRepositoryPrefix   = "dchain-logs/"
	CacheRepositoryPrefix = "dchain-cache/"
)

// IsReferrerTag reports whether tag is an OCI 1.1 referrers fallback tag
// ("sha256-<64 hex>") or one of the tags signing tools derive from it
// ("sha256-<hex>.sig", ".att", ".sbom"): an artifact attached to an image,
// never an image of its own.
func IsReferrerTag(tag string) bool {
	hex, ok := strings.CutPrefix(tag, "sha256-")
	if !ok || len(hex) < 64 {
		return false
	}
	if strings.Trim(hex[:64], "0123456789abcdef") != "" {
		return false
	}
	return len(hex) == 64 || hex[64] == '.'
}

// ReferrerSubject is the digest of the image a referrer tag
// (IsReferrerTag) is attached to: "sha256-<hex>.sig" → "sha256:<hex>".
func ReferrerSubject(tag string) (string, bool) {
	if !IsReferrerTag(tag) {
		return "", false
	}
	return "sha256:" + tag[len("sha256-"):len("sha256-")+64], true
}

// NotAnImage says why repo:tag must never start a run, be scanned as an
// image or fire a trigger — a referrer tag, or one of dchain's own
// repositories (build logs, build cache, a chain's quarantine) — or ""
// when it is an ordinary image.
func (l *Loaded) NotAnImage(repo, tag string) string {
	switch {
	case IsReferrerTag(tag):
		return fmt.Sprintf("%s:%s is a referrer tag (a signature, SBOM or scan report attached to an image), not an image", repo, tag)
	case strings.HasPrefix(repo, LogRepositoryPrefix), strings.HasPrefix(repo, CacheRepositoryPrefix):
		return fmt.Sprintf("%s is a dchain build log or cache repository, not an image", repo)
	}
	if l != nil {
		for _, c := range l.Chains {
			if c.Scan != nil && c.Scan.Backup != nil && c.Scan.Backup.Repository == repo {
				return fmt.Sprintf("%s is the quarantine repository of chain %s", repo, c.Name)
			}
		}
	}
	return ""
}

// registryByNameOrAddress finds a declared registry by its name or address.
func (c *Config) registryByNameOrAddress(s string) (Registry, bool) {
	for _, r := range c.Registries {
		if r.Name == s || r.Address == s {
			return r, true
		}
	}
	return Registry{}, false
}

// registryNames lists the declared registries, for error messages.
func (c *Config) registryNames() []string {
	names := make([]string, len(c.Registries))
	for i, r := range c.Registries {
		names[i] = r.Name
	}
	return names
}

// ParseRegistryImage checks an image named with its registry from outside:
// REGISTRY/namespace/name:tag or REGISTRY/namespace/name@sha256:…, where
// REGISTRY is a declared registry's name or address. It returns the
// registry, the repository and the tag or digest.
func (c *Config) ParseRegistryImage(field, s string) (Registry, string, string, error) {
	regPart, rest, ok := strings.Cut(s, "/")
	reg, known := c.registryByNameOrAddress(regPart)
	switch {
	case !ok:
		return reg, "", "", refuse(field, "%q: want REGISTRY/NAMESPACE/REPOSITORY:TAG or …@sha256:DIGEST", clip(s))
	case !known:
		return reg, "", "", refuse(field, "%q: unknown registry %q (declared: %v)", clip(s), regPart, c.registryNames())
	}
	if repo, digest, byDigest := strings.Cut(rest, "@"); byDigest {
		r, err := ParseRepository(field, repo)
		if err != nil {
			return reg, "", "", err
		}
		d, err := ParseDigest(field, digest)
		return reg, r, d, err
	}
	repo, tag, err := ParseImage(field, rest)
	return reg, repo, tag, err
}

// ParseTarget checks a replication target from outside:
// REGISTRY[/namespace/name[:tag]], where REGISTRY is a declared registry's
// name or address; the repository and tag default to repo and tag.
func (c *Config) ParseTarget(field, s, repo, tag string) (Registry, string, string, error) {
	regPart, rest, _ := strings.Cut(s, "/")
	reg, known := c.registryByNameOrAddress(regPart)
	if !known {
		return reg, "", "", refuse(field, "%q: unknown registry %q (declared: %v)", clip(s), regPart, c.registryNames())
	}
	var err error
	switch {
	case rest == "":
	case strings.Contains(rest[strings.LastIndex(rest, "/")+1:], ":"):
		if repo, tag, err = ParseImage(field, rest); err != nil {
			return reg, "", "", err
		}
	default:
		if repo, err = ParseRepository(field, rest); err != nil {
			return reg, "", "", err
		}
	}
	if tag == "" {
		return reg, "", "", refuse(field, "%q: name a tag (REGISTRY/NAMESPACE/REPOSITORY:TAG) when the source is named by digest", clip(s))
	}
	return reg, repo, tag, nil
}

// ParseName checks a chain, registry, rule or trigger name from outside.
func ParseName(field, s string) (string, error) {
	if !nameRe.MatchString(s) {
		return "", refuse(field, "%q is not a name: 1-63 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit", clip(s))
	}
	return s, nil
}

// MaxCommentBytes bounds an approval's comment or reason: it is recorded in
// the run's history and shown in its status.
const MaxCommentBytes = 2000

// ParseIdentity checks who acts (an approver: an API token's name, a CLI
// identity).
func ParseIdentity(field, s string) (string, error) {
	if !IdentityRe.MatchString(s) {
		return "", refuse(field, "%q is not an identity: 1-128 letters, digits, '.', '_', '@', '+' or '-', starting with a letter or digit", clip(s))
	}
	return s, nil
}

// ParseComment checks a free text a person gives (an approval's comment or
// reason): valid UTF-8, printable, at most MaxCommentBytes; where
// requiredBecause says why one is needed, a blank one is refused saying so.
func ParseComment(field, s, requiredBecause string) (string, error) {
	switch {
	case !utf8.ValidString(s):
		return "", refuse(field, "is not valid UTF-8")
	case len(s) > MaxCommentBytes:
		return "", refuse(field, "is %d bytes; at most %d", len(s), MaxCommentBytes)
	case requiredBecause != "" && strings.TrimSpace(s) == "":
		return "", refuse(field, "is required: %s", requiredBecause)
	}
	for _, r := range s {
		if r < ' ' && r != '\n' && r != '\t' || r == 0x7f {
			return "", refuse(field, "has a control character %U", r)
		}
	}
	return s, nil
}
