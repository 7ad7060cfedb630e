package main

import (
	"context"
	"crypto/elliptic"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/sigstore/sigstore/pkg/cryptoutils"

	"github.com/dchain-dev/dchain/chain"
	"github.com/dchain-dev/dchain/signing"
	"github.com/dchain-dev/dchain/workflows"
)

// dchain verify checks an image's bundles in a registry against keys,
// with trivy's kind of exit code.
func TestVerifyCommand(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.WithReferrersSupport(true), registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	dir := t.TempDir()
	cfg := filepath.Join(dir, "dchain.yaml")
	chains := "name: app\nscope: {registry: src, namespace: demo, repository: app}\nverify:\n  keys: [file:" + filepath.Join(dir, "key.pub") + "]\n"
	if err := os.WriteFile(cfg, []byte("registries:\n  - {name: src, address: '"+addr+"', insecure: true}\nchains: [chains.yaml]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "chains.yaml"), []byte(chains), 0o644); err != nil {
		t.Fatal(err)
	}
	priv, pub, _ := cryptoutils.GeneratePEMEncodedECDSAKeyPair(elliptic.P256(), cryptoutils.SkipPassword)
	_ = os.WriteFile(filepath.Join(dir, "key"), priv, 0o600)
	_ = os.WriteFile(filepath.Join(dir, "key.pub"), pub, 0o644)

	push := func(tag string) name.Digest {
		img, _ := random.Image(128, 1)
		ref, _ := name.ParseReference(addr+"/demo/app:"+tag, name.Insecure)
		if err := remote.Write(ref, img); err != nil {
			t.Fatal(err)
		}
		d, _ := img.Digest()
		return ref.Context().Digest(d.String())
	}
	signed := push("signed")
	push("unsigned")
	s, err := signing.LoadSigner(context.Background(), chain.KeyRef("file:"+filepath.Join(dir, "key")))
	if err != nil {
		t.Fatal(err)
	}
	desc, _ := remote.Get(signed)
	st, _ := signing.Statement(signing.PredicateSignature, nil, desc.Digest)
	b, _ := s.Sign(context.Background(), st)
	if _, err := signing.Attach(signed, desc.Descriptor, signing.PredicateSignature, b); err != nil {
		t.Fatal(err)
	}

	exit := func(err error) int {
		var e *exitError
		if errors.As(err, &e) {
			return e.code
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	}
	pubRef := "file:" + filepath.Join(dir, "key.pub")
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"signed", []string{"demo/app:signed", "--key", pubRef}, 0, "Result:   PASS — signed by " + pubRef},
		{"keys of the chain", []string{"demo/app:signed"}, 0, "PASS"},
		{"an attestation it lacks", []string{"demo/app:signed", "--key", pubRef, "--require", "sbom"}, 1, "Missing:  sbom"},
		{"unsigned", []string{"demo/app:unsigned", "--key", pubRef}, 1, "FAIL — the image carries no signature"},
		{"another key", []string{"demo/app:signed", "--key", "env:DCHAIN_TEST_VERIFY_OTHER", "--exit-code", "3"}, 3, "1 attached did not verify"},
		{"exit code 0", []string{"demo/app:unsigned", "--key", pubRef, "--exit-code", "0"}, 0, "FAIL"},
	} {
		_, other, _ := cryptoutils.GeneratePEMEncodedECDSAKeyPair(elliptic.P256(), cryptoutils.SkipPassword)
		t.Setenv("DCHAIN_TEST_VERIFY_OTHER", string(other))
		out, err := dchain(t, append([]string{"--config", cfg, "verify"}, tc.args...)...)
		if got := exit(err); got != tc.code || !strings.Contains(out, tc.want) {
			t.Errorf("%s: exit %d, want %d; output:\n%s", tc.name, got, tc.code, out)
		}
	}
	if _, err := dchain(t, "--config", cfg, "verify", "demo/app:signed", "--key", "key.pub"); err == nil || !strings.Contains(err.Error(), "--key: must be file:PATH") {
		t.Errorf("a bare path as --key: %v", err)
	}
	if _, err := dchain(t, "--config", cfg, "verify", "demo/app:signed", "--key", pubRef, "--require", "slsa"); err == nil || !strings.Contains(err.Error(), `--require: "slsa" is not an attestation`) {
		t.Errorf("an unknown --require: %v", err)
	}
}

// run show says what the sign stage checked and attached, by digest.
func TestRunShowSaysWhatWasSigned(t *testing.T) {
	var b strings.Builder
	printStatus(&b, "r1", workflows.RunStatus{Chain: "c", Outcome: workflows.OutcomeSucceeded, Signing: &workflows.Signing{
		Verification: &workflows.Verification{Verified: true, SignedBy: "file:/k.pub", Signature: "sha256:theirs", Provenance: "sha256:prov"},
		Signed: &workflows.Signed{Key: "env:K", Signature: "sha256:ours", Attestations: []workflows.AttestationRef{
			{Kind: "sbom", Platform: "linux/arm64", Digest: "sha256:sbom", Reused: true}, {Kind: "scan", Digest: "sha256:scan"}},
			Missing: []string{"provenance: none in the index"}},
	}})
	for _, want := range []string{
		"Verified: signature sha256:theirs by file:/k.pub; provenance sha256:prov\n",
		"Signed:   sha256:ours with env:K\n",
		"Attested: sbom       linux/arm64  sha256:sbom (carried already)\n",
		"Attested: scan       image        sha256:scan\n",
		"Attested: not provenance: none in the index\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("run show lacks %q:\n%s", want, b.String())
		}
	}
}
