package devstack

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/uuid"
	uiserver "github.com/temporalio/ui-server/v2/server"
	uiconfig "github.com/temporalio/ui-server/v2/server/config"
	uioptions "github.com/temporalio/ui-server/v2/server/server_options"
	"go.temporal.io/server/common/cluster"
	"go.temporal.io/server/common/config"
	"go.temporal.io/server/common/dynamicconfig"
	"go.temporal.io/server/common/log"
	"go.temporal.io/server/common/membership/static"
	sqliteplugin "go.temporal.io/server/common/persistence/sql/sqlplugin/sqlite"
	"go.temporal.io/server/common/primitives"
	sqliteschema "go.temporal.io/server/schema/sqlite"
	"go.temporal.io/server/temporal"

	"github.com/dchain-dev/dchain/workflows"
)

// TemporalOptions configure the embedded Temporal server.
type TemporalOptions struct {
	// DataDir holds temporal.db (SQLite) and the cluster id; empty means in memory.
	DataDir string
	// IP to bind (default 127.0.0.1); Port of the frontend gRPC service (default 7233).
	IP   string
	Port int
	// UIPort serves the Web UI (0: no UI).
	UIPort int
	// Namespace is created with dchain's search attributes (default "default").
	Namespace string
	// LogLevel of the server's own log (default "warn"); LogFile, if set, receives it.
	LogLevel string
	LogFile  string
	// TLS, when set, makes the frontend serve TLS and require client
	// certificates signed by TLS.ClientCAFile (mTLS); the Web UI is not
	// served then.
	TLS *ServerTLS
}

// ServerTLS are the frontend's certificate and the CA its clients'
// certificates must chain to; the server's own system worker connects
// with the same certificate.
type ServerTLS struct {
	Pair
	ClientCAFile string
	// ServerName is a name in the certificate, for the system worker.
	ServerName string
}

// Temporal is a running embedded Temporal server (and Web UI).
type Temporal struct {
	server  temporal.Server
	ui      *uiserver.Server
	Address string
	UIURL   string
}

// StartTemporal starts a Temporal server in this process, with SQLite
// persistence under DataDir, the namespace registered with dchain's search
// attributes, and the Web UI served from this binary.
func StartTemporal(o TemporalOptions) (*Temporal, error) {
	if o.IP == "" {
		o.IP = "127.0.0.1"
	}
	if o.Port == 0 {
		o.Port = 7233
	}
	if o.Namespace == "" {
		o.Namespace = "default"
	}
	if o.LogLevel == "" {
		o.LogLevel = "warn"
	}
	for _, p := range []int{o.Port, o.UIPort} {
		if p != 0 {
			if err := portFree(o.IP, p); err != nil {
				return nil, err
			}
		}
	}
	clusterID, dbFile, err := prepareDataDir(o.DataDir)
	if err != nil {
		return nil, err
	}
	sqlCfg, err := sqliteConfig(dbFile)
	if err != nil {
		return nil, err
	}
	ns, err := sqliteschema.NewNamespaceConfig("active", o.Namespace, false, workflows.SearchAttributes)
	if err != nil {
		return nil, fmt.Errorf("temporal: namespace config: %w", err)
	}
	if err := sqliteschema.CreateNamespaces(sqlCfg, ns); err != nil {
		return nil, fmt.Errorf("temporal: create namespace %s: %w", o.Namespace, err)
	}

	ports := map[primitives.ServiceName]int{primitives.FrontendService: o.Port}
	for _, s := range []primitives.ServiceName{primitives.HistoryService, primitives.MatchingService, primitives.WorkerService} {
		if ports[s], err = FreePort(o.IP); err != nil {
			return nil, err
		}
	}
	httpPort, err := FreePort(o.IP)
	if err != nil {
		return nil, err
	}
	cfg := serverConfig(o, clusterID, sqlCfg, ports, httpPort)
	hosts := map[primitives.ServiceName]static.Hosts{}
	for s, p := range ports {
		hosts[s] = static.SingleLocalHost(fmt.Sprintf("%s:%d", o.IP, p))
	}
	logger := log.NewZapLogger(log.BuildZapLogger(log.Config{Level: o.LogLevel, Format: "json", OutputFile: o.LogFile}))
	dyn := dynamicconfig.StaticClient{
		dynamicconfig.FrontendMaxNamespaceVisibilityRPSPerInstance.Key(): 100,
		dynamicconfig.HistoryCacheHostLevelMaxSize.Key():                 8096,
	}
	srv, err := temporal.NewServer(
		temporal.WithConfig(cfg),
		temporal.ForServices(temporal.DefaultServices),
		temporal.WithStaticHosts(hosts),
		temporal.WithLogger(logger),
		temporal.WithDynamicConfigClient(dyn),
	)
	if err != nil {
		return nil, fmt.Errorf("temporal: %w", err)
	}
	if err := srv.Start(); err != nil {
		return nil, fmt.Errorf("temporal: start: %w", err)
	}
	t := &Temporal{server: srv, Address: fmt.Sprintf("%s:%d", o.IP, o.Port)}
	if o.UIPort != 0 && o.TLS == nil {
		t.ui = uiserver.NewServer(uioptions.WithConfigProvider(&uiconfig.Config{
			Host: o.IP, Port: o.UIPort, TemporalGRPCAddress: t.Address, EnableUI: true,
			DefaultNamespace: o.Namespace, CORS: uiconfig.CORS{CookieInsecure: true}, HideLogs: true, DisableNewsFetch: true,
		}))
		go func() { _ = t.ui.Start() }()
		t.UIURL = fmt.Sprintf("http://%s:%d", o.IP, o.UIPort)
		if err := WaitListening(fmt.Sprintf("%s:%d", o.IP, o.UIPort), 10*time.Second); err != nil {
			t.Stop()
			return nil, fmt.Errorf("temporal web UI: %w", err)
		}
	}
	return t, nil
}

// Stop stops the UI and the server.
func (t *Temporal) Stop() {
	if t.ui != nil {
		t.ui.Stop()
	}
	_ = t.server.Stop()
}

func serverConfig(o TemporalOptions, clusterID string, sqlCfg *config.SQL, ports map[primitives.ServiceName]int, httpPort int) *config.Config {
	var c config.Config
	c.Global.Membership.MaxJoinDuration = 30 * time.Second
	c.Global.Membership.BroadcastAddress = o.IP
	c.Persistence.DefaultStore = "sqlite"
	c.Persistence.VisibilityStore = "sqlite"
	c.Persistence.NumHistoryShards = 1
	c.Persistence.DataStores = map[string]config.DataStore{"sqlite": {SQL: sqlCfg}}
	c.ClusterMetadata = &cluster.Config{
		FailoverVersionIncrement: 10,
		MasterClusterName:        "active",
		CurrentClusterName:       "active",
		ClusterInformation: map[string]cluster.ClusterInformation{"active": {
			Enabled:                true,
			InitialFailoverVersion: 1,
			RPCAddress:             fmt.Sprintf("%s:%d", o.IP, o.Port),
			HTTPAddress:            fmt.Sprintf("%s:%d", o.IP, httpPort),
			ClusterID:              clusterID,
		}},
	}
	c.DCRedirectionPolicy.Policy = "noop"
	c.Services = map[string]config.Service{}
	for s, p := range ports {
		svc := config.Service{}
		svc.RPC.GRPCPort, svc.RPC.BindOnIP = p, o.IP
		if s == primitives.FrontendService {
			svc.RPC.HTTPPort = httpPort
		}
		c.Services[string(s)] = svc
	}
	c.Archival.History.State = "disabled"
	c.Archival.Visibility.State = "disabled"
	c.NamespaceDefaults.Archival.History.State = "disabled"
	c.NamespaceDefaults.Archival.Visibility.State = "disabled"
	c.PublicClient.HostPort = fmt.Sprintf("%s:%d", o.IP, o.Port)
	if t := o.TLS; t != nil {
		c.Global.TLS.Frontend.Server = config.ServerTLS{CertFile: t.CertFile, KeyFile: t.KeyFile,
			ClientCAFiles: []string{t.ClientCAFile}, RequireClientAuth: true}
		c.Global.TLS.SystemWorker = config.WorkerTLS{CertFile: t.CertFile, KeyFile: t.KeyFile,
			Client: config.ClientTLS{ServerName: t.ServerName, RootCAFiles: []string{t.ClientCAFile}}}
	}
	return &c
}

// prepareDataDir returns the persisted cluster id and the SQLite file ("" for memory).
func prepareDataDir(dir string) (clusterID, dbFile string, err error) {
	if dir == "" {
		return uuid.NewString(), "", nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", fmt.Errorf("temporal: data dir: %w", err)
	}
	idFile := filepath.Join(dir, "cluster-id")
	if b, err := os.ReadFile(idFile); err == nil {
		clusterID = strings.TrimSpace(string(b))
	} else {
		clusterID = uuid.NewString()
		if err := os.WriteFile(idFile, []byte(clusterID+"\n"), 0o644); err != nil {
			return "", "", fmt.Errorf("temporal: %w", err)
		}
	}
	return clusterID, filepath.Join(dir, "temporal.db"), nil
}

// sqliteConfig is the SQLite store; a new database file gets the schema.
func sqliteConfig(dbFile string) (*config.SQL, error) {
	c := &config.SQL{PluginName: sqliteplugin.PluginName}
	if dbFile == "" {
		c.ConnectAttributes = map[string]string{"mode": "memory", "cache": "shared"}
		c.DatabaseName = "dchain-" + uuid.NewString()
	} else {
		c.ConnectAttributes = map[string]string{"mode": "rwc", "journal_mode": "wal"}
		c.DatabaseName = dbFile
	}
	if _, err := os.Stat(dbFile); dbFile == "" || errors.Is(err, os.ErrNotExist) {
		if err := sqliteschema.SetupSchema(c); err != nil {
			return nil, fmt.Errorf("temporal: set up SQLite schema: %w", err)
		}
	}
	return c, nil
}

func portFree(ip string, port int) error {
	l, err := net.Listen("tcp", fmt.Sprintf("%s:%d", ip, port))
	if err != nil {
		return fmt.Errorf("port %s:%d is in use (is another `dchain dev` running? pick other ports with flags): %w", ip, port, err)
	}
	return l.Close()
}

// FreePort is a TCP port free on ip right now.
//
// It picks below Linux's ephemeral range (32768–60999): a port the kernel
// hands out for ":0" is also what it gives the next outgoing connection's
// local end, which then holds the port when its listener comes to bind it
// ("address already in use" at a stack's start, seen under load).
func FreePort(ip string) (int, error) {
	for range 100 {
		p := 20000 + rand.IntN(32768-20000)
		if l, err := net.Listen("tcp", fmt.Sprintf("%s:%d", ip, p)); err == nil {
			l.Close()
			return p, nil
		}
	}
	l, err := net.Listen("tcp", ip+":0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// WaitListening waits up to d until something accepts connections at addr.
func WaitListening(addr string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			return c.Close()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not listening after %s: %w", addr, d, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
