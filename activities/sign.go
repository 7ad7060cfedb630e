package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"golang.org/x/sync/errgroup"

	"github.com/dchain-dev/dchain/chain"
	"github.com/dchain-dev/dchain/signing"
	"github.com/dchain-dev/dchain/workflows"
)

// BuilderID is the builder's ID in the provenance of dchain's builds
// (verify.provenance.builder matches it).
const BuilderID = "https://github.com/dchain-dev/dchain/buildkit@v1"

// ErrKey is the error type of a signing or verification key that cannot
// be used (a missing file or variable, a wrong password, not a key).
const ErrKey = "KeyUnavailable"

// attestation is one in-toto statement to sign and attach.
type attestation struct {
	kind, predicateType, platform string
	predicate                     []byte
	subjects                      []v1.Hash
}

// SignImage signs the image and attests what the run knows of it: each
// a sigstore bundle attached as a referrer, as cosign stores them, so that
// replication carries them to every region. What the image carries
// already, signed by the same key, is kept instead of signed again (a
// retried or re-run signing adds nothing).
func (a *Activities) SignImage(ctx context.Context, in workflows.SignInput) (workflows.Signed, error) {
	out := workflows.Signed{Key: in.Key}
	signer, err := signing.LoadSigner(ctx, in.Key)
	if err != nil {
		return out, keyError(err)
	}
	ref, err := reference(in.Registry, in.Repository, in.Digest)
	if err != nil {
		return out, err
	}
	opts, err := a.remoteOptions(ctx, in.Registry)
	if err != nil {
		return out, err
	}
	if opts, err = keepTransports(opts); err != nil {
		return out, err
	}
	what := fmt.Sprintf("sign %s in registry %s", ref, in.Registry.Name)
	desc, err := remote.Get(ref, opts...)
	if err != nil {
		return out, registryError(ctx, what, err)
	}
	own, err := signer.PublicKey()
	if err != nil {
		return out, keyError(err)
	}
	repo := ref.Context()
	existing, err := signing.Bundles(repo, desc.Digest, opts...)
	if err != nil {
		return out, registryError(ctx, what, err)
	}
	have := signing.Check(existing, desc.Digest, []signing.PublicKey{own}).Verified

	todo := []attestation{{kind: "signature", predicateType: signing.PredicateSignature, subjects: []v1.Hash{desc.Digest}}}
	for _, kind := range in.Attest {
		activity.RecordHeartbeat(ctx, "collecting "+kind)
		var got []attestation
		var missing string
		switch kind {
		case chain.AttestProvenance:
			got, missing, err = provenance(repo, desc, opts)
		case chain.AttestSBOM:
			got, missing, err = a.sboms(ctx, in, desc)
		case chain.AttestScan:
			got, err = a.scanAttestation(ctx, in, desc.Digest)
		}
		if err != nil {
			return out, registryError(ctx, fmt.Sprintf("%s: %s", what, kind), err)
		}
		if missing != "" {
			out.Missing = append(out.Missing, kind+": "+missing)
		}
		todo = append(todo, got...)
	}
	todo, out.Missing = trusted(todo, have, in.ReusedBuild, out.Missing)
	if in.Require != nil {
		if why := unmatched(todo, *in.Require); why != "" {
			out.Refused = why
			return out, nil // nothing signed: the run is Blocked
		}
	}
	// Signed at once (a KMS answers each over the network), then attached
	// together.
	refs := make([]workflows.AttestationRef, len(todo))
	arts := make([]artifact, len(todo))
	var g errgroup.Group
	g.SetLimit(referrerJobs)
	for i, t := range todo {
		refs[i] = workflows.AttestationRef{Kind: t.kind, PredicateType: t.predicateType, Platform: t.platform}
		if d, ok := carried(have, t); ok {
			refs[i].Digest, refs[i].Reused = d.String(), true
			continue
		}
		g.Go(func() error {
			st, err := signing.Statement(t.predicateType, t.predicate, t.subjects...)
			if err != nil {
				return temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s: %s: %v", what, t.kind, err), ErrRejected, nil)
			}
			b, err := signer.Sign(ctx, st)
			if err != nil {
				return fmt.Errorf("%s: %w", what, err) // a KMS may answer next time
			}
			r, err := signing.NewReferrer(desc.Descriptor, t.predicateType, b)
			arts[i] = artifact{raw: r.Manifest, mediaType: types.OCIManifestSchema1, blobs: r.Blobs, made: true}
			return err
		})
	}
	activity.RecordHeartbeat(ctx, fmt.Sprintf("signing %d statements", len(todo)))
	if err := g.Wait(); err != nil {
		return out, err
	}
	var fresh []artifact
	var at []int
	for i, art := range arts {
		if art.raw != nil {
			fresh, at = append(fresh, art), append(at, i)
		}
	}
	if len(fresh) > 0 {
		digests, err := a.attach(ctx, in.Registry, repo, fresh, opts, nil)
		if err != nil {
			return out, registryError(ctx, what+": attach the signature and attestations", err)
		}
		for j, i := range at {
			refs[i].Digest = digests[j].String()
		}
	}
	out.Signature = refs[0].Digest // todo[0] is the signature
	out.Attestations = refs[1:]
	return out, nil
}

// trusted keeps what may be signed: all of todo, but for a reused build
// (an image found by an earlier build's log, not seen being built) its
// provenance only where this key signed it already.
func trusted(todo []attestation, have []signing.Verified, reused bool, missing []string) ([]attestation, []string) {
	if !reused {
		return todo, missing
	}
	n := len(todo)
	todo = slices.DeleteFunc(todo, func(t attestation) bool {
		_, ok := carried(have, t)
		return t.kind == chain.AttestProvenance && !ok
	})
	if len(todo) < n {
		missing = append(missing, chain.AttestProvenance+": the image was reused from an earlier build, and this key did not attest that build's provenance")
	}
	return todo, missing
}

// unmatched says why no provenance of todo matches rule ("" when one does).
func unmatched(todo []attestation, rule chain.ProvenanceRule) string {
	var found []string
	for _, t := range todo {
		if t.kind != chain.AttestProvenance {
			continue
		}
		var p map[string]any
		if json.Unmarshal(t.predicate, &p) != nil {
			continue
		}
		src, builder := ProvenanceSource(p)
		if matches(src, builder, rule) {
			return ""
		}
		found = append(found, fmt.Sprintf("source %q, builder %q", src, builder))
	}
	if len(found) == 0 {
		return "the image carries no BuildKit provenance to check against verify.provenance, so it was not signed"
	}
	return fmt.Sprintf("the build's provenance does not name source %q and builder %q, so it was not signed (found: %s)",
		rule.Repository, rule.Builder, strings.Join(found, "; "))
}

// matches says a provenance's source and builder satisfy rule.
func matches(source, builder string, rule chain.ProvenanceRule) bool {
	return (rule.Repository == "" || sameRepository(source, rule.Repository)) && (rule.Builder == "" || builder == rule.Builder)
}

// carried finds t among the bundles the image carries, signed by the same
// key: the same statement (an SBOM: of the same platform; it holds a fresh
// serial number each time it is written).
func carried(have []signing.Verified, t attestation) (v1.Hash, bool) {
	for _, h := range have {
		if h.PredicateType != t.predicateType || len(h.Statement.GetSubject()) != len(t.subjects) {
			continue
		}
		same := true
		for i, s := range h.Statement.GetSubject() {
			same = same && s.GetDigest()[t.subjects[i].Algorithm] == t.subjects[i].Hex
		}
		if same && (t.kind == chain.AttestSBOM || signing.SamePredicate(h.Statement.GetPredicate(), orEmpty(t.predicate))) {
			return h.Digest, true
		}
	}
	return v1.Hash{}, false
}

func orEmpty(b []byte) []byte {
	if len(b) == 0 {
		return []byte("{}")
	}
	return b
}

// BuildKit's attestation manifests: one per platform, in the index.
const (
	annotationRefType   = "vnd.docker.reference.type"
	annotationRefDigest = "vnd.docker.reference.digest"
	refTypeAttestation  = "attestation-manifest"
	annotationPredicate = "in-toto.io/predicate-type"
)

// maxStatement bounds a BuildKit statement read (max-mode provenance
// carries the build definition: large, but not this large).
const maxStatement = 32 << 20

// provenance reads BuildKit's SLSA provenance of each platform from the
// index's attestation manifests, to be restated about the index and the
// platform's manifest and signed.
func provenance(repo name.Repository, desc *remote.Descriptor, opts []remote.Option) ([]attestation, string, error) {
	if !desc.MediaType.IsIndex() {
		return nil, "the image is not an index with BuildKit attestations", nil
	}
	_, children, err := indexChildren(desc)
	if err != nil {
		return nil, "", err
	}
	images, err := platformImages(desc)
	if err != nil {
		return nil, "", err
	}
	platforms := map[v1.Hash]string{}
	for _, c := range images {
		platforms[c.Digest] = c.Platform.String()
	}
	var out []attestation
	for _, c := range children {
		if c.Annotations[annotationRefType] != refTypeAttestation {
			continue
		}
		of, err := v1.NewHash(c.Annotations[annotationRefDigest])
		if err != nil || platforms[of] == "" {
			continue // about nothing this index holds: not a statement to sign
		}
		img, err := remote.Image(repo.Digest(c.Digest.String()), opts...)
		if err != nil {
			return nil, "", err
		}
		m, err := img.Manifest()
		if err != nil {
			return nil, "", err
		}
		for _, l := range m.Layers {
			pt := l.Annotations[annotationPredicate]
			if !strings.HasPrefix(pt, "https://slsa.dev/provenance/") {
				continue
			}
			st, err := readStatement(img, l)
			if err != nil {
				return nil, "", fmt.Errorf("provenance %s: %w", l.Digest, err)
			}
			out = append(out, attestation{kind: chain.AttestProvenance, predicateType: pt, platform: platforms[of],
				predicate: st.Predicate, subjects: []v1.Hash{desc.Digest, of}})
		}
	}
	if len(out) == 0 {
		return nil, "the index carries no BuildKit provenance (built before signing asked for it?)", nil
	}
	return out, "", nil
}

// buildkitStatement is the part of BuildKit's in-toto statement kept.
type buildkitStatement struct {
	PredicateType string          `json:"predicateType"`
	Predicate     json.RawMessage `json:"predicate"`
}

func readStatement(img v1.Image, l v1.Descriptor) (buildkitStatement, error) {
	var st buildkitStatement
	if l.Size > maxStatement {
		return st, fmt.Errorf("%d bytes is over the %d bytes limit", l.Size, maxStatement)
	}
	layer, err := img.LayerByDigest(l.Digest)
	if err != nil {
		return st, err
	}
	rc, err := layer.Compressed()
	if err != nil {
		return st, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxStatement))
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("not an in-toto statement: %w", err)
	}
	return st, nil
}

// sboms are a CycloneDX SBOM of each platform, by the worker's Trivy.
func (a *Activities) sboms(ctx context.Context, in workflows.SignInput, desc *remote.Descriptor) ([]attestation, string, error) {
	if a.Scanner == nil {
		return nil, "this worker has no scanner to write SBOMs", nil
	}
	// One SBOM of a single image, about it; one of each image of an index,
	// about the index and the platform's image.
	images := []v1.Descriptor{{Digest: desc.Digest}}
	if desc.MediaType.IsIndex() {
		var err error
		if images, err = platformImages(desc); err != nil {
			return nil, "", err
		}
	}
	auth, tr, err := a.scanAccess(ctx, in.Registry)
	if err != nil {
		return nil, "", err
	}
	ref := in.Registry.Address + "/" + in.Repository + "@" + desc.Digest.String()
	var out []attestation
	for _, img := range images {
		p, subjects := "", []v1.Hash{desc.Digest}
		if img.Platform != nil {
			p, subjects = img.Platform.String(), append(subjects, img.Digest)
		}
		activity.RecordHeartbeat(ctx, "SBOM of "+orDefault(p, "image"))
		bom, err := a.Scanner.SBOM(ctx, ref, p, auth, tr, in.Registry.Insecure)
		if err != nil {
			return nil, "", err
		}
		out = append(out, attestation{kind: chain.AttestSBOM, predicateType: signing.PredicateCycloneDX, platform: p, predicate: bom, subjects: subjects})
	}
	return out, "", nil
}

// vulnPredicate is cosign's vulnerability attestation
// (https://github.com/sigstore/cosign/blob/main/specs/COSIGN_VULN_ATTESTATION_SPEC.md)
// with dchain's scan report as its result.
type vulnPredicate struct {
	Invocation struct {
		URI string `json:"uri"`
	} `json:"invocation"`
	Scanner struct {
		URI     string `json:"uri"`
		Version string `json:"version,omitempty"`
		DB      struct {
			URI     string `json:"uri,omitempty"`
			Version string `json:"version,omitempty"`
		} `json:"db"`
		Result json.RawMessage `json:"result"`
	} `json:"scanner"`
	Metadata struct {
		ScanStartedOn  string `json:"scanStartedOn"`
		ScanFinishedOn string `json:"scanFinishedOn"`
	} `json:"metadata"`
}

// scanAttestation is the run's scan report, as a vuln attestation.
func (a *Activities) scanAttestation(ctx context.Context, in workflows.SignInput, digest v1.Hash) ([]attestation, error) {
	if in.Report == "" {
		return nil, nil
	}
	raw, err := a.readArtifact(ctx, in.Registry, in.Report)
	if err != nil {
		return nil, err
	}
	var r workflows.ScanReport
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, fmt.Errorf("scan report %s: %w", in.Report, err)
	}
	var p vulnPredicate
	p.Invocation.URI = in.Report
	p.Scanner.URI = "pkg:golang/github.com/aquasecurity/trivy"
	p.Scanner.DB.URI = orDefault(r.DB.Repository, r.DB.Server)
	if !r.DB.UpdatedAt.IsZero() {
		p.Scanner.DB.Version = r.DB.UpdatedAt.UTC().Format("2006-01-02T15:04:05Z")
	}
	p.Scanner.Result = raw
	at := r.ScannedAt.UTC().Format("2006-01-02T15:04:05Z")
	p.Metadata.ScanStartedOn, p.Metadata.ScanFinishedOn = at, at
	b, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	return []attestation{{kind: chain.AttestScan, predicateType: signing.PredicateVuln, predicate: b, subjects: []v1.Hash{digest}}}, nil
}

// VerifyImage checks the image's signatures against the chain's keys (and
// its provenance against the chain's rule). An image that fails is not an
// error: the verification says why, and the run is Blocked.
func (a *Activities) VerifyImage(ctx context.Context, in workflows.VerifyInput) (workflows.Verification, error) {
	keys, err := signing.LoadPublicKeys(ctx, in.Verify.Keys)
	if err != nil {
		return workflows.Verification{}, keyError(err)
	}
	digest, err := v1.NewHash(in.Digest)
	if err != nil {
		return workflows.Verification{}, temporal.NewNonRetryableApplicationError("digest: "+err.Error(), ErrInvalidReference, nil)
	}
	bs, err := a.Attached(ctx, in.Registry, in.Repository, digest)
	if err != nil {
		return workflows.Verification{}, err
	}
	return Judge(signing.Check(bs, digest, keys), in.Verify), nil
}

// Attached reads the sigstore bundles attached to an image.
func (a *Activities) Attached(ctx context.Context, reg chain.Registry, repo string, digest v1.Hash) ([]signing.Bundle, error) {
	ref, err := reference(reg, repo, digest.String())
	if err != nil {
		return nil, err
	}
	opts, err := a.remoteOptions(ctx, reg)
	if err != nil {
		return nil, err
	}
	bs, err := signing.Bundles(ref.Context(), digest, opts...)
	return bs, registryError(ctx, fmt.Sprintf("read the signatures of %s in registry %s", ref, reg.Name), err)
}

// Judge decides a verification by the chain's rule: a signature by a listed
// key, and a provenance matching the rule when it has one.
func Judge(v signing.Verification, rule chain.Verify) workflows.Verification {
	out := workflows.Verification{Rejected: len(v.Rejected)}
	sigs := v.Find(signing.PredicateSignature)
	if len(sigs) == 0 {
		out.Reason = "no signature by " + keyList(rule.Keys)
		switch {
		case len(v.Verified)+len(v.Rejected) == 0:
			out.Reason = "the image carries no signature (wanted one by " + keyList(rule.Keys) + ")"
		case len(v.Rejected) > 0:
			out.Reason += fmt.Sprintf(" (%d attached did not verify: %s)", len(v.Rejected), v.Rejected[0].Reason)
		}
		return out
	}
	out.SignedBy, out.Signature = sigs[0].Key, sigs[0].Digest.String()
	if rule.Provenance != nil {
		var found []string
		for _, p := range slices.Concat(v.Find(signing.PredicateSLSAProvenance), v.Find(signing.PredicateSLSAProvenance1)) {
			src, builder := ProvenanceSource(p.Statement.GetPredicate().AsMap())
			if matches(src, builder, *rule.Provenance) {
				out.Provenance = p.Digest.String()
				break
			}
			found = append(found, fmt.Sprintf("source %q, builder %q", src, builder))
		}
		if out.Provenance == "" {
			out.Reason = fmt.Sprintf("no provenance by %s names source %q and builder %q", keyList(rule.Keys), rule.Provenance.Repository, rule.Provenance.Builder)
			if len(found) > 0 {
				out.Reason += " (found: " + strings.Join(found, "; ") + ")"
			}
			return out
		}
	}
	out.Verified = true
	return out
}

// ProvenanceSource reads the source repository and the builder's ID from a
// SLSA provenance predicate (v0.2 or v1), as BuildKit writes it: the
// source from its VCS metadata (vcs:source) or its config source.
func ProvenanceSource(p map[string]any) (source, builder string) {
	get := func(m any, path ...string) string {
		for _, k := range path {
			mm, ok := m.(map[string]any)
			if !ok {
				return ""
			}
			m = mm[k]
		}
		s, _ := m.(string)
		return s
	}
	source = get(p, "metadata", "https://mobyproject.org/buildkit@v1#metadata", "vcs", "source")
	if source == "" {
		source = get(p, "invocation", "configSource", "uri")
	}
	if source == "" { // v1
		source = get(p, "buildDefinition", "internalParameters", "buildConfig", "vcs", "source")
	}
	builder = get(p, "builder", "id")
	if builder == "" {
		builder = get(p, "runDetails", "builder", "id")
	}
	return source, builder
}

// sameRepository compares repository URLs as Git does not care: a trailing
// ".git" or slash, the scheme's case.
func sameRepository(a, b string) bool {
	norm := func(s string) string {
		s = strings.TrimSuffix(strings.TrimSuffix(s, "/"), ".git")
		if i := strings.Index(s, "://"); i > 0 {
			s = strings.ToLower(s[:i]) + s[i:]
		}
		return s
	}
	return a != "" && norm(a) == norm(b)
}

func keyList(keys []chain.KeyRef) string {
	s := make([]string, len(keys))
	for i, k := range keys {
		s[i] = string(k)
	}
	if len(s) == 1 {
		return s[0]
	}
	return "any of " + strings.Join(s, ", ")
}

// keyError: a key that cannot be loaded is a configuration fault, not worth
// a retry, but for a KMS that did not answer.
func keyError(err error) error {
	var kms *signing.KMSUnavailable
	if errors.As(err, &kms) {
		return temporal.NewApplicationError(err.Error(), ErrKey)
	}
	return temporal.NewNonRetryableApplicationError(err.Error(), ErrKey, nil)
}
