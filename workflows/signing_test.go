package workflows

import (
	"context"
	"errors"
	"slices"
	"testing"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/dchain-dev/dchain/chain"
)

func TestUnsignedPushedImageIsBlocked(t *testing.T) {
	in := testInput()
	in.Chain.Verify = &chain.Verify{Keys: []chain.KeyRef{"file:/keys/ci.pub"}}
	in.Chain.Signing = &chain.Signing{Key: "env:KEY"}
	f := &fakes{verified: Verification{Reason: "the image carries no signature (wanted one by file:/keys/ci.pub)"}}
	st, err := runWorkflow(t, in, f, nil)
	var app *temporal.ApplicationError
	if !errors.As(err, &app) || app.Type() != ErrTypeRunBlocked ||
		app.Message() != "blocked by the signature policy: the image carries no signature (wanted one by file:/keys/ci.pub)" {
		t.Fatalf("an unsigned image ends with %v, want Blocked saying why", err)
	}
	if st.Outcome != OutcomeBlocked || st.FailedStage != StageSign {
		t.Fatalf("outcome %s at %s", st.Outcome, st.FailedStage)
	}
	// Verified before anything was signed: dchain's own signature cannot
	// vouch for what it was given.
	if !slices.Equal(f.signing, []string{"verify"}) || len(f.replicated) != 0 || len(f.delivered) != 0 {
		t.Fatalf("signing %v, replicated %v, delivered %v", f.signing, f.replicated, f.delivered)
	}
	states := stageStates(st)
	if states[StageSign] != StateBlocked || states[StageReplicate] != StateSkipped || states[StageTrigger] != StateSkipped {
		t.Fatalf("stages %v", states)
	}
}

func TestSignedImageIsSignedAgainAndTriggersSayHow(t *testing.T) {
	in := testInput()
	in.Chain.Scan = scanPolicy(chain.ModeBlocking)
	in.Chain.Verify = &chain.Verify{Keys: []chain.KeyRef{"file:/keys/ci.pub"}}
	in.Chain.Signing = &chain.Signing{Key: "env:KEY"}
	f := &fakes{verified: Verification{Verified: true, SignedBy: "file:/keys/ci.pub", Signature: "sha256:theirs"}}
	st, err := runWorkflow(t, in, f, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(f.signing, []string{"verify", "sign"}) {
		t.Fatalf("signing %v, want verify then sign", f.signing)
	}
	// No provenance for a pushed image: it was not built here.
	s := st.Signing.Signed
	if s == nil || len(s.Attestations) != 2 || s.Attestations[0].Kind != chain.AttestSBOM || s.Attestations[1].Kind != chain.AttestScan {
		t.Fatalf("signed %+v", s)
	}
	if msg := st.Stage(StageSign).Message; msg != "signature verified with file:/keys/ci.pub; signed with env:KEY; attested sbom, scan" {
		t.Fatalf("sign stage says %q", msg)
	}
	if len(f.events) == 0 {
		t.Fatal("no trigger delivered")
	}
	for _, ev := range f.events {
		if ev.Signing == nil || ev.Signing.Signature != "sha256:sig" || ev.Signing.VerifiedBy != "file:/keys/ci.pub" || len(ev.Signing.Attestations) != 2 {
			t.Fatalf("trigger event signing %+v", ev.Signing)
		}
	}
}

// buildInput is testInput started by a push to main that builds v1.
func buildInput() ChainRunInput {
	in := testInput()
	in.Chain.Build = &chain.Build{Source: chain.BuildSource{URL: "https://git.example/app"}}
	in.Push = &chain.Push{Ref: "refs/heads/main", Commit: "0123456789abcdef0123456789abcdef01234567"}
	in.Build = &chain.BuildPlan{Rule: "main", Tags: []string{"v1"}, Platforms: []string{"linux/amd64"}}
	return in
}

func TestBuiltImageIsVerifiedAfterSigning(t *testing.T) {
	in := buildInput()
	in.Chain.Verify = &chain.Verify{Keys: []chain.KeyRef{"file:/keys/dchain.pub"}, Provenance: &chain.ProvenanceRule{Repository: "https://git.example/app"}}
	in.Chain.Signing = &chain.Signing{Key: "file:/keys/dchain.key"}
	f := &fakes{verified: Verification{Verified: true, SignedBy: "file:/keys/dchain.pub", Provenance: "sha256:prov"}}
	var provenance bool
	st, err := runWorkflow(t, in, f, func(env *testsuite.TestWorkflowEnvironment) {
		env.RegisterActivityWithOptions(func(ctx context.Context, b BuildInput) (BuildResult, error) {
			provenance = b.Provenance
			return BuildResult{Digest: digest, Tags: b.Plan.Tags}, nil
		}, activity.RegisterOptions{Name: ActivityBuildImage})
	})
	if err != nil {
		t.Fatal(err)
	}
	if !provenance {
		t.Fatal("the build was not asked for BuildKit's provenance")
	}
	// What dchain built is checked as it leaves: after signing.
	if !slices.Equal(f.signing, []string{"sign", "verify"}) {
		t.Fatalf("signing %v, want sign then verify", f.signing)
	}
	kinds := []string{}
	for _, a := range st.Signing.Signed.Attestations {
		kinds = append(kinds, a.Kind)
	}
	if !slices.Equal(kinds, []string{chain.AttestProvenance, chain.AttestSBOM}) { // no scan section: no scan attestation
		t.Fatalf("attested %v", kinds)
	}
	if msg := st.Stage(StageSign).Message; msg != "signature verified with file:/keys/dchain.pub, provenance matched; signed with file:/keys/dchain.key; attested provenance, sbom" {
		t.Fatalf("sign stage says %q", msg)
	}
}

// A build whose provenance the verify rule refuses is not signed at all:
// Blocked before anything is attached.
func TestRefusedProvenanceBlocksUnsigned(t *testing.T) {
	in := buildInput()
	in.Chain.Verify = &chain.Verify{Keys: []chain.KeyRef{"file:/k.pub"}, Provenance: &chain.ProvenanceRule{Repository: "https://git.example/other"}}
	in.Chain.Signing = &chain.Signing{Key: "file:/k"}
	f := &fakes{refuse: "the build's provenance does not name source \"https://git.example/other\""}
	st, err := runWorkflow(t, in, f, func(env *testsuite.TestWorkflowEnvironment) {
		env.RegisterActivityWithOptions(func(ctx context.Context, b BuildInput) (BuildResult, error) {
			return BuildResult{Digest: digest, Tags: b.Plan.Tags}, nil
		}, activity.RegisterOptions{Name: ActivityBuildImage})
	})
	if err == nil || st.Outcome != OutcomeBlocked || st.FailedStage != StageSign ||
		st.Message != "blocked by the signature policy: "+f.refuse || !slices.Equal(f.signing, []string{"sign"}) || len(f.replicated) != 0 {
		t.Fatalf("%v: %s at %s: %s (signing %v, replicated %v)", err, st.Outcome, st.FailedStage, st.Message, f.signing, f.replicated)
	}
	if st.Signing.Ref() != nil || st.Stage(StageSign).State != StateBlocked {
		t.Fatalf("a refused signing reads as signed: %+v", st.Signing)
	}
}

func TestSigningSaysWhatItCouldNotAttest(t *testing.T) {
	s := Signing{Signed: &Signed{Key: "env:K", Missing: []string{"provenance: the index carries no BuildKit provenance"}}}
	if got := s.String(); got != "signed with env:K; not attested: provenance: the index carries no BuildKit provenance" {
		t.Fatalf("%q", got)
	}
	if (Signing{Verification: &Verification{Reason: "no"}}).String() != "" || (&Signing{Verification: &Verification{}}).Ref() != nil {
		t.Fatal("an unverified check reads as done")
	}
}
