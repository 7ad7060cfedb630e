package signing

import (
	"encoding/json"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	intoto "github.com/in-toto/attestation/go/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
)

// Predicate types dchain writes and checks, as cosign names them (its
// `--type` in parentheses).
const (
	// PredicateSignature is a plain signature (`cosign sign`).
	PredicateSignature = "https://sigstore.dev/cosign/sign/v1"
	// PredicateSLSAProvenance is BuildKit's provenance (slsaprovenance).
	PredicateSLSAProvenance = "https://slsa.dev/provenance/v0.2"
	// PredicateSLSAProvenance1 is SLSA v1 provenance (slsaprovenance1).
	PredicateSLSAProvenance1 = "https://slsa.dev/provenance/v1"
	// PredicateCycloneDX is a CycloneDX SBOM (cyclonedx).
	PredicateCycloneDX = "https://cyclonedx.org/bom"
	// PredicateVuln is a vulnerability scan (vuln).
	PredicateVuln = "https://cosign.sigstore.dev/attestation/vuln/v1"
)

// Statement is an in-toto statement about subjects, with predicate as
// its JSON.
func Statement(predicateType string, predicate []byte, subjects ...v1.Hash) ([]byte, error) {
	st := &intoto.Statement{Type: intoto.StatementTypeUri, PredicateType: predicateType, Predicate: &structpb.Struct{}}
	for _, s := range subjects {
		st.Subject = append(st.Subject, &intoto.ResourceDescriptor{Digest: map[string]string{s.Algorithm: s.Hex}})
	}
	if len(predicate) > 0 {
		if err := protojson.Unmarshal(predicate, st.Predicate); err != nil {
			return nil, fmt.Errorf("predicate %s: %w", predicateType, err)
		}
	}
	return protojson.Marshal(st)
}

// SamePredicate says two predicates are the same JSON value.
func SamePredicate(a *structpb.Struct, b []byte) bool {
	var x, y any
	ja, err := protojson.Marshal(a)
	if err != nil || json.Unmarshal(ja, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return jsonEqual(x, y)
}

func jsonEqual(a, b any) bool {
	ja, _ := json.Marshal(a) // encoding/json sorts map keys
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}
