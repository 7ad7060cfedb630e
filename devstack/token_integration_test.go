package devstack

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"go.temporal.io/sdk/testsuite"

	"github.com/dchain-dev/dchain/activities"
	"github.com/dchain-dev/dchain/chain"
	"github.com/dchain-dev/dchain/workflows"

	_ "github.com/distribution/distribution/v3/registry/auth/token" // the "token" access controller
)

// tokenServer is a Docker registry token server of the test's own: it
// signs in users with HTTP basic auth and grants what they ask for in a
// JWT signed by the test CA (x5c), which the registry trusts.
type tokenServer struct {
	*httptest.Server
	issued atomic.Int32
}

const (
	tokenService = "dchain-test-registry"
	tokenIssuer  = "dchain-test-token-issuer"
)

func startTokenServer(t *testing.T, ca *CA, cert Pair) *tokenServer {
	t.Helper()
	ts := &tokenServer{}
	ts.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, ok := r.BasicAuth()
		if !ok || user != privUser || pass != privPassword {
			http.Error(w, "bad credentials", http.StatusUnauthorized)
			return
		}
		var access []map[string]any
		for _, scope := range r.URL.Query()["scope"] {
			parts := strings.Split(scope, ":") // repository:NAME:pull,push
			if len(parts) == 3 {
				access = append(access, map[string]any{"type": parts[0], "name": parts[1], "actions": strings.Split(parts[2], ",")})
			}
		}
		signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: ca.key},
			(&jose.SignerOptions{}).WithType("JWT").WithHeader("x5c", []string{base64.StdEncoding.EncodeToString(ca.cert.Raw)}))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		now := time.Now()
		tok, err := jwt.Signed(signer).Claims(map[string]any{
			"iss": tokenIssuer, "sub": user, "aud": r.URL.Query().Get("service"), "exp": now.Add(5 * time.Minute).Unix(),
			"nbf": now.Add(-time.Minute).Unix(), "iat": now.Unix(), "jti": strconv.FormatInt(now.UnixNano(), 10), "access": access,
		}).Serialize()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		ts.issued.Add(1)
		json.NewEncoder(w).Encode(map[string]any{"token": tok, "access_token": tok, "expires_in": 300})
	}))
	c, err := tls.LoadX509KeyPair(cert.CertFile, cert.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	ts.TLS = &tls.Config{Certificates: []tls.Certificate{c}}
	ts.StartTLS()
	t.Cleanup(ts.Close)
	return ts
}

// A registry behind the distribution token flow (TLS with the test CA, a
// token server that signs in with htpasswd-style basic credentials):
// replication into it signs in with the config's credentials, through the
// token server, and lands the image; a wrong password is refused.
func TestTokenAuthRegistry(t *testing.T) {
	dir := t.TempDir()
	cert, err := privCA.Issue("token-registry", "127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	ts := startTokenServer(t, privCA, cert)
	// The realm names the server by host name: go-containerregistry does
	// not send credentials to a token realm at a private IP literal.
	realm := "https://localhost:" + ts.URL[strings.LastIndex(ts.URL, ":")+1:] + "/token"

	cfg := &configuration.Configuration{Storage: configuration.Storage{
		"filesystem": configuration.Parameters{"rootdirectory": filepath.Join(dir, "data")}, "delete": configuration.Parameters{"enabled": true}}}
	cfg.Auth = configuration.Auth{"token": configuration.Parameters{"realm": realm, "service": tokenService, "issuer": tokenIssuer,
		"rootcertbundle": privCA.CertFile}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	app := handlers.NewApp(context.Background(), cfg)
	srv := &http.Server{Handler: app, ReadHeaderTimeout: 10 * time.Second}
	go srv.ServeTLS(l, cert.CertFile, cert.KeyFile)
	defer srv.Close()

	digest, err := PushSample(context.Background(), stack.Endpoints.Registries["src"], "token/app", "v1")
	if err != nil {
		t.Fatal(err)
	}
	src, _ := testChainRegistry("src")
	dst := chain.Registry{Name: "tokened", Address: l.Addr().String(), CA: chain.SecretRef("file:" + privCA.CertFile), Credentials: "env:" + privCredsEnv}
	replicate := func(dst chain.Registry) (workflows.ReplicateResult, error) {
		var s testsuite.WorkflowTestSuite
		env := s.NewTestActivityEnvironment()
		a := &activities.Activities{}
		env.RegisterActivity(a.ReplicateImage)
		v, err := env.ExecuteActivity(a.ReplicateImage, workflows.ReplicateInput{Source: src, Destination: dst, Repository: "token/app", Tag: "v1", Digest: digest})
		var res workflows.ReplicateResult
		if err == nil {
			err = v.Get(&res)
		}
		return res, err
	}
	res, err := replicate(dst)
	if err != nil {
		t.Fatalf("replication through the token flow: %v", err)
	}
	if res.Digest != digest || res.BlobsCopied == 0 || ts.issued.Load() == 0 {
		t.Fatalf("result %+v, %d tokens issued", res, ts.issued.Load())
	}
	info, err := (&activities.Activities{}).ResolveImage(context.Background(), workflows.ResolveImageInput{Registry: dst, Image: workflows.ImageRef{Repository: "token/app", Tag: "v1"}})
	if err != nil || info.Digest != digest {
		t.Fatalf("the image in the token registry: %+v %v", info, err)
	}

	t.Setenv("DCHAIN_IT_TOKEN_WRONG", privUser+":wrong")
	wrong := dst
	wrong.Credentials = "env:DCHAIN_IT_TOKEN_WRONG"
	if _, err := replicate(wrong); err == nil || !strings.Contains(err.Error(), "access denied") && !strings.Contains(err.Error(), "401") {
		t.Fatalf("a wrong password through the token flow: %v", err)
	}
}
