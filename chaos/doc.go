// Package chaos holds the chaos suite: the deployment's shape as separate
// OS processes of the real dchain binary — the embedded Temporal server,
// a chain worker, workers per region (two on one queue) and two API
// replicas — against real registries behind TCP proxies the tests
// throttle and close, and a trigger receiver that fails on purpose. The
// tests kill workers, the API and the Temporal server mid-run and check
// that nothing is lost (docs/reliability.md records the results). Run it
// alone with `make chaos`; `make test` runs it too.
package chaos
