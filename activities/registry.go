package activities

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"go.temporal.io/sdk/temporal"

	"github.com/dchain-dev/dchain/chain"
)

// reference parses repo with a tag ("v1") or digest ("sha256:…") in reg.
func reference(reg chain.Registry, repo, tagOrDigest string) (name.Reference, error) {
	sep := ":"
	if strings.HasPrefix(tagOrDigest, "sha256:") {
		sep = "@"
	}
	ref, err := name.ParseReference(reg.Address+"/"+repo+sep+tagOrDigest, append(registryNameOpts(reg), name.StrictValidation)...)
	if err != nil {
		return nil, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("invalid image reference %s/%s%s%s: %v", reg.Address, repo, sep, tagOrDigest, err), ErrInvalidReference, nil)
	}
	return ref, nil
}

// remoteOptions are the options to talk to reg, with its sign-in
// resolved here, inside the activity, and its CA trusted.
func (a *Activities) remoteOptions(ctx context.Context, reg chain.Registry) ([]remote.Option, error) {
	auth, tr, err := a.signIn(reg)
	if err != nil {
		return nil, err
	}
	return []remote.Option{remote.WithContext(ctx), remote.WithAuth(auth), remote.WithTransport(tr)}, nil
}

// signIn is how the worker talks to reg: its sign-in and its transport
// (its CA trusted, manifests read no further than MaxManifestBytes).
func (a *Activities) signIn(reg chain.Registry) (authn.Authenticator, http.RoundTripper, error) {
	auth, err := Auth(reg)
	if err != nil {
		return nil, nil, err
	}
	tr, err := a.transport(reg)
	if err != nil {
		return nil, nil, err
	}
	return auth, manifestLimit{tr}, nil
}

// parseRef parses a full reference ("host/repo:tag") of reg.
func parseRef(reg chain.Registry, ref string) (name.Reference, error) {
	return name.ParseReference(ref, registryNameOpts(reg)...)
}
