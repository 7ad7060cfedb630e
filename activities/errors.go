package activities

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"go.temporal.io/sdk/temporal"
)

// Error types of the failures activities report.
const (
	ErrInvalidReference = "InvalidReference"
	ErrCredentials      = "CredentialsUnavailable"
	ErrAccessDenied     = "AccessDenied"
	ErrNotFound         = "NotFound"
	ErrRejected         = "Rejected"
	ErrTransient        = "Transient"
	ErrTagConflict      = "TagConflict"
	ErrDigestMismatch   = "DigestMismatch"
	ErrTriggerRejected  = "TriggerRejected"
	ErrTriggerFailed    = "TriggerFailed"
	// ErrHealthFailed: a wave's health URL did not answer 2xx (retried).
	ErrHealthFailed = "HealthCheckFailed"
	ErrBuildFailed  = "BuildFailed"
	ErrStalled      = "Stalled"
)

// registryError decides, once, whether a registry error is worth retrying:
// network errors, 5xx, 408, 429 and a stalled transfer are transient; auth
// denied, unknown manifests and repositories, other 4xx, content that does
// not match its digest, a redirect to a private address and a foreign
// layer are permanent. what names the operation, registry and image.
func registryError(ctx context.Context, what string, err error) error {
	if err == nil {
		return nil
	}
	var classified *temporal.ApplicationError
	if errors.As(err, &classified) {
		return err // classified where it was made
	}
	var stalled *stallError
	if ctx.Err() != nil {
		if errors.As(context.Cause(ctx), &stalled) {
			return temporal.NewApplicationError(fmt.Sprintf("%s: %v (will retry)", what, stalled), ErrStalled)
		}
		return ctx.Err()
	}
	switch {
	case errors.Is(err, errManifestTooLarge):
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s: %v (registries must accept up to 4 MiB; a larger one is refused)", what, err), ErrRejected, nil)
	case errors.Is(err, errDigestMismatch):
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s: %v", what, err), ErrDigestMismatch, nil)
	case errors.Is(err, errRedirectRefused), errors.Is(err, errForeignLayer):
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s: %v", what, err), ErrRejected, nil)
	case errors.As(err, &stalled):
		return temporal.NewApplicationError(fmt.Sprintf("%s: %v (will retry)", what, err), ErrStalled)
	}
	var te *transport.Error
	if errors.As(err, &te) {
		switch code := te.StatusCode; {
		case code == http.StatusUnauthorized || code == http.StatusForbidden:
			return temporal.NewNonRetryableApplicationError(
				fmt.Sprintf("%s: access denied (%v); check the registry's credentials", what, err), ErrAccessDenied, nil)
		case code == http.StatusNotFound:
			return temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s: not found (%v)", what, err), ErrNotFound, nil)
		case code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500:
			return temporal.NewApplicationError(fmt.Sprintf("%s: %v (will retry)", what, err), ErrTransient)
		case code >= 400:
			return temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s: rejected (%v)", what, err), ErrRejected, nil)
		}
	}
	return temporal.NewApplicationError(fmt.Sprintf("%s: %v (will retry)", what, err), ErrTransient)
}
