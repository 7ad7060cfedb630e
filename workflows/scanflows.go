package workflows

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/dchain-dev/dchain/chain"
)

// Workflow names of the scans outside chain runs.
const (
	WorkflowScanImage      = "ManualScan"
	WorkflowScanRepository = "ScanRepository"
	ActivityListTags       = "ListTags"
)

// ScanImageRequest is a one-off scan (`dchain scan IMAGE`).
type ScanImageRequest struct {
	Registry   chain.Registry `json:"registry"`
	Repository string         `json:"repository"`
	Tag        string         `json:"tag"`
	TaskQueue  string         `json:"taskQueue,omitempty"`
}

// ScanRepositoryRequest re-scans every tag of a repository (a Temporal
// Schedule starts it periodically).
type ScanRepositoryRequest struct {
	Registry   chain.Registry `json:"registry"`
	Repository string         `json:"repository"`
	TaskQueue  string         `json:"taskQueue,omitempty"`
}

// ListTagsInput lists a repository's tags.
type ListTagsInput struct {
	Registry   chain.Registry `json:"registry"`
	Repository string         `json:"repository"`
}

// TagScan is one tag's result in a repository scan.
type TagScan struct {
	Tag     string      `json:"tag"`
	Summary ScanSummary `json:"summary"`
}

// RepositoryScan is the result of a repository scan.
type RepositoryScan struct {
	Repository string    `json:"repository"`
	Tags       []TagScan `json:"tags"`
	// New are the findings no earlier report of their image had.
	New []string `json:"new,omitempty"`
}

func scanOptions(queue, summary string) workflow.ActivityOptions {
	return workflow.ActivityOptions{
		TaskQueue: orDefault(queue), Summary: summary, StartToCloseTimeout: 30 * time.Minute, ScheduleToCloseTimeout: 2 * time.Hour,
		HeartbeatTimeout: 5 * time.Minute, WaitForCancellation: true,
		RetryPolicy: &temporal.RetryPolicy{InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: time.Minute},
	}
}

// ScanImageWorkflow resolves the tag and scans the image: the scan is
// recorded like a chain run, and its report attached to the image.
func ScanImageWorkflow(ctx workflow.Context, req ScanImageRequest) (*ScanSummary, error) {
	ctx = workflow.WithActivityOptions(ctx, scanOptions(req.TaskQueue, fmt.Sprintf("scan %s:%s", req.Repository, req.Tag)))
	var info ImageInfo
	if err := workflow.ExecuteActivity(ctx, ActivityResolveImage, ResolveImageInput{Registry: req.Registry,
		Image: ImageRef{Registry: req.Registry.Name, Repository: req.Repository, Tag: req.Tag}}).Get(ctx, &info); err != nil {
		return nil, err
	}
	var sum ScanSummary
	err := workflow.ExecuteActivity(ctx, ActivityScanImage, ScanInput{Registry: req.Registry, Repository: req.Repository, Digest: info.Digest}).Get(ctx, &sum)
	return &sum, err
}

// ScanRepositoryWorkflow scans the image of every tag of a repository, each
// distinct digest once, and records what is new since the last reports.
func ScanRepositoryWorkflow(ctx workflow.Context, req ScanRepositoryRequest) (*RepositoryScan, error) {
	ctx = workflow.WithActivityOptions(ctx, scanOptions(req.TaskQueue, "scan every tag of "+req.Repository))
	var tags []string
	if err := workflow.ExecuteActivity(ctx, ActivityListTags, ListTagsInput{Registry: req.Registry, Repository: req.Repository}).Get(ctx, &tags); err != nil {
		return nil, err
	}
	res := &RepositoryScan{Repository: req.Repository, Tags: []TagScan{}}
	byDigest := map[string]ScanSummary{}
	for _, tag := range tags {
		var info ImageInfo
		if err := workflow.ExecuteActivity(ctx, ActivityResolveImage, ResolveImageInput{Registry: req.Registry,
			Image: ImageRef{Registry: req.Registry.Name, Repository: req.Repository, Tag: tag}}).Get(ctx, &info); err != nil {
			return res, err
		}
		sum, done := byDigest[info.Digest]
		if !done {
			if err := workflow.ExecuteActivity(ctx, ActivityScanImage, ScanInput{Registry: req.Registry, Repository: req.Repository, Digest: info.Digest}).Get(ctx, &sum); err != nil {
				return res, err
			}
			byDigest[info.Digest] = sum
			res.New = append(res.New, sum.New...)
		}
		res.Tags = append(res.Tags, TagScan{Tag: tag, Summary: sum})
	}
	return res, nil
}
