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
	var opts []name.Option
	if reg.Insecure {
		opts = append(opts, name.Insecure)
	}
	ref, err := name.ParseReference(reg.Address+"/"+repo+sep+tagOrDigest, append(opts, name.StrictValidation)...)
	if err != nil {
		return nil, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("invalid image reference %s/%s%s%s: %v", reg.Address, repo, sep, tagOrDigest, err), ErrInvalidReference, nil)
	}
	return ref, nil
}

// remoteOptions are the options to talk to reg, with its credentials
// resolved here, inside the activity.
func (a *Activities) remoteOptions(ctx context.Context, reg chain.Registry) ([]remote.Option, error) {
	auth := authn.Anonymous
	user, pass, err := a.credentials(reg)
	if err != nil {
		return nil, err
	}
	if user != "" {
		auth = &authn.Basic{Username: user, Password: pass}
	}
	tr := a.Transport
	if tr == nil {
		tr = http.DefaultTransport
	}
	return []remote.Option{remote.WithContext(ctx), remote.WithAuth(auth), remote.WithTransport(tr)}, nil
}

// parseRef parses a full reference ("host/repo:tag") of reg.
func parseRef(reg chain.Registry, ref string) (name.Reference, error) {
	var opts []name.Option
	if reg.Insecure {
		opts = append(opts, name.Insecure)
	}
	return name.ParseReference(ref, opts...)
}

// credentials resolves the registry's credentials ("" for anonymous access).
func (a *Activities) credentials(reg chain.Registry) (user, pass string, err error) {
	if reg.Credentials == "" {
		return "", "", nil
	}
	secret, err := reg.Credentials.Resolve()
	if err != nil {
		return "", "", temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("credentials of registry %s: %v", reg.Name, err), ErrCredentials, nil)
	}
	user, pass, ok := strings.Cut(secret, ":")
	if !ok {
		return "", "", temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("credentials of registry %s (%s) must hold username:password", reg.Name, reg.Credentials), ErrCredentials, nil)
	}
	return user, pass, nil
}
