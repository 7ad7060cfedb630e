package devstack

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/dchain-dev/dchain/activities"
	"github.com/dchain-dev/dchain/chain"
	"github.com/dchain-dev/dchain/signing"
	"github.com/dchain-dev/dchain/workflows"
)

// CosignVersion is the cosign CLI the signing tests check dchain against
// (scripts/install-build-deps.sh builds it into bin/).
const CosignVersion = "v3.1.3"

// cosignKeys is a key pair made by the real cosign CLI (its encrypted
// private key format) in dir.
type cosignKeys struct {
	bin, dir, password string
}

func (k cosignKeys) priv() string { return filepath.Join(k.dir, "cosign.key") }
func (k cosignKeys) pub() string  { return filepath.Join(k.dir, "cosign.pub") }

func newCosignKeys(t *testing.T) cosignKeys {
	t.Helper()
	bin, ok := findTool("cosign")
	if !ok {
		t.Fatalf("no cosign in %v: make deps builds cosign %s into bin/", binDirs(), CosignVersion)
	}
	if v, _ := os.ReadFile(filepath.Join(filepath.Dir(bin), ".cosign-version")); strings.TrimSpace(string(v)) != CosignVersion {
		t.Fatalf("%s is cosign %q, want %s: run make deps", bin, v, CosignVersion)
	}
	k := cosignKeys{bin: bin, dir: t.TempDir(), password: "pw-" + time.Now().Format("150405.000000")}
	k.run(t, "generate-key-pair")
	return k
}

// cosign runs the cosign CLI; the password of the key reaches it in its
// environment, never in argv.
func (k cosignKeys) cosign(args ...string) (string, error) {
	cmd := exec.Command(k.bin, args...)
	cmd.Dir = k.dir
	cmd.Env = append(os.Environ(), "COSIGN_PASSWORD="+k.password, "HOME="+k.dir, "TUF_ROOT="+filepath.Join(k.dir, "tuf"))
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (k cosignKeys) run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := k.cosign(args...)
	if err != nil {
		t.Fatalf("cosign %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// verify runs `cosign verify` (no attestation type) or `cosign
// verify-attestation --type typ` against ref with the public key, offline.
func (k cosignKeys) verify(ref, typ string) (string, error) {
	args := []string{"verify"}
	if typ != "" {
		args = []string{"verify-attestation", "--type", typ}
	}
	return k.cosign(append(args, "--key", k.pub(), "--insecure-ignore-tlog", "--allow-insecure-registry", "--allow-http-registry", ref)...)
}

// A build through a signing chain arrives in every region signed and
// attested; the real cosign CLI verifies the signature, BuildKit's
// provenance, the SBOM and the scan at the replicated digest in each
// region, and refuses an image retagged to another digest.
func TestSignedBuildVerifiesInEveryRegion(t *testing.T) {
	keys := newCosignKeys(t)
	pem, err := os.ReadFile(keys.priv())
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("DCHAIN_IT_SIGNING_KEY", string(pem))
	t.Setenv(signing.PasswordEnv, keys.password)

	src := filepath.Join(t.TempDir(), "sample-app")
	if err := SampleRepo(context.Background(), src, ""); err != nil {
		t.Fatal(err)
	}
	l := buildChain(t, "it-signed", "sign/web", src, "linux/amd64", "linux/arm64")
	l.Chains[0].Scan = &chain.Scan{Mode: chain.ModeBlocking, Conditions: []chain.Condition{{Severity: "CRITICAL", Count: 1000}}, Action: chain.ActionBlock}
	l.Chains[0].Signing = &chain.Signing{Key: "env:DCHAIN_IT_SIGNING_KEY"}
	l.Chains[0].Verify = &chain.Verify{Keys: []chain.KeyRef{chain.KeyRef("file:" + keys.pub())},
		Provenance: &chain.ProvenanceRule{Repository: src, Builder: activities.BuilderID}}

	// Nothing of the key in any process's arguments while the run goes.
	keyBody := strings.Split(strings.TrimSpace(string(pem)), "\n")[1]
	argv := watchArgv(keyBody, keys.password)
	started := startPush(t, l, "refs/heads/main", false)
	st := waitRun(t, started.WorkflowID, 5*time.Minute)
	if leaks := argv(); len(leaks) > 0 {
		t.Errorf("key material in a process's arguments: %v", leaks)
	}
	if st.Outcome != workflows.OutcomeSucceeded {
		t.Fatalf("outcome %s: %s", st.Outcome, st.Message)
	}
	sg := st.Signing
	if sg == nil || sg.Signed == nil || sg.Verification == nil || !sg.Verification.Verified || sg.Verification.Provenance == "" {
		t.Fatalf("signing %+v", sg)
	}
	kinds := map[string]int{}
	for _, a := range sg.Signed.Attestations {
		kinds[a.Kind]++
	}
	if kinds[chain.AttestProvenance] != 2 || kinds[chain.AttestSBOM] != 2 || kinds[chain.AttestScan] != 1 || len(sg.Signed.Missing) > 0 {
		t.Fatalf("attested %v, missing %v", kinds, sg.Signed.Missing)
	}
	if msg := st.Stage(workflows.StageSign).Message; !strings.Contains(msg, "provenance matched; signed with env:DCHAIN_IT_SIGNING_KEY; attested provenance, sbom, scan") {
		t.Fatalf("sign stage: %q", msg)
	}

	// Every region: the real cosign CLI, offline, with the public key.
	for _, reg := range []string{"src", "eu", "us"} {
		assertReplicated(t, reg, "sign/web", "latest", st.Image.Digest)
		ref := stack.Endpoints.Registries[reg] + "/sign/web@" + st.Image.Digest
		for _, typ := range []string{"", "slsaprovenance", "cyclonedx", "vuln"} {
			if out, err := keys.verify(ref, typ); err != nil {
				t.Errorf("%s: cosign verify %s: %v\n%s", reg, typ, err, out)
			}
		}
	}
	// What the provenance says: the source and commit, the Dockerfile, the builder.
	out, err := keys.verify(stack.Endpoints.Registries["eu"]+"/sign/web@"+st.Image.Digest, "slsaprovenance")
	if err != nil {
		t.Fatal(err)
	}
	var statement struct {
		Predicate map[string]any `json:"predicate"`
	}
	if err := json.Unmarshal([]byte(decodedPayload(t, out)), &statement); err != nil {
		t.Fatal(err)
	}
	if source, builder := activities.ProvenanceSource(statement.Predicate); source != src || builder != activities.BuilderID {
		t.Errorf("the provenance names source %q and builder %q", source, builder)
	}
	canonical, _ := json.Marshal(statement.Predicate) // sorted keys, no spaces
	for _, want := range []string{`"vcs":{"revision":"` + st.Commit, `"filename":"Dockerfile"`, `"buildConfig"`, `"build-arg:GREETING":"hi"`, `"materials":[{"digest":{"sha256":`} {
		if !strings.Contains(string(canonical), want) {
			t.Errorf("the provenance does not say %s:\n%s", want, canonical)
		}
	}

	// The trigger told the receiver which signature and attestations to check.
	var ce struct {
		Data workflows.TriggerEvent `json:"data"`
	}
	for _, d := range stack.Receiver.Deliveries() {
		if d.Path == "/it-signed/ce" && strings.Contains(string(d.Body), st.Image.Digest) {
			_ = json.Unmarshal(d.Body, &ce)
		}
	}
	if s := ce.Data.Signing; s == nil || s.Signature != sg.Signed.Signature || len(s.Attestations) != 5 {
		t.Fatalf("trigger payload signing %+v", ce.Data.Signing)
	}

	// Tampered: eu's tag moved to another image, and the signatures copied
	// onto it. cosign refuses it, and so does dchain.
	other, err := PushSample(context.Background(), stack.Endpoints.Registries["eu"], "sign/web", "latest")
	if err != nil {
		t.Fatal(err)
	}
	copyBundles(t, stack.Endpoints.Registries["eu"]+"/sign/web", st.Image.Digest, other)
	tampered := stack.Endpoints.Registries["eu"] + "/sign/web:latest"
	for _, typ := range []string{"", "slsaprovenance", "cyclonedx"} {
		if out, err := keys.verify(tampered, typ); err == nil {
			t.Errorf("cosign verify %s passed a retagged image:\n%s", typ, out)
		}
	}
	eu, _ := l.Config.Registry("eu")
	otherDigest, _ := v1.NewHash(other)
	bs, err := (&activities.Activities{}).Attached(context.Background(), eu, "sign/web", otherDigest)
	if err != nil || len(bs) == 0 {
		t.Fatalf("the copied bundles: %d, %v", len(bs), err)
	}
	pub, _ := signing.LoadPublicKeys(context.Background(), l.Chains[0].Verify.Keys)
	if v := activities.Judge(signing.Check(bs, otherDigest, pub), *l.Chains[0].Verify); v.Verified || !strings.Contains(v.Reason, "about another image") {
		t.Fatalf("dchain's verdict on the retagged image: %+v", v)
	}

	// No key material in the history, the stack's logs, the build log.
	h := historyText(t, started.WorkflowID)
	if strings.Contains(h, keyBody) || strings.Contains(h, keys.password) || !strings.Contains(h, "env:DCHAIN_IT_SIGNING_KEY") {
		t.Error("the history holds key material (or not even the key's reference)")
	}
	grepTree(t, stack.Endpoints.DataDir, keyBody, keys.password)
	recordHistory(t, started.WorkflowID, "chainrun-signed.json")
}

// An image pushed by someone else goes through a chain that requires a
// signature only when cosign signed it with a listed key.
func TestPushedImageNeedsASignature(t *testing.T) {
	keys := newCosignKeys(t)
	l, ch := testChain("it-verify", "sign/pushed")
	ch.Verify = &chain.Verify{Keys: []chain.KeyRef{chain.KeyRef("file:" + keys.pub())}}
	ch.Triggers = nil
	l.Chains[0] = ch
	digest, err := PushSample(context.Background(), stack.Endpoints.Registries["src"], "sign/pushed", "v1")
	if err != nil {
		t.Fatal(err)
	}
	st := waitBlocked(t, startRun(t, l, "sign/pushed:v1").WorkflowID)
	if st.FailedStage != workflows.StageSign || !strings.Contains(st.Message, "blocked by the signature policy: the image carries no signature") {
		t.Fatalf("unsigned: %s at %s: %s", st.Outcome, st.FailedStage, st.Message)
	}
	for _, reg := range []string{"eu", "us"} {
		if _, ok := tagStatus(t, reg, "sign/pushed", "v1"); ok {
			t.Fatalf("an unsigned image reached %s", reg)
		}
	}

	// Signed by cosign with another key: still blocked, saying why.
	stranger := newCosignKeys(t)
	ref := stack.Endpoints.Registries["src"] + "/sign/pushed@" + digest
	stranger.run(t, "signing-config", "create", "--out", "sc.json")
	stranger.run(t, "sign", "--key", stranger.priv(), "--signing-config", "sc.json", "--allow-insecure-registry", "--allow-http-registry", "--yes", ref)
	retag(t, ref, "v2")
	st = waitBlocked(t, startRun(t, l, "sign/pushed:v2").WorkflowID)
	if !strings.Contains(st.Message, "no signature by file:"+keys.pub()+" (1 attached did not verify: signed by none of the listed keys)") {
		t.Fatalf("signed by another key: %s", st.Message)
	}

	// Signed with the listed key: delivered.
	keys.run(t, "signing-config", "create", "--out", "sc.json")
	keys.run(t, "sign", "--key", keys.priv(), "--signing-config", "sc.json", "--allow-insecure-registry", "--allow-http-registry", "--yes", ref)
	retag(t, ref, "v3")
	st = waitRun(t, startRun(t, l, "sign/pushed:v3").WorkflowID, 2*time.Minute)
	if st.Outcome != workflows.OutcomeSucceeded || st.Signing.Verification.SignedBy != chain.KeyRef("file:"+keys.pub()) {
		t.Fatalf("signed: %s: %s (%+v)", st.Outcome, st.Message, st.Signing)
	}
	// The signature travelled with the image.
	if out, err := keys.verify(stack.Endpoints.Registries["eu"]+"/sign/pushed@"+digest, ""); err != nil {
		t.Fatalf("cosign verify in eu: %v\n%s", err, out)
	}
}

// retag tags the image ref names (by digest) tag as well.
func retag(t *testing.T, ref, tag string) {
	t.Helper()
	d, err := name.NewDigest(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Get(d)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Tag(d.Context().Tag(tag), desc); err != nil {
		t.Fatal(err)
	}
}

// watchArgv samples every process's arguments until the returned func is
// called, and returns those that held one of secrets.
func watchArgv(secrets ...string) func() []string {
	stop := make(chan struct{})
	var leaks []string
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			cmdlines, _ := filepath.Glob("/proc/[0-9]*/cmdline")
			for _, p := range cmdlines {
				b, err := os.ReadFile(p)
				for _, s := range secrets {
					if err == nil && strings.Contains(string(b), s) {
						leaks = append(leaks, p+": "+strings.ReplaceAll(string(b), "\x00", " "))
					}
				}
			}
		}
	}()
	return func() []string { close(stop); wg.Wait(); return leaks }
}

// grepTree fails when a file below dir holds one of secrets.
func grepTree(t *testing.T, dir string, secrets ...string) {
	t.Helper()
	_ = filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || !fi.Mode().IsRegular() || fi.Size() > 256<<20 {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil
		}
		for _, s := range secrets {
			if strings.Contains(string(b), s) {
				t.Errorf("%s holds key material", p)
			}
		}
		return nil
	})
}

// decodedPayload is the first DSSE payload cosign printed, decoded.
func decodedPayload(t *testing.T, out string) string {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		var env struct {
			Payload []byte `json:"payload"`
		}
		if json.Unmarshal([]byte(line), &env) == nil && len(env.Payload) > 0 {
			return string(env.Payload)
		}
	}
	t.Fatalf("no DSSE envelope in cosign's output:\n%s", out)
	return ""
}

// copyBundles attaches every bundle of from's digest to the digest to as
// well: what an attacker who retags an image would do with its signatures.
func copyBundles(t *testing.T, repo, from, to string) {
	t.Helper()
	r, _ := name.NewRepository(repo, name.Insecure)
	fromHash, _ := v1.NewHash(from)
	bs, err := signing.Bundles(r, fromHash)
	if err != nil || len(bs) == 0 {
		t.Fatalf("bundles of %s: %d, %v", from, len(bs), err)
	}
	desc, err := remote.Get(r.Digest(to))
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bs {
		if _, err := signing.Attach(r.Digest(to), desc.Descriptor, b.PredicateType, b.JSON); err != nil {
			t.Fatal(err)
		}
	}
}
