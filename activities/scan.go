package activities

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/dchain-dev/dchain/chain"
	"github.com/dchain-dev/dchain/workflows"
)

// ImageScanner scans one platform of an image in a registry. Package
// scanner implements it with Trivy; it is an interface so that this
// package's tests do not link Trivy.
type ImageScanner interface {
	Scan(ctx context.Context, ref, platform string, auth authn.AuthConfig, tr http.RoundTripper, insecure bool) (ScanResult, error)
	// SBOM is a CycloneDX SBOM (JSON) of one platform of ref.
	SBOM(ctx context.Context, ref, platform string, auth authn.AuthConfig, tr http.RoundTripper, insecure bool) ([]byte, error)
	DB() workflows.ScanDB
}

// ScanResult is what the scan of one platform found, and what it could
// look at to find it.
type ScanResult struct {
	Findings  []chain.Finding
	Inventory workflows.ScanInventory
}

// Media types of the scan report artifact.
const (
	ScanReportArtifactType = "application/vnd.dchain.scan.report.v1+json"
	ScanReportLayerType    = "application/json"
)

// ScanImage scans every platform of the image with the worker's scanner,
// stores the full report as an OCI referrer of the image (subject = its
// digest), and returns a summary with the report's reference.
func (a *Activities) ScanImage(ctx context.Context, in workflows.ScanInput) (workflows.ScanSummary, error) {
	if a.Scanner == nil {
		return workflows.ScanSummary{}, temporal.NewNonRetryableApplicationError("this worker has no scanner configured", ErrRejected, nil)
	}
	ref, err := reference(in.Registry, in.Repository, in.Digest)
	if err != nil {
		return workflows.ScanSummary{}, err
	}
	opts, err := a.remoteOptions(ctx, in.Registry)
	if err != nil {
		return workflows.ScanSummary{}, err
	}
	what := fmt.Sprintf("scan %s in registry %s", ref, in.Registry.Name)
	desc, err := remote.Get(ref, opts...)
	if err != nil {
		return workflows.ScanSummary{}, registryError(ctx, what, err)
	}
	prev, prevRef, prevErr := a.latestReport(ctx, in.Registry, in.Repository, in.Digest)
	if prevErr == nil && prev != nil && workflows.SameDB(prev.DB, a.Scanner.DB()) && len(prev.Inventory) > 0 {
		// The same image against the same DB finds the same: the stored report is the result.
		sum := summarize(*prev, prevRef)
		sum.Reused, sum.New = true, nil
		return sum, nil
	}
	if err := refuseForeign(desc); err != nil {
		return workflows.ScanSummary{}, registryError(ctx, what, err)
	}
	platforms, err := scanPlatforms(desc)
	if err != nil {
		return workflows.ScanSummary{}, registryError(ctx, what, err)
	}
	auth, tr, err := a.scanAccess(ctx, in.Registry)
	if err != nil {
		return workflows.ScanSummary{}, err
	}
	report := workflows.ScanReport{Image: ref.String(), Digest: in.Digest, DB: a.Scanner.DB(), Findings: []chain.Finding{}}
	for i, p := range platforms {
		activity.RecordHeartbeat(ctx, fmt.Sprintf("scanning %s (%d/%d)", orDefault(p, "image"), i+1, len(platforms)))
		res, err := a.Scanner.Scan(ctx, ref.String(), p, auth, tr, in.Registry.Insecure)
		if err != nil {
			return workflows.ScanSummary{}, registryError(ctx, fmt.Sprintf("%s (%s)", what, orDefault(p, "image")), err)
		}
		report.Findings = append(report.Findings, res.Findings...)
		res.Inventory.Platform = p
		report.Inventory = append(report.Inventory, res.Inventory)
		if p != "" {
			report.Platforms = append(report.Platforms, p)
		}
	}
	report.Counts = chain.Scan{}.Evaluate(report.Findings, time.Now()).Counts
	report.ScannedAt = time.Now().UTC()
	// New: what no earlier report of this image had (everything, the first time).
	if prevErr == nil {
		var before []chain.Finding
		if prev != nil {
			before = prev.Findings
		}
		report.New = newIDs(before, report.Findings)
	}
	reportRef, err := a.pushReport(ctx, in.Registry, in.Repository, desc.Descriptor, report)
	if err != nil {
		return workflows.ScanSummary{}, registryError(ctx, "store the scan report of "+ref.String(), err)
	}
	return summarize(report, reportRef), nil
}

// scanPlatforms are the platforms to scan: each image of an index (one scan
// per distinct manifest digest), or "" for a single image.
func scanPlatforms(desc *remote.Descriptor) ([]string, error) {
	if !desc.MediaType.IsIndex() {
		return []string{""}, nil
	}
	images, err := platformImages(desc)
	var ps []string
	for _, c := range images {
		ps = append(ps, c.Platform.String())
	}
	return ps, err
}

// platformImages are the images of an index, one per distinct manifest
// digest, with their platform (BuildKit's attestation manifests, of
// platform unknown/unknown, left out).
func platformImages(desc *remote.Descriptor) ([]v1.Descriptor, error) {
	_, children, err := indexChildren(desc)
	if err != nil {
		return nil, err
	}
	seen := map[v1.Hash]bool{}
	var out []v1.Descriptor
	for _, c := range children {
		if !c.MediaType.IsImage() || c.Platform == nil || c.Platform.OS == "unknown" || seen[c.Digest] {
			continue
		}
		seen[c.Digest] = true
		out = append(out, c)
	}
	return out, nil
}

// summarize keeps the counts and the ten most severe findings.
func summarize(r workflows.ScanReport, reportRef string) workflows.ScanSummary {
	top := slices.Clone(r.Findings)
	chain.SortFindings(top)
	seen := map[string]bool{}
	top = slices.DeleteFunc(top, func(f chain.Finding) bool {
		k := f.ID + "\x00" + f.Package
		dup := seen[k]
		seen[k] = true
		return dup
	})
	total := 0
	for _, n := range r.Counts {
		total += n
	}
	return workflows.ScanSummary{Digest: r.Digest, Counts: r.Counts, Total: total, Top: top[:min(10, len(top))],
		Report: reportRef, DB: r.DB, ScannedAt: r.ScannedAt, New: r.New, Inventory: r.Inventory}
}

func newIDs(prev, cur []chain.Finding) []string {
	old := map[string]bool{}
	for _, f := range prev {
		old[f.ID] = true
	}
	var out []string
	for _, f := range cur {
		if !old[f.ID] && !slices.Contains(out, f.ID) {
			out = append(out, f.ID)
		}
	}
	return out
}

// pushReport stores the report as an artifact whose subject is the image.
func (a *Activities) pushReport(ctx context.Context, reg chain.Registry, repo string, subject v1.Descriptor, r workflows.ScanReport) (string, error) {
	body, err := json.Marshal(r)
	if err != nil {
		return "", err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.MediaType(ScanReportArtifactType))
	img, err = mutate.Append(img, mutate.Addendum{Layer: static.NewLayer(body, ScanReportLayerType),
		Annotations: map[string]string{"org.opencontainers.image.title": "scan-report.json"}})
	if err != nil {
		return "", err
	}
	img = mutate.Annotations(img, map[string]string{"org.opencontainers.image.created": r.ScannedAt.Format(time.RFC3339)}).(v1.Image)
	img = mutate.Subject(img, v1.Descriptor{MediaType: subject.MediaType, Digest: subject.Digest, Size: subject.Size}).(v1.Image)
	art, err := imageArtifact(img)
	if err != nil {
		return "", err
	}
	art.made = true
	ref, err := reference(reg, repo, subject.Digest.String())
	if err != nil {
		return "", err
	}
	opts, err := a.remoteOptions(ctx, reg)
	if err != nil {
		return "", err
	}
	d, err := a.attach(ctx, reg, ref.Context(), []artifact{art}, opts, nil)
	if err != nil {
		return "", err
	}
	return ref.Context().Digest(d[0].String()).String(), nil
}

// ScanReports lists the scan reports attached to an image, newest first.
func (a *Activities) ScanReports(ctx context.Context, reg chain.Registry, repo, digest string) ([]v1.Descriptor, error) {
	ref, err := reference(reg, repo, digest)
	if err != nil {
		return nil, err
	}
	opts, err := a.remoteOptions(ctx, reg)
	if err != nil {
		return nil, err
	}
	idx, err := remote.Referrers(ref.(name.Digest), append(opts, remote.WithFilter("artifactType", ScanReportArtifactType))...)
	if err != nil {
		return nil, err
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	ds := slices.Clone(m.Manifests)
	slices.SortStableFunc(ds, func(a, b v1.Descriptor) int {
		return strings.Compare(b.Annotations["org.opencontainers.image.created"], a.Annotations["org.opencontainers.image.created"])
	})
	return ds, nil
}

// ReadScanReport fetches a report stored by ScanImage.
func (a *Activities) ReadScanReport(ctx context.Context, reg chain.Registry, ref string) (workflows.ScanReport, error) {
	var r workflows.ScanReport
	b, err := a.readArtifact(ctx, reg, ref)
	if err != nil {
		return r, err
	}
	return r, json.Unmarshal(b, &r)
}

// latestReport is the newest report of the image (nil if none) and its reference.
func (a *Activities) latestReport(ctx context.Context, reg chain.Registry, repo, digest string) (*workflows.ScanReport, string, error) {
	ds, err := a.ScanReports(ctx, reg, repo, digest)
	if err != nil || len(ds) == 0 {
		return nil, "", err
	}
	ref := reg.Address + "/" + repo + "@" + ds[0].Digest.String()
	r, err := a.ReadScanReport(ctx, reg, ref)
	return &r, ref, err
}

// EvaluatePolicy applies the chain's blocking policy to a stored report.
func (a *Activities) EvaluatePolicy(ctx context.Context, in workflows.EvaluateInput) (chain.Decision, error) {
	r, err := a.ReadScanReport(ctx, in.Registry, in.Report)
	if err != nil {
		return chain.Decision{}, registryError(ctx, "read scan report "+in.Report, err)
	}
	return in.Policy.EvaluateReport(r.Findings, workflows.Unanalysed(r.Inventory), in.Now), nil
}

// ApplyBlockAction does what a triggered blocking policy says to the run's
// tags: nothing (block), delete them, or copy the image to the quarantine
// repository under the same tags and then delete them.
func (a *Activities) ApplyBlockAction(ctx context.Context, in workflows.BlockInput) (workflows.BlockResult, error) {
	var res workflows.BlockResult
	if in.Action == chain.ActionBackup {
		if _, err := a.ReplicateImage(ctx, workflows.ReplicateInput{
			Source: in.Registry, Destination: in.Registry, Repository: in.Repository, TargetRepository: in.BackupRepository,
			Tag: in.Tags[0], Tags: in.Tags[1:], Digest: in.Digest, Overwrite: true,
		}); err != nil {
			return res, err
		}
		// The scan reports go along (they are referrers, which the copy
		// takes with the image): they say why the image is in quarantine.
		for _, t := range in.Tags {
			res.BackedUp = append(res.BackedUp, in.BackupRepository+":"+t)
		}
	}
	if in.Action == chain.ActionDeleteTag || in.Action == chain.ActionBackup {
		opts, err := a.remoteOptions(ctx, in.Registry)
		if err != nil {
			return res, err
		}
		for _, t := range in.Tags {
			ref, err := reference(in.Registry, in.Repository, t)
			if err != nil {
				return res, err
			}
			if err := remote.Delete(ref, opts...); err != nil && !isNotFound(err) {
				return res, registryError(ctx, "delete blocked tag "+ref.String(), err)
			}
			res.Deleted = append(res.Deleted, in.Repository+":"+t)
		}
		for _, t := range in.Variants {
			ref, err := reference(in.Registry, in.Repository, t)
			if err != nil {
				return res, err
			}
			if !variantOf(ref, in.Digest, opts) {
				continue // none, or not this digest's
			}
			if err := remote.Delete(ref, opts...); err != nil && !isNotFound(err) {
				return res, registryError(ctx, "delete the blocked image's accelerated variant "+ref.String(), err)
			}
			res.Deleted = append(res.Deleted, in.Repository+":"+t)
		}
	}
	return res, nil
}

// variantOf says whether ref is an accelerated variant made from digest
// (by its annotation: enough to decide to delete it with its image).
func variantOf(ref name.Reference, digest string, opts []remote.Option) bool {
	d, err := remote.Get(ref, opts...)
	if err != nil {
		return false
	}
	var ann map[string]string
	if d.MediaType.IsIndex() {
		if m, err := v1.ParseIndexManifest(bytes.NewReader(d.Manifest)); err == nil {
			ann = m.Annotations
		}
	} else if m, err := v1.ParseManifest(bytes.NewReader(d.Manifest)); err == nil {
		ann = m.Annotations
	}
	return ann[AnnotationAcceleratedFrom] == digest
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// ListTags lists a repository's image tags: referrer tags (OCI 1.1
// fallback tags of signatures, SBOMs, scan reports) and tags that are not
// legal OCI tags in the registry's answer are left out.
func (a *Activities) ListTags(ctx context.Context, in workflows.ListTagsInput) ([]string, error) {
	opts, err := a.remoteOptions(ctx, in.Registry)
	if err != nil {
		return nil, err
	}
	nopts := registryNameOpts(in.Registry)
	repo, err := name.NewRepository(in.Registry.Address+"/"+in.Repository, nopts...)
	if err != nil {
		return nil, temporal.NewNonRetryableApplicationError(err.Error(), ErrInvalidReference, nil)
	}
	all, err := remote.List(repo, opts...)
	if err != nil {
		return nil, registryError(ctx, "list tags of "+repo.String(), err)
	}
	tags := []string{}
	for _, t := range all {
		if _, err := chain.ParseTag("tag", t); err == nil && !chain.IsReferrerTag(t) {
			tags = append(tags, t)
		}
	}
	return tags, nil
}
