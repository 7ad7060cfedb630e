package activities

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/dchain-dev/dchain/chain"
	"github.com/dchain-dev/dchain/workflows"
)

// builderDouble answers a build as told and records what it was given.
type builderDouble struct {
	out BuildOutput
	err error
	got BuildRequest
}

func (b *builderDouble) Build(_ context.Context, req BuildRequest, progress func(workflows.BuildProgress)) (BuildOutput, error) {
	b.got = req
	progress(b.out.Progress)
	return b.out, b.err
}

// The build activity answers for its builder: buildkitd out of reach is
// retried (and leaves no empty log behind); a failing build is final and
// keeps its log for `dchain run logs`; the builder gets the checkout's
// context and Dockerfile and the registries' sign-in, never a secret in
// its request.
func TestBuildImageAnswersForItsBuilder(t *testing.T) {
	repo, commit := gitRepo(t)
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	reg := chain.Registry{Name: "src", Address: strings.TrimPrefix(srv.URL, "http://"), Insecure: true,
		Credentials: "env:DCHAIN_TEST_BUILD_REGISTRY"}
	t.Setenv("DCHAIN_TEST_BUILD_REGISTRY", "ci:build-secret")
	in := workflows.BuildInput{Source: chain.BuildSource{URL: repo}, Push: chain.Push{Ref: "refs/heads/main", Commit: commit},
		Plan:     chain.BuildPlan{Rule: "main", Tags: []string{"v1"}, Dockerfile: "Dockerfile", Platforms: []string{"linux/amd64"}},
		Registry: reg, Repository: "demo/app"}
	build := func(b *builderDouble) (workflows.BuildResult, error) {
		env := (&testsuite.WorkflowTestSuite{}).NewTestActivityEnvironment()
		a := &Activities{Builder: b, TempDir: t.TempDir()}
		env.RegisterActivity(a.BuildImage)
		v, err := env.ExecuteActivity(a.BuildImage, in)
		var res workflows.BuildResult
		if err == nil {
			err = v.Get(&res)
		}
		return res, err
	}

	down := &builderDouble{err: unavailableErr{errors.New("connect to buildkitd at unix:///nowhere: no such file")}}
	_, err := build(down)
	var app *temporal.ApplicationError
	if !errors.As(err, &app) || app.Type() != ErrTransient || app.NonRetryable() || !strings.Contains(err.Error(), "will retry") {
		t.Fatalf("buildkitd out of reach: %v, want a retryable %s", err, ErrTransient)
	}
	if _, err := (&Activities{}).ReadBuildLog(context.Background(), reg, reg.Address+"/"+chain.LogRepositoryPrefix+"demo/app:main-"+commit.Short()); err == nil {
		t.Fatal("an unreached buildkitd left a build log behind")
	}
	if down.got.ContextDir == "" || filepath.Base(down.got.Dockerfile) != "Dockerfile" {
		t.Fatalf("the builder got context %q, Dockerfile %q", down.got.ContextDir, down.got.Dockerfile)
	}
	if _, err := os.Stat(down.got.Dockerfile); !os.IsNotExist(err) {
		t.Errorf("the checkout outlived the activity (%v)", err)
	}
	signIn, err := down.got.SignIn(context.Background(), reg.Address)
	if err != nil || signIn.Username != "ci" || signIn.Password != "build-secret" {
		t.Fatalf("the builder's sign-in to its registry: %+v, %v", signIn, err)
	}

	failing := &builderDouble{out: BuildOutput{Log: []byte("ERROR [2/2] RUN exit 3\n"), Progress: workflows.BuildProgress{Steps: 2}},
		err: errors.New(`process "/bin/sh -c exit 3" did not complete successfully: exit code: 3`)}
	_, err = build(failing)
	failed := fmt.Sprint(err)
	if !errors.As(err, &app) || app.Type() != ErrBuildFailed || !app.NonRetryable() {
		t.Fatalf("a failing build: %v, want a final %s", err, ErrBuildFailed)
	}
	var res workflows.BuildResult
	if err := app.Details(&res); err != nil || res.Log == "" || res.Steps != 2 {
		t.Fatalf("a failing build's result: %+v (%v)", res, err)
	}
	kept, err := (&Activities{}).ReadBuildLog(context.Background(), reg, res.Log)
	if err != nil || string(kept) != "ERROR [2/2] RUN exit 3\n" {
		t.Fatalf("the failing build's log: %q (%v)", kept, err)
	}
	for _, s := range []string{failed, res.Log} {
		if strings.Contains(s, "build-secret") {
			t.Errorf("the registry secret reached %q", s)
		}
	}
}

// unavailableErr is a builder's failure that a later attempt can get past.
type unavailableErr struct{ error }

func (unavailableErr) Is(target error) bool { return target == ErrBuildUnavailable }

// gatedBuilder counts the builds solving at once, says when one starts,
// and holds each until release is closed.
type gatedBuilder struct {
	now, most atomic.Int32
	started   chan struct{}
	release   chan struct{}
}

func (g *gatedBuilder) Build(ctx context.Context, req BuildRequest, progress func(workflows.BuildProgress)) (BuildOutput, error) {
	n := g.now.Add(1)
	defer g.now.Add(-1)
	for m := g.most.Load(); n > m && !g.most.CompareAndSwap(m, n); m = g.most.Load() {
	}
	g.started <- struct{}{}
	select {
	case <-g.release:
	case <-ctx.Done():
	}
	return BuildOutput{}, errors.New("held")
}

// At most MaxBuilds builds of a worker solve at once; the others wait
// their turn (a canceled one stops waiting).
func TestBuildsWaitForASlot(t *testing.T) {
	repo, commit := gitRepo(t)
	g := &gatedBuilder{started: make(chan struct{}, 5), release: make(chan struct{})}
	a := &Activities{Builder: g, TempDir: t.TempDir(), MaxBuilds: 2}
	in := workflows.BuildInput{Source: chain.BuildSource{URL: repo}, Push: chain.Push{Ref: "refs/heads/main", Commit: commit},
		Plan: chain.BuildPlan{Rule: "main", Tags: []string{"v1"}, Dockerfile: "Dockerfile", Platforms: []string{"linux/amd64"}}}
	var wg sync.WaitGroup
	for range 5 {
		wg.Go(func() {
			env := (&testsuite.WorkflowTestSuite{}).NewTestActivityEnvironment()
			env.RegisterActivity(a.BuildImage)
			_, _ = env.ExecuteActivity(a.BuildImage, in)
		})
	}
	<-g.started
	<-g.started
	if n := len(a.buildSlots); n != 2 {
		t.Fatalf("%d build slots taken, want 2", n)
	}
	close(g.release)
	wg.Wait()
	if len(g.started) != 3 {
		t.Fatalf("%d more builds ran, want 3", len(g.started))
	}
	if m := g.most.Load(); m != 2 {
		t.Fatalf("at most %d builds at once, want 2", m)
	}
	if len(a.buildSlots) != 0 {
		t.Fatalf("%d build slots still taken", len(a.buildSlots))
	}

	ctx, cancel := context.WithCancel(context.Background())
	full := make(slots, 1)
	_ = full.take(ctx)
	cancel()
	if err := full.take(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("a canceled wait for a slot: %v", err)
	}
}
