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
	"strings"
	"sync"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	_ "github.com/distribution/distribution/v3/registry/auth/htpasswd" // the "htpasswd" access controller
	"github.com/distribution/distribution/v3/registry/handlers"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem" // the "filesystem" storage driver
	"github.com/sirupsen/logrus"
	"golang.org/x/crypto/bcrypt"
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

// RegistryOptions secure a registry: TLS with a certificate (CAFile is the
// bundle that verifies it), and sign-in with htpasswd Users (name →
// password).
type RegistryOptions struct {
	TLS    *Pair
	CAFile string
	Users  map[string]string
	// Htpasswd is an htpasswd file of bcrypt lines, instead of Users.
	Htpasswd string
	// Notifications are the registry's push notifications, as distribution
	// reads them (configuration.Parse of a config file and REGISTRY_* env).
	Notifications configuration.Notifications
}

// StartRegistry serves a distribution registry at addr with storage in
// rootDir; plain HTTP and open unless o says otherwise.
func StartRegistry(name, addr, rootDir string, o ...RegistryOptions) (*Registry, error) {
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
	for _, o := range o {
		if o.TLS != nil {
			cfg.HTTP.TLS.Certificate, cfg.HTTP.TLS.Key = o.TLS.CertFile, o.TLS.KeyFile
		}
		file := o.Htpasswd
		if len(o.Users) > 0 {
			var err error
			if file, err = writeHtpasswd(filepath.Join(rootDir, "..", name+".htpasswd"), o.Users); err != nil {
				return nil, fmt.Errorf("registry %s: %w", name, err)
			}
		}
		if file != "" {
			cfg.Auth = configuration.Auth{"htpasswd": configuration.Parameters{"realm": "dchain-" + name, "path": file}}
		}
		if len(o.Notifications.Endpoints) > 0 {
			cfg.Notifications = o.Notifications
		}
	}
	cfg.Catalog.MaxEntries = 1000 // what distribution's own config loader defaults to (0 refuses every page)
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("registry %s: %w", name, err)
	}
	r := &Registry{Name: name, Addr: l.Addr().String(), RootDir: rootDir, done: make(chan error, 1)}
	r.app = handlers.NewApp(context.Background(), cfg)
	r.srv = &http.Server{Handler: r.app, ReadHeaderTimeout: 30 * time.Second}
	go func() {
		if cfg.HTTP.TLS.Certificate != "" {
			r.done <- r.srv.ServeTLS(l, cfg.HTTP.TLS.Certificate, cfg.HTTP.TLS.Key)
		} else {
			r.done <- r.srv.Serve(l)
		}
	}()
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

// writeHtpasswd writes users (name → password) as bcrypt htpasswd lines.
func writeHtpasswd(path string, users map[string]string) (string, error) {
	var b strings.Builder
	for u, p := range users {
		h, err := bcrypt.GenerateFromPassword([]byte(p), bcrypt.MinCost)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "%s:%s\n", u, h)
	}
	path = filepath.Clean(path)
	return path, os.WriteFile(path, []byte(b.String()), 0o600)
}
