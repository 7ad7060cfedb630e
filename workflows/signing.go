package workflows

import (
	"fmt"
	"strings"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/dchain-dev/dchain/chain"
)

// SignInput signs one image and attests what the run knows of it.
type SignInput struct {
	Registry   chain.Registry `json:"registry"`
	Repository string         `json:"repository"`
	Digest     string         `json:"digest"`
	// Key names the private key (a reference: never the key).
	Key chain.KeyRef `json:"key"`
	// Attest lists the attestations to sign: provenance (read from the
	// BuildKit attestation manifests of the built index), sbom, scan.
	Attest []string `json:"attest,omitempty"`
	// Report is the scan report's reference, for the scan attestation.
	Report string `json:"report,omitempty"`
	// ReusedBuild: the build stage reused an earlier build's image rather
	// than building it, so its BuildKit provenance was not seen being made:
	// it is attested only where this key attested it already.
	ReusedBuild bool `json:"reusedBuild,omitempty"`
	// Require, when set, is the chain's verify.provenance rule for an image
	// it built: nothing is signed unless BuildKit's provenance matches it.
	Require *chain.ProvenanceRule `json:"require,omitempty"`
}

// Signed is what a signing stored: the signature and each attestation,
// each a referrer of the image.
type Signed struct {
	Key          chain.KeyRef     `json:"key"`
	Signature    string           `json:"signature"`
	Attestations []AttestationRef `json:"attestations,omitempty"`
	// Missing says what was asked for but could not be attested, and why.
	Missing []string `json:"missing,omitempty"`
	// Refused says why nothing was signed: the build's provenance does not
	// match the chain's verify.provenance rule.
	Refused string `json:"refused,omitempty"`
}

// AttestationRef is one signed attestation attached to an image.
type AttestationRef struct {
	// Kind is provenance, sbom or scan.
	Kind          string `json:"kind"`
	PredicateType string `json:"predicateType"`
	// Platform is the platform the attestation is about ("" for the whole image).
	Platform string `json:"platform,omitempty"`
	// Digest is the referrer manifest's.
	Digest string `json:"digest"`
	// Reused: the image carried this attestation, signed by the same key, already.
	Reused bool `json:"reused,omitempty"`
}

// VerifyInput checks an image's signatures against the chain's keys.
type VerifyInput struct {
	Registry   chain.Registry `json:"registry"`
	Repository string         `json:"repository"`
	Digest     string         `json:"digest"`
	Verify     chain.Verify   `json:"verify"`
}

// Verification is what a check found.
type Verification struct {
	// Verified is true when a signature by a listed key (and, if asked
	// for, a matching provenance) was found.
	Verified bool `json:"verified"`
	// SignedBy is the key reference the signature verified with.
	SignedBy  chain.KeyRef `json:"signedBy,omitempty"`
	Signature string       `json:"signature,omitempty"`
	// Provenance is the digest of the provenance attestation that matched.
	Provenance string `json:"provenance,omitempty"`
	// Reason says why not, when not verified.
	Reason string `json:"reason,omitempty"`
	// Rejected counts the bundles attached that did not verify.
	Rejected int `json:"rejected,omitempty"`
}

// Signing is the sign stage's record in a run.
type Signing struct {
	Verification *Verification `json:"verification,omitempty"`
	Signed       *Signed       `json:"signed,omitempty"`
	// Accelerated is the signature of the image's accelerated variant
	// (signed by the same key; its files are the image's, attested there).
	Accelerated *Signed `json:"accelerated,omitempty"`
}

// SigningRef is what a trigger tells its receiver of an image's signing:
// digests of the signature and attestations attached to the delivered
// image, so that an admission controller can verify before it redeploys.
type SigningRef struct {
	Key          string           `json:"key,omitempty"`
	Signature    string           `json:"signature,omitempty"`
	Attestations []AttestationRef `json:"attestations,omitempty"`
	VerifiedBy   string           `json:"verifiedBy,omitempty"`
}

// sign verifies the image's signatures where the chain asks for them, then
// signs and attests it, before replication takes it (and its referrers)
// to every destination. A pushed image is verified as it came, before
// dchain adds its own signature; a built one after, so that the check
// covers what dchain built and signed.
func (r *run) sign(ctx workflow.Context) error {
	c := r.in.Chain
	if c.Signing == nil && c.Verify == nil {
		return errSkipped("no signing or verify section")
	}
	src, err := r.registry(r.in.Image.Registry)
	if err != nil {
		return err
	}
	r.status.Signing = &Signing{}
	built := r.status.Build != nil
	if c.Verify != nil && !built {
		if err := r.verifySignature(ctx, src); err != nil {
			return err
		}
	}
	if c.Signing != nil {
		in := SignInput{Registry: src, Repository: r.status.Image.Repository, Digest: r.status.Image.Digest, Key: c.Signing.Key}
		for _, a := range c.Signing.Attestations() {
			if (a == chain.AttestProvenance && !built) || (a == chain.AttestScan && r.status.Scan == nil) {
				continue
			}
			in.Attest = append(in.Attest, a)
		}
		if r.status.Scan != nil {
			in.Report = r.status.Scan.Report
		}
		if built {
			in.ReusedBuild = r.status.Build.ReusedFrom != ""
			if c.Verify != nil {
				in.Require = c.Verify.Provenance
			}
		}
		// As long as a scan: the SBOM of each platform is Trivy's analysis again.
		opts := r.activityOptions(r.in.TaskQueue, fmt.Sprintf("sign %s@%s with %s", in.Repository, in.Digest, in.Key), 30*time.Minute, 2*time.Hour)
		opts.HeartbeatTimeout = 5 * time.Minute
		var signed Signed
		if err := r.execute(workflow.WithActivityOptions(ctx, opts), ActivitySignImage, in).Get(ctx, &signed); err != nil {
			return err
		}
		r.status.Signing.Signed = &signed
		if signed.Refused != "" {
			return errBlocked{by: "signature policy", reason: signed.Refused}
		}
	}
	if c.Verify != nil && built {
		if err := r.verifySignature(ctx, src); err != nil {
			return err
		}
	}
	r.stageStatus(StageSign).Message = r.status.Signing.String()
	return nil
}

// verifySignature blocks the chain when the image is not signed as the
// chain's verify section requires.
func (r *run) verifySignature(ctx workflow.Context, src chain.Registry) error {
	in := VerifyInput{Registry: src, Repository: r.status.Image.Repository, Digest: r.status.Image.Digest, Verify: *r.in.Chain.Verify}
	opts := r.activityOptions(r.in.TaskQueue, fmt.Sprintf("verify the signature of %s@%s", in.Repository, in.Digest), 5*time.Minute, time.Hour)
	var v Verification
	if err := r.execute(workflow.WithActivityOptions(ctx, opts), ActivityVerifyImage, in).Get(ctx, &v); err != nil {
		return err
	}
	r.status.Signing.Verification = &v
	if !v.Verified {
		return errBlocked{by: "signature policy", reason: v.Reason}
	}
	return nil
}

// String says what the stage did, for the stage's message.
func (s Signing) String() string {
	var parts []string
	if v := s.Verification; v != nil && v.Verified {
		p := "signature verified with " + string(v.SignedBy)
		if v.Provenance != "" {
			p += ", provenance matched"
		}
		parts = append(parts, p)
	}
	if x := s.Signed; x != nil && x.Refused != "" {
		parts = append(parts, "not signed: "+x.Refused)
	} else if x != nil {
		p := "signed with " + string(x.Key)
		kinds := map[string]int{}
		var order []string
		for _, a := range x.Attestations {
			if kinds[a.Kind] == 0 {
				order = append(order, a.Kind)
			}
			kinds[a.Kind]++
		}
		if len(order) > 0 {
			p += "; attested " + strings.Join(order, ", ")
		}
		if len(x.Missing) > 0 {
			p += "; not attested: " + strings.Join(x.Missing, "; ")
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, "; ")
}

// Ref is what a trigger payload says of s.
func (s *Signing) Ref() *SigningRef {
	if s == nil || (s.Signed == nil && (s.Verification == nil || !s.Verification.Verified)) || (s.Signed != nil && s.Signed.Refused != "") {
		return nil
	}
	ref := &SigningRef{}
	if v := s.Verification; v != nil && v.Verified {
		ref.VerifiedBy, ref.Signature = string(v.SignedBy), v.Signature
	}
	if x := s.Signed; x != nil {
		ref.Key, ref.Signature, ref.Attestations = string(x.Key), x.Signature, x.Attestations
	}
	return ref
}
