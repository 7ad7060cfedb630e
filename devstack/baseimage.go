package devstack

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// BaseImage is the offline base image the dev stack seeds: busybox, for
// FROM lines that cannot reach a public registry here.
const BaseImage = "library/busybox:stable"

// busyboxApplets get a symlink in /bin of the base image.
var busyboxApplets = strings.Fields("sh ash ls cat cp mv rm mkdir echo env sed grep awk head tail wc sort uniq tr cut date sleep true false test chmod chown ln pwd uname id whoami find xargs tar gzip gunzip wget nc timeout sha256sum vi printf basename dirname touch du df ps kill")

// BusyboxBinaries finds static busybox binaries per platform: Debian's
// busybox-static for linux/amd64 and arm64/busybox below the tool
// directories (scripts/install-build-deps.sh) for linux/arm64.
func BusyboxBinaries() map[string]string {
	found := map[string]string{}
	for _, p := range []string{"/bin/busybox", "/usr/bin/busybox"} {
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			found["linux/amd64"] = p
			break
		}
	}
	if p, ok := findTool(filepath.Join("arm64", "busybox")); ok {
		found["linux/arm64"] = p
	}
	return found
}

// PushBusybox builds a multi-platform busybox image index from static
// binaries (platform → path) and pushes it to addr (plain HTTP) as ref.
func PushBusybox(ctx context.Context, addr, ref string, binaries map[string]string) (string, error) {
	if len(binaries) == 0 {
		return "", fmt.Errorf("no busybox binary found (install busybox-static, or run scripts/install-build-deps.sh)")
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, plat := range []string{"linux/amd64", "linux/arm64"} {
		path, ok := binaries[plat]
		if !ok {
			continue
		}
		bin, err := os.ReadFile(path)
		if err != nil {
			return "", err
		}
		entries := []*tar.Header{
			{Typeflag: tar.TypeDir, Name: "bin/", Mode: 0o755},
			{Typeflag: tar.TypeDir, Name: "etc/", Mode: 0o755},
			{Typeflag: tar.TypeDir, Name: "tmp/", Mode: 0o1777},
			{Typeflag: tar.TypeDir, Name: "root/", Mode: 0o700},
			{Typeflag: tar.TypeReg, Name: "bin/busybox", Mode: 0o755, Size: int64(len(bin))},
			{Typeflag: tar.TypeReg, Name: "etc/passwd", Mode: 0o644},
			{Typeflag: tar.TypeReg, Name: "etc/group", Mode: 0o644},
		}
		contents := map[string][]byte{
			"bin/busybox": bin,
			"etc/passwd":  []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"),
			"etc/group":   []byte("root:x:0:\nnogroup:x:65534:\n"),
		}
		for _, a := range busyboxApplets {
			entries = append(entries, &tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + a, Linkname: "busybox", Mode: 0o777})
		}
		layer, err := tarLayer(entries, contents)
		if err != nil {
			return "", err
		}
		img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), layer)
		if err != nil {
			return "", err
		}
		osName, arch, _ := strings.Cut(plat, "/")
		cf, err := img.ConfigFile()
		if err != nil {
			return "", err
		}
		cf = cf.DeepCopy()
		cf.OS, cf.Architecture = osName, arch
		cf.Config.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
		cf.Config.Cmd = []string{"sh"}
		if img, err = mutate.ConfigFile(img, cf); err != nil {
			return "", err
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: osName, Architecture: arch}}})
	}
	return pushIndex(ctx, addr+"/"+ref, idx)
}

// tarLayer is a layer of the given entries; regular files take their bytes from contents.
func tarLayer(entries []*tar.Header, contents map[string][]byte) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range entries {
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(contents[h.Name]))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(contents[h.Name]); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
}
