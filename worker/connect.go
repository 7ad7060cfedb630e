package worker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/contrib/envconfig"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Connection says how to reach Temporal, the way the temporal CLI does:
// a profile of the temporal CLI's config file (TEMPORAL_CONFIG_FILE,
// TEMPORAL_PROFILE), then the TEMPORAL_* environment, then these fields
// (the command line) — each later source over the earlier ones.
type Connection struct {
	// Address is the frontend host:port (default 127.0.0.1:7233).
	Address string
	// Namespace (default "default").
	Namespace string
	// TLS turns TLS on or off; nil leaves it to the other sources (on when
	// any TLS file or an API key is given).
	TLS *bool
	// TLSCertPath and TLSKeyPath are the client certificate and key (mTLS).
	TLSCertPath, TLSKeyPath string
	// TLSCAPath is the CA bundle that verifies the server.
	TLSCAPath string
	// TLSServerName overrides the name checked in the server's certificate.
	TLSServerName string
	// TLSDisableHostVerification skips verifying the server (testing only).
	TLSDisableHostVerification bool
	// APIKeyFile holds the API key (Temporal Cloud). The key itself is
	// never a flag, so that it stays out of process lists: TEMPORAL_API_KEY,
	// a profile, or this file.
	APIKeyFile string
	// ConfigFile and Profile select the temporal CLI's config file and profile.
	ConfigFile, Profile string
	// Env looks up the environment (nil: the process's).
	Env envconfig.EnvLookup
	// Metrics receives the SDK's metrics and dchain's (nil: none).
	Metrics client.MetricsHandler
	// Tracing traces workflow starts, workflows and activities (nil: none).
	Tracing *Tracing
}

// Defaults of a connection that names nothing.
const (
	DefaultAddress   = "127.0.0.1:7233"
	DefaultNamespace = "default"
)

// envAliases are the temporal CLI's names of the TLS variables, read when
// the SDK's own names are unset.
var envAliases = map[string]string{
	"TEMPORAL_TLS_CLIENT_CERT_PATH":    "TEMPORAL_TLS_CERT",
	"TEMPORAL_TLS_CLIENT_KEY_PATH":     "TEMPORAL_TLS_KEY",
	"TEMPORAL_TLS_SERVER_CA_CERT_PATH": "TEMPORAL_TLS_CA",
	"TEMPORAL_TLS_CLIENT_CERT_DATA":    "TEMPORAL_TLS_CERT_DATA",
	"TEMPORAL_TLS_CLIENT_KEY_DATA":     "TEMPORAL_TLS_KEY_DATA",
	"TEMPORAL_TLS_SERVER_CA_CERT_DATA": "TEMPORAL_TLS_CA_DATA",
}

type aliasEnv struct{ envconfig.EnvLookup }

func (e aliasEnv) LookupEnv(key string) (string, bool) {
	if v, ok := e.EnvLookup.LookupEnv(key); ok && v != "" {
		return v, true
	}
	if alias, ok := envAliases[key]; ok {
		if v, ok := e.EnvLookup.LookupEnv(alias); ok && v != "" {
			return v, true
		}
	}
	return "", false
}

// ClientOptions resolves the connection into the SDK's client options.
func (c Connection) ClientOptions() (client.Options, error) {
	env := c.Env
	if env == nil {
		env = envconfig.EnvLookupOS
	}
	env = aliasEnv{env}
	prof, err := envconfig.LoadClientConfigProfile(envconfig.LoadClientConfigProfileOptions{
		ConfigFilePath: c.ConfigFile, ConfigFileProfile: c.Profile, EnvLookup: env,
	})
	if err != nil {
		return client.Options{}, fmt.Errorf("temporal connection: %w", err)
	}
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	set(&prof.Address, c.Address)
	set(&prof.Namespace, c.Namespace)
	if prof.Address == "" {
		prof.Address = DefaultAddress
	}
	if prof.Namespace == "" {
		prof.Namespace = DefaultNamespace
	}
	if c.APIKeyFile != "" {
		b, err := os.ReadFile(c.APIKeyFile)
		if err != nil {
			return client.Options{}, fmt.Errorf("--api-key-file: %w", err)
		}
		if prof.APIKey = strings.TrimSpace(string(b)); prof.APIKey == "" {
			return client.Options{}, fmt.Errorf("--api-key-file %s: the file is empty", c.APIKeyFile)
		}
	}
	if c.TLS != nil || c.TLSCertPath != "" || c.TLSKeyPath != "" || c.TLSCAPath != "" || c.TLSServerName != "" || c.TLSDisableHostVerification {
		if prof.TLS == nil {
			prof.TLS = &envconfig.ClientConfigTLS{}
		}
		t := prof.TLS
		if c.TLS != nil {
			t.Disabled = !*c.TLS
		}
		if c.TLSCertPath != "" || c.TLSKeyPath != "" {
			t.ClientCertPath, t.ClientKeyPath, t.ClientCertData, t.ClientKeyData = c.TLSCertPath, c.TLSKeyPath, nil, nil
		}
		if c.TLSCAPath != "" {
			t.ServerCACertPath, t.ServerCACertData = c.TLSCAPath, nil
		}
		set(&t.ServerName, c.TLSServerName)
		t.DisableHostVerification = t.DisableHostVerification || c.TLSDisableHostVerification
	}
	o, err := prof.ToClientOptions(envconfig.ToClientOptionsRequest{})
	if err != nil {
		return client.Options{}, fmt.Errorf("temporal connection: %w", err)
	}
	o.Logger = QuietLogger()
	o.MetricsHandler = c.Metrics
	if o.Interceptors, err = c.Tracing.ClientInterceptors(); err != nil {
		return client.Options{}, err
	}
	return o, nil
}

// Dial connects to Temporal; the error says where it tried and how.
func (c Connection) Dial(ctx context.Context) (client.Client, error) {
	o, err := c.ClientOptions()
	if err != nil {
		return nil, err
	}
	cl, err := client.DialContext(ctx, o)
	if err != nil {
		how := "plaintext"
		if o.ConnectionOptions.TLS != nil {
			how = "TLS"
			if len(o.ConnectionOptions.TLS.Certificates) > 0 {
				how = "mTLS"
			}
		}
		if o.Credentials != nil {
			how += " + API key"
		}
		if how == "TLS" && Unavailable(err) {
			// A frontend that requires client certificates ends the
			// handshake of a client without one: all the client sees is
			// its connection closed ("broken pipe", "EOF").
			how += "; if the server requires client certificates (mTLS), give --tls-cert-path and --tls-key-path"
		}
		return nil, fmt.Errorf("connect to Temporal at %s (namespace %s, %s): %w", o.HostPort, o.Namespace, how, err)
	}
	return cl, nil
}

// Unavailable says whether err is Temporal's frontend not answering
// (refused, closed, not serving yet): the SDK's typed error, or a gRPC
// status beneath.
func Unavailable(err error) bool {
	var u *serviceerror.Unavailable
	return errors.As(err, &u) || status.Code(err) == codes.Unavailable
}
