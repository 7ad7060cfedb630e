package chain

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// push is a push at 2020-10-15 08:13:00 UTC = 16:13 in UTC+8.
var push = Push{Ref: "refs/heads/release-v1", Commit: "0a1b2c3d4e5f60718293a4b5c6d7e8f901234567", At: time.Date(2020, 10, 15, 8, 13, 0, 0, time.UTC)}

func buildChain(rules ...BuildRule) Chain {
	return Chain{Name: "c", Scope: Scope{Registry: "hangzhou", Namespace: "demo", Repository: "app"},
		Build: &Build{Source: BuildSource{URL: "file:///src"}, Rules: rules}}
}

func TestPlanBuildsNamedGroupsBothSpellings(t *testing.T) {
	for _, match := range []string{`release-(?<imageTag>\w*)`, `release-(?P<imageTag>\w*)`} {
		c := buildChain(BuildRule{Name: "rel", Type: RuleBranch, Match: match, Tags: []TagTemplate{{Tag: "${imageTag}"}}})
		plans, err := PlanBuilds(c, push, false, "")
		if err != nil || len(plans) != 1 || plans[0].Tags[0] != "v1" {
			t.Fatalf("%s: %+v %v", match, plans, err)
		}
		if plans[0].Dockerfile != "Dockerfile" || plans[0].Platforms[0] != "linux/amd64" {
			t.Fatalf("defaults: %+v", plans[0])
		}
	}
}

func TestTagTemplates(t *testing.T) {
	for _, tc := range []struct {
		tmpl TagTemplate
		want string
	}{
		{TagTemplate{Tag: "latest"}, "latest"},
		{TagTemplate{Tag: "${imageTag}", BuildTime: BuildTimeDate}, "v1-20201015"},
		{TagTemplate{Tag: "${imageTag}", BuildTime: BuildTimeMinute}, "v1-202010151613"},
		{TagTemplate{CommitID: 6}, "0a1b2c"},
		{TagTemplate{Tag: "build", CommitID: 10}, "build-0a1b2c3d4e"},
		{TagTemplate{Tag: "${imageTag}", BuildTime: BuildTimeMinute, CommitID: 8}, "v1-202010151613-0a1b2c3d"},
	} {
		got, err := tc.tmpl.Render(map[string]string{"imageTag": "v1"}, push)
		if err != nil || got != tc.want {
			t.Errorf("%+v: %q %v, want %q", tc.tmpl, got, err, tc.want)
		}
	}
	// UTC+8 crosses the date line: 20:00 UTC on the 15th is the 16th.
	late := push
	late.At = time.Date(2020, 10, 15, 20, 0, 0, 0, time.UTC)
	if got, _ := (TagTemplate{BuildTime: BuildTimeDate}).Render(nil, late); got != "20201016" {
		t.Errorf("UTC+8 date: %s", got)
	}
}

func TestIllegalComputedTags(t *testing.T) {
	for _, tc := range []struct {
		tmpl   TagTemplate
		groups map[string]string
	}{
		{TagTemplate{Tag: "${g}"}, map[string]string{"g": ""}},                        // empty
		{TagTemplate{Tag: "${g}"}, map[string]string{"g": "a/b"}},                     // slash from the branch name
		{TagTemplate{Tag: "${g}"}, map[string]string{"g": "-rc"}},                     // leading dash
		{TagTemplate{Tag: "x${g}"}, map[string]string{"g": strings.Repeat("a", 128)}}, // too long
		{TagTemplate{CommitID: 40}, nil},                                              // fine length but commit too short below
	} {
		p := push
		if tc.tmpl.CommitID == 40 {
			p.Commit = "abc"
		}
		if got, err := tc.tmpl.Render(tc.groups, p); err == nil {
			t.Errorf("%+v with %v: got %q, want an error", tc.tmpl, tc.groups, got)
		}
	}
}

func TestManualStart(t *testing.T) {
	plain := BuildRule{Name: "main", Type: RuleBranch, Match: "main", Tags: []TagTemplate{{Tag: "latest"}}}
	regex := BuildRule{Name: "rel", Type: RuleBranch, Match: `release-(?<v>\w+)`, Tags: []TagTemplate{{Tag: "${v}"}}}
	timed := BuildRule{Name: "nightly", Type: RuleBranch, Match: "main", Tags: []TagTemplate{{Tag: "n", BuildTime: BuildTimeDate}}}
	commit := BuildRule{Name: "sha", Type: RuleBranch, Match: "dev", Tags: []TagTemplate{{CommitID: 6}}}
	if ok, _ := plain.ManualAllowed(); !ok {
		t.Fatal("a plain name with literal tags may be started by hand")
	}
	for _, r := range []BuildRule{regex, timed, commit} {
		if ok, _ := r.ManualAllowed(); ok {
			t.Errorf("rule %s must be push-only", r.Name)
		}
	}
	c := buildChain(plain, regex)
	if _, err := PlanBuilds(c, push, true, ""); err == nil || !strings.Contains(err.Error(), "rule rel cannot be started by hand") {
		t.Fatalf("manual start of a regex rule: %v", err)
	}
	if plans, err := PlanBuilds(c, push, false, ""); err != nil || len(plans) != 1 {
		t.Fatalf("a push may start it: %v %v", plans, err)
	}
	main := push
	main.Ref = "refs/heads/main"
	if plans, err := PlanBuilds(c, main, true, ""); err != nil || len(plans) != 1 || plans[0].Tags[0] != "latest" {
		t.Fatalf("manual start of main: %v %v", plans, err)
	}
}

func TestPlanBuildsRefTypes(t *testing.T) {
	c := buildChain(
		BuildRule{Name: "b", Type: RuleBranch, Match: "v1", Tags: []TagTemplate{{Tag: "branch"}}},
		BuildRule{Name: "t", Type: RuleTag, Match: `v(?<n>\d+)`, Tags: []TagTemplate{{Tag: "${n}"}}},
	)
	tag := push
	tag.Ref = "refs/tags/v1"
	plans, err := PlanBuilds(c, tag, false, "")
	if err != nil || len(plans) != 1 || plans[0].Rule != "t" || plans[0].Tags[0] != "1" {
		t.Fatalf("tag push: %+v %v", plans, err)
	}
	// A short ref never gets here: Push.Ref is a Ref, made by ParseRef (TestParseRef).
	tag.Ref = "refs/tags/v1-rc" // the match must cover the whole name
	if plans, _ := PlanBuilds(c, tag, false, ""); len(plans) != 0 {
		t.Fatalf("partial match built: %+v", plans)
	}
}

func TestBuildValidation(t *testing.T) {
	cfg := testConfig(t)
	args := func(n int) string {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "        A%d: v\n", i)
		}
		return b.String()
	}
	rule := "build:\n  source: {url: 'file:///src'}\n  rules:\n    - name: r\n      type: branch\n      match: 'release-(?<v>\\w+)'\n"
	for _, tc := range []struct{ name, doc, field, msg string }{
		{"four tags", base + rule + "      tags: [{tag: a}, {tag: b}, {tag: c}, {tag: d}]\n", "build.rules[0].tags", "at most 3"},
		{"21 build args", base + rule + "      tags: [{tag: a}]\n      buildArgs:\n" + args(21), "build.rules[0].buildArgs", "at most 20"},
		{"context escape", base + rule + "      tags: [{tag: a}]\n      context: ../../etc\n", "build.rules[0].context", "inside the repository"},
		{"absolute dockerfile", base + rule + "      tags: [{tag: a}]\n      dockerfile: /etc/Dockerfile\n", "build.rules[0].dockerfile", "inside the repository"},
		{"unknown group", base + rule + "      tags: [{tag: '${nope}'}]\n", "build.rules[0].tags[0].tag", "not a named group"},
		{"bad tag literal", base + rule + "      tags: [{tag: 'a/b'}]\n", "build.rules[0].tags[0].tag", "may hold only"},
		{"bad build time", base + rule + "      tags: [{tag: a, buildTime: hourly}]\n", "build.rules[0].tags[0].buildTime", "not a format"},
		{"commit too long", base + rule + "      tags: [{commitId: 41}]\n", "build.rules[0].tags[0].commitId", "1 to 40"},
		{"bad platform", base + rule + "      tags: [{tag: a}]\n      platforms: [arm64]\n", "build.rules[0].platforms[0]", "not a platform"},
		{"bad arg name", base + rule + "      tags: [{tag: a}]\n      buildArgs: {'A-B': x}\n", "build.rules[0].buildArgs.A-B", "not a build argument"},
		{"bad network", base + rule + "      tags: [{tag: a}]\n      network: host\n", "build.rules[0].network", "not a build network"},
		{"inline secret", base + rule + "      tags: [{tag: a}]\n      secrets: {npmrc: hunter2}\n", "build.rules[0].secrets.npmrc", "inline secret values are not allowed"},
		{"empty secret", base + rule + "      tags: [{tag: a}]\n      secrets: {npmrc: ''}\n", "build.rules[0].secrets.npmrc", "is required"},
		{"bad secret id", base + rule + "      tags: [{tag: a}]\n      secrets: {'a b': 'env:X'}\n", "build.rules[0].secrets.a b", "not a secret ID"},
		{"bad type", base + "build:\n  source: {url: x}\n  rules: [{name: r, type: commit, match: m, tags: [{tag: a}]}]\n", "build.rules[0].type", "not a type"},
		{"no source", base + "build:\n  rules: [{name: r, type: tag, match: m, tags: [{tag: a}]}]\n", "build.source.url", "is required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, ps := cfg.ParseChains("c.yaml", []byte(tc.doc))
			for _, p := range ps {
				if p.Field == tc.field && strings.Contains(p.Message, tc.msg) {
					if p.Line == 0 {
						t.Errorf("problem without a line: %s", p)
					}
					return
				}
			}
			t.Fatalf("no problem on %q containing %q; got:\n%v", tc.field, tc.msg, ps)
		})
	}
}

// A match made of letters, digits and "._/-" is a name: "v9.9.9" matches
// only v9.9.9 and may be started by hand; anything else is an expression.
func TestLiteralMatchIsNotARegex(t *testing.T) {
	c := buildChain(BuildRule{Name: "r", Type: RuleTag, Match: "v9.9.9", Tags: []TagTemplate{{Tag: "stable"}}})
	tag := push
	tag.Ref = "refs/tags/v9.9.9"
	plans, err := PlanBuilds(c, tag, true, "")
	if err != nil || len(plans) != 1 {
		t.Fatalf("manual start of a literal rule: %+v %v", plans, err)
	}
	tag.Ref = "refs/tags/v9x9x9" // a regex would match this
	if plans, _ := PlanBuilds(c, tag, false, ""); len(plans) != 0 {
		t.Fatalf("a literal matched %s: %+v", tag.Ref, plans)
	}
	for match, regex := range map[string]bool{"v9.9.9": false, "release/v1_2-x": false, `v\d+`: true, "release-.*": true, "v(?<n>1)": true, "a|b": true, "v1.0+b": true} {
		if got := (BuildRule{Match: match}).IsRegex(); got != regex {
			t.Errorf("IsRegex(%q) = %v", match, got)
		}
	}
}

// The seed's Commit ID option defaults to six characters: `commitId: true`
// and an empty `commitId:` mean 6, false none, a number that many.
func TestCommitIDSpellings(t *testing.T) {
	cfg := testConfig(t)
	for spelling, want := range map[string]int{"true": 6, "": 6, "false": 0, "8": 8} {
		doc := `name: c
scope: {registry: hangzhou, namespace: demo, repository: app}
build:
  source: {url: https://example.com/app.git}
  rules:
    - name: r
      type: branch
      match: main
      tags:
        - tag: main
          commitId: ` + spelling + "\n"
		chains, ps := cfg.ParseChains("c.yaml", []byte(doc))
		if len(ps) > 0 || len(chains) != 1 {
			t.Fatalf("commitId: %q: %v", spelling, ps)
		}
		if got := chains[0].Build.Rules[0].Tags[0].CommitID; got != want {
			t.Errorf("commitId: %q = %d, want %d", spelling, got, want)
		}
	}
	_, ps := cfg.ParseChains("c.yaml", []byte(`name: c
scope: {registry: hangzhou, namespace: demo, repository: app}
build:
  source: {url: https://example.com/app.git}
  rules:
    - {name: r, type: branch, match: main, tags: [{tag: main, commitId: lots}, {tag: x, commitid: true}]}
`))
	if len(ps) != 2 || !strings.Contains(ps[0].Message, "commitId") || ps[0].Line != 6 || !strings.Contains(ps[1].Message, "commitid") {
		t.Fatalf("bad spellings: %v", ps)
	}
}

// A source URL never reads as an option to git nor names a transport that
// runs a command.
func TestBuildSourceURL(t *testing.T) {
	cfg := testConfig(t)
	for u, ok := range map[string]bool{
		"https://example.com/app.git": true, "git@example.com:acme/app.git": true, "ssh://git@example.com/app": true, "/srv/git/app": true, "file:///srv/git/app": true,
		"--upload-pack=touch /tmp/x": false, "ext::sh -c touch% /tmp/x": false, "fd::17": false, "gopher://x/app": false,
		"ssh://-oProxyCommand=touch%20/tmp/x/app": false, "ssh://-oProxyCommand=x@host/app": false, "ssh://git@-oProxyCommand=x/app": false,
		"git@-oProxyCommand=x:app": false, "-oProxyCommand=x@host:app": false, "git://-host/app": false,
		"ssh://git@example.com:2222/app": true, "C:/not-scp/app": true, "relative/dir": true, "../src/app": true,
	} {
		doc := "name: c\nscope: {registry: hangzhou, namespace: demo, repository: app}\nbuild:\n  source: {url: '" + u + "'}\n  rules: [{name: r, type: branch, match: main, tags: [{tag: main}]}]\n"
		_, ps := cfg.ParseChains("c.yaml", []byte(doc))
		if (len(ps) == 0) != ok || (!ok && ps[0].Field != "build.source.url") {
			t.Errorf("%s: %v", u, ps)
		}
	}
}

// A rule's network and its secrets' references (never values) reach the plan.
func TestPlanCarriesNetworkAndSecretRefs(t *testing.T) {
	c := buildChain(BuildRule{Name: "r", Type: RuleBranch, Match: "release-v1", Tags: []TagTemplate{{Tag: "v1"}},
		Network: NetworkNone, Secrets: map[string]SecretRef{"npmrc": "env:NPMRC"}})
	plans, err := PlanBuilds(c, push, false, "")
	if err != nil || len(plans) != 1 || plans[0].Network != NetworkNone || plans[0].Secrets["npmrc"] != "env:NPMRC" {
		t.Fatalf("%+v %v", plans, err)
	}
	cfg := testConfig(t)
	doc := "name: c\nscope: {registry: hangzhou, namespace: demo, repository: app}\nbuild:\n  source: {url: 'file:///src'}\n  rules:\n" +
		"    - {name: r, type: branch, match: main, tags: [{tag: a}], network: none, secrets: {npmrc: 'env:NPMRC', 'pip.conf': 'file:/etc/dchain/pip.conf'}}\n"
	chains, ps := cfg.ParseChains("c.yaml", []byte(doc))
	if len(ps) != 0 || len(chains) != 1 || chains[0].Build.Rules[0].Network != NetworkNone || chains[0].Build.Rules[0].Secrets["pip.conf"] != "file:/etc/dchain/pip.conf" {
		t.Fatalf("a valid rule: %+v %v", chains, ps)
	}
}

// A person may name the rule to build with: a literal rule that allows a
// manual build is run although a push-only regex rule matches the ref too;
// rules that only a push may trigger are left out of a manual build when
// another rule matches; an unknown or non-matching rule is refused naming
// the field.
func TestPlanBuildsChosenRule(t *testing.T) {
	c := Chain{Name: "demo", Build: &Build{Rules: []BuildRule{
		{Name: "any-tag", Type: RuleTag, Match: `v(?<v>.*)`, Tags: []TagTemplate{{Tag: "${v}"}}},
		{Name: "hotfix", Type: RuleTag, Match: "v9.9.9", Tags: []TagTemplate{{Tag: "hotfix"}}},
	}}}
	push := Push{Ref: "refs/tags/v9.9.9", Commit: Commit(strings.Repeat("a", 40))}
	if plans, err := PlanBuilds(c, push, true, ""); err != nil || len(plans) != 1 || plans[0].Rule != "hotfix" {
		t.Fatalf("manual without a rule: %+v %v", plans, err)
	}
	if plans, err := PlanBuilds(c, push, true, "hotfix"); err != nil || len(plans) != 1 || plans[0].Tags[0] != "hotfix" {
		t.Fatalf("manual, rule hotfix: %+v %v", plans, err)
	}
	if plans, err := PlanBuilds(c, push, false, "any-tag"); err != nil || len(plans) != 1 || plans[0].Tags[0] != "9.9.9" {
		t.Fatalf("push, rule any-tag: %+v %v", plans, err)
	}
	if _, err := PlanBuilds(c, push, true, "any-tag"); err == nil || !strings.Contains(err.Error(), "cannot be started by hand") {
		t.Fatalf("manual, push-only rule: %v", err)
	}
	for _, rule := range []string{"nope", "hotfix"} {
		p := push
		if rule == "hotfix" {
			p.Ref = "refs/tags/v1.0.0"
		}
		var in *InputError
		if _, err := PlanBuilds(c, p, true, rule); !errors.As(err, &in) || in.Field != "rule" {
			t.Errorf("rule %s on %s: %v, want a refused rule", rule, p.Ref, err)
		}
	}
}

// A build platform is one images are made for: a known OS and
// architecture, and a variant only where the architecture has it.
func TestCheckPlatform(t *testing.T) {
	for _, ok := range []string{"linux/amd64", "linux/arm64", "linux/arm/v7", "linux/arm64/v8", "linux/amd64/v3", "windows/amd64", "linux/riscv64", "linux/s390x"} {
		if why := checkPlatform(ok); why != "" {
			t.Errorf("%s: %s", ok, why)
		}
	}
	for bad, want := range map[string]string{
		"windows/arm99": "not an architecture", "linux/amd64/v9": "not a variant of amd64", "linux/s390x/v2": "has no variants",
		"templeos/amd64": "not an operating system", "linux": "not a platform", "linux/amd64/v3/x": "not a platform", "Linux/amd64": "not an operating system",
	} {
		if why := checkPlatform(bad); !strings.Contains(why, want) {
			t.Errorf("%s: %q, want %q", bad, why, want)
		}
	}
}
