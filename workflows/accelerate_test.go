package workflows

import (
	"slices"
	"strings"
	"testing"

	"github.com/dchain-dev/dchain/chain"
)

// A chain that accelerates makes the variant (in the digest's Accelerate
// workflow) after the policy and the sign stage, signs it too, and copies
// it with the image into every region under the accelerated tags.
func TestAccelerateStage(t *testing.T) {
	in := testInput()
	in.Chain.Accelerate = chain.AccelerateEstargz
	in.Chain.Signing = &chain.Signing{Key: "env:K"}
	in.Chain.Scan = scanPolicy("block")
	f := &fakes{counts: map[string]int{}}
	st, err := runWorkflow(t, in, f, nil)
	if err != nil || st.Outcome != OutcomeSucceeded {
		t.Fatalf("%v %s %s", err, st.Outcome, st.Message)
	}
	var names []string
	for _, s := range st.Stages {
		names = append(names, s.Name)
	}
	if got := strings.Join(names, ","); got != "build,resolve,scan,evaluate,sign,accelerate,replicate,trigger" {
		t.Fatalf("stages %s", got)
	}
	if len(f.accelerated) != 1 || strings.Join(f.accelerated[0].Tags, ",") != "v1_accelerated" || f.accelerated[0].Digest != digest {
		t.Fatalf("accelerate asked %+v", f.accelerated)
	}
	if s := st.Stage(StageAccelerate); !strings.Contains(s.Message, "not scanned again") {
		t.Fatalf("accelerate stage %+v", s)
	}
	if strings.Join(f.signing, ",") != "sign,sign" || st.Signing.Accelerated == nil {
		t.Fatalf("signing %v %+v", f.signing, st.Signing)
	}
	variants := slices.DeleteFunc(slices.Clone(f.copies), func(c ReplicateInput) bool { return c.Digest != "sha256:accel" })
	if len(variants) != 2 || variants[0].Tag != "v1_accelerated" || len(f.copies) != 4 {
		t.Fatalf("copies %+v", f.copies)
	}
	for _, d := range st.Destinations {
		if d.Accelerated == nil || d.State != StateSucceeded {
			t.Fatalf("destination %+v", d)
		}
	}
}
