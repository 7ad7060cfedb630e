package activities

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/dchain-dev/dchain/chain"
	"github.com/dchain-dev/dchain/workflows"
)

// tree makes files (content) and symlinks ("-> target") under dir.
func tree(t *testing.T, dir string, entries map[string]string) {
	t.Helper()
	for p, v := range entries {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		if target, ok := strings.CutPrefix(v, "-> "); ok {
			err = os.Symlink(target, full)
		} else {
			err = os.WriteFile(full, []byte(v), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// A chain's context and Dockerfile resolve inside the checkout: symlinks
// that stay inside are followed; one that leads out (absolute or by "..",
// as the path itself, a parent of it or the Dockerfile) is refused for
// good, naming the field and the path.
func TestInCheckout(t *testing.T) {
	outside := t.TempDir()
	tree(t, outside, map[string]string{"Dockerfile": "FROM scratch\n", "sub/Dockerfile": "FROM scratch\n", "secret": "host file\n"})
	root := filepath.Join(t.TempDir(), "checkout")
	tree(t, root, map[string]string{
		"real/Dockerfile":   "FROM scratch\n",
		"real/Other":        "-> Dockerfile",
		"web":               "-> real",
		"deep/web":          "-> ../real",
		"app":               "-> " + outside,
		"climb":             "-> ../../../../../../../..",
		"lib":               "-> " + outside,
		"real/Stolen":       "-> " + filepath.Join(outside, "Dockerfile"),
		"real/ClimbFile":    "-> ../../" + filepath.Base(outside) + "/Dockerfile",
		"real/DanglingLeak": "-> /nonexistent/dchain/Dockerfile",
	})
	for _, c := range []struct{ rel, field, want string }{
		{"real", "context", filepath.Join(root, "real")},
		{"web", "context", filepath.Join(root, "real")},
		{"deep/web", "context", filepath.Join(root, "real")},
		{"web/Other", "dockerfile", filepath.Join(root, "real", "Dockerfile")},
		{"", "context", root},
		{".", "context", root},
	} {
		got, _, err := inCheckout(root, c.rel, c.field)
		if err != nil || got != c.want {
			t.Errorf("%s %q: %q, %v; want %q", c.field, c.rel, got, err, c.want)
		}
	}
	for _, c := range []struct{ rel, field, errType string }{
		{"app", "context", ErrOutsideCheckout},
		{"climb", "context", ErrOutsideCheckout},
		{"lib/sub", "context", ErrOutsideCheckout},
		{"lib/sub/Dockerfile", "dockerfile", ErrOutsideCheckout},
		{"real/Stolen", "dockerfile", ErrOutsideCheckout},
		{"real/ClimbFile", "dockerfile", ErrOutsideCheckout},
		{"real/DanglingLeak", "dockerfile", ErrOutsideCheckout},
		{"missing", "context", ErrNotFound},
		{"real/Missing", "dockerfile", ErrNotFound},
	} {
		_, _, err := inCheckout(root, c.rel, c.field)
		var app *temporal.ApplicationError
		if !errors.As(err, &app) || app.Type() != c.errType || !app.NonRetryable() || !strings.Contains(err.Error(), c.field+` "`+c.rel+`"`) {
			t.Errorf("%s %q: %v; want a final %s naming it", c.field, c.rel, err, c.errType)
		}
		if err != nil && strings.Contains(err.Error(), outside) {
			t.Errorf("%s %q: the error names the host path: %v", c.field, c.rel, err)
		}
	}
}

// The build activity refuses a pushed repository whose context is a
// symlink out of the checkout before its builder sees anything; it hands
// the builder the values of the plan's secrets (the input holds their
// references only) and fails at once when one cannot be read.
func TestBuildImagePathsAndSecrets(t *testing.T) {
	outside := t.TempDir()
	tree(t, outside, map[string]string{"Dockerfile": "FROM scratch\nCOPY . /\n"})
	repo := filepath.Join(t.TempDir(), "repo")
	tree(t, repo, map[string]string{"app": "-> " + outside, "inside/Dockerfile": "FROM scratch\n", "web": "-> inside"})
	for _, args := range [][]string{{"init", "-q", "-b", "main"}, {"add", "."}, {"commit", "-q", "-m", "one"}} {
		cmd := exec.Command("git", args...)
		cmd.Dir = repo
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@x", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@x")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v %s", args, err, out)
		}
	}
	out, _ := exec.Command("git", "-C", repo, "rev-parse", "HEAD").Output()
	commit := chain.Commit(strings.TrimSpace(string(out)))
	build := func(plan chain.BuildPlan) (*builderDouble, error) {
		b := &builderDouble{err: errors.New("stop here")}
		env := (&testsuite.WorkflowTestSuite{}).NewTestActivityEnvironment()
		a := &Activities{Builder: b, TempDir: t.TempDir()}
		env.RegisterActivity(a.BuildImage)
		plan.Rule, plan.Tags, plan.Platforms = "main", []string{"v1"}, []string{"linux/amd64"}
		if plan.Dockerfile == "" {
			plan.Dockerfile = "Dockerfile"
		}
		_, err := env.ExecuteActivity(a.BuildImage, workflows.BuildInput{Source: chain.BuildSource{URL: repo},
			Push: chain.Push{Ref: "refs/heads/main", Commit: commit}, Plan: plan,
			Registry: chain.Registry{Name: "src", Address: "127.0.0.1:1", Insecure: true}, Repository: "demo/app"})
		return b, err
	}

	b, err := build(chain.BuildPlan{Context: "app"})
	var app *temporal.ApplicationError
	if !errors.As(err, &app) || app.Type() != ErrOutsideCheckout || !app.NonRetryable() || !strings.Contains(err.Error(), `context "app" leads outside the repository`) {
		t.Fatalf("context symlinked out: %v", err)
	}
	if b.got.ContextDir != "" {
		t.Fatalf("the builder was called with %q", b.got.ContextDir)
	}

	// A context that is a file, a Dockerfile that is a directory: final, saying so.
	for _, c := range []struct {
		plan chain.BuildPlan
		want string
	}{
		{chain.BuildPlan{Context: "inside/Dockerfile"}, `context "inside/Dockerfile" is not a directory`},
		{chain.BuildPlan{Context: ".", Dockerfile: "inside"}, `dockerfile "inside" is not a file`},
	} {
		_, err := build(c.plan)
		if !errors.As(err, &app) || app.Type() != ErrNotFound || !app.NonRetryable() || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want a final %q", c.plan, err, c.want)
		}
	}

	t.Setenv("DCHAIN_TEST_NPMRC", "//registry.npmjs.org/:_authToken=s3cret")
	b, _ = build(chain.BuildPlan{Context: "web", Secrets: map[string]chain.SecretRef{"npmrc": "env:DCHAIN_TEST_NPMRC"}})
	if string(b.got.Secrets["npmrc"]) != "//registry.npmjs.org/:_authToken=s3cret" || filepath.Base(b.got.ContextDir) != "inside" {
		t.Fatalf("the builder got secrets %q, context %q", b.got.Secrets, b.got.ContextDir)
	}
	if strings.Contains(string(b.got.Input.Plan.Secrets["npmrc"]), "s3cret") {
		t.Fatal("the input holds the secret's value")
	}

	_, err = build(chain.BuildPlan{Context: "web", Secrets: map[string]chain.SecretRef{"npmrc": "env:DCHAIN_TEST_NPMRC_UNSET"}})
	if !errors.As(err, &app) || app.Type() != ErrCredentials || !app.NonRetryable() || !strings.Contains(err.Error(), "build secret npmrc: secret env:DCHAIN_TEST_NPMRC_UNSET") {
		t.Fatalf("an unreadable secret: %v", err)
	}
}
