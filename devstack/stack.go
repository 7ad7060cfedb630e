package devstack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"go.temporal.io/sdk/client"

	"github.com/dchain-dev/dchain/activities"
	"github.com/dchain-dev/dchain/activities/buildkit"
	"github.com/dchain-dev/dchain/scanner"
	"github.com/dchain-dev/dchain/worker"
)

// Region is one dev registry.
type Region struct {
	Name string `json:"name"`
	Port int    `json:"port"`
	// Secure, when set, serves the registry over TLS and/or behind sign-in
	// (the dev stack's own are plain HTTP and open).
	Secure *RegistryOptions `json:"-"`
}

// DefaultRegions are the dev registries and their fixed ports.
var DefaultRegions = []Region{{Name: "hangzhou", Port: 5001}, {Name: "frankfurt", Port: 5002}, {Name: "virginia", Port: 5003}}

// Default ports.
const (
	DefaultTemporalPort = 7233
	DefaultUIPort       = 8233
	DefaultReceiverPort = 8089
)

// TriggerSecretEnv names the demo trigger secret; the dev stack sets it when unset.
const TriggerSecretEnv = "DCHAIN_DEMO_TRIGGER_SECRET"

// Options configure the stack.
type Options struct {
	DataDir      string
	IP           string
	TemporalPort int
	UIPort       int // 0 disables the Web UI
	ReceiverPort int
	Regions      []Region
	// NoRegistries starts no registry (Regions are ignored; no BuildKit or
	// Scan, which need one); NoReceiver no trigger receiver: for a stack
	// of separate processes where these run elsewhere.
	NoRegistries, NoReceiver bool
	Namespace                string
	TaskQueue                string
	// Worker, when set, starts the worker with these options (Regions default to every dev registry).
	Worker *worker.Options
	// BuildKit starts a buildkitd child for the build stage and seeds the
	// offline base image (BaseImage) into the first region's registry.
	BuildKit bool
	// BuildNetwork widens or narrows what the builds' RUN steps may reach
	// (by default: the internet, nothing of the host or a private range).
	BuildNetwork BuildNetwork
	// DataDirLock is the data dir's lock when the caller took it already
	// (LockDataDir); the stack owns it from then on and releases it on Stop.
	DataDirLock *os.File
	// Metrics receives the SDK's metrics and dchain's (nil: none).
	Metrics client.MetricsHandler
	// Tracing traces runs and their registry and trigger requests (nil: none).
	Tracing *worker.Tracing
	// Scan builds the demo vulnerability DB, pushes it to the first region's
	// registry as Trivy's OCI artifact, and gives the worker a Trivy scanner
	// that downloads it from there.
	Scan bool
}

// Endpoints are where the stack's parts listen; written to <data-dir>/endpoints.json.
type Endpoints struct {
	Temporal   string            `json:"temporal"`
	Namespace  string            `json:"namespace"`
	UI         string            `json:"ui,omitempty"`
	Registries map[string]string `json:"registries"`
	Receiver   string            `json:"receiver"`
	BuildKit   string            `json:"buildkit,omitempty"`
	// BuildNetwork is the bridge and subnet of the builds' RUN steps.
	BuildNetwork string `json:"buildNetwork,omitempty"`
	// TrivyDB is the repository the scanner downloads its (demo) DB from.
	TrivyDB string `json:"trivyDB,omitempty"`
	// BaseImage is the seeded offline base image, for FROM lines.
	BaseImage string `json:"baseImage,omitempty"`
	// API is where `dchain dev` serves webhooks and the REST API.
	API     string `json:"api,omitempty"`
	DataDir string `json:"dataDir"`
}

// Stack is a running dev stack.
type Stack struct {
	Endpoints  Endpoints
	Temporal   *Temporal
	Registries map[string]*Registry
	Receiver   *Receiver
	BuildKit   *BuildKit
	Scanner    *scanner.Scanner
	Client     client.Client
	workers    worker.Workers
	lock       *os.File
}

// Start brings the stack up; on error, whatever started is stopped again
// and the error says what failed.
func Start(ctx context.Context, o Options) (*Stack, error) {
	s := &Stack{Registries: map[string]*Registry{}}
	if err := s.start(ctx, o); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

func (s *Stack) start(ctx context.Context, o Options) (err error) {
	if o.IP == "" {
		o.IP = "127.0.0.1"
	}
	if o.Namespace == "" {
		o.Namespace = "default"
	}
	if len(o.Regions) == 0 {
		o.Regions = DefaultRegions
	}
	if o.NoRegistries {
		if o.BuildKit || o.Scan {
			return errors.New("devstack: the build and scan stages need a dev registry (turn them off, or keep the registries)")
		}
		o.Regions = nil
	}
	dir := func(parts ...string) string { return filepath.Join(append([]string{o.DataDir}, parts...)...) }
	if o.DataDir == "" {
		return errors.New("devstack: a data dir is required")
	}
	if s.lock = o.DataDirLock; s.lock == nil {
		if s.lock, err = LockDataDir(o.DataDir); err != nil {
			return err
		}
	}
	if s.Temporal, err = StartTemporal(TemporalOptions{
		DataDir: dir("temporal"), IP: o.IP, Port: o.TemporalPort, UIPort: o.UIPort,
		Namespace: o.Namespace, LogFile: dir("temporal", "server.log"),
	}); err != nil {
		return err
	}
	s.Endpoints = Endpoints{Temporal: s.Temporal.Address, Namespace: o.Namespace, UI: s.Temporal.UIURL, Registries: map[string]string{}, DataDir: o.DataDir}
	LogRegistriesTo(logFile(o.DataDir, "registries.log"))
	for _, r := range o.Regions {
		addr := fmt.Sprintf("%s:%d", o.IP, r.Port)
		var ro RegistryOptions
		if r.Secure != nil {
			ro = *r.Secure
		}
		reg, err := StartRegistry(r.Name, addr, dir("registries", r.Name), ro)
		if err != nil {
			return fmt.Errorf("%w (pick another port: --region %s=PORT)", err, r.Name)
		}
		s.Registries[r.Name] = reg
		s.Endpoints.Registries[r.Name] = addr
	}
	if o.BuildKit {
		if err := s.startBuildKit(ctx, o, dir("buildkit")); err != nil {
			return err
		}
	}
	if o.Scan {
		if err := s.startScanner(ctx, o); err != nil {
			return err
		}
	}
	if os.Getenv(TriggerSecretEnv) == "" {
		os.Setenv(TriggerSecretEnv, "dchain-dev-secret")
	}
	if !o.NoReceiver {
		if err := os.MkdirAll(dir("receiver"), 0o755); err != nil {
			return err
		}
		if s.Receiver, err = StartReceiver(fmt.Sprintf("%s:%d", o.IP, o.ReceiverPort), os.Getenv(TriggerSecretEnv), dir("receiver", "deliveries.jsonl")); err != nil {
			return err
		}
		s.Endpoints.Receiver = s.Receiver.URL
	}
	interceptors, err := o.Tracing.ClientInterceptors()
	if err != nil {
		return err
	}
	if s.Client, err = client.DialContext(ctx, client.Options{HostPort: s.Temporal.Address, Namespace: o.Namespace, Logger: worker.QuietLogger(),
		MetricsHandler: o.Metrics, Interceptors: interceptors}); err != nil {
		return fmt.Errorf("devstack: connect to temporal: %w", err)
	}
	if _, err := worker.RegisterSearchAttributes(ctx, s.Client, o.Namespace); err != nil {
		return err
	}
	if o.Worker != nil {
		wo := *o.Worker
		if wo.TaskQueue == "" {
			wo.TaskQueue = o.TaskQueue
		}
		if wo.Activities == nil {
			wo.Activities = &activities.Activities{}
		}
		if wo.WorkDir == "" {
			wo.WorkDir = dir("work")
		}
		if o.Tracing != nil && wo.Activities.Trace == nil {
			wo.Activities.Trace = o.Tracing.Transport
		}
		if s.BuildKit != nil && wo.Activities.Builder == nil {
			wo.Activities.Builder = &buildkit.Builder{Addr: s.BuildKit.Addr}
			// This buildkitd shares the worker's cores: a burst of builds
			// solving at once would starve the runs' workflow tasks
			// (docs/benchmarks.md, issue #24).
			if wo.Activities.MaxBuilds == 0 && wo.Concurrency.Builds == 0 {
				wo.Activities.MaxBuilds = max(runtime.GOMAXPROCS(0), 2)
			}
		}
		if s.Scanner != nil && wo.Activities.Scanner == nil {
			wo.Activities.Scanner = s.Scanner
		}
		if len(wo.Regions) == 0 {
			for _, r := range o.Regions {
				wo.Regions = append(wo.Regions, r.Name)
			}
		}
		if s.workers, err = worker.Start(s.Client, wo); err != nil {
			return err
		}
	}
	return s.WriteEndpoints()
}

// WriteEndpoints writes the stack's endpoints to <data-dir>/endpoints.json.
func (s *Stack) WriteEndpoints() error {
	b, _ := json.MarshalIndent(s.Endpoints, "", "  ")
	return os.WriteFile(filepath.Join(s.Endpoints.DataDir, "endpoints.json"), append(b, '\n'), 0o644)
}

// startBuildKit runs buildkitd trusting the dev registries and seeds the base image.
func (s *Stack) startBuildKit(ctx context.Context, o Options, dir string) error {
	bin, err := FindBuildKitd()
	if err != nil {
		return err
	}
	var regs []BuildKitRegistry
	for _, r := range o.Regions {
		br := BuildKitRegistry{Addr: s.Endpoints.Registries[r.Name]}
		if r.Secure != nil && r.Secure.TLS != nil {
			br.CAFile = r.Secure.CAFile
		}
		regs = append(regs, br)
	}
	if s.BuildKit, err = StartBuildKit(bin, dir, regs, o.BuildNetwork, filepath.Join(dir, "buildkitd.log")); err != nil {
		return err
	}
	s.Endpoints.BuildKit = s.BuildKit.Addr
	s.Endpoints.BuildNetwork = s.BuildKit.Network.Bridge + " " + s.BuildKit.Network.Subnet.String()
	first := s.Endpoints.Registries[o.Regions[0].Name]
	if _, err := PushBusybox(ctx, first, BaseImage, BusyboxBinaries()); err != nil {
		return fmt.Errorf("seed base image: %w", err)
	}
	s.Endpoints.BaseImage = first + "/" + BaseImage
	if err := SampleRepo(ctx, filepath.Join(o.DataDir, "git", "sample-app"), s.Endpoints.BaseImage); err != nil {
		return fmt.Errorf("sample app repository: %w", err)
	}
	return nil
}

// DemoDBRepository is where the dev stack serves its demo Trivy DB, in the first region's registry.
const DemoDBRepository = "dchain/trivy-db:2"

// startScanner builds and serves the demo DB, then opens a scanner on it
// through Trivy's own download path.
func (s *Stack) startScanner(ctx context.Context, o Options) error {
	advisories, err := scanner.DemoAdvisories()
	if err != nil {
		return err
	}
	fixture := filepath.Join(o.DataDir, "trivy", "demo-db")
	if err := scanner.BuildDB(fixture, advisories); err != nil {
		return err
	}
	ref := s.Endpoints.Registries[o.Regions[0].Name] + "/" + DemoDBRepository
	if err := scanner.PushDB(ctx, fixture, ref, true); err != nil {
		return fmt.Errorf("push the demo vulnerability DB: %w", err)
	}
	s.Endpoints.TrivyDB = ref
	s.Scanner, err = scanner.New(ctx, scanner.Options{CacheDir: filepath.Join(o.DataDir, "trivy", "cache"), DBRepository: ref, InsecureDB: true})
	return err
}

// Stop stops everything that started, in reverse order.
func (s *Stack) Stop() {
	s.workers.Stop()
	if s.Client != nil {
		s.Client.Close()
	}
	if s.Receiver != nil {
		s.Receiver.Stop()
	}
	if s.BuildKit != nil {
		s.BuildKit.Stop()
	}
	for _, r := range s.Registries {
		_ = r.Stop()
	}
	if s.Temporal != nil {
		s.Temporal.Stop()
	}
	if s.lock != nil {
		if s.Endpoints.DataDir != "" {
			os.Remove(filepath.Join(s.Endpoints.DataDir, "endpoints.json"))
		}
		s.lock.Close() // releases the data dir
		s.lock = nil
	}
}

// ReadEndpoints reads the endpoints.json a running stack wrote.
func ReadEndpoints(dataDir string) (Endpoints, error) {
	var e Endpoints
	b, err := os.ReadFile(filepath.Join(dataDir, "endpoints.json"))
	if err != nil {
		return e, fmt.Errorf("is `dchain dev` running with --data-dir %s? %w", dataDir, err)
	}
	return e, json.Unmarshal(b, &e)
}
