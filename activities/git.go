package activities

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/dchain-dev/dchain/chain"
)

// gitEnv is the environment of every git child: no prompts, no system
// config, only the transports a chain's source may use (never ext:: or fd::,
// which run commands), and the source's credentials as an HTTP header set
// through GIT_CONFIG_* variables, so they are in neither the arguments
// (which any local user reads in ps) nor a URL or an error message.
func gitEnv(src chain.BuildSource) ([]string, error) {
	env := append(os.Environ(), "GIT_TERMINAL_PROMPT=0", "GIT_CONFIG_NOSYSTEM=1", "GIT_ALLOW_PROTOCOL=file:git:http:https:ssh")
	if src.Credentials == "" {
		return env, nil
	}
	secret, err := src.Credentials.Resolve()
	if err != nil {
		return nil, temporal.NewNonRetryableApplicationError("git source "+src.URL+": "+err.Error(), ErrCredentials, nil)
	}
	return append(env, "GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=http.extraHeader",
		"GIT_CONFIG_VALUE_0=Authorization: Basic "+base64.StdEncoding.EncodeToString([]byte(secret))), nil
}

// gitCmd runs git with the source's environment (gitEnv) and returns its
// output. Callers put "--end-of-options" (or "--") before any value that
// came from outside, and such values are checked by the chain package's
// validator before they get here.
func gitCmd(ctx context.Context, src chain.BuildSource, dir string, args ...string) (string, error) {
	return gitRun(ctx, src, dir, nil, args...)
}

// gitRun is gitCmd with more environment variables (extra).
func gitRun(ctx context.Context, src chain.BuildSource, dir string, extra []string, args ...string) (string, error) {
	env, err := gitEnv(src)
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir, cmd.Env = dir, append(env, extra...)
	// A canceled command gets SIGTERM, on which git removes its lock files
	// (a SIGKILL would leave them, and a mirror's next fetch would fail).
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("git %s: %v: %s", args[0], err, strings.TrimSpace(errOut.String()))
	}
	return strings.TrimSpace(out.String()), nil
}

// ErrUnknownCommit means the source does not have the commit.
var ErrUnknownCommit = errors.New("commit is not in the source repository")

// ResolveRef returns the commit a ref points at in the source repository
// (for an annotated tag, the commit it tags).
func ResolveRef(ctx context.Context, src chain.BuildSource, ref chain.Ref) (chain.Commit, error) {
	out, err := gitCmd(ctx, src, "", "ls-remote", "--", src.URL, string(ref), string(ref)+"^{}")
	if err != nil {
		return "", fmt.Errorf("resolve %s in %s: %w", ref, src.URL, err)
	}
	var found string
	for _, line := range strings.Split(out, "\n") {
		sha, name, ok := strings.Cut(line, "\t")
		switch {
		case ok && name == string(ref)+"^{}":
			found = sha // the peeled tag wins
		case ok && name == string(ref) && found == "":
			found = sha
		}
	}
	if found == "" {
		return "", fmt.Errorf("ref %s does not exist in %s", ref, src.URL)
	}
	// ls-remote's output is a registry-like answer from outside: check it too.
	return chain.ParseCommit("ls-remote "+src.URL, found)
}

// CheckCommit confirms the source has commit, so a run asked for an unknown
// commit is refused at start rather than in the build stage. It fetches the
// commit alone (no trees or blobs) into a scratch repository under tmp; an
// unreachable source is an error that is not ErrUnknownCommit.
func CheckCommit(ctx context.Context, src chain.BuildSource, commit chain.Commit, tmp string) error {
	dir, err := initRepo(ctx, src, tmp)
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if _, err := gitCmd(ctx, src, dir, "fetch", "-q", "--depth=1", "--filter=tree:0", "--end-of-options", "origin", string(commit)); err == nil {
		return nil
	}
	// Servers that refuse a bare commit: fetch the history (commits only) and look.
	if _, err := gitCmd(ctx, src, dir, "fetch", "-q", "--filter=tree:0", "--end-of-options", "origin"); err != nil {
		return fmt.Errorf("reach %s: %w", src.URL, err)
	}
	if _, err := gitCmd(ctx, src, dir, "cat-file", "-e", "--end-of-options", string(commit)+"^{commit}"); err != nil {
		return fmt.Errorf("%w: %s has no commit %s", ErrUnknownCommit, src.URL, commit)
	}
	return nil
}

// initRepo makes an empty repository under tmp whose origin is the source.
func initRepo(ctx context.Context, src chain.BuildSource, tmp string) (string, error) {
	dir, err := os.MkdirTemp(tmp, "src-")
	if err != nil {
		return "", err
	}
	for _, s := range [][]string{{"init", "-q"}, {"remote", "add", "--", "origin", src.URL}} {
		if _, err := gitCmd(ctx, src, dir, s...); err != nil {
			os.RemoveAll(dir)
			return "", err
		}
	}
	return dir, nil
}
