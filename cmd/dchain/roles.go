package main

// dchain comes as two builds of this command: dchain-server, everything
// (the default build), and dchain, the client build (-tags dchain_client:
// make build), which leaves out the two server roles below — the dev
// stack (Temporal and its Web UI, registries, buildkitd) and the worker
// (BuildKit, Trivy and its vulnerability DB) — so that client commands
// start in milliseconds. The client hands those roles over to
// dchain-server (found beside it), so the user keeps one `dchain`.

// serverRoles are the commands only dchain-server runs, with their help line.
var serverRoles = map[string]string{
	"dev":    "Run the whole stack in one process: Temporal + Web UI, regional registries, trigger receiver, worker",
	"worker": "Run a worker: chain runs plus replication into every configured registry; --chains-only: chain runs only; --region: only that region's replication",
}
