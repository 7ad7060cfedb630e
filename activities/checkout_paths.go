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
func inCheckout(root, rel, field string) (string, fs.FileInfo, error) {
	r, err := os.OpenRoot(root)
	if err != nil {
		return "", nil, err
	}
	defer r.Close()
	name := filepath.FromSlash(path.Clean("./" + rel))
	fi, err := r.Stat(name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s %q is not in the repository", field, rel), ErrNotFound, nil)
	case err != nil:
		// os.Root refuses a path whose symlinks lead out of the checkout
		// (whether or not anything is there: the host is not looked at).
		return "", nil, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("%s %q leads outside the repository through a symlink; paths must resolve inside the checkout", field, rel), ErrOutsideCheckout, nil)
	}
	// The real path, for BuildKit's local source: inside, as os.Root said.
	realRoot, err := filepath.EvalSymlinks(root)
	if err == nil {
		var real string
		if real, err = filepath.EvalSymlinks(filepath.Join(realRoot, name)); err == nil &&
			(real == realRoot || strings.HasPrefix(real, realRoot+string(filepath.Separator))) {
			return real, fi, nil
		}
	}
	return "", nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s %q does not resolve inside the checkout", field, rel), ErrOutsideCheckout, nil)
}
