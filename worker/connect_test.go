package worker

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type fakeEnv map[string]string

func (e fakeEnv) Environ() []string {
	var out []string
	for k, v := range e {
		out = append(out, k+"="+v)
	}
	return out
}

func (e fakeEnv) LookupEnv(k string) (string, bool) { v, ok := e[k]; return v, ok }

// A profile of the temporal CLI's config file, then the environment, then
// the flags: each later source wins, field by field.
func TestConnectionPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "temporal.toml")
	doc := `[profile.prod]
address = "file.example:7233"
namespace = "file-ns"
[profile.prod.tls]
server_name = "file-name"
`
	if err := os.WriteFile(file, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name             string
		conn             Connection
		env              fakeEnv
		addr, ns, server string
		tls              bool
	}{
		{"nothing named", Connection{}, fakeEnv{}, DefaultAddress, DefaultNamespace, "", false},
		{"profile", Connection{ConfigFile: file, Profile: "prod"}, fakeEnv{}, "file.example:7233", "file-ns", "file-name", true},
		{"env over profile", Connection{ConfigFile: file, Profile: "prod"},
			fakeEnv{"TEMPORAL_ADDRESS": "env.example:7233", "TEMPORAL_TLS_SERVER_NAME": "env-name"}, "env.example:7233", "file-ns", "env-name", true},
		{"flags over env", Connection{ConfigFile: file, Profile: "prod", Address: "flag.example:7233", Namespace: "flag-ns", TLSServerName: "flag-name"},
			fakeEnv{"TEMPORAL_ADDRESS": "env.example:7233", "TEMPORAL_NAMESPACE": "env-ns"}, "flag.example:7233", "flag-ns", "flag-name", true},
		{"profile from env", Connection{}, fakeEnv{"TEMPORAL_CONFIG_FILE": file, "TEMPORAL_PROFILE": "prod"}, "file.example:7233", "file-ns", "file-name", true},
		{"TEMPORAL_TLS=false turns the profile's TLS off", Connection{ConfigFile: file, Profile: "prod"}, fakeEnv{"TEMPORAL_TLS": "false"}, "file.example:7233", "file-ns", "", false},
		{"--tls over TEMPORAL_TLS=false", Connection{TLS: ptr(true)}, fakeEnv{"TEMPORAL_TLS": "false"}, DefaultAddress, DefaultNamespace, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.conn.Env = tc.env
			o, err := tc.conn.ClientOptions()
			if err != nil {
				t.Fatal(err)
			}
			if o.HostPort != tc.addr || o.Namespace != tc.ns {
				t.Errorf("address %s namespace %s, want %s %s", o.HostPort, o.Namespace, tc.addr, tc.ns)
			}
			gotTLS := o.ConnectionOptions.TLS != nil && !o.ConnectionOptions.TLSDisabled
			if gotTLS != tc.tls {
				t.Fatalf("TLS %v, want %v", gotTLS, tc.tls)
			}
			if gotTLS && o.ConnectionOptions.TLS.ServerName != tc.server {
				t.Errorf("server name %q, want %q", o.ConnectionOptions.TLS.ServerName, tc.server)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// The temporal CLI's variable names (TEMPORAL_TLS_CERT, _KEY, _CA) are read
// as well as the SDK's; a missing file is an error naming it.
func TestConnectionTLSAliasesAndAPIKey(t *testing.T) {
	dir := t.TempDir()
	_, err := Connection{Env: fakeEnv{"TEMPORAL_TLS_CA": filepath.Join(dir, "missing-ca.pem")}}.ClientOptions()
	if err == nil || !strings.Contains(err.Error(), "CA") {
		t.Fatalf("a missing TEMPORAL_TLS_CA: %v", err)
	}
	_, err = Connection{Env: fakeEnv{"TEMPORAL_TLS_CERT": filepath.Join(dir, "c.pem")}}.ClientOptions()
	if err == nil || !strings.Contains(err.Error(), "key") {
		t.Fatalf("TEMPORAL_TLS_CERT without a key: %v", err)
	}

	keyFile := filepath.Join(dir, "api-key")
	if err := os.WriteFile(keyFile, []byte("  secret-key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	o, err := Connection{APIKeyFile: keyFile, Env: fakeEnv{}}.ClientOptions()
	if err != nil {
		t.Fatal(err)
	}
	if o.Credentials == nil || o.ConnectionOptions.TLS == nil {
		t.Fatalf("an API key must bring credentials and TLS: %+v", o.ConnectionOptions)
	}
	o, err = Connection{Env: fakeEnv{"TEMPORAL_API_KEY": "k"}}.ClientOptions()
	if err != nil || o.Credentials == nil {
		t.Fatalf("TEMPORAL_API_KEY: %v %v", o.Credentials, err)
	}
	if err := os.WriteFile(keyFile, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := (Connection{APIKeyFile: keyFile, Env: fakeEnv{}}).ClientOptions(); err == nil || !strings.Contains(err.Error(), "--api-key-file") {
		t.Fatalf("an empty key file: %v", err)
	}
}

// Concurrency left at zero takes the per-role defaults; a value set wins.
func TestConcurrencyDefaults(t *testing.T) {
	if got := (Concurrency{}).orDefault(); got != DefaultConcurrency {
		t.Errorf("zero: %+v, want %+v", got, DefaultConcurrency)
	}
	if got := (Concurrency{Copies: 2}).orDefault(); got.Copies != 2 || got.ChainActivities != DefaultConcurrency.ChainActivities {
		t.Errorf("copies 2: %+v", got)
	}
	o := workerOptions(4, 0, DefaultConcurrency)
	if o.MaxConcurrentActivityExecutionSize != 4 || o.MaxConcurrentWorkflowTaskExecutionSize != 0 || len(o.Interceptors) != 1 {
		t.Errorf("worker options: %+v", o)
	}
	if o.MaxConcurrentWorkflowTaskPollers != 16 || o.MaxConcurrentActivityTaskPollers != 4 {
		t.Errorf("pollers %d/%d, want 16 and no more activity polls than the 4 slots", o.MaxConcurrentWorkflowTaskPollers, o.MaxConcurrentActivityTaskPollers)
	}
}
