package devstack

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// BenchmarkScanDebian scans a Debian rootfs (bookworm, debootstrap
// minbase: $DCHAIN_BENCH_ROOTFS) pushed as a one-layer image, with dchain
// (`dchain scan -o json`, what a user runs: a process that starts the
// ScanImage workflow — resolve, Trivy as a library, the report stored as a
// referrer — waits for it and prints the report) and with the trivy CLI
// ($DCHAIN_BENCH_TRIVY, built at the Trivy version dchain links) on the same
// DB and registry. "first": a layer neither tool has seen (a new file makes
// each iteration's layer new); "again": the same digest a second time —
// dchain reuses its stored report, the CLI reads its layer cache and
// detects again.
func BenchmarkScanDebian(b *testing.B) {
	rootfs, trivy := peerEnv(b, "DCHAIN_BENCH_ROOTFS"), peerEnv(b, "DCHAIN_BENCH_TRIVY")
	cache := b.TempDir() // the CLI's own layer cache, on the stack's DB
	if err := os.Symlink(filepath.Join(stack.Endpoints.DataDir, "trivy", "cache", "db"), filepath.Join(cache, "db")); err != nil {
		b.Fatal(err)
	}
	n := 0
	fresh := func(b *testing.B) (repo, digest string) {
		n++
		repo = fmt.Sprintf("benchscan/debian%d-%d", n, time.Now().UnixNano())
		return repo, pushRootfs(b, rootfs, repo)
	}
	scans := map[string]func(b *testing.B, repo, digest string){
		"dchain": dchainScan,
		"trivy": func(b *testing.B, repo, digest string) {
			ref := stack.Endpoints.Registries["src"] + "/" + repo + "@" + digest
			cmd := exec.Command(trivy, "image", "--quiet", "--cache-dir", cache, "--skip-db-update", "--skip-java-db-update",
				"--skip-version-check", "--disable-telemetry", "--offline-scan", "--scanners", "vuln", "--pkg-types", "os,library",
				"--image-src", "remote", "--insecure", "--format", "json", "--output", os.DevNull, "--", ref)
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("trivy: %v\n%s", err, out)
			}
		},
	}
	var tools []tool
	for _, name := range []string{"dchain", "trivy"} {
		scan := scans[name]
		tools = append(tools, tool{name + "/first", func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				repo, digest := fresh(b)
				b.StartTimer()
				scan(b, repo, digest)
			}
		}})
	}
	runInTurn(b, tools)
	tools = nil
	for _, name := range []string{"dchain", "trivy"} {
		scan := scans[name]
		tools = append(tools, tool{name + "/again", func(b *testing.B) {
			repo, digest := fresh(b)
			scan(b, repo, digest)
			for b.Loop() {
				scan(b, repo, digest)
			}
		}})
	}
	runInTurn(b, tools)
}

// dchainScan scans repo's tag v1 as a user does, `dchain scan … -o json`
// (a process that starts the ScanImage workflow, waits for it and reads its
// full report, as the trivy CLI writes its JSON report).
func dchainScan(b *testing.B, repo, digest string) {
	if out := dchainCLI(b, "scan", repo+":v1", "--registry", "src", "-o", "json"); !strings.Contains(out, digest) {
		b.Fatalf("the report of %s does not name its digest %s:\n%.500s", repo, digest, out)
	}
}

// pushRootfs pushes dir as one uncompressed layer (plus a file that makes
// the layer new) to the source registry as repo:v1 and returns the digest.
func pushRootfs(b *testing.B, dir, repo string) string {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		case !info.Mode().IsRegular() && !info.IsDir():
			return nil // device nodes, sockets: not part of an image
		}
		h, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		h.Name = filepath.ToSlash(rel)
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = io.Copy(tw, f)
			return err
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	stamp := []byte(fmt.Sprintf("%s %d\n", repo, time.Now().UnixNano()))
	if err := tw.WriteHeader(&tar.Header{Name: "etc/dchain-bench", Mode: 0o644, Size: int64(len(stamp)), Typeflag: tar.TypeReg}); err != nil {
		b.Fatal(err)
	}
	if _, err := tw.Write(stamp); err != nil || tw.Close() != nil {
		b.Fatal(err)
	}
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), static.NewLayer(buf.Bytes(), types.OCIUncompressedLayer))
	if err != nil {
		b.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		b.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		b.Fatal(err)
	}
	ref, err := name.ParseReference(stack.Endpoints.Registries["src"]+"/"+repo+":v1", name.Insecure)
	if err != nil {
		b.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		b.Fatal(err)
	}
	d, _ := img.Digest()
	return d.String()
}

// peerEnv is the peer tool or input $env names (`make bench-peers` sets them).
func peerEnv(b *testing.B, env string) string {
	v := os.Getenv(env)
	if v == "" {
		b.Fatalf("$%s is not set: `make bench-peers` builds the peers and runs the side-by-side benchmarks with them", env)
	}
	return v
}
