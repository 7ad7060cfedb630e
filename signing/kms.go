//go:build !dchain_client

package signing

import (
	"slices"

	"github.com/sigstore/sigstore/pkg/signature/kms"
	// The KMS providers cosign has built in: a key reference
	// awskms://, gcpkms://, azurekms:// or hashivault:// opens with the
	// provider's usual credentials (environment, instance role, token).
	_ "github.com/sigstore/sigstore/pkg/signature/kms/aws"
	_ "github.com/sigstore/sigstore/pkg/signature/kms/azure"
	_ "github.com/sigstore/sigstore/pkg/signature/kms/gcp"
	_ "github.com/sigstore/sigstore/pkg/signature/kms/hashivault"
)

// KMSBuiltIn says this build has the KMS providers (the server build; the
// client build leaves them out: their SDKs cost its start-up).
const KMSBuiltIn = true

// providers are the KMS schemes built in.
func providers() []string {
	p := kms.SupportedProviders()
	slices.Sort(p)
	return p
}
