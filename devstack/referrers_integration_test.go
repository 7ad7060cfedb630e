package devstack

import (
	"context"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"go.temporal.io/sdk/testsuite"

	"github.com/dchain-dev/dchain/activities"
	"github.com/dchain-dev/dchain/chain"
	"github.com/dchain-dev/dchain/workflows"
)

// attach writes an artifact of artifactType whose subject is the manifest
// at repo@subject, the way signing and SBOM tools do, and returns its digest.
func attach(t *testing.T, repo name.Repository, subject, artifactType, content string) string {
	t.Helper()
	desc, err := remote.Head(repo.Digest(subject))
	if err != nil {
		t.Fatal(err)
	}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.MediaType(artifactType))
	img, err = mutate.Append(img, mutate.Addendum{Layer: static.NewLayer([]byte(content), "application/octet-stream")})
	if err != nil {
		t.Fatal(err)
	}
	img = mutate.Subject(img, v1.Descriptor{MediaType: desc.MediaType, Digest: desc.Digest, Size: desc.Size}).(v1.Image)
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(repo.Digest(d.String()), img); err != nil {
		t.Fatal(err)
	}
	return d.String()
}

// referrersOf lists the digests of what is attached to repo@digest.
func referrersOf(t *testing.T, repo name.Repository, digest string) []string {
	t.Helper()
	idx, err := remote.Referrers(repo.Digest(digest))
	if err != nil {
		t.Fatal(err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, d := range m.Manifests {
		out = append(out, d.Digest.String())
	}
	slices.Sort(out)
	return out
}

func repoIn(t *testing.T, addr, repo string) name.Repository {
	t.Helper()
	r, err := name.NewRepository(addr+"/"+repo, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// signedImage pushes the sample image to src with an SBOM and a signature
// attached, and a signature of the SBOM: it returns the image's digest, the
// SBOM's, the (sorted) digests of the image's referrers and of the SBOM's.
func signedImage(t *testing.T, repo, tag string) (digest, sbom string, direct, nested []string) {
	t.Helper()
	digest, err := PushSample(context.Background(), stack.Endpoints.Registries["src"], repo, tag)
	if err != nil {
		t.Fatal(err)
	}
	src := repoIn(t, stack.Endpoints.Registries["src"], repo)
	sbom = attach(t, src, digest, "application/spdx+json", `{"spdxVersion":"SPDX-2.3","name":"`+repo+`"}`)
	sig := attach(t, src, digest, "application/vnd.dev.cosign.artifact.sig.v1+json", "signature of the image")
	sbomSig := attach(t, src, sbom, "application/vnd.dev.cosign.artifact.sig.v1+json", "signature of the SBOM")
	direct = []string{sbom, sig}
	slices.Sort(direct)
	return digest, sbom, direct, []string{sbomSig}
}

// A replicated image arrives with everything attached to it, recursively
// and digest-identical: on a registry without the referrers API (CNCF
// distribution, tag-schema fallback) through a chain run, on one with the
// API through the replication activity; `referrers: false` leaves them.
func TestReferrersTravelWithTheImage(t *testing.T) {
	digest, sbom, direct, nested := signedImage(t, "refs/app", "v1")
	src := repoIn(t, stack.Endpoints.Registries["src"], "refs/app")
	if got := referrersOf(t, src, digest); !slices.Equal(got, direct) {
		t.Fatalf("source referrers %v, want %v", got, direct)
	}

	l, _ := testChain("it-referrers", "refs/app")
	off := false
	l.Chains[0].Replication = append(l.Chains[0].Replication, chain.ReplicationRule{Name: "to-ap", Destination: "ap", Level: chain.LevelNamespace, Referrers: &off})
	st := waitRun(t, startRun(t, l, "refs/app:v1").WorkflowID, time.Minute)
	if st.Outcome != workflows.OutcomeSucceeded {
		t.Fatalf("run: %s %s", st.Outcome, st.Message)
	}
	for _, reg := range []string{"eu", "us"} {
		dst := repoIn(t, stack.Endpoints.Registries[reg], "refs/app")
		if got := referrersOf(t, dst, digest); !slices.Equal(got, direct) {
			t.Errorf("%s: referrers of the image %v, want %v", reg, got, direct)
		}
		if got := referrersOf(t, dst, sbom); !slices.Equal(got, nested) {
			t.Errorf("%s: referrers of the SBOM %v, want %v", reg, got, nested)
		}
		for _, d := range append(direct, nested...) {
			if desc, err := remote.Head(dst.Digest(d)); err != nil || desc.Digest.String() != d {
				t.Errorf("%s: referrer %s: %v", reg, d, err)
			}
		}
	}
	for _, d := range st.Destinations {
		want := 3
		if d.Registry == "ap" {
			want = 0
		}
		if d.Referrers != want {
			t.Errorf("%s: %d referrers copied, want %d", d.Registry, d.Referrers, want)
		}
	}
	if got := referrersOf(t, repoIn(t, stack.Endpoints.Registries["ap"], "refs/app"), digest); len(got) != 0 {
		t.Errorf("ap (referrers: false) got referrers %v", got)
	}

	// A destination with the referrers API gets them through it: no fallback tag.
	withAPI := httptest.NewServer(ggcrregistry.New(ggcrregistry.WithReferrersSupport(true)))
	defer withAPI.Close()
	addr := strings.TrimPrefix(withAPI.URL, "http://")
	env := (&testsuite.WorkflowTestSuite{}).NewTestActivityEnvironment()
	env.RegisterActivity((&activities.Activities{}).ReplicateImage)
	srcReg, _ := testChainRegistry("src")
	val, err := env.ExecuteActivity(workflows.ActivityReplicateImage, workflows.ReplicateInput{
		Source: srcReg, Destination: chain.Registry{Name: "api", Address: addr, Insecure: true},
		Repository: "refs/app", Tag: "v1", Digest: digest,
	})
	if err != nil {
		t.Fatal(err)
	}
	var res workflows.ReplicateResult
	if err := val.Get(&res); err != nil || res.Referrers != 3 {
		t.Fatalf("replicate into a registry with the referrers API: %+v %v", res, err)
	}
	dst := repoIn(t, addr, "refs/app")
	if got := referrersOf(t, dst, digest); !slices.Equal(got, direct) {
		t.Errorf("API registry: referrers %v, want %v", got, direct)
	}
	if got := referrersOf(t, dst, sbom); !slices.Equal(got, nested) {
		t.Errorf("API registry: referrers of the SBOM %v, want %v", got, nested)
	}
	tags, err := remote.List(dst)
	if err != nil || slices.ContainsFunc(tags, chain.IsReferrerTag) {
		t.Errorf("API registry: tags %v (%v): the fallback scheme was used", tags, err)
	}
}

// Referrers of an index's platform manifests (`cosign sign --recursive`,
// per-platform SBOMs) travel with the index; a signature attached after
// delivery (push, then sign) reaches every destination with the next sync,
// which copies it although the image itself is already there.
func TestPlatformAndLateReferrersFollow(t *testing.T) {
	digest, err := PushSample(context.Background(), stack.Endpoints.Registries["src"], "late/app", "v1")
	if err != nil {
		t.Fatal(err)
	}
	src := repoIn(t, stack.Endpoints.Registries["src"], "late/app")
	desc, err := remote.Get(src.Digest(digest))
	if err != nil {
		t.Fatal(err)
	}
	idx, err := desc.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	amd64 := im.Manifests[0].Digest.String()
	platformSig := attach(t, src, amd64, "application/vnd.dev.cosign.artifact.sig.v1+json", "signature of amd64")

	l, _ := testChain("it-late", "late/app")
	if st := waitRun(t, startRun(t, l, "late/app:v1").WorkflowID, time.Minute); st.Outcome != workflows.OutcomeSucceeded {
		t.Fatalf("run: %s %s", st.Outcome, st.Message)
	}
	for _, reg := range []string{"eu", "us"} {
		if got := referrersOf(t, repoIn(t, stack.Endpoints.Registries[reg], "late/app"), amd64); !slices.Equal(got, []string{platformSig}) {
			t.Errorf("%s: referrers of the amd64 manifest %v, want %v", reg, got, []string{platformSig})
		}
	}

	late := attach(t, src, digest, "application/vnd.dev.cosign.artifact.sig.v1+json", "signed after delivery")
	res := syncOnce(t, l, false)
	if len(res.Copied) != 2 || !strings.Contains(res.Copied[0].Reason, "without 1 of its referrers") {
		t.Fatalf("sync: copied %s (%+v); skipped %s; failed %s", items(res.Copied), res.Copied, items(res.Skipped), items(res.Failed))
	}
	for _, reg := range []string{"eu", "us"} {
		if got := referrersOf(t, repoIn(t, stack.Endpoints.Registries[reg], "late/app"), digest); !slices.Contains(got, late) {
			t.Errorf("%s: referrers %v lack the late signature %s", reg, got, late)
		}
	}
	if res := syncOnce(t, l, false); len(res.Copied) != 0 {
		t.Fatalf("a second sync copies again: %s", items(res.Copied))
	}
}
