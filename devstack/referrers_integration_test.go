package devstack

import (
	"context"
	"net/http"
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
// delivery (push, then sign) reaches every destination that has the image,
// from the registry's notification of the referrer tag, or else with the
// next sync, which copies it although the image itself is already there.
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

	// Signed after delivery: the registry's notification of the referrer
	// tag starts a run that follows it to every destination that has the
	// image; the same notification again starts nothing new.
	signed := attach(t, src, digest, "application/vnd.dev.cosign.artifact.sig.v1+json", "signed after delivery")
	fallback := "sha256-" + strings.TrimPrefix(digest, "sha256:")
	fb, err := remote.Head(src.Tag(fallback))
	if err != nil {
		t.Fatal(err)
	}
	srv, _ := apiServer(t, l, stack.Client)
	ev := distributionEvent("late/app", fallback, fb.Digest.String())
	code, ans, body := deliver(t, srv.URL, "registry", "distribution", "hook-secret", ev)
	if code != http.StatusAccepted || len(ans.Runs) != 1 {
		t.Fatalf("notification of a referrer tag: %d %s", code, body)
	}
	follow := waitRun(t, ans.Runs[0].WorkflowID, time.Minute)
	if follow.Outcome != workflows.OutcomeSucceeded || len(follow.Destinations) != 2 {
		t.Fatalf("following the referrers: %s %s %+v", follow.Outcome, follow.Message, follow.Destinations)
	}
	for _, d := range follow.Destinations {
		if d.State != workflows.StateSucceeded || d.Referrers == 0 {
			t.Errorf("%s: %s %s", d.Registry, d.State, d.Message)
		}
		if got := referrersOf(t, repoIn(t, stack.Endpoints.Registries[d.Registry], "late/app"), digest); !slices.Contains(got, signed) {
			t.Errorf("%s: referrers %v lack the signature made after delivery %s", d.Registry, got, signed)
		}
	}
	if code, again, _ := deliver(t, srv.URL, "registry", "distribution", "hook-secret", ev); code != http.StatusOK || !again.Runs[0].Existing {
		t.Errorf("the same notification again: %d %+v", code, again)
	}

	// cosign's tag scheme (its default before OCI 1.1): a manifest without
	// a subject under "sha256-<hex>.sig" follows the image too.
	sigTag := fallback + ".sig"
	sig, err := mutate.Append(mutate.MediaType(empty.Image, types.OCIManifestSchema1), mutate.Addendum{
		Layer: static.NewLayer([]byte(`{"critical":{"image":{"docker-manifest-digest":"`+digest+`"}}}`), "application/vnd.dev.cosign.simplesigning.v1+json")})
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(src.Tag(sigTag), sig); err != nil {
		t.Fatal(err)
	}
	sigDigest, _ := sig.Digest()
	_, ans, body = deliver(t, srv.URL, "registry", "distribution", "hook-secret", distributionEvent("late/app", sigTag, sigDigest.String()))
	if len(ans.Runs) != 1 {
		t.Fatalf("notification of a cosign .sig tag: %s", body)
	}
	if st := waitRun(t, ans.Runs[0].WorkflowID, time.Minute); st.Outcome != workflows.OutcomeSucceeded {
		t.Fatalf("following the .sig tag: %s %s", st.Outcome, st.Message)
	}
	for _, reg := range []string{"eu", "us"} {
		if got, err := remote.Head(repoIn(t, stack.Endpoints.Registries[reg], "late/app").Tag(sigTag)); err != nil || got.Digest != sigDigest {
			t.Errorf("%s: %s is %v (%v), want %s", reg, sigTag, got, err, sigDigest)
		}
	}
	// An image no destination has yet: nothing to follow, said so.
	other, err := PushSample(context.Background(), stack.Endpoints.Registries["src"], "late/app", "v2")
	if err != nil {
		t.Fatal(err)
	}
	attach(t, src, other, "application/vnd.dev.cosign.artifact.sig.v1+json", "signed before delivery")
	otherTag := "sha256-" + strings.TrimPrefix(other, "sha256:")
	ofb, err := remote.Head(src.Tag(otherTag))
	if err != nil {
		t.Fatal(err)
	}
	if _, ans, body := deliver(t, srv.URL, "registry", "distribution", "hook-secret", distributionEvent("late/app", otherTag, ofb.Digest.String())); len(ans.Runs) != 1 {
		t.Fatalf("notification for an undelivered image: %s", body)
	} else if st := waitRun(t, ans.Runs[0].WorkflowID, time.Minute); st.Outcome != workflows.OutcomeSucceeded || st.Stage(workflows.StageReplicate).State != workflows.StateSkipped {
		t.Errorf("undelivered image: %s %s %+v", st.Outcome, st.Message, st.Stages)
	}

	// Without a notification (none configured, or lost), the next sync
	// copies what a destination lacks although the image is there.
	late := attach(t, src, digest, "application/spdx+json", `{"spdxVersion":"SPDX-2.3","name":"late"}`)
	res := syncOnce(t, l, false)
	v1Copies := 0
	for _, it := range res.Copied {
		if it.Tag == "v1" {
			v1Copies++
			if !strings.Contains(it.Reason, "without 1 of its referrers") {
				t.Errorf("sync copied %s:%s → %s saying %q", it.Repository, it.Tag, it.Destination, it.Reason)
			}
		}
	}
	if v1Copies != 2 || len(res.Failed) != 0 {
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
