package chain

import (
	"strings"
	"testing"
)

func TestSigningProblems(t *testing.T) {
	cfg := testConfig(t)
	for _, tc := range []struct {
		name, doc, field, msg string
		line                  int
	}{
		{"no key", base + "signing: {}\n", "signing.key", "a key reference is required", 6},
		{"inline key", base + "signing:\n  key: '-----BEGIN PRIVATE KEY-----'\n", "signing.key", "inline keys are not allowed", 7},
		{"not a reference", base + "signing:\n  key: cosign.key\n", "signing.key", "must be file:PATH, env:NAME or a KMS URI", 7},
		{"unknown attestation", base + "signing:\n  key: env:K\n  attest: [sbom, slsa]\n", "signing.attest[1]", `"slsa" is not an attestation`, 8},
		{"twice", base + "signing:\n  key: env:K\n  attest: [sbom, sbom]\n", "signing.attest[1]", "listed twice", 8},
		{"provenance without a build", base + "signing:\n  key: env:K\n  attest: [provenance]\n", "signing.attest[0]", "no build section", 8},
		{"verify without keys", base + "verify:\n  keys: []\n", "verify.keys", "at least one public key", 7},
		{"bad verify key", base + "verify:\n  keys: [env:OK, 'env:not ok']\n", "verify.keys[1]", "must be file:PATH, env:NAME or a KMS URI", 7},
		{"empty provenance rule", base + "verify:\n  keys: [env:K]\n  provenance: {}\n", "verify.provenance", "repository, builder or both", 8},
		{"provenance repository not a URL", base + "verify:\n  keys: [env:K]\n  provenance: {repository: app}\n", "verify.provenance.repository", "not a repository URL", 8},
	} {
		t.Run(tc.name, func(t *testing.T) { expectProblem(t, cfg, tc.doc, tc.field, tc.msg, tc.line) })
	}

	good := base + "signing:\n  key: awskms:///alias/dchain\n  attest: [sbom]\nverify:\n  keys: [file:/keys/ci.pub, hashivault://ci]\n  provenance: {repository: 'https://git.example/app'}\n"
	chains, ps := cfg.ParseChains("c.yaml", []byte(good))
	if len(ps) > 0 || len(chains) != 1 || !chains[0].Signing.Key.KMS() || len(chains[0].Verify.Keys) != 2 {
		t.Fatalf("a good signing chain: %v %+v", ps, chains)
	}
}

func TestRegistryRequiresSignatures(t *testing.T) {
	cfg := testConfig(t)
	for i := range cfg.Registries {
		if cfg.Registries[i].Name == "frankfurt" {
			cfg.Registries[i].RequireSignature = true
		}
	}
	doc := base + "replication:\n  - {name: eu, destination: frankfurt, level: namespace}\n"
	_, ps := cfg.ParseChains("c.yaml", []byte(doc))
	if len(ps) != 1 || ps[0].Field != "replication[0].destination" || !strings.Contains(ps[0].Message, `registry "frankfurt" requires signed images`) {
		t.Fatalf("an unsigned chain into a signing registry: %v", ps)
	}
	for _, section := range []string{"signing: {key: env:K}\n", "verify: {keys: [env:K]}\n"} {
		if _, ps := cfg.ParseChains("c.yaml", []byte(doc+section)); len(ps) > 0 {
			t.Fatalf("with %s: %v", section, ps)
		}
	}
	// A chain that builds must sign: nobody else signs what it builds.
	built := doc + "verify: {keys: [env:K]}\nbuild:\n  source: {url: 'https://git.example/app'}\n  rules:\n    - {name: main, type: branch, match: main, tags: [{tag: latest}]}\n"
	if _, ps := cfg.ParseChains("c.yaml", []byte(built)); len(ps) != 1 || !strings.Contains(ps[0].Message, "this chain builds them: give it a signing key") {
		t.Fatalf("a building chain with verify alone: %v", ps)
	}
}

func TestKeyRef(t *testing.T) {
	for ref, ok := range map[KeyRef]bool{
		"file:/k": true, "env:K": true, "awskms:///alias/x": true, "gcpkms://projects/p/locations/l/keyRings/r/cryptoKeys/k": true,
		"azurekms://vault.vault.azure.net/k": true, "hashivault://k": true, "myplugin://k": true,
		"": false, "k.pem": false, "env:": false, "HTTP://x": false, "awskms:// spaced": false,
	} {
		if err := ref.Check(); (err == nil) != ok {
			t.Errorf("%q: %v", ref, err)
		}
	}
}
