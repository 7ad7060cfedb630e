package devstack

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem" // the "filesystem" storage driver
)

// Registry is a real OCI registry (CNCF distribution) on a loopback port,
// storing its blobs and manifests on disk, standing for one region.
type Registry struct {
	Name    string
	Addr    string
	RootDir string
	reg     *registry.Registry
	done    chan error
}

// StartRegistry serves a distribution registry at addr with storage in rootDir.
func StartRegistry(name, addr, rootDir string) (*Registry, error) {
	if err := os.MkdirAll(rootDir, 0o755); err != nil {
		return nil, fmt.Errorf("registry %s: %w", name, err)
	}
	if os.Getenv("OTEL_TRACES_EXPORTER") == "" {
		// distribution exports traces to an OTLP collector by default; there is none here.
		os.Setenv("OTEL_TRACES_EXPORTER", "none")
	}
	cfg := &configuration.Configuration{
		Storage: configuration.Storage{
			"filesystem": configuration.Parameters{"rootdirectory": rootDir},
			"delete":     configuration.Parameters{"enabled": true},
		},
	}
	cfg.HTTP.Addr = addr
	cfg.HTTP.Net = "tcp"
	cfg.Log.Level = "error"
	cfg.Log.AccessLog.Disabled = true
	cfg.Log.Formatter = "text"
	reg, err := registry.NewRegistry(context.Background(), cfg)
	if err != nil {
		return nil, fmt.Errorf("registry %s: %w", name, err)
	}
	r := &Registry{Name: name, Addr: addr, RootDir: rootDir, reg: reg, done: make(chan error, 1)}
	go func() { r.done <- reg.ListenAndServe() }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case err := <-r.done:
			return nil, fmt.Errorf("registry %s on %s: %w", name, addr, err)
		default:
		}
		if resp, err := http.Get("http://" + addr + "/v2/"); err == nil {
			resp.Body.Close()
			return r, nil
		}
		if time.Now().After(deadline) {
			_ = r.Stop()
			return nil, fmt.Errorf("registry %s on %s did not answer within 10s", name, addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop shuts the registry down; its data stays on disk.
func (r *Registry) Stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := r.reg.Shutdown(ctx)
	if serveErr := <-r.done; serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		err = errors.Join(err, serveErr)
	}
	return err
}
