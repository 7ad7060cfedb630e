package chain

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const replicated = base + "replication:\n  - {name: eu, destination: frankfurt, level: namespace}\n"

func TestApprovalProblems(t *testing.T) {
	cfg := testConfig(t)
	for _, tc := range []struct {
		name, doc, field, msg string
		line                  int
	}{
		{"no approvers", replicated + "approval: {}\n", "approval.approvers", "at least one approver", 8},
		{"bad approver", replicated + "approval:\n  approvers: [alice, 'bob smith']\n", "approval.approvers[1]", `"bob smith" must be 1-128 letters`, 9},
		{"approver twice", replicated + "approval:\n  approvers: [alice, alice]\n", "approval.approvers[1]", `duplicate name "alice"`, 9},
		{"short timeout", replicated + "approval:\n  approvers: [alice]\n  timeout: 10s\n", "approval.timeout", "between 1m and", 10},
		{"long timeout", replicated + "approval:\n  approvers: [alice]\n  timeout: 9000h\n", "approval.timeout", "between 1m and", 10},
		{"onTimeout", replicated + "approval:\n  approvers: [alice]\n  onTimeout: escalate\n", "approval.onTimeout", `"escalate" is not a choice`, 10},
		{"notify url", replicated + "approval:\n  approvers: [alice]\n  notify: {url: 'ftp://pager'}\n", "approval.notify.url", "absolute http:// or https:// URL", 10},
		{"notify secret", replicated + "approval:\n  approvers: [alice]\n  notify: {url: 'https://pager', secret: hunter2}\n", "approval.notify.secret", "", 10},
		{"nothing to approve", base + "approval:\n  approvers: [alice]\n", "approval", "without replication rules", 6},
	} {
		t.Run(tc.name, func(t *testing.T) { expectProblem(t, cfg, tc.doc, tc.field, tc.msg, tc.line) })
	}
	good := replicated + "approval:\n  approvers: [alice, ci-bot@example.com]\n  timeout: 24h\n  onTimeout: approve\n  notify: {url: 'https://pager.example/hooks', secret: env:PAGER}\n"
	chains, ps := cfg.ParseChains("c.yaml", []byte(good))
	if len(ps) > 0 || len(chains) != 1 {
		t.Fatalf("a good approval: %v", ps)
	}
	a := chains[0].Approval
	if a.TimeoutOr() != 24*time.Hour || !a.MayApprove("ci-bot@example.com") || a.MayApprove("bob") || a.NotifyTrigger().Format != FormatCloudEvents {
		t.Fatalf("approval %+v", a)
	}
	if (&Approval{}).TimeoutOr() != DefaultApprovalTimeout {
		t.Fatal("the default timeout")
	}
}

// api.tokens name who a request acts as: names are identities, unique
// (api.token is "api"), each with a secret reference.
func TestAPITokens(t *testing.T) {
	dir := t.TempDir()
	write := func(api string) error {
		p := filepath.Join(dir, "dchain.yaml")
		doc := "registries:\n  - {name: a, address: 'a:5000'}\napi:\n" + api
		if err := os.WriteFile(p, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := ReadConfig(p)
		return err
	}
	if err := write("  token: env:T\n  tokens:\n    - {name: alice, token: env:A}\n    - {name: ci-bot, token: file:/run/ci}\n"); err != nil {
		t.Fatal(err)
	}
	for api, want := range map[string]string{
		"  token: env:T\n  tokens: [{name: api, token: env:A}]\n":                `api.tokens[0].name: duplicate name "api"`,
		"  tokens: [{name: alice, token: env:A}, {name: alice, token: env:B}]\n": `api.tokens[1].name: duplicate name "alice"`,
		"  tokens: [{name: 'al ice', token: env:A}]\n":                           `api.tokens[0].name: "al ice" must be`,
		"  tokens: [{name: alice}]\n":                                            "api.tokens[0].token: is required",
		"  tokens: [{name: alice, token: secret}]\n":                             "api.tokens[0].token:",
	} {
		if err := write(api); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", api, err, want)
		}
	}
}

func TestWaveProblems(t *testing.T) {
	cfg := testConfig(t)
	cfg.Registries = append(cfg.Registries, Registry{Name: "virginia", Address: "v:5000"})
	two := base + "replication:\n  - {name: eu, destination: frankfurt, level: namespace}\n  - {name: us, destination: virginia, level: namespace}\ntriggers:\n  - {name: all, url: 'http://x', mode: all}\n"
	for _, tc := range []struct {
		name, doc, field, msg string
		line                  int
	}{
		{"not a destination", two + "waves:\n  - {destinations: [frankfurt, tokyo]}\n  - {destinations: [virginia]}\n", "waves[0].destinations[1]", `"tokyo" is the destination of no replication rule`, 12},
		{"in no wave", two + "waves:\n  - {destinations: [frankfurt]}\n", "replication[1].destination", `"virginia" is in no wave`, 8},
		{"twice", two + "waves:\n  - {destinations: [frankfurt, virginia]}\n  - {destinations: [virginia]}\n", "waves[1].destinations[0]", `duplicate name "virginia"`, 13},
		{"empty", two + "waves:\n  - {destinations: [frankfurt, virginia]}\n  - {name: late}\n", "waves[1].destinations", "at least one destination", 13},
		{"unknown trigger", two + "waves:\n  - {destinations: [frankfurt], triggers: [nope]}\n  - {destinations: [virginia]}\n", "waves[0].triggers[0]", `"nope" is not a trigger`, 12},
		{"soak on the last", two + "waves:\n  - {destinations: [frankfurt]}\n  - {destinations: [virginia], soak: 1h}\n", "waves[1]", "the last wave has no wave after it", 13},
		{"bad health url", two + "waves:\n  - {destinations: [frankfurt], health: {url: 'canary'}}\n  - {destinations: [virginia]}\n", "waves[0].health.url", "absolute http:// or https:// URL", 12},
		{"wave approval", two + "waves:\n  - {destinations: [frankfurt]}\n  - {destinations: [virginia], approval: {approvers: []}}\n", "waves[1].approval.approvers", "at least one approver", 13},
		{"same name", two + "waves:\n  - {name: wave-2, destinations: [frankfurt]}\n  - {destinations: [virginia]}\n", "waves[1].name", `duplicate name "wave-2"`, 13},
	} {
		t.Run(tc.name, func(t *testing.T) { expectProblem(t, cfg, tc.doc, tc.field, tc.msg, tc.line) })
	}
	good := two + "waves:\n  - {name: canary, destinations: [frankfurt], triggers: [all], soak: 30m, health: {url: 'https://canary/healthz'}}\n  - destinations: [virginia]\n    approval: {approvers: [alice]}\n"
	chains, ps := cfg.ParseChains("c.yaml", []byte(good))
	if len(ps) > 0 || len(chains) != 1 {
		t.Fatalf("good waves: %v", ps)
	}
	c := chains[0]
	if c.WaveName(1) != "wave-2" || c.WaveOf("virginia") != 1 || c.TriggerWave("all") != 0 || !c.AsksApproval() {
		t.Fatalf("waves %+v", c.Waves)
	}
}

func TestAccelerateProblems(t *testing.T) {
	cfg := testConfig(t)
	expectProblem(t, cfg, replicated+"accelerate: zstd\n", "accelerate", `"zstd" is not a format; use estargz`, 8)
	for i := range cfg.Registries {
		if cfg.Registries[i].Name == "frankfurt" {
			cfg.Registries[i].RequireSignature = true
		}
	}
	expectProblem(t, cfg, replicated+"accelerate: estargz\nverify: {keys: [env:K]}\n", "accelerate", "add a signing section", 8)
	if _, ps := cfg.ParseChains("c.yaml", []byte(replicated+"accelerate: estargz\nsigning: {key: env:K}\n")); len(ps) > 0 {
		t.Fatal(ps)
	}
	if AcceleratedTag("v1") != "v1_accelerated" || AcceleratedTag(strings.Repeat("x", 120)) != "" {
		t.Fatal("accelerated tags")
	}
}
