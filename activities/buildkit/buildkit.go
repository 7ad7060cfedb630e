package buildkit

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"

	"github.com/docker/cli/cli/config/types"
	"github.com/google/go-containerregistry/pkg/authn"
	bk "github.com/moby/buildkit/client"
	"github.com/moby/buildkit/session"
	"github.com/moby/buildkit/session/auth/authprovider"
	"github.com/moby/buildkit/session/secrets/secretsprovider"
	"github.com/tonistiigi/fsutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dchain-dev/dchain/activities"
	"github.com/dchain-dev/dchain/chain"
	"github.com/dchain-dev/dchain/workflows"
)

// Builder builds on one buildkitd.
type Builder struct {
	// Addr is buildkitd's address (unix:///run/buildkit/buildkitd.sock, tcp://host:port).
	Addr string
}

// Build solves req on buildkitd and pushes the result; progress (if set)
// is told the steps so far after every status BuildKit sends. The log holds
// BuildKit's output, also when the build fails. A failure a later attempt
// can get past is marked activities.ErrBuildUnavailable. Canceling ctx
// cancels the solve, and buildkitd stops the job.
func (b *Builder) Build(ctx context.Context, req activities.BuildRequest, progress func(workflows.BuildProgress)) (activities.BuildOutput, error) {
	var out activities.BuildOutput
	if progress == nil {
		progress = func(workflows.BuildProgress) {}
	}
	c, err := bk.New(ctx, b.Addr)
	if err != nil {
		return out, unavailable{fmt.Errorf("connect to buildkitd at %s: %w", b.Addr, err)}
	}
	defer c.Close()
	opt, err := solveOptions(req)
	if err != nil {
		return out, err
	}
	log := &buildLog{secrets: slices.Collect(maps.Values(req.Secrets))}
	ch := make(chan *bk.SolveStatus)
	done := make(chan struct{})
	go func() { defer close(done); log.consume(ch, progress) }()
	resp, err := c.Solve(ctx, nil, opt, ch)
	<-done
	out.Progress, out.Log = log.progress(), log.bytes()
	if err = redactError(err, log.secrets); err != nil {
		if transientBuildError(err) {
			return out, unavailable{err}
		}
		return out, err
	}
	out.Digest = resp.ExporterResponse["containerimage.digest"]
	return out, nil
}

// unavailable marks a failure worth another attempt.
type unavailable struct{ error }

func (u unavailable) Unwrap() error        { return u.error }
func (u unavailable) Is(target error) bool { return target == activities.ErrBuildUnavailable }

// transientMarks are the texts of failures that a later attempt can get
// past: a registry (the base image's, the cache's, the destination) or
// buildkitd itself unreachable, overloaded or timing out. BuildKit reports
// them as plain text inside its gRPC error.
var transientMarks = []string{
	"connection refused", "connection reset by peer", "no such host", "i/o timeout", "TLS handshake timeout",
	"network is unreachable", "no route to host", "server misbehaving", "unexpected EOF",
	"500 Internal Server Error", "502 Bad Gateway", "503 Service Unavailable", "504 Gateway Timeout", "429 Too Many Requests",
}

// transientBuildError reports whether a failed solve is worth retrying:
// buildkitd unavailable or out of resources, or a network failure on the
// way to a registry. A failing RUN step or a bad Dockerfile is not.
func transientBuildError(err error) bool {
	if s, ok := status.FromError(err); ok && (s.Code() == codes.Unavailable || s.Code() == codes.ResourceExhausted) {
		return true
	}
	msg := err.Error()
	for _, m := range transientMarks {
		if strings.Contains(msg, m) {
			return true
		}
	}
	return false
}

// solveOptions are the BuildKit options of a build: dockerfile frontend,
// local context, image export to every tag, registry cache, sign-in, the
// RUN steps' network and secrets. No entitlement is asked for: RUN
// --network=host and --security=insecure are refused by buildkitd.
func solveOptions(req activities.BuildRequest) (bk.SolveOpt, error) {
	in := req.Input
	ctxFS, err := fsutil.NewFS(req.ContextDir)
	if err != nil {
		return bk.SolveOpt{}, err
	}
	dfFS, err := fsutil.NewFS(filepath.Dir(req.Dockerfile))
	if err != nil {
		return bk.SolveOpt{}, err
	}
	repo := in.Registry.Address + "/" + in.Repository
	var names []string
	for _, t := range in.Plan.Tags {
		names = append(names, repo+":"+t)
	}
	insecure := fmt.Sprint(in.Registry.Insecure)
	attrs := map[string]string{"filename": filepath.Base(req.Dockerfile), "platform": strings.Join(in.Plan.Platforms, ",")}
	for k, v := range in.Plan.BuildArgs {
		attrs["build-arg:"+k] = v
	}
	if in.Provenance {
		// BuildKit's SLSA provenance (v0.2, what `cosign verify-attestation
		// --type slsaprovenance` reads), max mode: the Dockerfile, build
		// arguments, base images by digest, the build's steps; the source
		// and commit as VCS metadata (the build context is a local checkout).
		attrs["attest:provenance"] = "mode=max,version=v0.2,builder-id=" + activities.BuilderID
		attrs["vcs:source"] = in.Source.URL
		attrs["vcs:revision"] = string(in.Push.Commit)
	}
	if in.Plan.Network == chain.NetworkNone {
		attrs["force-network-mode"] = "none" // every RUN step, whatever its --network says
	}
	opt := bk.SolveOpt{
		Frontend:      "dockerfile.v0",
		FrontendAttrs: attrs,
		LocalMounts:   map[string]fsutil.FS{"context": ctxFS, "dockerfile": dfFS},
		Exports: []bk.ExportEntry{{Type: bk.ExporterImage, Attrs: map[string]string{
			"name": strings.Join(names, ","), "push": "true", "registry.insecure": insecure, "oci-mediatypes": "true",
		}}},
	}
	if in.Plan.NoCache {
		attrs["no-cache"] = ""
	} else {
		cache := in.Registry.Address + "/" + chain.CacheRepositoryPrefix + in.Repository + ":" + in.Plan.Rule
		opt.CacheImports = []bk.CacheOptionsEntry{{Type: "registry", Attrs: map[string]string{"ref": cache, "registry.insecure": insecure}}}
		opt.CacheExports = []bk.CacheOptionsEntry{{Type: "registry", Attrs: map[string]string{
			"ref": cache, "mode": "max", "registry.insecure": insecure, "oci-mediatypes": "true", "image-manifest": "true",
		}}}
	}
	tlsConfigs := map[string]*authprovider.AuthTLSConfig{}
	for addr, path := range req.CAFiles {
		tlsConfigs[addr] = &authprovider.AuthTLSConfig{RootCAs: []string{path}}
	}
	opt.Session = []session.Attachable{authprovider.NewDockerAuthProvider(authprovider.DockerAuthProviderConfig{
		AuthConfigProvider: signIn(req.SignIn),
		TLSConfigs:         tlsConfigs,
	}), secretsprovider.FromMap(req.Secrets)}
	return opt, nil
}

// signIn answers BuildKit's sign-in requests (for every host the build
// pulls from or pushes to) with the activity's sign-in.
func signIn(f func(ctx context.Context, host string) (*authn.AuthConfig, error)) authprovider.AuthConfigProvider {
	return func(ctx context.Context, host string, _ []string, _ authprovider.ExpireCachedAuthCheck) (types.AuthConfig, error) {
		c, err := f(ctx, host)
		if err != nil {
			return types.AuthConfig{}, err
		}
		return types.AuthConfig{Username: c.Username, Password: c.Password, IdentityToken: c.IdentityToken,
			RegistryToken: c.RegistryToken, ServerAddress: host}, nil
	}
}
