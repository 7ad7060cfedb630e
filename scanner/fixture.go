package scanner

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	_ "embed"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	tdb "github.com/aquasecurity/trivy-db/pkg/db"
	"github.com/aquasecurity/trivy-db/pkg/metadata"
	dbtypes "github.com/aquasecurity/trivy-db/pkg/types"
	"github.com/aquasecurity/trivy/pkg/db"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	bolt "go.etcd.io/bbolt"
	"gopkg.in/yaml.v3"
)

// Advisory is one vulnerability of a fixture DB.
type Advisory struct {
	ID       string `yaml:"id"`
	Severity string `yaml:"severity"`
	Title    string `yaml:"title"`
	// Ecosystem is "alpine 3.18" (an OS release) or "npm".
	Ecosystem string `yaml:"ecosystem"`
	Package   string `yaml:"package"`
	// FixedVersion (OS packages) or Vulnerable/Patched (language packages, ranges like "< 4.17.12").
	FixedVersion string `yaml:"fixedVersion"`
	Vulnerable   string `yaml:"vulnerable"`
	Patched      string `yaml:"patched"`
}

//go:embed demo-advisories.yaml
var demoAdvisories []byte

// DemoAdvisories are the advisories of the dev stack's demo DB (demo-advisories.yaml).
func DemoAdvisories() ([]Advisory, error) {
	var as []Advisory
	return as, yaml.Unmarshal(demoAdvisories, &as)
}

// DemoMarker is a file in a DB built by BuildDB: scans on it say their data is demo data.
const DemoMarker = "DCHAIN-DEMO-DB"

// dbLayerType is the media type of Trivy's DB layer.
const dbLayerType = "application/vnd.aquasec.trivy.db.layer.v1.tar+gzip"

var npmBucket = "npm::GitHub Security Advisory npm"

// BuildDB writes a Trivy DB (trivy.db + metadata.json, schema 2) holding the
// advisories into dir. It uses trivy-db's process-global handle: do not call
// it while this process scans.
func BuildDB(dir string, advisories []Advisory) error {
	dbMu.Lock()
	defer dbMu.Unlock()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	// trivy-db has one global handle: borrow it, and give the scanners theirs back.
	if prev := dbOpen; prev != "" {
		_ = tdb.Close()
		dbOpen = ""
		defer func() {
			if db.Init(prev) == nil {
				dbOpen = prev
			}
		}()
	}
	if err := tdb.Init(dir); err != nil {
		return fmt.Errorf("fixture DB: %w", err)
	}
	defer tdb.Close()
	dbc := tdb.Config{}
	err := dbc.BatchUpdate(func(tx *bolt.Tx) error {
		for _, a := range advisories {
			var bucket, source string
			var adv dbtypes.Advisory
			switch {
			case a.Ecosystem == "npm":
				bucket, source = npmBucket, "ghsa"
				adv = dbtypes.Advisory{VulnerableVersions: []string{a.Vulnerable}, PatchedVersions: nonEmpty(a.Patched)}
			case strings.Contains(a.Ecosystem, " "):
				bucket, source = a.Ecosystem, strings.Fields(a.Ecosystem)[0]
				adv = dbtypes.Advisory{FixedVersion: a.FixedVersion}
			default:
				return fmt.Errorf("advisory %s: ecosystem %q: want \"npm\" or \"<os> <release>\"", a.ID, a.Ecosystem)
			}
			if err := dbc.PutDataSource(tx, bucket, dbtypes.DataSource{ID: dbtypes.SourceID(source), Name: bucket}); err != nil {
				return err
			}
			if err := dbc.PutAdvisoryDetail(tx, a.ID, a.Package, []string{bucket}, adv); err != nil {
				return err
			}
			sev, err := dbtypes.NewSeverity(strings.ToUpper(a.Severity))
			if err != nil {
				return fmt.Errorf("advisory %s: %w", a.ID, err)
			}
			vuln := dbtypes.Vulnerability{Title: a.Title, Severity: sev.String(),
				VendorSeverity: dbtypes.VendorSeverity{dbtypes.SourceID(source): sev, "nvd": sev}}
			if err := dbc.PutVulnerability(tx, a.ID, vuln); err != nil {
				return err
			}
			if err := dbc.SaveAdvisoryDetails(tx, a.ID); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("fixture DB: %w", err)
	}
	if err := dbc.DeleteAdvisoryDetailBucket(); err != nil {
		return err
	}
	now := time.Now().UTC()
	if err := metadata.NewClient(dir).Update(metadata.Metadata{Version: tdb.SchemaVersion, UpdatedAt: now, NextUpdate: now.AddDate(10, 0, 0)}); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, DemoMarker), []byte("built by dchain from fixture advisories: demo data, not a real vulnerability feed\n"), 0o644)
}

func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}

// PushDB packs the DB in dir as Trivy's OCI artifact (one tar+gzip layer
// titled db.tar.gz) and pushes it to ref, so scanners download it the way
// they download the public DB.
func PushDB(ctx context.Context, dir, ref string, insecure bool) error {
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, f := range []string{"trivy.db", "metadata.json", DemoMarker} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Name: f, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		if _, err := io.Copy(tw, bytes.NewReader(b)); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := gz.Close(); err != nil {
		return err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, "application/vnd.aquasec.trivy.config.v1+json")
	img, err := mutate.Append(img, mutate.Addendum{
		Layer:       static.NewLayer(buf.Bytes(), dbLayerType),
		Annotations: map[string]string{"org.opencontainers.image.title": "db.tar.gz"},
	})
	if err != nil {
		return err
	}
	var opts []name.Option
	if insecure {
		opts = append(opts, name.Insecure)
	}
	r, err := name.ParseReference(ref, opts...)
	if err != nil {
		return err
	}
	return remote.Write(r, img, remote.WithContext(ctx))
}
