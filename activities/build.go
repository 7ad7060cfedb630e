package activities

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/dchain-dev/dchain/chain"
	"github.com/dchain-dev/dchain/workflows"
)

// ImageBuilder solves a checkout's Dockerfile for the plan's platforms and
// pushes one image index under each tag. Package activities/buildkit
// implements it with BuildKit; it is an interface so that this package,
// and what links it without building, does not link BuildKit.
type ImageBuilder interface {
	Build(ctx context.Context, req BuildRequest, progress func(workflows.BuildProgress)) (BuildOutput, error)
}

// BuildRequest is one build of a checkout.
type BuildRequest struct {
	Input workflows.BuildInput
	// ContextDir is the build context; Dockerfile the file, both in the checkout.
	ContextDir, Dockerfile string
	// SignIn signs in to a registry host the build pulls from or pushes to.
	SignIn func(ctx context.Context, host string) (*authn.AuthConfig, error)
	// CAFiles are the CA bundle files of registries that have one, by address.
	CAFiles map[string]string
	// Secrets are the values of the plan's build secrets, by ID, for the
	// build's secret mounts only: never logged, stored or put in an error.
	Secrets map[string][]byte
}

// BuildOutput is what a build left: the pushed index's digest ("" when it
// failed), BuildKit's log and the steps it counted.
type BuildOutput struct {
	Digest   string
	Log      []byte
	Progress workflows.BuildProgress
}

// ErrBuildUnavailable marks a build failure that a later attempt can get
// past: buildkitd or a registry unreachable, overloaded or timing out.
var ErrBuildUnavailable = errors.New("build infrastructure unavailable")

// BuildImage checks out the commit, solves its Dockerfile with the
// worker's builder for every platform of the plan, and pushes one image
// index under each tag. The registry build cache is imported and exported
// unless the rule says noCache. The builder's progress is heartbeated; its
// whole log is pushed as an artifact next to the image (`dchain run logs`).
// Canceling the activity cancels the build.
func (a *Activities) BuildImage(ctx context.Context, in workflows.BuildInput) (workflows.BuildResult, error) {
	res := workflows.BuildResult{Tags: in.Plan.Tags}
	if a.Builder == nil {
		return res, temporal.NewNonRetryableApplicationError("this worker has no BuildKit address (--buildkit-addr / BUILDKIT_HOST)", ErrRejected, nil)
	}
	prev, prevLog, builtBefore := a.previousBuild(ctx, in)
	if err := a.immutableTags(ctx, in, prev); err != nil {
		return res, err
	}
	if builtBefore && !in.Plan.NoCache {
		return a.reuseBuild(ctx, in, prev, prevLog)
	}
	start := time.Now()
	// Heartbeats from the start: a first fetch of a large source (or a
	// wait for another build's fetch of it) can take longer than the
	// heartbeat timeout.
	var latest atomic.Pointer[workflows.BuildProgress]
	latest.Store(&workflows.BuildProgress{})
	stop := a.every(ctx, func() { activity.RecordHeartbeat(ctx, *latest.Load()) })
	defer stop()
	dir, err := a.checkout(ctx, in.Source, in.Push.Commit)
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	contextDir, dockerfile, err := buildPaths(dir, in)
	if err != nil {
		return res, err
	}
	secrets, err := buildSecrets(in.Plan)
	if err != nil {
		return res, err
	}
	checkedOut := time.Now()
	var slotted time.Time
	out, buildErr := func() (BuildOutput, error) {
		release, err := a.takeBuildSlot(ctx)
		if err != nil {
			return BuildOutput{}, err
		}
		defer release()
		slotted = time.Now()
		return a.Builder.Build(ctx, BuildRequest{Input: in, ContextDir: contextDir, Dockerfile: dockerfile,
			SignIn: a.buildSignIn(in.Registry), CAFiles: a.buildCAFiles(in.Registry), Secrets: secrets},
			func(p workflows.BuildProgress) { latest.Store(&p) })
	}()
	stop()
	built := time.Now()
	res.Steps, res.Cached = out.Progress.Steps, out.Progress.Cached
	if buildErr == nil || len(out.Log) > 0 { // (nothing to keep when buildkitd was not reached)
		res.Log = a.pushBuildLog(ctx, in, out.Log, out.Digest)
	}
	logged := time.Now()

	if buildErr != nil {
		if ctx.Err() != nil {
			// Canceled: what was built so far is in the log, which the
			// run keeps (it waits for this answer).
			return res, temporal.NewCanceledError(res)
		}
		if errors.Is(buildErr, ErrBuildUnavailable) {
			return res, temporal.NewApplicationError(fmt.Sprintf("build of %s at %s: %v (will retry)", in.Plan.Rule, in.Push.Commit.Short(), buildErr), ErrTransient)
		}
		return res, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("build of %s at %s failed: %v (log: %s)", in.Plan.Rule, in.Push.Commit.Short(), buildErr, res.Log), ErrBuildFailed, nil, res)
	}
	res.Digest = out.Digest
	info, err := a.ResolveImage(ctx, workflows.ResolveImageInput{Registry: in.Registry,
		Image: workflows.ImageRef{Registry: in.Registry.Name, Repository: in.Repository, Tag: in.Plan.Tags[0], Digest: res.Digest}})
	if err != nil {
		return res, err
	}
	res.Platforms = info.Manifests
	// Where a build's time went (docs/benchmarks.md compares it with buildctl).
	activity.GetLogger(ctx).Info("built", "rule", in.Plan.Rule, "commit", in.Push.Commit, "digest", res.Digest,
		"steps", res.Steps, "cached", res.Cached, "checkout", checkedOut.Sub(start), "queued", slotted.Sub(checkedOut), "build", built.Sub(slotted),
		"log", logged.Sub(built), "resolve", time.Since(logged))
	return res, nil
}

// immutableTags refuses a build whose tags (but latest) exist already,
// under the chain's immutableTags, unless they point at prev (the image an
// earlier build of the same inputs pushed, which a retry tags again).
func (a *Activities) immutableTags(ctx context.Context, in workflows.BuildInput, prev string) error {
	if !in.ImmutableTags {
		return nil
	}
	opts, err := a.remoteOptions(ctx, in.Registry)
	if err != nil {
		return err
	}
	for _, tag := range in.Plan.Tags {
		if tag == "latest" {
			continue
		}
		ref, err := reference(in.Registry, in.Repository, tag)
		if err != nil {
			return err
		}
		what := fmt.Sprintf("build of %s at %s: tag %s", in.Plan.Rule, in.Push.Commit.Short(), ref)
		cur, err := digestAt(ctx, ref, opts, what)
		if err != nil {
			return err
		}
		if cur != "" && cur != prev {
			return temporal.NewNonRetryableApplicationError(fmt.Sprintf(
				"%s exists with digest %s and is immutable (the chain's immutableTags: every tag but latest); nothing was built", what, cur), ErrTagConflict, nil)
		}
	}
	return nil
}

// buildPaths are the real paths of the plan's context directory and
// Dockerfile in the checkout at dir, both refused when a symlink of the
// pushed repository leads out of it.
func buildPaths(dir string, in workflows.BuildInput) (contextDir, dockerfile string, err error) {
	df := path.Join(in.Plan.Context, in.Plan.Dockerfile)
	check := func(rel, field string, ok func(fs.FileInfo) bool, what string) (string, error) {
		real, fi, err := inCheckout(dir, rel, field)
		var app *temporal.ApplicationError
		switch {
		case errors.As(err, &app) && app.Type() == ErrNotFound:
			return "", temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s has no %s at commit %s", in.Source.URL, df, in.Push.Commit), ErrNotFound, nil)
		case err != nil:
			return "", err
		case !ok(fi):
			return "", temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s %q is not a %s at commit %s", field, rel, what, in.Push.Commit), ErrNotFound, nil)
		}
		return real, nil
	}
	if contextDir, err = check(in.Plan.Context, "context", fs.FileInfo.IsDir, "directory"); err != nil {
		return "", "", err
	}
	dockerfile, err = check(df, "dockerfile", func(fi fs.FileInfo) bool { return fi.Mode().IsRegular() }, "file")
	return contextDir, dockerfile, err
}

// buildSecrets resolves the plan's build secrets on this worker; one that
// cannot be read fails the build at once, naming its ID and reference.
func buildSecrets(plan chain.BuildPlan) (map[string][]byte, error) {
	out := map[string][]byte{}
	for id, ref := range plan.Secrets {
		v, err := ref.Resolve()
		if err != nil {
			return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("build secret %s: %v", id, err), ErrCredentials, nil)
		}
		out[id] = []byte(v)
	}
	return out, nil
}

// buildSignIn signs a build in to every host it pulls from or pushes to: a
// configured registry by its address (the build's own first), else the
// Keychain.
func (a *Activities) buildSignIn(own chain.Registry) func(ctx context.Context, host string) (*authn.AuthConfig, error) {
	return func(ctx context.Context, host string) (*authn.AuthConfig, error) {
		reg := chain.Registry{Name: host, Address: host}
		for _, r := range append([]chain.Registry{own}, a.configured()...) {
			if r.Address == host {
				reg = r
				break
			}
		}
		return authConfig(ctx, reg)
	}
}

// buildCAFiles are the CA files of the configured registries that have
// one, for the build's sign-in (its token requests are made on this side).
func (a *Activities) buildCAFiles(own chain.Registry) map[string]string {
	out := map[string]string{}
	for _, r := range append([]chain.Registry{own}, a.configured()...) {
		if path, ok := strings.CutPrefix(string(r.CA), "file:"); ok && out[r.Address] == "" {
			out[r.Address] = path
		}
	}
	return out
}

// takeBuildSlot waits for one of the worker's MaxBuilds build slots (none
// when MaxBuilds is 0), or for ctx to end (a canceled run); release frees
// it.
func (a *Activities) takeBuildSlot(ctx context.Context) (release func(), err error) {
	if a.MaxBuilds <= 0 {
		return func() {}, nil
	}
	a.buildSlotsOnce.Do(func() { a.buildSlots = make(slots, a.MaxBuilds) })
	if err := a.buildSlots.take(ctx); err != nil {
		return nil, err
	}
	return a.buildSlots.release, nil
}

// every calls f now and then every HeartbeatEvery until stop is called
// (once or more) or ctx ends.
func (a *Activities) every(ctx context.Context, f func()) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(a.heartbeatEvery())
		defer t.Stop()
		for {
			f()
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done); wg.Wait() }) }
}
