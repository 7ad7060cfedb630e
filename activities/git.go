package activities

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"go.temporal.io/sdk/temporal"

	"github.com/dchain-dev/dchain/chain"
)

// gitCmd runs git with the source's credentials (an HTTP header, so they
// never appear in a URL or an error message) and returns its output.
func gitCmd(ctx context.Context, src chain.BuildSource, dir string, args ...string) (string, error) {
	var pre []string
	if src.Credentials != "" {
		secret, err := src.Credentials.Resolve()
		if err != nil {
			return "", temporal.NewNonRetryableApplicationError("git source "+src.URL+": "+err.Error(), ErrCredentials, nil)
		}
		pre = append(pre, "-c", "http.extraHeader=Authorization: Basic "+base64.StdEncoding.EncodeToString([]byte(secret)))
	}
	cmd := exec.CommandContext(ctx, "git", append(pre, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0", "GIT_CONFIG_NOSYSTEM=1")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("git %s: %v: %s", args[0], err, strings.TrimSpace(errOut.String()))
	}
	return strings.TrimSpace(out.String()), nil
}

// ResolveRef returns the commit a ref points at in the source repository.
func ResolveRef(ctx context.Context, src chain.BuildSource, ref string) (string, error) {
	out, err := gitCmd(ctx, src, "", "ls-remote", "--", src.URL, ref)
	if err != nil {
		return "", fmt.Errorf("resolve %s in %s: %w", ref, src.URL, err)
	}
	for _, line := range strings.Split(out, "\n") {
		if sha, name, ok := strings.Cut(line, "\t"); ok && name == ref {
			return sha, nil
		}
	}
	return "", fmt.Errorf("ref %s does not exist in %s", ref, src.URL)
}

// checkout fetches commit of the source into a new directory under tmp and
// returns it; remove it when done. A commit the source does not have is a
// permanent error; an unreachable source is transient.
func checkout(ctx context.Context, src chain.BuildSource, commit, tmp string) (string, error) {
	dir, err := os.MkdirTemp(tmp, "dchain-src-")
	if err != nil {
		return "", err
	}
	steps := [][]string{
		{"init", "-q"},
		{"remote", "add", "origin", src.URL},
	}
	for _, s := range steps {
		if _, err := gitCmd(ctx, src, dir, s...); err != nil {
			os.RemoveAll(dir)
			return "", err
		}
	}
	// A shallow fetch of the exact commit; servers that refuse to serve a
	// bare commit get a full fetch instead.
	if _, err := gitCmd(ctx, src, dir, "fetch", "-q", "--depth=1", "origin", commit); err != nil {
		if _, err := gitCmd(ctx, src, dir, "fetch", "-q", "origin"); err != nil {
			os.RemoveAll(dir)
			if ctx.Err() != nil {
				return "", ctx.Err()
			}
			return "", temporal.NewApplicationError(fmt.Sprintf("fetch %s: %v (will retry)", src.URL, err), ErrTransient)
		}
	}
	if _, err := gitCmd(ctx, src, dir, "-c", "advice.detachedHead=false", "checkout", "-q", "--detach", commit); err != nil {
		os.RemoveAll(dir)
		return "", temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("commit %s is not in %s: %v", commit, src.URL, err), ErrNotFound, nil)
	}
	return dir, nil
}
