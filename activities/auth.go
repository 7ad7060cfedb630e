package activities

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	ecr "github.com/awslabs/amazon-ecr-credential-helper/ecr-login"
	acr "github.com/chrismellard/docker-credential-acr-env/pkg/credhelper"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/google"
	"go.temporal.io/sdk/temporal"

	"github.com/dchain-dev/dchain/chain"
)

// Keychain signs in to a registry whose config names no credentials: the
// docker config and its credential helpers (DOCKER_CONFIG, else
// ~/.docker/config.json), then the cloud keychains (GCR / Artifact
// Registry, ECR, ACR), each of which answers only for its own hosts.
var Keychain = authn.NewMultiKeychain(
	authn.DefaultKeychain,
	google.Keychain,
	authn.NewKeychainFromHelper(ecr.NewECRHelper(ecr.WithLogger(io.Discard))),
	authn.NewKeychainFromHelper(acr.NewACRCredentialsHelper()),
)

// Auth is how dchain signs in to reg: the username:password its
// credentials reference resolves to, else the Keychain (anonymous when
// nothing there knows the host). Resolved inside the activity, never
// carried in workflow inputs.
func Auth(reg chain.Registry) (authn.Authenticator, error) {
	if reg.Credentials == "" {
		r, err := name.NewRegistry(reg.Address, registryNameOpts(reg)...)
		if err != nil {
			return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("registry %s: address %q: %v", reg.Name, reg.Address, err), ErrInvalidReference, nil)
		}
		a, err := Keychain.Resolve(r)
		if err != nil {
			return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("registry %s: docker config / credential helper: %v", reg.Name, err), ErrCredentials, nil)
		}
		return a, nil
	}
	secret, err := reg.Credentials.Resolve()
	if err != nil {
		return nil, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("credentials of registry %s: %v", reg.Name, err), ErrCredentials, nil)
	}
	user, pass, ok := strings.Cut(secret, ":")
	if !ok {
		return nil, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("credentials of registry %s (%s) must hold username:password", reg.Name, reg.Credentials), ErrCredentials, nil)
	}
	return &authn.Basic{Username: user, Password: pass}, nil
}

func registryNameOpts(reg chain.Registry) []name.Option {
	if reg.Insecure {
		return []name.Option{name.Insecure}
	}
	return nil
}

// transports are the pooled transports of registries with a CA of their
// own, by CA bundle.
var transports sync.Map // sha256 of the PEM → *http.Transport

// transport carries traffic to reg: a.Transport (default
// http.DefaultTransport), trusting reg's CA bundle besides the system's,
// with what the registry answers checked (registryGuard).
func (a *Activities) transport(reg chain.Registry) (http.RoundTripper, error) {
	tr, err := a.caTransport(reg)
	if err != nil {
		return nil, err
	}
	return registryGuard{tr}, nil
}

// caTransport is the worker's transport to reg, trusting its CA, traced.
func (a *Activities) caTransport(reg chain.Registry) (http.RoundTripper, error) {
	base := a.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	if reg.CA == "" {
		return a.traced(base), nil
	}
	pem, err := reg.CA.Resolve()
	if err != nil {
		return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("CA of registry %s: %v", reg.Name, err), ErrCredentials, nil)
	}
	ht, ok := base.(*http.Transport)
	if !ok {
		return a.traced(base), nil // a caller's own round tripper decides about TLS itself
	}
	key := fmt.Sprintf("%p/%x", ht, sha256.Sum256([]byte(pem)))
	if t, ok := transports.Load(key); ok {
		return a.traced(t.(*http.Transport)), nil
	}
	pool, err := caPool(pem)
	if err != nil {
		return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("CA of registry %s (%s): %v", reg.Name, reg.CA, err), ErrCredentials, nil)
	}
	t := ht.Clone()
	t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	got, _ := transports.LoadOrStore(key, t)
	return a.traced(got.(*http.Transport)), nil
}

// caPool is the system's roots plus the PEM certificates in pem.
func caPool(pem string) (*x509.CertPool, error) {
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM([]byte(pem)) {
		return nil, fmt.Errorf("no PEM certificate in it")
	}
	return pool, nil
}

// scanAccess is the sign-in and transport a scan of reg's images uses.
func (a *Activities) scanAccess(ctx context.Context, reg chain.Registry) (authn.AuthConfig, http.RoundTripper, error) {
	c, err := authConfig(ctx, reg)
	if err != nil {
		return authn.AuthConfig{}, nil, err
	}
	tr, err := a.transport(reg)
	if err != nil {
		return authn.AuthConfig{}, nil, err
	}
	return *c, tr, nil
}

// authConfig is reg's sign-in (Auth) as the username/password or token it
// comes to, for the clients that take those rather than an authenticator
// (BuildKit's session, Trivy).
func authConfig(ctx context.Context, reg chain.Registry) (*authn.AuthConfig, error) {
	auth, err := Auth(reg)
	if err != nil {
		return nil, err
	}
	c, err := authn.Authorization(ctx, auth)
	if err != nil {
		return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("registry %s: sign-in: %v", reg.Name, err), ErrCredentials, nil)
	}
	return c, nil
}
