package activities

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"go.temporal.io/sdk/temporal"
)

// ErrOutsideCheckout is the error type of a chain path that a symlink of
// the pushed repository leads out of the checkout.
const ErrOutsideCheckout = "OutsideCheckout"

// inCheckout resolves rel, a slash-separated path of the chain (field names
// it), inside the checkout at root: symlinks are followed only while they
// stay inside (os.Root), so a pushed repository cannot make a build read
// the worker host's files. It returns the real path and what is there. A
// path that leads outside, or is missing, is a permanent failure naming
// the path; the checkout does not change after it is made, so the path
// resolved is the path BuildKit reads.
func inCheckout(root, rel, field, what string) (string, fs.FileInfo, error) {
	r, err := os.OpenRoot(root)
	if err != nil {
		return "", nil, err
	}
	defer r.Close()
	name := filepath.FromSlash(path.Clean("./" + rel))
	fi, err := r.Stat(name)
	if err != nil {
		if _, lerr := os.Stat(filepath.Join(root, name)); lerr == nil {
			// It exists, but not inside the checkout: a symlink leads out.
			return "", nil, temporal.NewNonRetryableApplicationError(
				fmt.Sprintf("%s %q leads outside the repository through a symlink; paths must resolve inside the checkout", field, rel), ErrOutsideCheckout, nil)
		}
		if errors.Is(err, fs.ErrNotExist) {
			return "", nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s %q: the repository has no %s there", field, rel, what), ErrNotFound, nil)
		}
		return "", nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s %q: %v", field, rel, err), ErrOutsideCheckout, nil)
	}
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return "", nil, err
	}
	real, err := filepath.EvalSymlinks(filepath.Join(realRoot, name))
	if err != nil {
		return "", nil, err
	}
	if real != realRoot && !strings.HasPrefix(real, realRoot+string(filepath.Separator)) {
		return "", nil, fmt.Errorf("%s %q resolved to %s, outside the checkout", field, rel, real) // (os.Root said inside)
	}
	return real, fi, nil
}
