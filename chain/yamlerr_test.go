package chain

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// chain validate reports everything in one pass: a value of the wrong
// type and an unknown key (with the closest known one) name the field path
// in the file's terms — no Go type names — and the rest of the document is
// still validated, without problems that would only echo a refused value.
func TestTypeErrorsInOnePass(t *testing.T) {
	cfg := testConfig(t)
	doc := `name: c
scope: {registry: hangzhou, namespace: demo, repository: app}
replication:
  - name: to-eu
    destinaton: frankfurt
    level: repository
    tagFilter: [v1, v2]
triggers:
  - name: hook
    url: https://hooks.example/x
    mode: sometimes
`
	_, ps := cfg.ParseChains("bad.yaml", []byte(doc))
	got := ps.Error()
	for _, want := range []string{
		`bad.yaml:5: replication[0].destinaton: unknown key; did you mean "destination"?`,
		`bad.yaml:7: replication[0].tagFilter: want a string, got a list`,
		`bad.yaml:11: triggers[0].mode:`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in:\n%s", want, got)
		}
	}
	for _, echo := range []string{"replication[0].destination: is required", "chain.", "not found in type"} {
		if strings.Contains(got, echo) {
			t.Errorf("%q should not be reported:\n%s", echo, got)
		}
	}
	if len(ps) != 3 {
		t.Errorf("%d problems, want 3:\n%s", len(ps), got)
	}

	_, ps = cfg.ParseChains("far.yaml", []byte("name: c\nscope: {registry: hangzhou, namespace: demo, repository: app}\nzzzzzz: 1\n"))
	if len(ps) != 1 || !strings.Contains(ps[0].Message, "unknown key (known here: accelerate, approval, build, concurrency, description") {
		t.Errorf("a key close to none: %v", ps)
	}
}

// A duplicate chain name is reported even when the first document has
// other problems; LoadAll leaves bad documents out and loads the rest.
func TestDuplicatesAndLoadAll(t *testing.T) {
	dir := t.TempDir()
	write := func(name, doc string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("dchain.yaml", "registries:\n  - {name: hangzhou, address: '127.0.0.1:5001', insecure: true}\n  - {name: frankfurt, address: '127.0.0.1:5002', insecure: true}\nchains: ['*.chain.yaml']\n")
	write("a.chain.yaml", "name: dup\nscope: {registry: hangzhou, namespace: demo, repository: app}\nreplication: [{name: r, destination: nowhere, level: repository}]\n")
	write("b.chain.yaml", "name: dup\nscope: {registry: hangzhou, namespace: demo, repository: other}\n---\nname: good\nscope: {registry: hangzhou, namespace: demo, repository: good}\nreplication: [{name: r, destination: frankfurt, level: repository}]\n")
	l, ps, err := LoadAll(filepath.Join(dir, "dchain.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	got := ps.Error()
	if !strings.Contains(got, "a.chain.yaml:3: replication[0].destination") || !strings.Contains(got, `b.chain.yaml:1: name: duplicate chain name "dup"`) {
		t.Fatalf("problems:\n%s", got)
	}
	if len(l.Chains) != 1 || l.Chains[0].Name != "good" {
		t.Fatalf("loaded %+v, want only good", l.Chains)
	}
	if _, err := Load(filepath.Join(dir, "dchain.yaml")); err == nil {
		t.Fatal("Load (chain validate) must fail on any problem")
	}
}
