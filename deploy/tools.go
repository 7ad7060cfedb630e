//go:build tools

package deploy

// The Temporal server and its SQL schema tool the deployment test runs,
// built from the Temporal module dchain embeds (one version, go.mod's).
import (
	_ "go.temporal.io/server/cmd/server"
	_ "go.temporal.io/server/cmd/tools/sql"
)
