package signing

import (
	"context"
	"crypto"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/kms/cliplugin/handler"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/dchain-dev/dchain/chain"
)

// The test binary is also a sigstore KMS plugin (sigstore-kms-testhsm):
// a key "in a KMS" that signs through sigstore's plugin protocol, the
// path awskms://, gcpkms://… keys take through their providers.
func TestMain(m *testing.M) {
	if filepath.Base(os.Args[0]) == "sigstore-kms-testhsm" {
		servePlugin()
		return
	}
	os.Exit(m.Run())
}

// hsm is the plugin's key: software, behind the protocol.
type hsm struct {
	signature.SignerVerifier
	priv crypto.Signer
}

func (h hsm) CreateKey(context.Context, string) (crypto.PublicKey, error) {
	return h.priv.Public(), nil
}
func (h hsm) CryptoSigner(context.Context, func(error)) (crypto.Signer, crypto.SignerOpts, error) {
	return h.priv, crypto.SHA256, nil
}
func (h hsm) SupportedAlgorithms() []string { return []string{"ecdsa-p256-sha256"} }
func (h hsm) DefaultAlgorithm() string      { return "ecdsa-p256-sha256" }

func servePlugin() {
	args, err := handler.GetPluginArgs(os.Args)
	if err != nil || os.Getenv("TESTHSM_DOWN") != "" {
		_ = handler.WriteErrorResponse(os.Stdout, errors.New("the HSM does not answer"))
		return
	}
	priv, err := cryptoutils.UnmarshalPEMToPrivateKey([]byte(os.Getenv("TESTHSM_KEY")), cryptoutils.SkipPassword)
	if err != nil {
		_ = handler.WriteErrorResponse(os.Stdout, err)
		return
	}
	sv, err := signature.LoadDefaultSignerVerifier(priv)
	if err != nil {
		_ = handler.WriteErrorResponse(os.Stdout, err)
		return
	}
	_, _ = handler.Dispatch(os.Stdout, os.Stdin, args, hsm{sv, priv.(crypto.Signer)})
}

func TestKeyInAKMS(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.Symlink(exe, filepath.Join(dir, "sigstore-kms-testhsm")); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	priv, pub := keyPair(t, "")
	pem, _ := os.ReadFile(strings.TrimPrefix(string(priv), "file:"))
	t.Setenv("TESTHSM_KEY", string(pem))

	ctx := context.Background()
	s, err := LoadSigner(ctx, "testhsm://keys/release")
	if err != nil {
		t.Fatal(err)
	}
	digest := v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("b", 64)}
	st, _ := Statement(PredicateSignature, nil, digest)
	b, err := s.Sign(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	// Verified with the file's public key, and with the KMS key's public half.
	for _, ref := range []chain.KeyRef{pub, "testhsm://keys/release"} {
		k, err := LoadPublicKey(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := VerifyBundle(Bundle{JSON: b}, digest, []PublicKey{k}); err != nil {
			t.Fatalf("verify with %s: %v", ref, err)
		}
	}
	// A KMS that does not answer is worth another attempt; a scheme that
	// nothing serves is not.
	t.Setenv("TESTHSM_DOWN", "1")
	var down *KMSUnavailable
	if _, err := LoadSigner(ctx, "testhsm://keys/release"); !errors.As(err, &down) {
		t.Fatalf("a KMS that does not answer: %v", err)
	}
	if _, err := LoadSigner(ctx, "nohsm://keys/release"); err == nil || errors.As(err, &down) || !strings.Contains(err.Error(), "no KMS provider") {
		t.Fatalf("no provider: %v", err)
	}
}
