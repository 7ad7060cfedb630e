package starter

import (
	"context"
	"strings"
	"testing"

	"github.com/dchain-dev/dchain/chain"
)

// A push that starts nothing says which part did not match: no chain is
// built from the pushed repository, or no rule of the chains that are
// matches the ref.
func TestIgnoredPushSaysWhatDidNotMatch(t *testing.T) {
	ch := chain.Chain{Name: "app", Build: &chain.Build{
		Source: chain.BuildSource{URL: "https://git.example.com/org/app.git"},
		Rules:  []chain.BuildRule{{Name: "main", Type: chain.RuleBranch, Match: "main", Tags: []chain.TagTemplate{{Tag: "latest"}}}},
	}}
	s := &Starter{Config: &chain.Loaded{Config: &chain.Config{}, Chains: []chain.Chain{ch}}}
	push := []chain.Push{{Ref: "refs/heads/feature", Commit: chain.Commit(strings.Repeat("a", 40))}}
	for _, tc := range []struct {
		repo GitRepository
		want string
	}{
		{GitRepository{FullName: "org/other", URLs: []string{"https://git.example.com/org/other.git"}}, "no chain this source may start is built from org/other"},
		{GitRepository{FullName: "org/app", URLs: []string{"https://git.example.com/org/app.git"}}, "no build rule of chain app (built from org/app) matches refs/heads/feature"},
	} {
		d, err := s.Deliver(context.Background(), chain.Source{Name: "gh", Provider: ProviderGitHub}, Event{Kind: EventPush, Repository: tc.repo, Pushes: push})
		if err != nil || len(d.Runs) != 0 || len(d.Ignored) != 1 || !strings.Contains(d.Ignored[0], tc.want) {
			t.Errorf("%s: %+v %v, want ignored saying %q", tc.repo.FullName, d, err, tc.want)
		}
	}
}

// With automatic builds off, a push starts nothing and says how to build.
func TestAutoBuildOff(t *testing.T) {
	off := false
	ch := chain.Chain{Name: "app", Build: &chain.Build{AutoBuild: &off,
		Source: chain.BuildSource{URL: "https://git.example.com/org/app.git"},
		Rules:  []chain.BuildRule{{Name: "main", Type: chain.RuleBranch, Match: "main", Tags: []chain.TagTemplate{{Tag: "latest"}}}},
	}}
	s := &Starter{Config: &chain.Loaded{Config: &chain.Config{}, Chains: []chain.Chain{ch}}}
	d, err := s.Deliver(context.Background(), chain.Source{Name: "gh", Provider: ProviderGitHub}, Event{Kind: EventPush,
		Repository: GitRepository{FullName: "org/app", URLs: []string{"https://git.example.com/org/app.git"}},
		Pushes:     []chain.Push{{Ref: "refs/heads/main", Commit: chain.Commit(strings.Repeat("a", 40))}}})
	if err != nil || len(d.Runs) != 0 || len(d.Ignored) != 1 || !strings.Contains(d.Ignored[0], "automatic builds are off") {
		t.Fatalf("%+v %v", d, err)
	}
}
