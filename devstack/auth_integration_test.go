package devstack

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/dchain-dev/dchain/activities"
	"github.com/dchain-dev/dchain/chain"
	"github.com/dchain-dev/dchain/workflows"
)

// The stack's "priv" registry is what a platform team's registry is: TLS
// with a certificate of a private CA, and htpasswd sign-in.
const (
	privUser     = "ci-bot"
	privPassword = "s3cret-priv-pass"
	privCredsEnv = "DCHAIN_IT_PRIV_CREDENTIALS"
)

// privRegistry is "priv" as the worker's config names it (credentials
// and CA by reference); privCA signed its certificate.
var (
	privRegistry chain.Registry
	privCA       *CA
)

func privateRegion(dir string) (Region, error) {
	var err error
	if privCA, err = NewCA(filepath.Join(dir, "ca")); err != nil {
		return Region{}, err
	}
	cert, err := privCA.Issue("priv-registry", "127.0.0.1", "localhost")
	if err != nil {
		return Region{}, err
	}
	port, err := FreePort("127.0.0.1")
	if err != nil {
		return Region{}, err
	}
	os.Setenv(privCredsEnv, privUser+":"+privPassword)
	privRegistry = chain.Registry{Name: "priv", Region: "region-priv", Address: fmt.Sprintf("127.0.0.1:%d", port),
		Credentials: "env:" + privCredsEnv, CA: chain.SecretRef("file:" + privCA.CertFile)}
	return Region{Name: "priv", Port: port, Secure: &RegistryOptions{TLS: &cert, CAFile: privCA.CertFile,
		Users: map[string]string{privUser: privPassword}}}, nil
}

// privOpts reach priv as a client with the password and the CA would.
func privOpts(t *testing.T) []remote.Option {
	t.Helper()
	pem, err := os.ReadFile(privCA.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("no CA certificate")
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	return []remote.Option{remote.WithAuth(&authn.Basic{Username: privUser, Password: privPassword}), remote.WithTransport(tr)}
}

// pushPriv pushes the sample index to priv as repo:tag.
func pushPriv(t *testing.T, repo, tag string) string {
	t.Helper()
	idx, err := SampleImage(tag)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(privRegistry.Address + "/" + repo + ":" + tag)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(ref, idx, privOpts(t)...); err != nil {
		t.Fatal(err)
	}
	d, _ := idx.Digest()
	return d.String()
}

func privDigest(t *testing.T, repo, tag string) string {
	t.Helper()
	ref, err := name.ParseReference(privRegistry.Address + "/" + repo + ":" + tag)
	if err != nil {
		t.Fatal(err)
	}
	d, err := remote.Head(ref, privOpts(t)...)
	if err != nil {
		return ""
	}
	return d.Digest.String()
}

// withPriv is testChain with priv as the config names it (reg), and the
// chain replicating into it besides eu.
func withPriv(name, repo string, reg chain.Registry) *chain.Loaded {
	l, ch := testChain(name, repo)
	l.Config.Registries = append(l.Config.Registries, reg)
	ch.Replication = append(ch.Replication, chain.ReplicationRule{Name: "to-priv", Destination: "priv", Level: chain.LevelRepository})
	ch.Triggers = nil
	l.Chains[0] = ch
	return l
}

// Replication into a TLS registry of a private CA behind htpasswd: with
// the config's credentials; with none, from the docker config
// (DOCKER_CONFIG); with a wrong password, the destination fails at once
// with "access denied" (no retries) and nothing is written.
func TestPrivateRegistryReplication(t *testing.T) {
	digest, err := PushSample(context.Background(), stack.Endpoints.Registries["src"], "auth/app", "v1")
	if err != nil {
		t.Fatal(err)
	}

	st := waitRun(t, startRun(t, withPriv("it-auth-config", "auth/app", privRegistry), "auth/app:v1").WorkflowID, 2*time.Minute)
	if st.Outcome != workflows.OutcomeSucceeded || privDigest(t, "auth/app", "v1") != digest {
		t.Fatalf("with the config's credentials: %s %s %+v", st.Outcome, st.Message, st.Destinations)
	}

	dockerConfig := t.TempDir()
	auth := base64.StdEncoding.EncodeToString([]byte(privUser + ":" + privPassword))
	doc := fmt.Sprintf(`{"auths": {%q: {"auth": %q}}}`, privRegistry.Address, auth)
	if err := os.WriteFile(filepath.Join(dockerConfig, "config.json"), []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DOCKER_CONFIG", dockerConfig)
	keychain := privRegistry
	keychain.Credentials = ""
	if _, err := PushSample(context.Background(), stack.Endpoints.Registries["src"], "auth/keychain", "v1"); err != nil {
		t.Fatal(err)
	}
	st = waitRun(t, startRun(t, withPriv("it-auth-keychain", "auth/keychain", keychain), "auth/keychain:v1").WorkflowID, 2*time.Minute)
	if st.Outcome != workflows.OutcomeSucceeded || privDigest(t, "auth/keychain", "v1") != digest {
		t.Fatalf("with the docker config: %s %s %+v", st.Outcome, st.Message, st.Destinations)
	}

	t.Setenv("DCHAIN_IT_PRIV_WRONG", privUser+":not-the-password")
	wrong := privRegistry
	wrong.Credentials = "env:DCHAIN_IT_PRIV_WRONG"
	if _, err := PushSample(context.Background(), stack.Endpoints.Registries["src"], "auth/wrong", "v1"); err != nil {
		t.Fatal(err)
	}
	st = waitFailed(t, startRun(t, withPriv("it-auth-wrong", "auth/wrong", wrong), "auth/wrong:v1").WorkflowID)
	var priv *workflows.DestinationStatus
	for i := range st.Destinations {
		if st.Destinations[i].Registry == "priv" {
			priv = &st.Destinations[i]
		}
	}
	if priv == nil || priv.State != workflows.StateFailed || !strings.Contains(priv.Message, "access denied") {
		t.Fatalf("a wrong password: %s %+v", st.Outcome, priv)
	}
	if privDigest(t, "auth/wrong", "v1") != "" {
		t.Fatal("a copy refused for its sign-in wrote the image anyway")
	}

	// Without the CA, the registry's certificate is refused.
	noCA := privRegistry
	noCA.CA = ""
	_, err = (&activities.Activities{}).ResolveImage(context.Background(), workflows.ResolveImageInput{Registry: noCA, Image: workflows.ImageRef{Repository: "auth/app", Tag: "v1"}})
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("resolving without the CA: %v", err)
	}
}

// A chain whose source is the private registry: the worker resolves,
// scans (Trivy signs in and trusts the CA the same way), stores the report
// beside the image there, and replicates out of it.
func TestPrivateRegistryScanAndSource(t *testing.T) {
	digest := pushPriv(t, "auth/scanned", "v1")
	l, ch := testChain("it-auth-scan", "auth/scanned")
	l.Config.Registries = append(l.Config.Registries, privRegistry)
	ch.Scope.Registry = "priv"
	ch.Scan = &chain.Scan{Mode: chain.ModeNonBlocking, Conditions: critical, Action: chain.ActionDeleteTag}
	ch.Replication = ch.Replication[:1]
	ch.Triggers = nil
	l.Chains[0] = ch
	st := waitRun(t, startRun(t, l, "auth/scanned:v1").WorkflowID, 2*time.Minute)
	if st.Outcome != workflows.OutcomeSucceeded || st.Scan == nil || st.Scan.Report == "" {
		t.Fatalf("scan of a private image: %s %s %+v", st.Outcome, st.Message, st.Scan)
	}
	if !strings.HasPrefix(st.Scan.Report, privRegistry.Address+"/") {
		t.Fatalf("the report %s is not stored beside the image", st.Scan.Report)
	}
	if got := digestAt(t, "eu", "auth/scanned", "v1"); got != digest {
		t.Fatalf("replicated out of priv: %s, want %s", got, digest)
	}
}

// BuildKit builds FROM an image in the private registry: the worker signs
// it in with the credentials of the registry its config names (buildkitd
// trusts the CA by its own config).
func TestBuildFromPrivateBase(t *testing.T) {
	base, err := name.ParseReference(stack.Endpoints.BaseImage, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := remote.Index(base)
	if err != nil {
		t.Fatal(err)
	}
	privBase, err := name.ParseReference(privRegistry.Address + "/base/busybox:private")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(privBase, idx, privOpts(t)...); err != nil {
		t.Fatal(err)
	}
	if _, err := remote.Head(privBase); err == nil {
		t.Fatal("the private base is readable without signing in")
	}
	src := filepath.Join(t.TempDir(), "sample-app")
	if err := SampleRepo(context.Background(), src, ""); err != nil {
		t.Fatal(err)
	}
	l := buildChain(t, "it-auth-build", "auth/built", src, "linux/amd64")
	l.Config.Registries = append(l.Config.Registries, privRegistry)
	l.Chains[0].Build.Rules[0].BuildArgs["BASE"] = privBase.String()
	l.Chains[0].Triggers = nil
	st := waitRun(t, startPush(t, l, "refs/heads/main", false).WorkflowID, 3*time.Minute)
	if st.Outcome != workflows.OutcomeSucceeded {
		t.Fatalf("build FROM the private base: %s %s", st.Outcome, st.Message)
	}
	if got := fileInImage(t, stack.Endpoints.Registries["src"]+"/auth/built:latest", "linux/amd64", "app/arch.txt"); got != "built for x86_64 (linux/amd64)" {
		t.Fatalf("the built image says %q", got)
	}
}
