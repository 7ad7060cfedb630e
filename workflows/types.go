package workflows

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/dchain-dev/dchain/chain"
)

// ChainRunInput is everything one run needs, snapshotted when it starts so the
// workflow history records exactly what ran. It holds secret references,
// never secret values.
type ChainRunInput struct {
	Chain chain.Chain `json:"chain"`
	// Registries are the source and destination registries as configured.
	Registries []chain.Registry    `json:"registries"`
	Retry      chain.RetrySettings `json:"retry"`
	// Image is the image the run delivers: for an image push, the pushed
	// repository:tag and its digest as resolved by the starter; for a build,
	// the repository and first tag, with the digest known once built.
	Image ImageRef `json:"image"`
	Cause Cause    `json:"cause"`
	// Push and Build are set for a run started by a source push: the commit
	// and the plan of the build rule it matched.
	Push  *chain.Push      `json:"push,omitempty"`
	Build *chain.BuildPlan `json:"build,omitempty"`
	// TaskQueue is the base task queue; replication runs on ReplicationQueue(TaskQueue, destination).
	TaskQueue string `json:"taskQueue"`
	// Rerun is set on a rerun of an earlier run from a stage.
	Rerun *Rerun `json:"rerun,omitempty"`
	// AttributesAtStart says the starter set the run's first search
	// attributes (StartAttributes) and that the run batches its changes.
	AttributesAtStart bool `json:"attributesAtStart,omitempty"`
}

// ImageRef names an image in a registry of the config.
type ImageRef struct {
	Registry string `json:"registry"`
	// Repository is the path inside the registry: "namespace/name".
	Repository string `json:"repository"`
	Tag        string `json:"tag"`
	Digest     string `json:"digest"`
}

// String is repository:tag@digest.
func (i ImageRef) String() string {
	s := i.Repository + ":" + i.Tag
	if i.Digest != "" {
		s += "@" + i.Digest
	}
	return s
}

// Cause says who or what started a run.
type Cause struct {
	// Kind is "manual" (CLI/API) or "image-push" (a registry notification).
	Kind  string    `json:"kind"`
	Actor string    `json:"actor,omitempty"`
	At    time.Time `json:"at"`
}

// Outcome is how a run ended.
type Outcome string

// Outcomes.
const (
	OutcomeRunning   Outcome = "Running"
	OutcomeSucceeded Outcome = "Succeeded"
	OutcomeFailed    Outcome = "Failed"
	OutcomeCanceled  Outcome = "Canceled"
	// OutcomeBlocked: the blocking policy stopped the chain (the workflow
	// fails with ErrTypeRunBlocked, so the Web UI shows it apart).
	OutcomeBlocked Outcome = "Blocked"
	// OutcomeRejected: an approver (or the approval's timeout) rejected
	// the run before its copies, or before a wave (the waves before it
	// copied and fired their triggers); the workflow fails with
	// ErrTypeRunRejected.
	OutcomeRejected Outcome = "Rejected"
	// OutcomeTerminated: ended outside dchain (Temporal's terminate, the
	// Web UI's, a reset); the run's own record stopped where it was.
	OutcomeTerminated Outcome = "Terminated"
	// OutcomeTimedOut: Temporal ended the run at its execution timeout.
	OutcomeTimedOut Outcome = "TimedOut"
	// OutcomeContinuedAsNew: Temporal continued the run as a new one.
	OutcomeContinuedAsNew Outcome = "ContinuedAsNew"
)

// State is the state of a stage, destination or trigger.
type State string

// States.
const (
	StatePending   State = "Pending"
	StateRunning   State = "Running"
	StateSucceeded State = "Succeeded"
	StateFailed    State = "Failed"
	StateSkipped   State = "Skipped"
	StateCanceled  State = "Canceled"
	StateBlocked   State = "Blocked"
	// StateWaiting: the approval stage waits for a person.
	StateWaiting State = "Waiting"
	// StateRejected: the approval stage ended with a rejection.
	StateRejected State = "Rejected"
	// StateReused: a rerun took the stage's result from the earlier run.
	StateReused State = "Reused"
)

// Stage names, in run order.
const (
	StageResolve   = "resolve"
	StageBuild     = "build"
	StageScan      = "scan"
	StageEvaluate  = "evaluate"
	StageSign      = "sign"
	StageApprove   = "approve"
	StageReplicate = "replicate"
	StageTrigger   = "trigger"
)

// Stages lists the stages in run order. A run has the approve stage only
// when its chain asks for approval.
var Stages = []string{StageBuild, StageResolve, StageScan, StageEvaluate, StageSign, StageAccelerate, StageApprove, StageReplicate, StageTrigger}

// RunStatus is the live and final record of a run: the query result, the
// workflow result, and the details of a failure or cancellation.
type RunStatus struct {
	Chain string   `json:"chain"`
	Image ImageRef `json:"image"`
	// Tags are every tag the run delivers (a build may push up to three).
	Tags      []string `json:"tags,omitempty"`
	Commit    string   `json:"commit,omitempty"`
	MediaType string   `json:"mediaType,omitempty"`
	Platforms []string `json:"platforms,omitempty"`
	Outcome   Outcome  `json:"outcome"`
	// FailedStage and Message say where and why a run did not succeed.
	FailedStage  string              `json:"failedStage,omitempty"`
	Message      string              `json:"message,omitempty"`
	Stages       []StageStatus       `json:"stages"`
	Destinations []DestinationStatus `json:"destinations"`
	Triggers     []TriggerStatus     `json:"triggers"`
	// Build is what the build stage pushed, when the run built the image.
	Build *BuildResult `json:"build,omitempty"`
	// Scan, Decision and Block are the scan's summary, the policy's decision
	// and what a blocking action did.
	Scan     *ScanSummary    `json:"scan,omitempty"`
	Decision *chain.Decision `json:"decision,omitempty"`
	Block    *BlockResult    `json:"block,omitempty"`
	// Signing is what the sign stage verified and signed.
	Signing *Signing `json:"signing,omitempty"`
	// Accelerated is the image's accelerated variant (chains with accelerate:).
	Accelerated *Accelerated `json:"accelerated,omitempty"`
	// Approval is the approval stage's request and decision.
	Approval *ApprovalStatus `json:"approval,omitempty"`
	// RerunOf is set on a rerun: the earlier run and the stage it started at.
	RerunOf *RerunOf `json:"rerunOf,omitempty"`
	// Waves are the waves of a chain with waves, in order.
	Waves     []WaveStatus `json:"waves,omitempty"`
	StartedAt time.Time    `json:"startedAt"`
	EndedAt   time.Time    `json:"endedAt,omitzero"`
}

// StageStatus is one stage of the run.
type StageStatus struct {
	Name      string    `json:"name"`
	State     State     `json:"state"`
	Message   string    `json:"message,omitempty"`
	StartedAt time.Time `json:"startedAt,omitzero"`
	EndedAt   time.Time `json:"endedAt,omitzero"`
}

// DestinationStatus is one replication branch.
type DestinationStatus struct {
	Rule string `json:"rule"`
	// Wave is the wave that copies it (chains with waves).
	Wave         string        `json:"wave,omitempty"`
	Registry     string        `json:"registry"`
	Region       string        `json:"region"`
	Reference    string        `json:"reference"`
	State        State         `json:"state"`
	Digest       string        `json:"digest,omitempty"`
	Duration     time.Duration `json:"duration,omitempty"`
	BytesCopied  int64         `json:"bytesCopied,omitempty"`
	BlobsCopied  int           `json:"blobsCopied,omitempty"`
	BlobsSkipped int           `json:"blobsSkipped,omitempty"`
	// Referrers counts the attached artifacts copied with the image.
	Referrers int `json:"referrers,omitempty"`
	// Accelerated is the copy of the image's accelerated variant.
	Accelerated *ReplicateResult `json:"accelerated,omitempty"`
	// BytesTotal, BlobsTotal, Attempt and LastError are live: while the
	// copy runs, readers (runs.Status) fill them from the activity's
	// heartbeats and retry state; BytesTotal stays once it succeeded.
	BytesTotal int64  `json:"bytesTotal,omitempty"`
	BlobsTotal int64  `json:"blobsTotal,omitempty"`
	Attempt    int32  `json:"attempt,omitempty"`
	LastError  string `json:"lastError,omitempty"`
	Message    string `json:"message,omitempty"`
}

// BuildProgress is the heartbeat detail of a running build: steps seen,
// completed and cached so far, and the step under way.
type BuildProgress struct {
	Steps     int    `json:"steps"`
	Completed int    `json:"completed"`
	Cached    int    `json:"cached"`
	Current   string `json:"current,omitempty"`
	// Lines counts the log's whole lines so far; Tail is the last of them
	// (at most TailLines, secrets masked), for `run logs -f`.
	Lines int      `json:"lines,omitempty"`
	Tail  []string `json:"tail,omitempty"`
}

// TailLines is the most log lines a build's heartbeat carries.
const TailLines = 200

// NewLines are the lines of p a follower that has shown printed lines
// has not shown yet; missed says lines came and went between two
// heartbeats, unseen.
func (p BuildProgress) NewLines(printed int) (lines []string, missed int) {
	first := p.Lines - len(p.Tail) // the index of Tail[0] in the log
	if p.Lines <= printed {
		return nil, 0
	}
	if first > printed {
		return p.Tail, first - printed
	}
	return p.Tail[printed-first:], 0
}

// Stage returns the stage called name (nil if the run has none).
func (s *RunStatus) Stage(name string) *StageStatus {
	for i := range s.Stages {
		if s.Stages[i].Name == name {
			return &s.Stages[i]
		}
	}
	return nil
}

// TriggerStatus is one distribution trigger.
type TriggerStatus struct {
	Name string `json:"name"`
	// Wave is the wave after whose copies it fired ("": after every copy).
	Wave       string `json:"wave,omitempty"`
	URL        string `json:"url"`
	State      State  `json:"state"`
	HTTPStatus int    `json:"httpStatus,omitempty"`
	Attempts   int32  `json:"attempts,omitempty"`
	Message    string `json:"message,omitempty"`
}

// ResolveImageInput asks for an image's manifest descriptor.
type ResolveImageInput struct {
	Registry chain.Registry `json:"registry"`
	Image    ImageRef       `json:"image"`
}

// ImageInfo describes a resolved image.
type ImageInfo struct {
	Digest    string   `json:"digest"`
	MediaType string   `json:"mediaType"`
	Size      int64    `json:"size"`
	Platforms []string `json:"platforms,omitempty"`
	// Manifests maps each platform of an index to its manifest digest.
	Manifests map[string]string `json:"manifests,omitempty"`
}

// ReplicateInput copies Source/Repository@Digest to Destination/Repository:Tag.
type ReplicateInput struct {
	Source      chain.Registry `json:"source"`
	Destination chain.Registry `json:"destination"`
	Repository  string         `json:"repository"`
	// TargetRepository is the destination repository when it differs from Repository.
	TargetRepository string `json:"targetRepository,omitempty"`
	Tag              string `json:"tag"`
	// Tags are more tags to point at the same digest.
	Tags      []string `json:"tags,omitempty"`
	Digest    string   `json:"digest"`
	Overwrite bool     `json:"overwrite"`
	// SkipReferrers leaves the artifacts attached to the image (signatures,
	// SBOMs, scan reports) behind; by default they are copied with it.
	SkipReferrers bool `json:"skipReferrers,omitempty"`
	// ImmutableTags: every destination tag but latest that exists may not
	// be moved, whatever Overwrite says (the chain's immutableTags).
	ImmutableTags bool `json:"immutableTags,omitempty"`
	// ReferrersOnly copies only the artifacts attached to Digest, and only
	// where the destination has the image (a signature added after
	// delivery follows it); no tag is read or written (Tag is empty).
	ReferrersOnly bool `json:"referrersOnly,omitempty"`
	// Alone says no other copy of the image runs at once (a run with one
	// destination): blobs stream from the source straight to the
	// destination. Otherwise (a fan-out's branches) the worker reads each
	// source blob once into a spool its copies share.
	Alone bool `json:"alone,omitempty"`
}

// ReplicateProgress is the heartbeat detail of a replication: how far the
// copy into Reference (the first destination tag) has come.
type ReplicateProgress struct {
	Reference   string `json:"reference"`
	BytesCopied int64  `json:"bytesCopied"`
	BytesTotal  int64  `json:"bytesTotal"`
	BlobsCopied int64  `json:"blobsCopied"`
	BlobsTotal  int64  `json:"blobsTotal"`
}

// ReplicateResult is what a replication did.
type ReplicateResult struct {
	Digest       string `json:"digest"`
	BytesCopied  int64  `json:"bytesCopied"`
	BlobsCopied  int    `json:"blobsCopied"`
	BlobsSkipped int    `json:"blobsSkipped"`
	// BytesTotal is the size of every blob of the image (copied or skipped).
	BytesTotal int64 `json:"bytesTotal,omitempty"`
	// AlreadyPresent is true when the destination tag already pointed at the digest.
	AlreadyPresent bool `json:"alreadyPresent,omitempty"`
	// Referrers counts the attached artifacts copied (recursively).
	Referrers int `json:"referrers,omitempty"`
	// NotPresent is true when, following referrers only, the destination
	// does not have the image: nothing was copied.
	NotPresent bool `json:"notPresent,omitempty"`
}

// DeliverInput is one trigger delivery.
type DeliverInput struct {
	Trigger chain.Trigger `json:"trigger"`
	Event   TriggerEvent  `json:"event"`
	// IdempotencyKey is the same on every retry of this delivery.
	IdempotencyKey string `json:"idempotencyKey"`
}

// TriggerEvent is what a trigger tells its receiver.
type TriggerEvent struct {
	Chain      string    `json:"chain"`
	RunID      string    `json:"runId"`
	Registry   string    `json:"registry"`
	Region     string    `json:"region"`
	Repository string    `json:"repository"`
	Tag        string    `json:"tag"`
	Digest     string    `json:"digest"`
	PushedAt   time.Time `json:"pushedAt"`
	// Regions are the destination regions that now hold the image.
	Regions []string `json:"regions,omitempty"`
	// Signing names the signature and attestations the image carries in
	// every region (when the chain signs or verifies).
	Signing *SigningRef `json:"signing,omitempty"`
	// Approval is set on an approval request (not on a delivery): who may
	// decide, and until when.
	Approval *ApprovalRequest `json:"approval,omitempty"`
	// Wave is the wave whose copies the delivery follows (then Regions are
	// that wave's), or that waits for approval.
	Wave string `json:"wave,omitempty"`
}

// DeliverResult is a delivery's answer.
type DeliverResult struct {
	HTTPStatus int   `json:"httpStatus"`
	Attempts   int32 `json:"attempts"`
}

// BuildInput builds one rule's image at one commit and pushes it to the
// chain's source repository under every tag of the plan.
type BuildInput struct {
	Source     chain.BuildSource `json:"source"`
	Push       chain.Push        `json:"push"`
	Plan       chain.BuildPlan   `json:"plan"`
	Registry   chain.Registry    `json:"registry"`
	Repository string            `json:"repository"`
	// ImmutableTags: a plan tag but latest that exists may not be moved
	// to a new image (the chain's immutableTags).
	ImmutableTags bool `json:"immutableTags,omitempty"`
	// Provenance asks BuildKit for its SLSA provenance (max mode), attached
	// to the index as an attestation manifest, for the sign stage.
	Provenance bool `json:"provenance,omitempty"`
}

// BuildResult is what a build pushed.
type BuildResult struct {
	// Digest is the image index covering every platform.
	Digest string   `json:"digest"`
	Tags   []string `json:"tags"`
	// Platforms maps each platform to its image manifest's digest.
	Platforms map[string]string `json:"platforms"`
	// Log is the reference of the build log artifact (`dchain run logs`).
	Log string `json:"log,omitempty"`
	// Steps and Cached count the build's steps and those served from cache.
	Steps  int `json:"steps"`
	Cached int `json:"cached"`
	// ReusedFrom is set when nothing was built: the same rule had built the
	// same commit with the same inputs (another branch or tag), and that
	// image only got this run's tags.
	ReusedFrom string `json:"reusedFrom,omitempty"`
}

// ScanDB describes the vulnerability DB a scan used.
type ScanDB struct {
	Repository   string    `json:"repository,omitempty"`
	UpdatedAt    time.Time `json:"updatedAt,omitzero"`
	DownloadedAt time.Time `json:"downloadedAt,omitzero"`
	// Demo is true for dchain's fixture DB: its findings are demo data.
	Demo bool `json:"demo,omitempty"`
	// Server is the trivy server's address in client/server mode.
	Server string `json:"server,omitempty"`
	// Offline is the DB's directory on a worker that never downloads it
	// (--trivy-offline); Repository is empty then.
	Offline string `json:"offline,omitempty"`
}

// ScanInput scans Registry/Repository@Digest (every platform of an index).
type ScanInput struct {
	Registry   chain.Registry `json:"registry"`
	Repository string         `json:"repository"`
	Digest     string         `json:"digest"`
}

// ScanReport is the full report, stored in the registry as a referrer of
// the image, never in workflow history.
type ScanReport struct {
	Image     string          `json:"image"`
	Digest    string          `json:"digest"`
	ScannedAt time.Time       `json:"scannedAt"`
	DB        ScanDB          `json:"db"`
	Platforms []string        `json:"platforms,omitempty"`
	Counts    map[string]int  `json:"counts"`
	Findings  []chain.Finding `json:"findings"`
	// New are the ids not in the image's previous report (periodic scans).
	New []string `json:"new,omitempty"`
	// Inventory is what each platform had to analyse (reports made before
	// it was recorded have none).
	Inventory []ScanInventory `json:"inventory,omitempty"`
}

// ScanInventory is what the scan of one platform found to analyse: the OS
// Trivy detected ("debian 12.5"; "" when none) and the packages it read,
// by analyzer (debian, alpine, redhat, npm, gobinary, …).
type ScanInventory struct {
	Platform string         `json:"platform,omitempty"`
	OS       string         `json:"os,omitempty"`
	Packages map[string]int `json:"packages"`
}

// Analysed says whether the scan could look at anything: an OS it knows, or
// packages of a language. A platform without either scans "clean" because
// nothing was read (an OS Trivy does not detect: its packages cannot be
// matched either).
func (i ScanInventory) Analysed() bool {
	if i.OS != "" {
		return true
	}
	for _, n := range i.Packages {
		if n > 0 {
			return true
		}
	}
	return false
}

// String is "debian 12.5: debian 96, gobinary 3" (or "no OS detected, no packages").
func (i ScanInventory) String() string {
	os := i.OS
	if os == "" {
		os = "no OS detected"
	}
	var pkgs []string
	for _, k := range slices.Sorted(maps.Keys(i.Packages)) {
		pkgs = append(pkgs, fmt.Sprintf("%s %d", k, i.Packages[k]))
	}
	if len(pkgs) == 0 {
		return os + ", no packages"
	}
	return os + ": " + strings.Join(pkgs, ", ")
}

// InventoryLines are the inventory's platforms, one line each:
// "linux/amd64: debian 12.5: debian 96, gobinary 3".
func InventoryLines(inventory []ScanInventory) []string {
	var out []string
	for _, i := range inventory {
		out = append(out, cmp.Or(i.Platform, "image")+": "+i.String())
	}
	return out
}

// Unanalysed lists the platforms ("image" for a single one) of inventory
// that the scan could not analyse at all.
func Unanalysed(inventory []ScanInventory) []string {
	var out []string
	for _, i := range inventory {
		if !i.Analysed() {
			out = append(out, cmp.Or(i.Platform, "image"))
		}
	}
	return out
}

// ScanSummary is what a scan returns to the workflow.
type ScanSummary struct {
	Digest    string          `json:"digest"`
	Counts    map[string]int  `json:"counts"`
	Total     int             `json:"total"`
	Top       []chain.Finding `json:"top,omitempty"`
	Report    string          `json:"report"`
	DB        ScanDB          `json:"db"`
	ScannedAt time.Time       `json:"scannedAt"`
	New       []string        `json:"new,omitempty"`
	// Reused is true when the image had a report from the same DB already:
	// scanning again would find the same, so that report is the result.
	Reused bool `json:"reused,omitempty"`
	// Inventory is the report's: the OS and packages of each platform.
	Inventory []ScanInventory `json:"inventory,omitempty"`
}

// SameDB says whether a and b are the same vulnerability DB (known by its
// repository and update time; a trivy server's DB cannot be told apart).
func SameDB(a, b ScanDB) bool {
	return a.Server == "" && b.Server == "" && !a.UpdatedAt.IsZero() && a.UpdatedAt.Equal(b.UpdatedAt) &&
		a.Repository == b.Repository && a.Demo == b.Demo
}

// EvaluateInput applies Policy to the report at Report (a reference) as of Now.
type EvaluateInput struct {
	Registry chain.Registry `json:"registry"`
	Report   string         `json:"report"`
	Policy   chain.Scan     `json:"policy"`
	Now      time.Time      `json:"now"`
}

// BlockInput applies a blocking action to the run's tags.
type BlockInput struct {
	Registry   chain.Registry `json:"registry"`
	Repository string         `json:"repository"`
	Tags       []string       `json:"tags"`
	Digest     string         `json:"digest"`
	Action     string         `json:"action"`
	// BackupRepository is the quarantine repository of block-and-backup.
	BackupRepository string `json:"backupRepository,omitempty"`
	// Variants are accelerated tags deleted too where they point at a
	// variant of Digest (made by an earlier run of it).
	Variants []string `json:"variants,omitempty"`
}

// BlockResult says what the action did.
type BlockResult struct {
	Deleted  []string `json:"deleted,omitempty"`
	BackedUp []string `json:"backedUp,omitempty"`
}

// WaitTurnInput waits until no older run of Chain for Ref is still running.
type WaitTurnInput struct {
	Chain      string    `json:"chain"`
	Ref        string    `json:"ref"`
	WorkflowID string    `json:"workflowId"`
	StartedAt  time.Time `json:"startedAt"`
}
