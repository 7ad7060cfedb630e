package signing

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"os"

	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/kms"
	"github.com/sigstore/sigstore/pkg/signature/options"

	"github.com/dchain-dev/dchain/chain"
)

// PasswordEnv names the environment variable that holds the password of an
// encrypted private key (`cosign generate-key-pair`'s keys).
const PasswordEnv = "DCHAIN_SIGNING_PASSWORD"

// Signer signs with one private key. It implements sigstore-go's
// sign.Keypair, so that sigstore-go builds the bundles.
type Signer struct {
	ref  chain.KeyRef
	sv   signature.SignerVerifier
	pub  crypto.PublicKey
	alg  signature.AlgorithmDetails
	hint []byte
}

// LoadSigner opens the private key ref names: a PEM private key (PKCS#8,
// EC, PKCS#1, or cosign's encrypted format with its password in
// DCHAIN_SIGNING_PASSWORD) from a file or an environment variable, or a
// key in a KMS. Errors name the reference, never the key.
func LoadSigner(ctx context.Context, ref chain.KeyRef) (*Signer, error) {
	if err := ref.Check(); err != nil {
		return nil, err
	}
	var sv signature.SignerVerifier
	if ref.KMS() {
		k, err := openKMS(ctx, ref)
		if err != nil {
			return nil, err
		}
		sv = k
	} else {
		pemBytes, err := readKey(ref)
		if err != nil {
			return nil, err
		}
		priv, err := cryptoutils.UnmarshalPEMToPrivateKey(pemBytes, password)
		if err != nil {
			return nil, fmt.Errorf("signing key %s: not a private key it can read: %w", ref, err)
		}
		if sv, err = signature.LoadDefaultSignerVerifier(priv); err != nil {
			return nil, fmt.Errorf("signing key %s: %w", ref, err)
		}
	}
	pub, err := sv.PublicKey(options.WithContext(ctx))
	if err != nil {
		return nil, &KMSUnavailable{fmt.Errorf("signing key %s: read its public key: %w", ref, err)}
	}
	s := &Signer{ref: ref, sv: sv, pub: pub}
	if err := s.describe(); err != nil {
		return nil, fmt.Errorf("signing key %s: %w", ref, err)
	}
	return s, nil
}

func (s *Signer) describe() error {
	details, err := signature.GetDefaultPublicKeyDetails(s.pub)
	if err != nil {
		return err
	}
	if s.alg, err = signature.GetAlgorithmDetails(details); err != nil {
		return err
	}
	s.hint, err = hint(s.pub)
	return err
}

// Ref is the reference the key was loaded from.
func (s *Signer) Ref() chain.KeyRef { return s.ref }

// GetHashAlgorithm is the hash of the data signed.
func (s *Signer) GetHashAlgorithm() protocommon.HashAlgorithm { return s.alg.GetProtoHashType() }

// GetSigningAlgorithm is the key's algorithm.
func (s *Signer) GetSigningAlgorithm() protocommon.PublicKeyDetails {
	return s.alg.GetSignatureAlgorithm()
}

// GetHint is the key's fingerprint, which a bundle names it by.
func (s *Signer) GetHint() []byte { return s.hint }

// GetKeyAlgorithm is the key's type.
func (s *Signer) GetKeyAlgorithm() string {
	switch s.alg.GetKeyType() {
	case signature.ECDSA:
		return "ECDSA"
	case signature.RSA:
		return "RSA"
	case signature.ED25519:
		return "ED25519"
	}
	return ""
}

// GetPublicKey is the public half of the key.
func (s *Signer) GetPublicKey() crypto.PublicKey { return s.pub }

// GetPublicKeyPem is the public half of the key in PEM.
func (s *Signer) GetPublicKeyPem() (string, error) {
	b, err := cryptoutils.MarshalPublicKeyToPEM(s.pub)
	return string(b), err
}

// SignData signs data, returning the signature and what was signed (the
// digest, but for pure Ed25519).
func (s *Signer) SignData(ctx context.Context, data []byte) ([]byte, []byte, error) {
	signed := data
	if h := s.alg.GetHashType(); h != crypto.Hash(0) {
		d := h.New()
		d.Write(data)
		signed = d.Sum(nil)
	}
	sig, err := s.sv.SignMessage(bytes.NewReader(data), options.WithContext(ctx))
	if err != nil {
		return nil, nil, fmt.Errorf("sign with %s: %w", s.ref, err)
	}
	return sig, signed, nil
}

// PublicKey is the signer's public half, to verify with.
func (s *Signer) PublicKey() (PublicKey, error) {
	v, err := signature.LoadDefaultVerifier(s.pub)
	return PublicKey{Ref: s.ref, Key: s.pub, verifier: v}, err
}

// PublicKey is a key a verification trusts.
type PublicKey struct {
	Ref      chain.KeyRef
	Key      crypto.PublicKey
	verifier signature.Verifier
}

// LoadPublicKey opens the public key ref names: a PEM public key (or a
// private key, whose public half is taken) from a file or an environment
// variable, or the public half of a key in a KMS.
func LoadPublicKey(ctx context.Context, ref chain.KeyRef) (PublicKey, error) {
	if err := ref.Check(); err != nil {
		return PublicKey{}, err
	}
	var pub crypto.PublicKey
	if ref.KMS() {
		k, err := openKMS(ctx, ref)
		if err != nil {
			return PublicKey{}, err
		}
		if pub, err = k.PublicKey(options.WithContext(ctx)); err != nil {
			return PublicKey{}, &KMSUnavailable{fmt.Errorf("key %s: read its public key: %w", ref, err)}
		}
	} else {
		pemBytes, err := readKey(ref)
		if err != nil {
			return PublicKey{}, err
		}
		if pub, err = cryptoutils.UnmarshalPEMToPublicKey(pemBytes); err != nil {
			priv, perr := cryptoutils.UnmarshalPEMToPrivateKey(pemBytes, password)
			if perr != nil {
				return PublicKey{}, fmt.Errorf("key %s: not a PEM public or private key: %w", ref, err)
			}
			s, ok := priv.(crypto.Signer)
			if !ok {
				return PublicKey{}, fmt.Errorf("key %s: unsupported key type %T", ref, priv)
			}
			pub = s.Public()
		}
	}
	v, err := signature.LoadDefaultVerifier(pub)
	if err != nil {
		return PublicKey{}, fmt.Errorf("key %s: %w", ref, err)
	}
	return PublicKey{Ref: ref, Key: pub, verifier: v}, nil
}

// LoadPublicKeys opens every key of refs.
func LoadPublicKeys(ctx context.Context, refs []chain.KeyRef) ([]PublicKey, error) {
	var keys []PublicKey
	for _, r := range refs {
		k, err := LoadPublicKey(ctx, r)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// KMSUnavailable is a KMS that did not answer (worth another attempt),
// as opposed to a reference no provider knows.
type KMSUnavailable struct{ error }

func (e *KMSUnavailable) Unwrap() error { return e.error }

// openKMS opens a key with sigstore's KMS providers.
func openKMS(ctx context.Context, ref chain.KeyRef) (kms.SignerVerifier, error) {
	k, err := kms.Get(ctx, string(ref), crypto.SHA256)
	var nf *kms.ProviderNotFoundError
	switch {
	case errors.As(err, &nf):
		return nil, fmt.Errorf("key %s: no KMS provider for it (built in: %v; or a sigstore-kms-<name> plugin on the worker's PATH)", ref, providers())
	case err != nil:
		return nil, &KMSUnavailable{fmt.Errorf("key %s: %w", ref, err)}
	}
	return k, nil
}

// readKey reads a file: or env: key reference, as every secret reference
// is read.
func readKey(ref chain.KeyRef) ([]byte, error) {
	v, err := chain.SecretRef(ref).Resolve()
	return []byte(v), err
}

// password answers a key's password prompt from DCHAIN_SIGNING_PASSWORD.
func password(bool) ([]byte, error) {
	v, ok := os.LookupEnv(PasswordEnv)
	if !ok {
		return nil, errors.New("the key is encrypted and " + PasswordEnv + " is not set")
	}
	return []byte(v), nil
}

// hint is a key's fingerprint: the SHA-256 of its DER form, in base64.
func hint(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(der)
	return []byte(base64.StdEncoding.EncodeToString(sum[:])), nil
}
