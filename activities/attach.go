package activities

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"go.temporal.io/sdk/temporal"
	"golang.org/x/sync/errgroup"

	"github.com/dchain-dev/dchain/chain"
)

// artifact is a manifest that names a subject (a signature, an
// attestation, a scan report: OCI 1.1 referrers) and the blobs it names,
// to be attached to its subject.
type artifact struct {
	raw       []byte
	mediaType types.MediaType
	blobs     []v1.Layer
	// made: dchain made it just now (it holds a time and a signature
	// of now), so no registry holds it yet.
	made bool
}

// imageArtifact is img, an image manifest that names a subject, as an
// artifact: its bytes as they are, its config and its layers.
func imageArtifact(img v1.Image) (artifact, error) {
	raw, err := img.RawManifest()
	if err != nil {
		return artifact{}, err
	}
	mt, err := img.MediaType()
	if err != nil {
		return artifact{}, err
	}
	cfg, err := partial.ConfigLayer(img)
	if err != nil {
		return artifact{}, err
	}
	layers, err := img.Layers()
	if err != nil {
		return artifact{}, err
	}
	return artifact{raw: raw, mediaType: mt, blobs: append([]v1.Layer{cfg}, layers...)}, nil
}

// subject is what art names as its subject (nil: nothing, or its
// manifest does not parse).
func (art artifact) subject() *v1.Descriptor {
	var h referrerHead
	if json.Unmarshal(art.raw, &h) != nil {
		return nil
	}
	return h.Subject
}

// referrerJobs is how many blobs, and then manifests, of attached
// artifacts are written at once.
const referrerJobs = 4

// attach writes arts into repo of reg (those it holds already are left as
// they are) and makes each listed as a referrer of its subject: the
// registry does that itself where it serves the OCI referrers API (it
// answers the manifest's PUT with OCI-Subject, or its referrers
// endpoint); elsewhere each subject's sha256-<hex> tag of the OCI tag
// schema lists them, read and written once for all of arts.
// go-containerregistry would write one artifact at a time, with a read
// and a write of that tag after each, and two of its writers at once
// race: one's entry is lost. Attachments are a handful of small writes,
// so the round trips are what they cost. The manifests are written once
// ready (when not nil) says so (their subject is there); it returns the
// digest of each.
func (a *Activities) attach(ctx context.Context, reg chain.Registry, repo name.Repository, arts []artifact, opts []remote.Option, ready func() error) ([]v1.Hash, error) {
	client, err := a.registryClient(ctx, reg, repo, transport.PushScope)
	if err != nil {
		return nil, err
	}
	heads := make([]referrerHead, len(arts))
	digests := make([]v1.Hash, len(arts))
	have := make([]bool, len(arts))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(referrerJobs)
	o := append(slices.Clip(opts), remote.WithContext(gctx))
	for i, art := range arts {
		g.Go(func() error {
			if err := json.Unmarshal(art.raw, &heads[i]); err != nil || heads[i].Subject == nil {
				return temporal.NewNonRetryableApplicationError(fmt.Sprintf("an attachment's manifest names no subject (%v)", err), ErrRejected, nil)
			}
			d, _, err := v1.SHA256(bytes.NewReader(art.raw))
			if err != nil {
				return err
			}
			digests[i] = d
			if art.made {
				return nil
			}
			_, err = remote.Head(repo.Digest(d.String()), o...)
			if have[i] = err == nil; err != nil && !isNotFound(err) {
				return err
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	// The blobs first, each once (signatures share their empty config).
	blobs := map[v1.Hash]v1.Layer{}
	for i, art := range arts {
		for _, b := range art.blobs {
			if d, err := b.Digest(); err != nil {
				return nil, err
			} else if !have[i] {
				blobs[d] = b
			}
		}
	}
	g, gctx = errgroup.WithContext(ctx)
	g.SetLimit(referrerJobs)
	o = append(slices.Clip(opts), remote.WithContext(gctx))
	for _, b := range blobs {
		g.Go(func() error { return remote.WriteLayer(repo, b, o...) })
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if ready != nil {
		if err := ready(); err != nil {
			return nil, err
		}
	}
	var noted, unnoted atomic.Bool
	g, gctx = errgroup.WithContext(ctx)
	g.SetLimit(referrerJobs)
	for i, art := range arts {
		if have[i] {
			unnoted.Store(true) // listed? the registry or the tag says
			continue
		}
		g.Go(func() error {
			ok, err := putManifest(gctx, client, repo.Digest(digests[i].String()), art)
			if ok {
				noted.Store(true)
			} else {
				unnoted.Store(true)
			}
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if !unnoted.Load() || noted.Load() {
		return digests, nil
	}
	if api, err := referrersAPI(ctx, client, repo, heads[0].Subject.Digest); err != nil || api {
		return digests, err
	}
	bySubject := map[v1.Hash][]v1.Descriptor{}
	for i, h := range heads {
		bySubject[h.Subject.Digest] = append(bySubject[h.Subject.Digest], h.descriptor(arts[i], digests[i]))
	}
	for subject, descs := range bySubject {
		if err := a.listInFallbackTag(ctx, repo, subject, descs, opts); err != nil {
			return nil, err
		}
	}
	return digests, nil
}

// referrerHead is what of an attached manifest its listing names.
type referrerHead struct {
	MediaType    types.MediaType `json:"mediaType"`
	ArtifactType string          `json:"artifactType"`
	Config       struct {
		MediaType string `json:"mediaType"`
	} `json:"config"`
	Annotations map[string]string `json:"annotations"`
	Subject     *v1.Descriptor    `json:"subject"`
}

// descriptor is art's entry in a referrers list: its artifactType (or,
// before OCI 1.1 had one, its config's media type) and annotations.
func (h referrerHead) descriptor(art artifact, d v1.Hash) v1.Descriptor {
	at := h.ArtifactType
	if at == "" {
		at = h.Config.MediaType
	}
	return v1.Descriptor{MediaType: art.mediaType, Digest: d, Size: int64(len(art.raw)), ArtifactType: at, Annotations: h.Annotations}
}

// putManifest writes art's manifest at d and says whether the registry
// took note of its subject (OCI-Subject: it lists referrers itself).
func putManifest(ctx context.Context, client *http.Client, d name.Digest, art artifact) (bool, error) {
	resp, err := apiRequest(ctx, client, d.Context(), http.MethodPut, "manifests/"+d.DigestStr(), art.raw,
		"Content-Type", string(art.mediaType), http.StatusOK, http.StatusCreated, http.StatusAccepted)
	return err == nil && resp.Header.Get("OCI-Subject") != "", err
}

// referrersAPI says whether repo's registry serves the OCI referrers API
// (its answer for subject is an OCI index).
func referrersAPI(ctx context.Context, client *http.Client, repo name.Repository, subject v1.Hash) (bool, error) {
	resp, err := apiRequest(ctx, client, repo, http.MethodGet, "referrers/"+subject.String(), nil,
		"Accept", string(types.OCIImageIndex), http.StatusOK, http.StatusNotFound, http.StatusBadRequest, http.StatusNotAcceptable)
	return err == nil && resp.StatusCode == http.StatusOK && strings.HasPrefix(resp.Header.Get("Content-Type"), string(types.OCIImageIndex)), err
}

// apiRequest sends one request to repo's path in the registry API (with
// one header) and returns its answer, the body read and closed; an answer
// not in ok is a *transport.Error.
func apiRequest(ctx context.Context, client *http.Client, repo name.Repository, method, path string, body []byte, key, value string, ok ...int) (*http.Response, error) {
	u := url.URL{Scheme: repo.Scheme(), Host: repo.RegistryStr(), Path: "/v2/" + repo.RepositoryStr() + "/" + path}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set(key, value)
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if err := transport.CheckError(resp, ok...); err != nil {
		return nil, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	return resp, nil
}

// fallbackWrites bounds how often listInFallbackTag writes the tag while
// other writers keep changing it.
const fallbackWrites = 5

// listInFallbackTag adds descs to the index at subject's sha256-<hex> tag
// (the OCI referrers tag schema) where it lacks them. It reads the index
// again after writing it: a writer elsewhere that replaced it in between
// (the schema has no conditional write) is merged with again; one that
// read the index before this write and writes it after this read still
// drops these entries (nothing in the schema can stop it). This worker's
// writers of one tag take turns.
func (a *Activities) listInFallbackTag(ctx context.Context, repo name.Repository, subject v1.Hash, descs []v1.Descriptor, opts []remote.Option) error {
	tag := repo.Tag(strings.Replace(subject.String(), ":", "-", 1))
	h := fnv.New32a()
	_, _ = h.Write([]byte(tag.String()))
	mu := &a.fallbackLocks[h.Sum32()%uint32(len(a.fallbackLocks))]
	mu.Lock()
	defer mu.Unlock()
	opts = append(slices.Clip(opts), remote.WithContext(ctx))
	for writes := 0; ; writes++ {
		var raw []byte
		desc, err := remote.Get(tag, opts...)
		switch {
		case isNotFound(err):
		case err != nil:
			return err
		case desc.MediaType != types.OCIImageIndex:
			return temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s is a %s, not the OCI index of the referrers tag schema; it was left as it is", tag, desc.MediaType), ErrRejected, nil)
		default:
			raw = desc.Manifest
		}
		im, added, err := mergeListing(raw, descs)
		switch {
		case err != nil:
			return temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s, the referrers tag's index, does not parse (%v); it was left as it is", tag, err), ErrRejected, nil)
		case !added:
			return nil
		case writes == fallbackWrites:
			return fmt.Errorf("%s: other writers kept replacing the referrers tag's index (%d writes)", tag, writes)
		}
		if err := remote.Put(tag, fallbackIndex{im}, opts...); err != nil {
			return err
		}
	}
}

// mergeListing is a referrers tag's index (raw, as a registry holds it;
// nil: there is none yet) with descs added where it lacks their digests,
// sorted by digest; added says whether any was.
func mergeListing(raw []byte, descs []v1.Descriptor) (v1.IndexManifest, bool, error) {
	im := v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex}
	if raw != nil {
		got, err := v1.ParseIndexManifest(bytes.NewReader(raw))
		if err != nil {
			return im, false, err
		}
		im = *got
		im.SchemaVersion, im.MediaType = 2, types.OCIImageIndex
		for _, l := range im.Manifests {
			if l.Digest.Algorithm == "" || l.Digest.Hex == "" {
				return im, false, errors.New("an entry names no digest")
			}
		}
	}
	n := len(im.Manifests)
	for _, d := range descs {
		if !slices.ContainsFunc(im.Manifests, func(l v1.Descriptor) bool { return l.Digest == d.Digest }) {
			im.Manifests = append(im.Manifests, d)
		}
	}
	if len(im.Manifests) == n {
		return im, false, nil
	}
	slices.SortFunc(im.Manifests, func(x, y v1.Descriptor) int { return strings.Compare(x.Digest.String(), y.Digest.String()) })
	return im, true, nil
}

// fallbackIndex is a referrers tag's index, to be written.
type fallbackIndex struct{ im v1.IndexManifest }

func (f fallbackIndex) RawManifest() ([]byte, error)        { return json.Marshal(f.im) }
func (f fallbackIndex) MediaType() (types.MediaType, error) { return types.OCIImageIndex, nil }

// registryClient is an HTTP client for repo of reg, signed in (as
// go-containerregistry's requests are) for scope.
func (a *Activities) registryClient(ctx context.Context, reg chain.Registry, repo name.Repository, scope string) (*http.Client, error) {
	auth, tr, err := a.signIn(reg)
	if err != nil {
		return nil, err
	}
	rt, err := transport.NewWithContext(ctx, repo.Registry, auth, tr, []string{repo.Scope(scope)})
	if err != nil {
		return nil, err
	}
	return &http.Client{Transport: rt, Timeout: time.Minute}, nil
}
