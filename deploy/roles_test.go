package deploy

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/distribution/distribution/v3/registry"
	_ "github.com/distribution/distribution/v3/registry/auth/htpasswd"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/dchain-dev/dchain/devstack"
)

// The test binary plays three more parts inside the hosts' namespaces,
// chosen by DCHAIN_DEPLOY_ROLE:
//   - registry: distribution's registry server as the registry image runs
//     it (`serve` of its config-dev.yml, then the REGISTRY_* variables);
//   - push: a user pushing an image (DCHAIN_DEPLOY_SIZE bytes of random
//     layer over the sample's linux/amd64 image, or the two-platform sample
//     when 0) to DCHAIN_DEPLOY_REF;
//   - digest: reading the digest DCHAIN_DEPLOY_REF names;
//   - otlp: the trace collector compose names (jaeger), receiving OTLP over
//     HTTP on :4318 and writing each span as "service trace-id name" to
//     the file DCHAIN_DEPLOY_SPANS.
//
// Push and digest sign in with DCHAIN_DEPLOY_CREDENTIALS (user:password)
// and trust DCHAIN_DEPLOY_CA; they print the digest.
const roleEnv = "DCHAIN_DEPLOY_ROLE"

// absentExit is the digest part's exit code when the registry answers
// that the reference is not there (404).
const absentExit = 3

// playRole runs the part the environment names; false when it names none.
func playRole() bool {
	role := os.Getenv(roleEnv)
	if role == "" {
		return false
	}
	var err error
	switch role {
	case "registry":
		err = serveRegistry()
	case "push":
		err = push()
	case "digest":
		err = digest()
	case "otlp":
		err = collectSpans()
	default:
		err = fmt.Errorf("unknown role %q", role)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", role, err)
		os.Exit(1)
	}
	return true
}

// serveRegistry is the registry image's command: `registry serve
// CONFIG` (distribution's own serve command, debug server included).
func serveRegistry() error {
	registry.RootCmd.SetArgs([]string{"serve", os.Getenv("DCHAIN_DEPLOY_REGISTRY_CONFIG")})
	return registry.RootCmd.Execute()
}

// target is DCHAIN_DEPLOY_REF, with options that sign in and trust the
// deployment's CA.
func target() (name.Reference, []remote.Option, error) {
	ref, err := name.ParseReference(os.Getenv("DCHAIN_DEPLOY_REF"))
	if err != nil {
		return nil, nil, err
	}
	pem, err := os.ReadFile(os.Getenv("DCHAIN_DEPLOY_CA"))
	if err != nil {
		return nil, nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, nil, errors.New("no certificate in the CA file")
	}
	user, pass, _ := strings.Cut(os.Getenv("DCHAIN_DEPLOY_CREDENTIALS"), ":")
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return ref, []remote.Option{remote.WithTransport(tr), remote.WithAuth(&authn.Basic{Username: user, Password: pass})}, nil
}

func push() error {
	ref, opts, err := target()
	if err != nil {
		return err
	}
	size, _ := strconv.ParseInt(os.Getenv("DCHAIN_DEPLOY_SIZE"), 10, 64)
	img, err := pushed(ref.Identifier(), size)
	if err != nil {
		return err
	}
	if err := remote.Push(ref, img, opts...); err != nil {
		return err
	}
	d, err := img.Digest()
	fmt.Println(d)
	return err
}

// pushed is what push pushes: the two-platform sample (size 0), or its
// linux/amd64 image (an OS the scanner knows) with a layer of size random
// bytes on top.
func pushed(version string, size int64) (interface {
	remote.Taggable
	Digest() (v1.Hash, error)
}, error) {
	idx, err := devstack.SampleImage(version)
	if err != nil || size == 0 {
		return idx, err
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	base, err := idx.Image(m.Manifests[0].Digest)
	if err != nil {
		return nil, err
	}
	layer, err := random.Layer(size, types.OCILayer)
	if err != nil {
		return nil, err
	}
	return mutate.AppendLayers(base, layer)
}

func digest() error {
	ref, opts, err := target()
	if err != nil {
		return err
	}
	d, err := remote.Head(ref, opts...)
	var terr *transport.Error
	if errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound {
		fmt.Fprintf(os.Stderr, "%s: absent\n", ref)
		os.Exit(absentExit)
	}
	if err != nil {
		return err
	}
	fmt.Println(d.Digest)
	return nil
}

// collectSpans serves OTLP/HTTP (protobuf) trace exports.
func collectSpans() error {
	f, err := os.OpenFile(os.Getenv("DCHAIN_DEPLOY_SPANS"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	var mu sync.Mutex
	http.HandleFunc("POST /v1/traces", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		var req coltracepb.ExportTraceServiceRequest
		if err == nil {
			err = proto.Unmarshal(body, &req)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		for _, rs := range req.ResourceSpans {
			service := "?"
			for _, kv := range rs.GetResource().GetAttributes() {
				if kv.Key == "service.name" {
					service = kv.GetValue().GetStringValue()
				}
			}
			for _, ss := range rs.ScopeSpans {
				for _, sp := range ss.Spans {
					fmt.Fprintf(f, "%s %x %s\n", service, sp.TraceId, strings.ReplaceAll(sp.Name, " ", "_"))
				}
			}
		}
		mu.Unlock()
		out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.Write(out)
	})
	return http.ListenAndServe(":4318", nil)
}
