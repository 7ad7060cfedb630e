package devstack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem" // the "filesystem" storage driver
	"github.com/sirupsen/logrus"
)

// Registry is a real OCI registry (CNCF distribution's registry application)
// on a loopback port, storing blobs and manifests on disk, standing for one
// region. Stop drops it at once, connections and all, as an outage would;
// StartRegistry on the same address and directory brings it back with its content.
type Registry struct {
	Name    string
	Addr    string
	RootDir string
	app     *handlers.App
	srv     *http.Server
	done    chan error
	once    sync.Once
}

var registryLog sync.Once

// LogRegistriesTo sends the registries' own log (errors only) to w; the
// first call wins. Without it the log is discarded.
func LogRegistriesTo(w io.Writer) {
	registryLog.Do(func() {
		logrus.SetLevel(logrus.ErrorLevel)
		logrus.SetOutput(w)
	})
}

// StartRegistry serves a distribution registry at addr with storage in rootDir.
func StartRegistry(name, addr, rootDir string) (*Registry, error) {
	if err := os.MkdirAll(rootDir, 0o755); err != nil {
		return nil, fmt.Errorf("registry %s: %w", name, err)
	}
	LogRegistriesTo(io.Discard)
	cfg := &configuration.Configuration{
		Storage: configuration.Storage{
			"filesystem": configuration.Parameters{"rootdirectory": rootDir},
			"delete":     configuration.Parameters{"enabled": true},
		},
	}
	cfg.HTTP.Addr = addr
	cfg.Catalog.MaxEntries = 1000 // what distribution's own config loader defaults to (0 refuses every page)
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("registry %s: %w", name, err)
	}
	r := &Registry{Name: name, Addr: l.Addr().String(), RootDir: rootDir, done: make(chan error, 1)}
	r.app = handlers.NewApp(context.Background(), cfg)
	r.srv = &http.Server{Handler: r.app, ReadHeaderTimeout: 30 * time.Second}
	go func() { r.done <- r.srv.Serve(l) }()
	return r, nil
}

// Stop closes the registry and every open connection; its data stays on disk.
func (r *Registry) Stop() error {
	var err error
	r.once.Do(func() {
		err = r.srv.Close()
		if serveErr := <-r.done; serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
			err = errors.Join(err, serveErr)
		}
		err = errors.Join(err, r.app.Shutdown())
	})
	return err
}

// logFile opens dir/name for appending (io.Discard if it cannot).
func logFile(dir, name string) io.Writer {
	f, err := os.OpenFile(filepath.Join(dir, name), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return io.Discard
	}
	return f
}
