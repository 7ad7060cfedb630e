package chain

import (
	"fmt"
	"os"
	"regexp"
	"strings"
)

// SecretRef points at a secret without holding it: "env:NAME" reads an
// environment variable of the process that resolves it (an activity's worker),
// "file:PATH" reads a file. Inline values are refused by validation, so
// secrets never travel in chain snapshots or workflow histories.
type SecretRef string

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Check reports what is wrong with the reference, or nil.
func (r SecretRef) Check() error {
	s := string(r)
	switch {
	case s == "":
		return nil
	case strings.HasPrefix(s, "env:"):
		if !envName.MatchString(s[4:]) {
			return fmt.Errorf("env reference %q must name an environment variable (letters, digits, _)", s)
		}
		return nil
	case strings.HasPrefix(s, "file:"):
		if strings.TrimSpace(s[5:]) == "" {
			return fmt.Errorf("file reference needs a path after \"file:\"")
		}
		return nil
	default:
		return fmt.Errorf("must be a reference (env:NAME or file:PATH); inline secret values are not allowed")
	}
}

// Resolve reads the secret. Errors name the reference, never the value.
func (r SecretRef) Resolve() (string, error) {
	if err := r.Check(); err != nil {
		return "", err
	}
	s := string(r)
	switch {
	case s == "":
		return "", nil
	case strings.HasPrefix(s, "env:"):
		v, ok := os.LookupEnv(s[4:])
		if !ok || v == "" {
			return "", fmt.Errorf("secret %s: environment variable is not set on this worker", s)
		}
		return v, nil
	default:
		b, err := os.ReadFile(s[5:])
		if err != nil {
			return "", fmt.Errorf("secret %s: %w", s, err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
}

// KeyRef names a signing or verification key without holding it:
// "file:PATH" or "env:NAME" (a PEM key read by the worker that uses it), or
// a KMS URI that sigstore's KMS providers open ("awskms://…",
// "gcpkms://…", "azurekms://…", "hashivault://…", or "NAME://…" for a
// sigstore KMS plugin on the worker's PATH).
type KeyRef string

var kmsScheme = regexp.MustCompile(`^[a-z][a-z0-9-]*://[^\s]+$`)

// KMS says the key is in a KMS.
func (k KeyRef) KMS() bool { return kmsScheme.MatchString(string(k)) }

// Check reports what is wrong with the reference, or nil.
func (k KeyRef) Check() error {
	switch {
	case k == "":
		return fmt.Errorf("a key reference is required (file:PATH, env:NAME or a KMS URI such as awskms://…)")
	case k.KMS():
		return nil
	case strings.HasPrefix(string(k), "-----BEGIN"):
		return fmt.Errorf("must be a reference (file:PATH, env:NAME or a KMS URI); inline keys are not allowed")
	}
	if err := SecretRef(k).Check(); err != nil {
		return fmt.Errorf("must be file:PATH, env:NAME or a KMS URI such as awskms://…")
	}
	return nil
}
