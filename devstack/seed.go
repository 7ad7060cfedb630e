package devstack

import (
	"context"
	"fmt"
	"time"

	"github.com/google/go-containerregistry/pkg/crane"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// SampleImage builds the demo image: an OCI index for linux/amd64 and
// linux/arm64, each image three layers (a base shared by both platforms, a
// platform layer, and an app layer that carries version). The same version
// always gives the same digest.
func SampleImage(version string) (v1.ImageIndex, error) {
	created := v1.Time{Time: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	base, err := crane.Layer(map[string][]byte{
		"etc/os-release": []byte("NAME=dchain-sample\nID=dchain\n"),
		"etc/passwd":     []byte("root:x:0:0:root:/root:/bin/sh\n"),
	})
	if err != nil {
		return nil, err
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, arch := range []string{"amd64", "arm64"} {
		plat, err := crane.Layer(map[string][]byte{"etc/dchain-arch": []byte(arch + "\n")})
		if err != nil {
			return nil, err
		}
		app, err := crane.Layer(map[string][]byte{"app/VERSION": []byte(version + "\n"), "app/README": []byte("dchain sample app " + version + " for " + arch + "\n"),
			// a dependency, like any app's: what the scan finds to analyse (no OS it knows is here)
			"app/node_modules/lodash/package.json": []byte(`{"name": "lodash", "version": "4.17.21", "license": "MIT"}` + "\n")})
		if err != nil {
			return nil, err
		}
		img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), base, plat, app)
		if err != nil {
			return nil, err
		}
		cf, err := img.ConfigFile()
		if err != nil {
			return nil, err
		}
		cf = cf.DeepCopy()
		cf.OS, cf.Architecture, cf.Created = "linux", arch, created
		cf.Config.Cmd = []string{"/bin/sh", "-c", "cat /app/README"}
		cf.Config.Labels = map[string]string{"org.opencontainers.image.version": version}
		if img, err = mutate.ConfigFile(img, cf); err != nil {
			return nil, err
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}}})
	}
	return idx, nil
}

// PushSample pushes SampleImage(tag) to registry addr (plain HTTP) as repo:tag
// and returns its digest.
func PushSample(ctx context.Context, addr, repo, tag string) (string, error) {
	idx, err := SampleImage(tag)
	if err != nil {
		return "", err
	}
	return pushIndex(ctx, addr+"/"+repo+":"+tag, idx)
}

// pushIndex pushes idx to ref on a plain-HTTP registry and returns its digest.
func pushIndex(ctx context.Context, ref string, idx v1.ImageIndex) (string, error) {
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return "", err
	}
	if err := remote.WriteIndex(r, idx, remote.WithContext(ctx)); err != nil {
		return "", fmt.Errorf("push %s: %w", r, err)
	}
	d, err := idx.Digest()
	return d.String(), err
}
