package workflows

import (
	"fmt"
	"strings"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"

	"github.com/dchain-dev/dchain/chain"
)

// DefaultTaskQueue is where ChainRun workflows and their non-regional activities run.
const DefaultTaskQueue = "dchain"

// ReplicationQueue is the task queue that serves replication into registry:
// "<base>.replicate.<registry>". A worker started with --region X polls only
// ReplicationQueue(base, X), so copies into a region can run inside it.
func ReplicationQueue(base, registry string) string {
	return base + ".replicate." + registry
}

// Activity names, registered by the worker and called by the workflow.
const (
	ActivityResolveImage   = "ResolveImage"
	ActivityReplicateImage = "ReplicateImage"
	ActivityDeliverTrigger = "DeliverTrigger"
	ActivityBuildImage     = "BuildImage"
	ActivityScanImage      = "ScanImage"
	ActivityEvaluatePolicy = "EvaluatePolicy"
	ActivityApplyBlock     = "ApplyBlockAction"
	ActivityWaitTurn       = "WaitTurn"
	ActivitySignImage      = "SignImage"
	ActivityVerifyImage    = "VerifyImage"
)

// MemoCron is the memo field of a dchain schedule that keeps its cron
// expression as written (the server stores it as calendar specs).
const MemoCron = "cron"

// QueryStatus returns the run's live RunStatus.
const QueryStatus = "status"

// Search attributes, set as the run advances so the Temporal Web UI and
// `dchain run list` can filter runs.
var (
	AttrChain      = temporal.NewSearchAttributeKeyKeyword("DchainChain")
	AttrRepository = temporal.NewSearchAttributeKeyKeyword("DchainRepository")
	AttrTag        = temporal.NewSearchAttributeKeyKeyword("DchainTag")
	AttrCommit     = temporal.NewSearchAttributeKeyKeyword("DchainCommit")
	AttrStage      = temporal.NewSearchAttributeKeyKeyword("DchainStage")
	AttrOutcome    = temporal.NewSearchAttributeKeyKeyword("DchainOutcome")
	// AttrRef is the pushed ref of a build run (refs/heads/main).
	AttrRef = temporal.NewSearchAttributeKeyKeyword("DchainRef")
	// AttrCritical and AttrHigh count the scan's critical and high findings.
	AttrCritical = temporal.NewSearchAttributeKeyInt64("DchainCritical")
	AttrHigh     = temporal.NewSearchAttributeKeyInt64("DchainHigh")
)

// SearchAttributes lists every custom search attribute dchain uses, with its type.
var SearchAttributes = map[string]enumspb.IndexedValueType{}

func init() {
	for _, k := range []temporal.SearchAttributeKeyKeyword{AttrChain, AttrRepository, AttrTag, AttrCommit, AttrStage, AttrOutcome, AttrRef} {
		SearchAttributes[k.GetName()] = enumspb.INDEXED_VALUE_TYPE_KEYWORD
	}
	for _, k := range []temporal.SearchAttributeKeyInt64{AttrCritical, AttrHigh} {
		SearchAttributes[k.GetName()] = enumspb.INDEXED_VALUE_TYPE_INT
	}
}

// WorkflowID is the run's ID, derived from the chain and what triggered it,
// so the same event twice maps to one run: chain, repository, tag and the
// first 16 hex digits of the digest ("demo:demo/app:v1@sha256:0123…").
func WorkflowID(chainName string, img ImageRef) string {
	d := img.Digest
	if hex, ok := strings.CutPrefix(d, "sha256:"); ok && len(hex) > 16 {
		d = "sha256:" + hex[:16]
	}
	return fmt.Sprintf("%s:%s:%s@%s", chainName, img.Repository, img.Tag, d)
}

// BuildWorkflowID is the ID of a run started by a push: chain, build rule,
// ref and commit ("demo:release:refs/heads/release-v1@0123456789ab"), so
// the same push (or its redelivery) is one run, and a new branch or tag at
// an already-built commit is a run of its own (which reuses the image).
// Runs started before the ref was part of the ID keep their old IDs
// ("demo:release@0123456789ab"); nothing reads an ID back apart.
func BuildWorkflowID(chainName, rule string, ref chain.Ref, commit chain.Commit) string {
	return fmt.Sprintf("%s:%s:%s@%s", chainName, rule, printable(string(ref)), commit.Short())
}

// printable percent-encodes the bytes of s outside printable ASCII (and
// "%" itself): a workflow ID travels in gRPC headers, which take nothing
// else, and a Git ref may hold any UTF-8.
func printable(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '%' {
			fmt.Fprintf(&b, "%%%02X", c)
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}
