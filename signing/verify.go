package signing

import (
	"errors"
	"fmt"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	intoto "github.com/in-toto/attestation/go/v1"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/verify"

	"github.com/dchain-dev/dchain/chain"
)

// Verified is a bundle that verified with a listed key over the image's
// digest.
type Verified struct {
	Digest        v1.Hash
	PredicateType string
	Key           chain.KeyRef
	Statement     *intoto.Statement
}

// ErrNoKey is why a bundle verified with none of the keys.
var ErrNoKey = errors.New("signed by none of the listed keys")

// VerifyBundle checks that b is a DSSE envelope of an in-toto statement
// naming digest among its subjects, signed by one of keys, and returns
// what it attests. The transparency log is not consulted: the keys are the
// trust.
func VerifyBundle(b Bundle, digest v1.Hash, keys []PublicKey) (Verified, error) {
	if b.Unreadable != "" {
		return Verified{}, errors.New(b.Unreadable)
	}
	var sb bundle.Bundle
	if err := sb.UnmarshalJSON(b.JSON); err != nil {
		return Verified{}, fmt.Errorf("not a sigstore bundle: %w", err)
	}
	for _, k := range keys {
		tm := root.NewTrustedPublicKeyMaterial(func(string) (root.TimeConstrainedVerifier, error) {
			return root.NewExpiringKey(k.verifier, time.Time{}, time.Time{}), nil
		})
		v, err := verify.NewVerifier(tm, verify.WithNoObserverTimestamps())
		if err != nil {
			return Verified{}, err
		}
		// The signature first; the subject is checked on the verified
		// statement below, so that the two failures read apart.
		res, err := v.Verify(&sb, verify.NewPolicy(verify.WithoutArtifactUnsafe(), verify.WithKey()))
		if err != nil {
			continue
		}
		if res.Statement == nil {
			return Verified{}, errors.New("the bundle holds no in-toto statement")
		}
		if !names(res.Statement, digest) {
			return Verified{}, fmt.Errorf("signed by %s, but about another image (no subject is %s)", k.Ref, digest)
		}
		return Verified{Digest: b.Digest, PredicateType: res.Statement.PredicateType, Key: k.Ref, Statement: res.Statement}, nil
	}
	return Verified{}, ErrNoKey
}

// names says a subject of st is digest.
func names(st *intoto.Statement, digest v1.Hash) bool {
	for _, s := range st.GetSubject() {
		if s.GetDigest()[digest.Algorithm] == digest.Hex {
			return true
		}
	}
	return false
}

// Verification is what an image carries: the bundles that verified and
// why the others did not.
type Verification struct {
	Verified []Verified
	Rejected []Rejected
}

// Rejected is a bundle that did not verify, and why.
type Rejected struct {
	Digest        v1.Hash
	PredicateType string
	Reason        string
}

// Check verifies every bundle of bs against digest and keys.
func Check(bs []Bundle, digest v1.Hash, keys []PublicKey) Verification {
	var v Verification
	for _, b := range bs {
		got, err := VerifyBundle(b, digest, keys)
		if err != nil {
			v.Rejected = append(v.Rejected, Rejected{Digest: b.Digest, PredicateType: b.PredicateType, Reason: err.Error()})
			continue
		}
		v.Verified = append(v.Verified, got)
	}
	return v
}

// Find returns the verified bundles of predicateType.
func (v Verification) Find(predicateType string) []Verified {
	var out []Verified
	for _, x := range v.Verified {
		if x.PredicateType == predicateType {
			out = append(out, x)
		}
	}
	return out
}
