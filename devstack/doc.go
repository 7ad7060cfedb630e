// Package devstack is `dchain dev`: in one process, an embedded Temporal
// server (SQLite) with its Web UI, real OCI registries on loopback ports
// standing for regions, a trigger receiver standing for the clusters, and the
// worker — with data under one directory that survives restarts.
package devstack
