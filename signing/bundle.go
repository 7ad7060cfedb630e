package signing

import (
	"context"
	"fmt"

	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/sign"
)

// PayloadType is the DSSE payload type of an in-toto statement.
const PayloadType = "application/vnd.in-toto+json"

// Sign puts statement in a DSSE envelope signed by s, in a sigstore
// bundle (v0.3, no transparency log entry), as JSON.
func (s *Signer) Sign(ctx context.Context, statement []byte) ([]byte, error) {
	pb, err := sign.Bundle(&sign.DSSEData{Data: statement, PayloadType: PayloadType}, s, sign.BundleOptions{Context: ctx})
	if err != nil {
		return nil, fmt.Errorf("sign with %s: %w", s.ref, err)
	}
	b, err := bundle.NewBundle(pb)
	if err != nil {
		return nil, err
	}
	return b.MarshalJSON()
}
