package scanner

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"

	tdb "github.com/aquasecurity/trivy-db/pkg/db"
	"github.com/aquasecurity/trivy-db/pkg/metadata"
	dbtypes "github.com/aquasecurity/trivy-db/pkg/types"
	"github.com/aquasecurity/trivy/pkg/cache"
	"github.com/aquasecurity/trivy/pkg/db"
	// Analyzers register themselves when imported: OS release files, OS
	// package DBs (apk, dpkg, rpm), language packages (node_modules, …).
	"github.com/aquasecurity/trivy/pkg/fanal/analyzer"
	_ "github.com/aquasecurity/trivy/pkg/fanal/analyzer/all"
	"github.com/aquasecurity/trivy/pkg/fanal/applier"
	"github.com/aquasecurity/trivy/pkg/fanal/artifact"
	aimage "github.com/aquasecurity/trivy/pkg/fanal/artifact/image"
	fimage "github.com/aquasecurity/trivy/pkg/fanal/image"
	ftypes "github.com/aquasecurity/trivy/pkg/fanal/types"
	cdxreport "github.com/aquasecurity/trivy/pkg/report/cyclonedx"
	"github.com/aquasecurity/trivy/pkg/rpc/client"
	"github.com/aquasecurity/trivy/pkg/scan"
	"github.com/aquasecurity/trivy/pkg/scan/langpkg"
	"github.com/aquasecurity/trivy/pkg/scan/local"
	"github.com/aquasecurity/trivy/pkg/scan/ospkg"
	"github.com/aquasecurity/trivy/pkg/types"
	"github.com/aquasecurity/trivy/pkg/vulnerability"
	xhttp "github.com/aquasecurity/trivy/pkg/x/http"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/dchain-dev/dchain/activities"
	"github.com/dchain-dev/dchain/chain"
	"github.com/dchain-dev/dchain/workflows"
)

// DefaultDBRepository is Trivy's public vulnerability DB.
const DefaultDBRepository = "mirror.gcr.io/aquasec/trivy-db:2"

// Options configure a Scanner.
type Options struct {
	// CacheDir holds the DB (CacheDir/db) and Trivy's layer cache (CacheDir/fanal).
	CacheDir string
	// DBRepository is the OCI reference of the DB (default DefaultDBRepository).
	DBRepository string
	// InsecureDB allows a plain-HTTP DB registry (the dev stack's).
	InsecureDB bool
	// Offline never downloads the DB: the one in CacheDir/db must exist.
	Offline bool
	// ServerAddr, when set, scans through a `trivy server` (client/server
	// mode): no local DB is needed.
	ServerAddr string
}

// dbMu guards trivy-db's process-global handle: scans hold it for reading,
// opening, swapping and building a DB hold it for writing.
var dbMu sync.RWMutex

// dbOpen is the directory whose DB the global handle holds ("" when closed).
var dbOpen string

// Scanner scans images with Trivy.
type Scanner struct {
	opts Options
	// cache feeds the artifact (layer analysis); local applies layers for local scans.
	cache cache.ArtifactCache
	local cache.LocalArtifactCache
	info  workflows.ScanDB
	mu    sync.Mutex // serialises Update
}

// New prepares a scanner: downloads the DB when it is missing or stale
// (unless Offline), opens it, and opens the layer cache.
func New(ctx context.Context, o Options) (*Scanner, error) {
	if o.DBRepository == "" {
		o.DBRepository = DefaultDBRepository
	}
	if o.CacheDir == "" {
		d, err := os.UserCacheDir()
		if err != nil {
			return nil, err
		}
		o.CacheDir = filepath.Join(d, "dchain", "trivy")
	}
	s := &Scanner{opts: o}
	if o.ServerAddr != "" {
		s.cache = cache.NewRemoteCache(ctx, cache.RemoteOptions{ServerAddr: o.ServerAddr})
		s.info = workflows.ScanDB{Server: o.ServerAddr}
		return s, nil
	}
	fs, err := cache.NewFSCache(filepath.Join(o.CacheDir, "fanal"))
	if err != nil {
		return nil, fmt.Errorf("trivy layer cache: %w", err)
	}
	s.cache, s.local = fs, fs
	if err := s.Update(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// DB describes the DB in use.
func (s *Scanner) DB() workflows.ScanDB {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.info
}

// Update downloads the DB if it is missing or past its next-update time, and
// swaps it in while no scan holds it; scans running meanwhile finish first.
func (s *Scanner) Update(ctx context.Context) error {
	if s.opts.ServerAddr != "" {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	dir := db.Dir(s.opts.CacheDir)
	ref, err := name.ParseReference(s.opts.DBRepository, dbNameOpts(s.opts.InsecureDB)...)
	if err != nil {
		return fmt.Errorf("DB repository %q: %w", s.opts.DBRepository, err)
	}
	c := db.NewClient(dir, true, db.WithDBRepository([]name.Reference{ref}))
	needs, err := c.NeedsUpdate(ctx, "dchain", s.opts.Offline)
	if err != nil {
		return fmt.Errorf("vulnerability DB in %s: %w", dir, err)
	}
	if needs {
		// Download beside the DB in use, then swap under the write lock.
		tmp := dir + ".new"
		os.RemoveAll(tmp)
		if err := c.Download(ctx, tmp, ftypes.RegistryOptions{Insecure: s.opts.InsecureDB}); err != nil {
			os.RemoveAll(tmp)
			return fmt.Errorf("download vulnerability DB from %s: %w", s.opts.DBRepository, err)
		}
		dbMu.Lock()
		err := swapDir(tmp, dir)
		dbOpen = ""
		dbMu.Unlock()
		if err != nil {
			return err
		}
	}
	if err := openDB(dir); err != nil {
		return err
	}
	meta, _ := metadata.NewClient(dir).Get()
	_, demoErr := os.Stat(filepath.Join(dir, DemoMarker))
	s.info = workflows.ScanDB{Repository: s.opts.DBRepository, UpdatedAt: meta.UpdatedAt, DownloadedAt: meta.DownloadedAt, Demo: demoErr == nil}
	if s.opts.Offline {
		// Never downloaded here: where it came from is not the repository
		// this worker would have used.
		s.info.Repository, s.info.Offline = "", dir
	}
	return nil
}

// openDB opens dir's DB as trivy-db's global handle, unless it is open already.
func openDB(dir string) error {
	dbMu.Lock()
	defer dbMu.Unlock()
	if dbOpen == dir {
		return nil
	}
	if dbOpen != "" {
		_ = tdb.Close()
	}
	if err := db.Init(dir); err != nil {
		dbOpen = ""
		return fmt.Errorf("open vulnerability DB in %s: %w", dir, err)
	}
	dbOpen = dir
	return nil
}

// swapDir replaces dst with src; the global handle must be closed or held.
func swapDir(src, dst string) error {
	if dbOpen != "" {
		_ = tdb.Close()
	}
	old := dst + ".old"
	os.RemoveAll(old)
	if err := os.Rename(dst, old); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := os.Rename(src, dst); err != nil {
		return err
	}
	return os.RemoveAll(old)
}

func dbNameOpts(insecure bool) []name.Option {
	if insecure {
		return []name.Option{name.Insecure}
	}
	return nil
}

// fixedTransport hands Trivy's registry client the worker's transport.
type fixedTransport struct{ http.RoundTripper }

func (t fixedTransport) Build(...xhttp.TransportOption) http.RoundTripper { return t.RoundTripper }

// Scan scans one platform ("linux/arm64"; "" for a single-platform image) of
// ref for vulnerabilities in OS and language packages. It reaches the
// registry with the sign-in the worker resolved (username/password or a
// registry token) over tr (which trusts the registry's CA; nil: Trivy's
// own), in plain HTTP when insecure.
func (s *Scanner) Scan(ctx context.Context, ref, platform string, auth authn.AuthConfig, tr http.RoundTripper, insecure bool) (activities.ScanResult, error) {
	var res activities.ScanResult
	report, err := s.analyse(ctx, ref, platform, auth, tr, insecure, types.VulnerabilityScanner)
	if err != nil {
		return res, err
	}
	// What could be looked at: the OS Trivy detected and the packages of
	// each analyzer (an OS it does not detect has none: its packages cannot
	// be matched, and the log's "Unsupported os" is all Trivy says).
	res.Inventory.Packages = map[string]int{}
	// ("none" is Trivy's family of an OS it did not detect in an image that
	// has packages: github.com/aquasecurity/trivy/pkg/scan/local.)
	if os := report.Metadata.OS; os != nil && os.Detected() && os.Family != "none" {
		res.Inventory.OS = strings.TrimSpace(string(os.Family) + " " + os.Name)
	}
	for _, r := range report.Results {
		if len(r.Packages) > 0 {
			res.Inventory.Packages[string(r.Type)] += len(r.Packages)
		}
		for _, v := range r.Vulnerabilities {
			res.Findings = append(res.Findings, chain.Finding{
				ID: v.VulnerabilityID, Package: v.PkgName, InstalledVersion: v.InstalledVersion, FixedVersion: v.FixedVersion,
				Severity: v.Severity, Title: v.Title, Target: r.Target, Platform: platform,
			})
		}
	}
	return res, nil
}

// SBOM is a CycloneDX SBOM (JSON) of one platform of ref, as `trivy image
// --format cyclonedx` writes it: every OS and language package found.
func (s *Scanner) SBOM(ctx context.Context, ref, platform string, auth authn.AuthConfig, tr http.RoundTripper, insecure bool) ([]byte, error) {
	report, err := s.analyse(ctx, ref, platform, auth, tr, insecure, types.SBOMScanner)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := cdxreport.NewWriter(&b, "dchain").Write(ctx, report); err != nil {
		return nil, fmt.Errorf("SBOM of %s: %w", ref, err)
	}
	return b.Bytes(), nil
}

// analyse runs one Trivy scanner (vulnerabilities, or the packages of an
// SBOM) over one platform of ref.
func (s *Scanner) analyse(ctx context.Context, ref, platform string, auth authn.AuthConfig, tr http.RoundTripper, insecure bool, scanner types.Scanner) (types.Report, error) {
	dbMu.RLock()
	defer dbMu.RUnlock()
	if s.opts.ServerAddr == "" && dbOpen == "" {
		return types.Report{}, errors.New("vulnerability DB is not open")
	}
	ropts := ftypes.RegistryOptions{Insecure: insecure, RegistryToken: auth.RegistryToken}
	if auth.Username != "" {
		ropts.Credentials = []ftypes.Credential{{Username: auth.Username, Password: auth.Password}}
	}
	if tr != nil {
		ctx = xhttp.WithTransport(ctx, fixedTransport{tr})
	}
	if platform != "" {
		osName, arch, _ := strings.Cut(platform, "/")
		arch, variant, _ := strings.Cut(arch, "/")
		ropts.Platform = ftypes.Platform{Platform: &v1.Platform{OS: osName, Architecture: arch, Variant: variant}, Force: true}
	}
	img, cleanup, err := fimage.NewContainerImage(ctx, ref, ftypes.ImageOptions{RegistryOptions: ropts, ImageSources: ftypes.ImageSources{ftypes.RemoteImageSource}})
	if err != nil {
		return types.Report{}, fmt.Errorf("open image %s: %w", ref, err)
	}
	defer cleanup()
	// The "unpackaged" handler looks binaries up in Rekor, an internet
	// service: off, like everything else that would leave the machine.
	art, err := aimage.NewArtifact(img, s.cache, artifact.Option{Offline: true, NoProgress: true, Parallel: 2,
		DisabledHandlers: []ftypes.HandlerType{ftypes.UnpackagedPostHandler},
		// Packages only: no secret, license or config analysis, of the
		// files or of the image config (its history as a Dockerfile); no lock
		// files (Trivy's own choice for images: installed packages count); no
		// removed apk packages or RPM archives (the trivy CLI's defaults).
		DisabledAnalyzers: append(append([]analyzer.Type{analyzer.TypeSecret, analyzer.TypeLicenseFile, analyzer.TypeExecutable,
			analyzer.TypeHistoryDockerfile, analyzer.TypeImageConfigSecret, analyzer.TypeApkCommand, analyzer.TypeRpmArchive},
			analyzer.TypeConfigFiles...), analyzer.TypeLockfiles...),
		ImageOption: ftypes.ImageOptions{RegistryOptions: ropts}})
	if err != nil {
		return types.Report{}, err
	}
	var backend scan.Backend
	if s.opts.ServerAddr != "" {
		backend = client.NewService(client.ServiceOption{RemoteURL: s.opts.ServerAddr})
	} else {
		backend = local.NewService(applier.NewApplier(s.local), ospkg.NewScanner(), langpkg.NewScanner(), vulnerability.NewClient(tdb.Config{}))
	}
	report, err := scan.NewService(backend, art).ScanArtifact(ctx, types.ScanOptions{
		PkgTypes:            []string{types.PkgTypeOS, types.PkgTypeLibrary},
		PkgRelationships:    ftypes.Relationships, // nil would filter every package out
		Scanners:            types.Scanners{scanner},
		VulnSeveritySources: []dbtypes.SourceID{"auto"},
	})
	if err != nil {
		return types.Report{}, fmt.Errorf("scan %s: %w", ref, err)
	}
	return report, nil
}
