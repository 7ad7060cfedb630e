package signing

import (
	"context"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// FuzzVerifyBundle feeds registry-supplied bundle bytes to the verifier:
// whatever a registry serves, it verifies with the key or says why not,
// and never panics.
func FuzzVerifyBundle(f *testing.F) {
	ctx := context.Background()
	priv, pub := keyPair(f, "")
	s, err := LoadSigner(ctx, priv)
	if err != nil {
		f.Fatal(err)
	}
	key, err := LoadPublicKey(ctx, pub)
	if err != nil {
		f.Fatal(err)
	}
	digest := v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("a", 64)}
	st, _ := Statement(PredicateSignature, nil, digest)
	good, err := s.Sign(ctx, st)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte(`{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json"}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := VerifyBundle(Bundle{JSON: b}, digest, []PublicKey{key})
		if err == nil && (v.Statement == nil || !names(v.Statement, digest)) {
			t.Fatalf("verified a bundle that does not name the digest: %+v", v)
		}
	})
}
