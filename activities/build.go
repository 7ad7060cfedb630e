package activities

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	bk "github.com/moby/buildkit/client"
	"github.com/moby/buildkit/session"
	"github.com/moby/buildkit/session/auth/authprovider"
	"github.com/tonistiigi/fsutil"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dchain-dev/dchain/chain"
	"github.com/dchain-dev/dchain/workflows"
)

// BuildImage checks out the commit, solves its Dockerfile with BuildKit for
// every platform of the plan, and pushes one image index under each tag.
// The registry build cache is imported and exported unless the rule says
// noCache. BuildKit's progress is heartbeated; its whole log is pushed as an
// artifact next to the image (`dchain run logs`). Canceling the activity
// cancels the solve, and buildkitd stops the job.
func (a *Activities) BuildImage(ctx context.Context, in workflows.BuildInput) (workflows.BuildResult, error) {
	res := workflows.BuildResult{Tags: in.Plan.Tags}
	if a.BuildKitAddr == "" {
		return res, temporal.NewNonRetryableApplicationError("this worker has no BuildKit address (--buildkit-addr / BUILDKIT_HOST)", ErrRejected, nil)
	}
	if prev, ok := a.previousBuild(ctx, in); ok {
		return a.reuseBuild(ctx, in, prev)
	}
	start := time.Now()
	dir, err := checkout(ctx, in.Source, in.Push.Commit, a.TempDir)
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	contextDir := filepath.Join(dir, filepath.FromSlash(in.Plan.Context))
	dockerfile := filepath.Join(contextDir, filepath.FromSlash(in.Plan.Dockerfile))
	if _, err := os.Stat(dockerfile); err != nil {
		return res, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("%s has no %s at commit %s", in.Source.URL, filepath.ToSlash(filepath.Join(in.Plan.Context, in.Plan.Dockerfile)), in.Push.Commit), ErrNotFound, nil)
	}
	checkedOut := time.Now()
	c, err := bk.New(ctx, a.BuildKitAddr)
	if err != nil {
		return res, temporal.NewApplicationError(fmt.Sprintf("connect to buildkitd at %s: %v (will retry)", a.BuildKitAddr, err), ErrTransient)
	}
	defer c.Close()
	opt, err := a.solveOptions(in, contextDir, filepath.Dir(dockerfile), filepath.Base(dockerfile))
	if err != nil {
		return res, err
	}

	log := &buildLog{}
	ch := make(chan *bk.SolveStatus)
	done := make(chan struct{})
	go func() { defer close(done); log.consume(ch) }()
	stop := a.every(ctx, func() { activity.RecordHeartbeat(ctx, log.progress()) })
	solveStart := time.Now()
	resp, solveErr := c.Solve(ctx, nil, opt, ch)
	solved := time.Now()
	<-done
	stop()
	p := log.progress()
	res.Steps, res.Cached = p.Steps, p.Cached
	built := ""
	if solveErr == nil {
		built = resp.ExporterResponse["containerimage.digest"]
	}
	res.Log = a.pushBuildLog(ctx, in, log.bytes(), built)
	logged := time.Now()

	if solveErr != nil {
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		if transientBuildError(solveErr) {
			return res, temporal.NewApplicationError(fmt.Sprintf("build of %s at %s: %v (will retry)", in.Plan.Rule, in.Push.Commit.Short(), solveErr), ErrTransient)
		}
		return res, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("build of %s at %s failed: %v (log: %s)", in.Plan.Rule, in.Push.Commit.Short(), solveErr, res.Log), ErrBuildFailed, nil, res)
	}
	res.Digest = built
	info, err := a.ResolveImage(ctx, workflows.ResolveImageInput{Registry: in.Registry,
		Image: workflows.ImageRef{Registry: in.Registry.Name, Repository: in.Repository, Tag: in.Plan.Tags[0], Digest: res.Digest}})
	if err != nil {
		return res, err
	}
	res.Platforms = info.Manifests
	// Where a build's time went (docs/benchmarks.md compares it with buildctl).
	activity.GetLogger(ctx).Info("built", "rule", in.Plan.Rule, "commit", in.Push.Commit, "digest", res.Digest,
		"steps", res.Steps, "cached", res.Cached, "checkout", checkedOut.Sub(start), "solve", solved.Sub(solveStart),
		"log", logged.Sub(solved), "resolve", time.Since(logged))
	return res, nil
}

// transientMarks are the texts of failures that a later attempt can get
// past: a registry (the base image's, the cache's, the destination) or
// buildkitd itself unreachable, overloaded or timing out. BuildKit reports
// them as plain text inside its gRPC error.
var transientMarks = []string{
	"connection refused", "connection reset by peer", "no such host", "i/o timeout", "TLS handshake timeout",
	"network is unreachable", "no route to host", "server misbehaving", "unexpected EOF",
	"500 Internal Server Error", "502 Bad Gateway", "503 Service Unavailable", "504 Gateway Timeout", "429 Too Many Requests",
}

// transientBuildError reports whether a failed solve is worth retrying:
// buildkitd unavailable or out of resources, or a network failure on the
// way to a registry. A failing RUN step or a bad Dockerfile is not.
func transientBuildError(err error) bool {
	if s, ok := status.FromError(err); ok && (s.Code() == codes.Unavailable || s.Code() == codes.ResourceExhausted) {
		return true
	}
	msg := err.Error()
	for _, m := range transientMarks {
		if strings.Contains(msg, m) {
			return true
		}
	}
	return false
}

// solveOptions are the BuildKit options of a build: dockerfile frontend,
// local context, image export to every tag, registry cache.
func (a *Activities) solveOptions(in workflows.BuildInput, contextDir, dockerfileDir, dockerfileName string) (bk.SolveOpt, error) {
	ctxFS, err := fsutil.NewFS(contextDir)
	if err != nil {
		return bk.SolveOpt{}, err
	}
	dfFS, err := fsutil.NewFS(dockerfileDir)
	if err != nil {
		return bk.SolveOpt{}, err
	}
	repo := in.Registry.Address + "/" + in.Repository
	var names []string
	for _, t := range in.Plan.Tags {
		names = append(names, repo+":"+t)
	}
	insecure := fmt.Sprint(in.Registry.Insecure)
	attrs := map[string]string{"filename": dockerfileName, "platform": strings.Join(in.Plan.Platforms, ",")}
	for k, v := range in.Plan.BuildArgs {
		attrs["build-arg:"+k] = v
	}
	opt := bk.SolveOpt{
		Frontend:      "dockerfile.v0",
		FrontendAttrs: attrs,
		LocalMounts:   map[string]fsutil.FS{"context": ctxFS, "dockerfile": dfFS},
		Exports: []bk.ExportEntry{{Type: bk.ExporterImage, Attrs: map[string]string{
			"name": strings.Join(names, ","), "push": "true", "registry.insecure": insecure, "oci-mediatypes": "true",
		}}},
	}
	if in.Plan.NoCache {
		attrs["no-cache"] = ""
	} else {
		cache := in.Registry.Address + "/" + chain.CacheRepositoryPrefix + in.Repository + ":" + in.Plan.Rule
		opt.CacheImports = []bk.CacheOptionsEntry{{Type: "registry", Attrs: map[string]string{"ref": cache, "registry.insecure": insecure}}}
		opt.CacheExports = []bk.CacheOptionsEntry{{Type: "registry", Attrs: map[string]string{
			"ref": cache, "mode": "max", "registry.insecure": insecure, "oci-mediatypes": "true", "image-manifest": "true",
		}}}
	}
	opt.Session = []session.Attachable{authprovider.NewDockerAuthProvider(authprovider.DockerAuthProviderConfig{
		AuthConfigProvider: a.buildAuth(in.Registry),
		TLSConfigs:         a.buildTLS(in.Registry),
	})}
	return opt, nil
}

// buildLog renders BuildKit's status stream as a plain-text log and counts steps.
type buildLog struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	steps   map[string]bool
	started map[string]bool
	done    map[string]bool
	cached  map[string]bool
	current string
}

func (l *buildLog) consume(ch chan *bk.SolveStatus) {
	for s := range ch {
		l.mu.Lock()
		if l.steps == nil {
			l.steps, l.started, l.done, l.cached = map[string]bool{}, map[string]bool{}, map[string]bool{}, map[string]bool{}
		}
		for _, v := range s.Vertexes {
			id := v.Digest.String()
			if !l.steps[id] && v.Name != "" {
				l.steps[id] = true
			}
			switch {
			case v.Cached && !l.cached[id]:
				l.cached[id], l.done[id] = true, true
				fmt.Fprintf(&l.buf, "CACHED %s\n", v.Name)
			case v.Error != "":
				fmt.Fprintf(&l.buf, "ERROR %s: %s\n", v.Name, v.Error)
			case v.Completed != nil && !l.done[id]:
				l.done[id] = true
				d := ""
				if v.Started != nil {
					d = fmt.Sprintf(" (%.1fs)", v.Completed.Sub(*v.Started).Seconds())
				}
				fmt.Fprintf(&l.buf, "DONE %s%s\n", v.Name, d)
			case v.Started != nil && v.Completed == nil && !l.started[id]:
				l.started[id], l.current = true, v.Name
				fmt.Fprintf(&l.buf, "START %s\n", v.Name)
			}
		}
		for _, lg := range s.Logs {
			for _, line := range strings.Split(strings.TrimRight(string(lg.Data), "\n"), "\n") {
				fmt.Fprintf(&l.buf, "  | %s\n", line)
			}
		}
		for _, w := range s.Warnings {
			fmt.Fprintf(&l.buf, "WARN %s\n", w.Short)
		}
		l.mu.Unlock()
	}
}

func (l *buildLog) progress() workflows.BuildProgress {
	l.mu.Lock()
	defer l.mu.Unlock()
	return workflows.BuildProgress{Steps: len(l.steps), Completed: len(l.done), Cached: len(l.cached), Current: l.current}
}

func (l *buildLog) bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]byte(nil), l.buf.Bytes()...)
}

// every calls f now and then every HeartbeatEvery until stop is called or ctx ends.
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
	return func() { close(done); wg.Wait() }
}
