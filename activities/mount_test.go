package activities_test

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/dchain-dev/dchain/chain"
	"github.com/dchain-dev/dchain/devstack"
	"github.com/dchain-dev/dchain/workflows"
)

// A rename or promotion into a registry that already holds the image
// under the source's repository name (where the chain delivered it) sends
// no blob again: distribution mounts each one across repositories. Into a
// registry without it, the same copy uploads every blob.
func TestRenameMountsBlobsTheDestinationHolds(t *testing.T) {
	src, digest := sourceWithSample(t)
	for _, tc := range []struct {
		name      string
		delivered bool // the destination holds apps/web already
	}{{"holds it", true}, {"lacks it", false}} {
		t.Run(tc.name, func(t *testing.T) {
			reg := startRegistry(t, "dst")
			// Count the blob uploads the destination receives, and its mounts.
			var uploads, mounts atomic.Int64
			dstAddr := watched(t, reg.Addr, func(r *http.Request) {
				if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/blobs/uploads/") {
					if r.URL.Query().Get("mount") != "" {
						mounts.Add(1)
					}
				}
				if r.Method == http.MethodPatch || (r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/blobs/uploads/")) {
					uploads.Add(1)
				}
			})
			if tc.delivered {
				if _, err := devstack.PushSample(context.Background(), reg.Addr, "apps/web", "v1"); err != nil {
					t.Fatal(err)
				}
			}
			res := replicate(t, workflows.ReplicateInput{
				Source:      chain.Registry{Name: "src", Address: src.Addr, Insecure: true},
				Destination: chain.Registry{Name: "dst", Address: dstAddr, Insecure: true},
				Repository:  "apps/web", TargetRepository: "mirror/web", Tag: "v1", Digest: digest, SkipReferrers: true,
			})
			ref, _ := name.ParseReference(reg.Addr + "/mirror/web:v1")
			idx, err := remote.Index(ref)
			if err != nil {
				t.Fatal(err)
			}
			if err := validate.Index(idx); err != nil {
				t.Fatalf("mirror/web:v1 is not whole: %v", err)
			}
			t.Logf("%d blobs copied (%d bytes), %d skipped; %d mounts asked, %d uploads", res.BlobsCopied, res.BytesCopied, res.BlobsSkipped, mounts.Load(), uploads.Load())
			switch {
			case tc.delivered && (res.BlobsCopied != 0 || res.BytesCopied != 0 || uploads.Load() != 0 || mounts.Load() == 0):
				t.Errorf("the destination held every blob: %d blobs (%d bytes) copied, %d uploads, %d mounts", res.BlobsCopied, res.BytesCopied, uploads.Load(), mounts.Load())
			case !tc.delivered && (res.BlobsCopied == 0 || uploads.Load() == 0):
				t.Errorf("the destination held nothing, yet %d blobs were copied (%d uploads)", res.BlobsCopied, uploads.Load())
			}
		})
	}
}
