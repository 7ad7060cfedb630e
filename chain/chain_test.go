package chain

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func testConfig(t *testing.T) *Config {
	t.Helper()
	cfg, err := ReadConfig("testdata/dchain.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestLoadGood(t *testing.T) {
	l, err := Load("testdata/dchain.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := l.Chain("good")
	if err != nil {
		t.Fatal(err)
	}
	if c.Line != 1 || !strings.HasSuffix(c.File, "good.yaml") || c.Triggers[0].Secret != "env:HOOK_SECRET" {
		t.Fatalf("chain %+v", c)
	}
	if _, err := l.Chain("nope"); err == nil {
		t.Fatal("unknown chain must be an error")
	}
}

const base = `name: c
scope:
  registry: hangzhou
  namespace: demo
  repository: app
`

// problemAt parses doc and expects a problem on field at line containing msg.
func TestValidationProblems(t *testing.T) {
	cfg := testConfig(t)
	tooMany := func(n int, item string) string {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, item, i)
		}
		return b.String()
	}
	for _, tc := range []struct {
		name, doc, field, msg string
		line                  int
	}{
		{"bad regex", base + "replication:\n  - name: r\n    destination: frankfurt\n    level: namespace\n    tagFilter: 'v(['\n", "replication[0].tagFilter", "bad regular expression", 10},
		{"unknown registry", base + "replication:\n  - name: r\n    destination: tokyo\n    level: namespace\n", "replication[0].destination", `unknown registry "tokyo"`, 8},
		{"duplicate names", base + "triggers:\n  - {name: t, url: 'http://x', mode: all}\n  - {name: t, url: 'http://y', mode: all}\n", "triggers[1].name", `duplicate name "t"`, 8},
		{"missing required", "name: c\nscope:\n  registry: hangzhou\n  repository: app\n", "scope.namespace", "is required", 2},
		{"missing chain name", "scope:\n  registry: hangzhou\n  namespace: demo\n  repository: app\n", "name", "is required", 1},
		{"too many tags", base + "triggers:\n  - name: t\n    url: http://x\n    mode: tags\n    tags: [" + strings.TrimSuffix(tooMany(11, "t%d,"), ",") + "]\n", "triggers[0].tags", "at most 10", 10},
		{"too many rules", base + "replication:\n" + tooMany(21, "  - {name: r%d, destination: frankfurt, level: namespace}\n"), "replication", "at most 20", 6},
		{"inline secret", base + "triggers:\n  - {name: t, url: 'http://x', mode: all, secret: hunter2}\n", "triggers[0].secret", "inline secret values are not allowed", 7},
		{"bad level", base + "replication:\n  - {name: r, destination: frankfurt, level: region}\n", "replication[0].level", `"region" is not a level`, 7},
		{"bad mode", base + "triggers:\n  - {name: t, url: 'http://x', mode: sometimes}\n", "triggers[0].mode", "is not a mode", 7},
		{"regexp mode without regexp", base + "triggers:\n  - {name: t, url: 'http://x', mode: regexp}\n", "triggers[0].regexp", "is required", 7},
		{"bad url", base + "triggers:\n  - {name: t, url: 'ftp://x', mode: all}\n", "triggers[0].url", "http:// or https://", 7},
		{"source as destination", base + "replication:\n  - {name: r, destination: hangzhou, level: namespace}\n", "replication[0].destination", "source registry", 7},
		{"repository and all", "name: c\nscope:\n  registry: hangzhou\n  namespace: demo\n  repository: app\n  allRepositories: true\n", "scope.repository", "not both", 5},
		{"unknown field", base + "replicate: []\n", "replicate", `unknown key; did you mean "replication"?`, 6},
		{"bad chain name", "name: My Chain\nscope: {registry: hangzhou, namespace: demo, repository: app}\n", "name", "lowercase", 1},
	} {
		t.Run(tc.name, func(t *testing.T) { expectProblem(t, cfg, tc.doc, tc.field, tc.msg, tc.line) })
	}
}

// expectProblem parses doc as c.yaml and expects it refused with a
// problem on field at line whose message holds msg.
func expectProblem(t *testing.T, cfg *Config, doc, field, msg string, line int) {
	t.Helper()
	chains, ps := cfg.ParseChains("c.yaml", []byte(doc))
	if len(chains) != 0 {
		t.Errorf("an invalid chain was accepted")
	}
	for _, p := range ps {
		if p.Field == field && strings.Contains(p.Message, msg) {
			if p.Line != line || p.File != "c.yaml" {
				t.Errorf("problem %s: at line %d, want %d", p, p.Line, line)
			}
			return
		}
	}
	t.Fatalf("no problem on %q containing %q; got:\n%v", field, msg, ps)
}

func TestDuplicateChainsAcrossFiles(t *testing.T) {
	cfg := testConfig(t)
	_, err := cfg.LoadChainFiles("testdata/good.yaml", "testdata/good.yaml")
	var ps Problems
	if !errors.As(err, &ps) || len(ps) != 1 || !strings.Contains(ps[0].Message, "duplicate chain name") {
		t.Fatalf("got %v", err)
	}
}

func TestConfigProblems(t *testing.T) {
	dir := t.TempDir()
	p := dir + "/dchain.yaml"
	writeFile(t, p, "registries:\n  - name: a\n    address: 'http://x/'\n  - name: a\n    address: b:1\n    credentials: s3cret\n")
	_, err := ReadConfig(p)
	msg := fmt.Sprint(err)
	for _, want := range []string{"registries[0].address", "registries[1].name: duplicate", "registries[1].credentials"} {
		if !strings.Contains(msg, want) {
			t.Errorf("missing %q in:\n%s", want, msg)
		}
	}
}

func TestMatching(t *testing.T) {
	s := Scope{Registry: "h", Namespace: "demo", AllRepositories: true, Exclude: []string{"secret"}}
	if !s.Covers("demo/app") || s.Covers("demo/secret") || s.Covers("other/app") || s.Covers("demo") {
		t.Fatal("scope with all repositories")
	}
	one := Scope{Namespace: "demo", Repository: "app"}
	if !one.Covers("demo/app") || one.Covers("demo/web") {
		t.Fatal("scope with one repository")
	}
	r := ReplicationRule{Level: LevelRepository, Repository: "web", TagFilter: `v\d+`}
	if ok, _ := r.Applies(s, "demo/web", "v1"); !ok {
		t.Fatal("repository rule on its repository")
	}
	if ok, why := r.Applies(s, "demo/app", "v1"); ok || !strings.Contains(why, "demo/web") {
		t.Fatalf("repository rule on another repository: %s", why)
	}
	if ok, _ := r.Applies(s, "demo/web", "v1-rc"); ok {
		t.Fatal("the tag filter must match the whole tag")
	}
	if ok, _ := (ReplicationRule{Level: LevelNamespace}).Applies(s, "demo/any", "x"); !ok {
		t.Fatal("namespace rule with no filter takes every tag")
	}
}

func TestSecretRef(t *testing.T) {
	t.Setenv("DCHAIN_TEST_SECRET", "v")
	if v, err := SecretRef("env:DCHAIN_TEST_SECRET").Resolve(); err != nil || v != "v" {
		t.Fatal(v, err)
	}
	f := t.TempDir() + "/s"
	writeFile(t, f, "from-file\n")
	if v, err := SecretRef("file:" + f).Resolve(); err != nil || v != "from-file" {
		t.Fatal(v, err)
	}
	_, err := SecretRef("env:DCHAIN_TEST_UNSET").Resolve()
	if err == nil || strings.Contains(err.Error(), "v\"") {
		t.Fatal("an unset variable must be an error naming the reference only")
	}
}

// Chain files come from outside too: whatever the parser accepts must be
// a valid chain, and nothing makes it panic.
func FuzzParseChains(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.yaml")
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(base + "replication:\n  - {name: eu, destination: frankfurt, level: namespace}\naccelerate: estargz\n" +
		"approval: {approvers: [alice], timeout: 1h, onTimeout: approve, notify: {url: 'https://x'}}\n" +
		"waves:\n  - {name: canary, destinations: [frankfurt], soak: 1m, health: {url: 'https://x/h'}, approval: {approvers: [bob]}}\n"))
	cfg, err := ReadConfig("testdata/dchain.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		chains, _ := cfg.ParseChains("fuzz.yaml", data)
		for _, c := range chains {
			v := validator{file: "fuzz.yaml", cfg: cfg}
			v.chain(&c)
			if len(v.problems) > 0 {
				t.Fatalf("accepted an invalid chain: %v", v.problems)
			}
		}
	})
}
