package signing

import (
	"context"
	"crypto"
	"crypto/elliptic"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/sigstore/sigstore/pkg/cryptoutils"

	"github.com/dchain-dev/dchain/chain"
)

// keyPair writes an ECDSA key pair (the private key encrypted when
// password is set) and returns the references of both.
func keyPair(t testing.TB, password string) (priv, pub chain.KeyRef) {
	t.Helper()
	pf := cryptoutils.SkipPassword
	if password != "" {
		pf = cryptoutils.StaticPasswordFunc([]byte(password))
	}
	privPEM, pubPEM, err := cryptoutils.GeneratePEMEncodedECDSAKeyPair(elliptic.P256(), pf)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for n, b := range map[string][]byte{"key": privPEM, "key.pub": pubPEM} {
		if err := os.WriteFile(filepath.Join(dir, n), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return chain.KeyRef("file:" + filepath.Join(dir, "key")), chain.KeyRef("file:" + filepath.Join(dir, "key.pub"))
}

// pushed is a random image in a registry with the referrers API (or
// without, the tag scheme) and its descriptor.
func pushed(t *testing.T, referrers bool) (name.Digest, v1.Descriptor) {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.WithReferrersSupport(referrers), registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	img, err := random.Image(512, 2)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(strings.TrimPrefix(srv.URL, "http://") + "/app:v1")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	desc, err := remote.Get(ref)
	if err != nil {
		t.Fatal(err)
	}
	return ref.Context().Digest(d.String()), desc.Descriptor
}

func TestSignAttachVerify(t *testing.T) {
	ctx := context.Background()
	for _, referrers := range []bool{true, false} {
		t.Run(map[bool]string{true: "referrers API", false: "tag scheme"}[referrers], func(t *testing.T) {
			priv, pub := keyPair(t, "")
			_, otherPub := keyPair(t, "")
			s, err := LoadSigner(ctx, priv)
			if err != nil {
				t.Fatal(err)
			}
			ref, desc := pushed(t, referrers)
			st, err := Statement(PredicateSignature, nil, desc.Digest)
			if err != nil {
				t.Fatal(err)
			}
			b, err := s.Sign(ctx, st)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Attach(ref, desc, PredicateSignature, b); err != nil {
				t.Fatal(err)
			}
			bs, err := Bundles(ref.Context(), desc.Digest)
			if err != nil || len(bs) != 1 {
				t.Fatalf("bundles = %d, %v; want 1", len(bs), err)
			}
			keys, err := LoadPublicKeys(ctx, []chain.KeyRef{otherPub, pub})
			if err != nil {
				t.Fatal(err)
			}
			v := Check(bs, desc.Digest, keys)
			if len(v.Verified) != 1 || v.Verified[0].Key != pub || v.Verified[0].PredicateType != PredicateSignature {
				t.Fatalf("verification = %+v, want one signature by %s", v, pub)
			}
			// Another key alone: rejected, saying so.
			other, _ := LoadPublicKeys(ctx, []chain.KeyRef{otherPub})
			if v := Check(bs, desc.Digest, other); len(v.Verified) != 0 || len(v.Rejected) != 1 || v.Rejected[0].Reason != ErrNoKey.Error() {
				t.Fatalf("with another key: %+v", v)
			}
			// The same bundle held up against another image.
			another := desc.Digest
			another.Hex = strings.Repeat("0", 64)
			if v := Check(bs, another, keys); len(v.Verified) != 0 || !strings.Contains(v.Rejected[0].Reason, "about another image") {
				t.Fatalf("against another digest: %+v", v)
			}
		})
	}
}

func TestKeysFromEverywhere(t *testing.T) {
	ctx := context.Background()
	priv, pub := keyPair(t, "s3cret")
	pem, _ := os.ReadFile(strings.TrimPrefix(string(priv), "file:"))
	t.Setenv("SIGNING_KEY", string(pem))
	if _, err := LoadSigner(ctx, "env:SIGNING_KEY"); err == nil || !strings.Contains(err.Error(), PasswordEnv) {
		t.Fatalf("an encrypted key without its password: %v", err)
	}
	t.Setenv(PasswordEnv, "wrong")
	if _, err := LoadSigner(ctx, "env:SIGNING_KEY"); err == nil || strings.Contains(err.Error(), "PRIVATE KEY") {
		t.Fatalf("a wrong password: %v", err)
	}
	t.Setenv(PasswordEnv, "s3cret")
	s, err := LoadSigner(ctx, "env:SIGNING_KEY")
	if err != nil {
		t.Fatal(err)
	}
	k, err := LoadPublicKey(ctx, pub)
	if err != nil {
		t.Fatal(err)
	}
	if !k.Key.(interface{ Equal(x crypto.PublicKey) bool }).Equal(s.GetPublicKey()) {
		t.Fatal("the env key's public half is not the file's public key")
	}
	// A private key serves as its own public key.
	if _, err := LoadPublicKey(ctx, "env:SIGNING_KEY"); err != nil {
		t.Fatal(err)
	}
	for ref, want := range map[chain.KeyRef]string{
		"env:NOT_SET_ANYWHERE":    "not set",
		"file:/nonexistent/k":     "no such file",
		"nosuchkms://keys/signer": "nosuchkms",
		"-----BEGIN PRIVATE KEY":  "inline keys are not allowed",
	} {
		if _, err := LoadSigner(ctx, ref); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("LoadSigner(%s) = %v, want %q", ref, err, want)
		}
	}
}
