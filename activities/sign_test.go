package activities

import (
	"context"
	"crypto/elliptic"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/dchain-dev/dchain/chain"
	"github.com/dchain-dev/dchain/workflows"
)

// sbomScanner writes a one-component SBOM per platform (activities' tests
// do not link Trivy).
type sbomScanner struct{ calls int }

func (s *sbomScanner) Scan(context.Context, string, string, authn.AuthConfig, http.RoundTripper, bool) (ScanResult, error) {
	return ScanResult{}, errors.New("not for this test")
}
func (s *sbomScanner) SBOM(_ context.Context, _, platform string, _ authn.AuthConfig, _ http.RoundTripper, _ bool) ([]byte, error) {
	s.calls++
	return []byte(`{"bomFormat":"CycloneDX","specVersion":"1.6","components":[{"name":"` + platform + `"}]}`), nil
}
func (s *sbomScanner) DB() workflows.ScanDB { return workflows.ScanDB{} }

// builtIndex pushes an index of two platforms with BuildKit's attestation
// manifests (a provenance naming source) to reg, and returns its digest.
func builtIndex(t *testing.T, addr, source string) string {
	t.Helper()
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, arch := range []string{"amd64", "arm64"} {
		img, err := random.Image(256, 1)
		if err != nil {
			t.Fatal(err)
		}
		d, _ := img.Digest()
		statement := `{"_type":"https://in-toto.io/Statement/v0.1","predicateType":"https://slsa.dev/provenance/v0.2",` +
			`"subject":[{"name":"x","digest":{"sha256":"` + d.Hex + `"}}],"predicate":{"builder":{"id":"` + BuilderID + `"},` +
			`"metadata":{"https://mobyproject.org/buildkit@v1#metadata":{"vcs":{"source":"` + source + `","revision":"abc"}}}}}`
		att := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
		att, err = mutate.Append(att, mutate.Addendum{Layer: static.NewLayer([]byte(statement), "application/vnd.in-toto+json"),
			Annotations: map[string]string{annotationPredicate: "https://slsa.dev/provenance/v0.2"}})
		if err != nil {
			t.Fatal(err)
		}
		idx = mutate.AppendManifests(idx,
			mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}}},
			mutate.IndexAddendum{Add: att, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "unknown", Architecture: "unknown"},
				Annotations: map[string]string{annotationRefType: refTypeAttestation, annotationRefDigest: d.String()}}})
	}
	ref, _ := name.ParseReference(addr+"/demo/app:v1", name.Insecure)
	if err := remote.WriteIndex(ref, idx); err != nil {
		t.Fatal(err)
	}
	d, _ := idx.Digest()
	return d.String()
}

// Into a registry with the referrers API and one without (where the
// attachments go one at a time, into the fallback tag's index: none lost).
func TestSignImageAttestsOnceAndVerifies(t *testing.T) {
	for _, api := range []bool{true, false} {
		t.Run(map[bool]string{true: "referrers API", false: "tag scheme"}[api], func(t *testing.T) { signAttestVerify(t, api) })
	}
}

func signAttestVerify(t *testing.T, api bool) {
	srv := httptest.NewServer(registry.New(registry.WithReferrersSupport(api), registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	reg := chain.Registry{Name: "src", Address: strings.TrimPrefix(srv.URL, "http://"), Insecure: true}
	digest := builtIndex(t, reg.Address, "https://git.example/app.git")
	priv, pub, err := cryptoutils.GeneratePEMEncodedECDSAKeyPair(elliptic.P256(), cryptoutils.SkipPassword)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("DCHAIN_TEST_SIGNING_KEY", string(priv))
	t.Setenv("DCHAIN_TEST_PUBLIC_KEY", string(pub))
	scanner := &sbomScanner{}
	a := &Activities{Scanner: scanner}
	env := (&testsuite.WorkflowTestSuite{}).NewTestActivityEnvironment()
	env.RegisterActivity(a.SignImage)
	env.RegisterActivity(a.VerifyImage)
	in := workflows.SignInput{Registry: reg, Repository: "demo/app", Digest: digest, Key: "env:DCHAIN_TEST_SIGNING_KEY",
		Attest: []string{chain.AttestProvenance, chain.AttestSBOM}}
	sign := func() workflows.Signed { return runActivity[workflows.Signed](t, env, a.SignImage, in) }
	first := sign()
	kinds := map[string][]string{}
	for _, at := range first.Attestations {
		kinds[at.Kind] = append(kinds[at.Kind], at.Platform)
		if at.Reused {
			t.Errorf("%s of %s carried before it was signed", at.Kind, at.Platform)
		}
	}
	if first.Signature == "" || strings.Join(kinds["provenance"], ",") != "linux/amd64,linux/arm64" ||
		strings.Join(kinds["sbom"], ",") != "linux/amd64,linux/arm64" || len(first.Missing) > 0 {
		t.Fatalf("signed %+v", first)
	}
	// Again (a retried activity, a re-run): everything is carried already.
	second := sign()
	if second.Signature != first.Signature || len(second.Attestations) != 4 {
		t.Fatalf("second signing %+v", second)
	}
	for i, at := range second.Attestations {
		if !at.Reused || at.Digest != first.Attestations[i].Digest {
			t.Errorf("signed again: %+v", at)
		}
	}
	h, _ := v1.NewHash(digest)
	bs, err := a.Attached(context.Background(), reg, "demo/app", h)
	if err != nil || len(bs) != 5 {
		t.Fatalf("%d bundles attached (%v), want 5", len(bs), err)
	}

	verify := func(rule chain.Verify) workflows.Verification {
		return runActivity[workflows.Verification](t, env, a.VerifyImage,
			workflows.VerifyInput{Registry: reg, Repository: "demo/app", Digest: digest, Verify: rule})
	}
	keys := []chain.KeyRef{"env:DCHAIN_TEST_PUBLIC_KEY"}
	if v := verify(chain.Verify{Keys: keys, Provenance: &chain.ProvenanceRule{Repository: "https://git.example/app", Builder: BuilderID}}); !v.Verified || v.Provenance == "" || v.Signature != first.Signature {
		t.Fatalf("verification %+v", v)
	}
	v := verify(chain.Verify{Keys: keys, Provenance: &chain.ProvenanceRule{Repository: "https://git.example/other"}})
	if v.Verified || !strings.Contains(v.Reason, `no provenance by env:DCHAIN_TEST_PUBLIC_KEY names source "https://git.example/other"`) ||
		!strings.Contains(v.Reason, `found: source "https://git.example/app.git"`) {
		t.Fatalf("another source: %+v", v)
	}
	other, _, _ := cryptoutils.GeneratePEMEncodedECDSAKeyPair(elliptic.P256(), cryptoutils.SkipPassword)
	t.Setenv("DCHAIN_TEST_OTHER_KEY", string(other))
	if v := verify(chain.Verify{Keys: []chain.KeyRef{"env:DCHAIN_TEST_OTHER_KEY"}}); v.Verified || v.Rejected != 5 ||
		v.Reason != "no signature by env:DCHAIN_TEST_OTHER_KEY (5 attached did not verify: signed by none of the listed keys)" {
		t.Fatalf("another key: %+v", v)
	}

	// A key the worker cannot read fails at once, naming it.
	in.Key = "env:DCHAIN_TEST_NO_SUCH_KEY"
	_, err = env.ExecuteActivity(a.SignImage, in)
	var app *temporal.ApplicationError
	if !errors.As(err, &app) || !app.NonRetryable() || app.Type() != ErrKey || !strings.Contains(app.Message(), "env:DCHAIN_TEST_NO_SUCH_KEY") {
		t.Fatalf("an unreadable key: %v", err)
	}
}

func TestProvenanceSourceAndRepositories(t *testing.T) {
	v1pred := map[string]any{"buildDefinition": map[string]any{"internalParameters": map[string]any{"buildConfig": map[string]any{}}},
		"runDetails": map[string]any{"builder": map[string]any{"id": "b"}}}
	if s, b := ProvenanceSource(v1pred); s != "" || b != "b" {
		t.Fatalf("v1: %q %q", s, b)
	}
	v02 := map[string]any{"invocation": map[string]any{"configSource": map[string]any{"uri": "https://git.example/app.git#main"}}}
	if s, _ := ProvenanceSource(v02); s != "https://git.example/app.git#main" {
		t.Fatalf("config source: %q", s)
	}
	for _, c := range []struct {
		a, b string
		same bool
	}{
		{"https://git.example/app.git", "https://git.example/app", true},
		{"HTTPS://git.example/app/", "https://git.example/app", true},
		{"https://git.example/app", "https://git.example/App", false},
		{"", "", false},
		{"https://git.example/app-evil", "https://git.example/app", false},
	} {
		if got := sameRepository(c.a, c.b); got != c.same {
			t.Errorf("sameRepository(%q, %q) = %v", c.a, c.b, got)
		}
	}
}

// runActivity runs activity with in on env and returns its result.
func runActivity[T any](t *testing.T, env *testsuite.TestActivityEnvironment, activity, in any) T {
	t.Helper()
	var out T
	v, err := env.ExecuteActivity(activity, in)
	if err == nil {
		err = v.Get(&out)
	}
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// FuzzProvenanceSource reads BuildKit statements as a registry serves them
// (an attestation manifest's layer) down to the source and builder it
// names, whatever their shape.
func FuzzProvenanceSource(f *testing.F) {
	f.Add([]byte(`{"predicateType":"https://slsa.dev/provenance/v0.2","predicate":{"builder":{"id":"b"},"metadata":{"https://mobyproject.org/buildkit@v1#metadata":{"vcs":{"source":"s"}}}}}`))
	f.Add([]byte(`{"predicate":{"runDetails":{"builder":{"id":7}},"buildDefinition":[]}}`))
	f.Add([]byte(`{"predicate":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var st struct {
			Predicate map[string]any `json:"predicate"`
		}
		if json.Unmarshal(b, &st) != nil {
			return
		}
		ProvenanceSource(st.Predicate)
	})
}

// What dchain did not see being built is not vouched for: a reused build's
// provenance is attested only where the same key attested it before; a
// provenance that does not match the chain's verify rule is not signed at
// all; a junk bundle is rejected, not fatal.
func TestSignImageVouchesOnlyForWhatItSaw(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.WithReferrersSupport(true), registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	reg := chain.Registry{Name: "src", Address: strings.TrimPrefix(srv.URL, "http://"), Insecure: true}
	digest := builtIndex(t, reg.Address, "https://git.example/app")
	priv, pub, _ := cryptoutils.GeneratePEMEncodedECDSAKeyPair(elliptic.P256(), cryptoutils.SkipPassword)
	t.Setenv("DCHAIN_TEST_SIGNING_KEY", string(priv))
	t.Setenv("DCHAIN_TEST_PUBLIC_KEY", string(pub))
	a := &Activities{Scanner: &sbomScanner{}}
	env := (&testsuite.WorkflowTestSuite{}).NewTestActivityEnvironment()
	env.RegisterActivity(a.SignImage)
	sign := func(in workflows.SignInput) workflows.Signed {
		in.Registry, in.Repository, in.Digest, in.Key = reg, "demo/app", digest, "env:DCHAIN_TEST_SIGNING_KEY"
		return runActivity[workflows.Signed](t, env, a.SignImage, in)
	}
	h, _ := v1.NewHash(digest)
	count := func() int {
		bs, err := a.Attached(context.Background(), reg, "demo/app", h)
		if err != nil {
			t.Fatal(err)
		}
		return len(bs)
	}

	refused := sign(workflows.SignInput{Attest: []string{chain.AttestProvenance}, Require: &chain.ProvenanceRule{Repository: "https://git.example/other"}})
	if !strings.Contains(refused.Refused, `does not name source "https://git.example/other"`) || count() != 0 {
		t.Fatalf("a provenance the rule refuses: %+v, %d attached", refused, count())
	}
	reused := sign(workflows.SignInput{Attest: []string{chain.AttestProvenance, chain.AttestSBOM}, ReusedBuild: true})
	if len(reused.Attestations) != 2 || reused.Attestations[0].Kind != chain.AttestSBOM || len(reused.Missing) != 1 ||
		!strings.Contains(reused.Missing[0], "reused from an earlier build") {
		t.Fatalf("a reused build: %+v", reused)
	}
	built := sign(workflows.SignInput{Attest: []string{chain.AttestProvenance}, Require: &chain.ProvenanceRule{Repository: "https://git.example/app"}})
	if built.Refused != "" || len(built.Attestations) != 2 {
		t.Fatalf("a build: %+v", built)
	}
	// Once this key attested it, a reuse of the same image carries it.
	again := sign(workflows.SignInput{Attest: []string{chain.AttestProvenance}, ReusedBuild: true})
	if len(again.Attestations) != 2 || !again.Attestations[0].Reused || len(again.Missing) != 0 {
		t.Fatalf("a reuse after the build: %+v", again)
	}

	// A referrer that claims to be a bundle and is not: rejected, the rest read.
	r, _ := name.NewRepository(reg.Address+"/demo/app", name.Insecure)
	desc, _ := remote.Get(r.Digest(digest))
	junk := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	junk, _ = mutate.Append(junk, mutate.Addendum{Layer: static.NewLayer([]byte("x"), "text/plain")}, mutate.Addendum{Layer: static.NewLayer([]byte("y"), "text/plain")})
	junk = mutate.ConfigMediaType(junk, "application/vnd.dev.sigstore.bundle.v0.3+json") // listed as a bundle
	junk = mutate.Annotations(junk, map[string]string{"dev.sigstore.bundle.predicateType": "https://sigstore.dev/cosign/sign/v1"}).(v1.Image)
	junk = mutate.Subject(junk, desc.Descriptor).(v1.Image)
	jd, _ := junk.Digest()
	if err := remote.Write(r.Digest(jd.String()), junk); err != nil {
		t.Fatal(err)
	}
	env.RegisterActivity(a.VerifyImage)
	got := runActivity[workflows.Verification](t, env, a.VerifyImage, workflows.VerifyInput{Registry: reg, Repository: "demo/app", Digest: digest,
		Verify: chain.Verify{Keys: []chain.KeyRef{"env:DCHAIN_TEST_PUBLIC_KEY"}}})
	if !got.Verified || got.Rejected != 1 {
		t.Fatalf("with a junk bundle attached: %+v", got)
	}
}
