package chain

import (
	"net/url"
	"slices"
	"strconv"
)

// Signing signs every image the chain delivers, after the blocking policy
// passed and before replication: a cosign-compatible signature and signed
// in-toto attestations, stored as referrers of the image (package signing).
type Signing struct {
	// Key is the private key: file:PATH, env:NAME or a KMS URI.
	Key KeyRef `yaml:"key" json:"key"`
	// Attest lists what is attested besides the signature: provenance
	// (BuildKit's SLSA provenance of a build), sbom (a CycloneDX SBOM by
	// Trivy) and scan (the scan report). Default: all three; provenance
	// only where the chain built the image, scan only where it scanned.
	Attest []string `yaml:"attest" json:"attest,omitempty"`
}

// Attestations a chain can sign.
const (
	AttestProvenance = "provenance"
	AttestSBOM       = "sbom"
	AttestScan       = "scan"
)

// Attestations are the kinds Attest asks for, or every kind.
func (s Signing) Attestations() []string {
	if s.Attest == nil {
		return []string{AttestProvenance, AttestSBOM, AttestScan}
	}
	return s.Attest
}

// Verify requires, before replication, that the image carries a valid
// signature by one of Keys: a pushed image without one is Blocked. For an
// image the chain built, it checks the chain's own signature and
// provenance after signing.
type Verify struct {
	// Keys are the public keys a signature may be made with (file:PATH,
	// env:NAME or a KMS URI).
	Keys []KeyRef `yaml:"keys" json:"keys"`
	// Provenance, when set, also requires a SLSA provenance attestation by
	// one of Keys whose source and builder match.
	Provenance *ProvenanceRule `yaml:"provenance" json:"provenance,omitempty"`
}

// ProvenanceRule is what a provenance attestation must say.
type ProvenanceRule struct {
	// Repository is the source repository's URL the image was built from
	// (the provenance's material or config source), when set.
	Repository string `yaml:"repository" json:"repository,omitempty"`
	// Builder is the builder's ID, when set.
	Builder string `yaml:"builder" json:"builder,omitempty"`
}

// MaxVerifyKeys bounds verify.keys.
const MaxVerifyKeys = 16

func (v *validator) signing(s *Signing, built bool) {
	v.key("signing.key", s.Key)
	seen := map[string]bool{}
	for i, a := range s.Attest {
		f := "signing.attest[" + strconv.Itoa(i) + "]"
		switch {
		case !slices.Contains([]string{AttestProvenance, AttestSBOM, AttestScan}, a):
			v.add(f, "%q is not an attestation; use provenance, sbom or scan", a)
		case seen[a]:
			v.add(f, "%q is listed twice", a)
		case a == AttestProvenance && !built:
			v.add(f, "provenance comes from the build: this chain has no build section")
		}
		seen[a] = true
	}
}

func (v *validator) verify(vr *Verify) {
	if len(vr.Keys) == 0 {
		v.add("verify.keys", "at least one public key is required (file:PATH, env:NAME or a KMS URI)")
	}
	v.max("verify.keys", len(vr.Keys), MaxVerifyKeys)
	for i, k := range vr.Keys {
		v.key("verify.keys["+strconv.Itoa(i)+"]", k)
	}
	if p := vr.Provenance; p != nil {
		if p.Repository == "" && p.Builder == "" {
			v.add("verify.provenance", "say what to require: repository, builder or both")
		}
		if p.Repository != "" {
			if u, err := url.Parse(p.Repository); err != nil || (u.Host == "" && u.Scheme != "file") {
				v.add("verify.provenance.repository", "%q is not a repository URL (https://host/path)", p.Repository)
			}
		}
	}
}

func (v *validator) key(field string, k KeyRef) {
	if err := k.Check(); err != nil {
		v.add(field, "%v", err)
	}
}

// signingRequired reports the destinations that require signatures a
// chain does not give.
func (v *validator) signingRequired(c *Chain) {
	if v.cfg == nil || c.Signing != nil {
		return
	}
	// A chain that builds signs what it builds: nobody else signs it, so
	// verify alone would block every run.
	if c.Build != nil {
		for i, r := range c.Replication {
			if reg, ok := v.cfg.Registry(r.Destination); ok && reg.RequireSignature {
				v.add("replication["+strconv.Itoa(i)+"].destination",
					"registry %q requires signed images, and this chain builds them: give it a signing key (signing.key)", reg.Name)
			}
		}
		if reg, ok := v.cfg.Registry(c.Scope.Registry); ok && reg.RequireSignature {
			v.add("signing", "registry %q requires signed images, and this chain builds into it: give it a signing key (signing.key)", reg.Name)
		}
	}
	if c.Verify != nil || c.Build != nil {
		return
	}
	for i, r := range c.Replication {
		if reg, ok := v.cfg.Registry(r.Destination); ok && reg.RequireSignature {
			v.add("replication["+strconv.Itoa(i)+"].destination",
				"registry %q requires signed images: give the chain a signing key (signing.key) or the keys its images must be signed with (verify.keys)", reg.Name)
		}
	}
}
