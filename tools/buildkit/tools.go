//go:build tools

// Package buildkit pins the buildkitd and buildctl commands dchain runs.
package buildkit

import (
	_ "github.com/moby/buildkit/cmd/buildctl"
	_ "github.com/moby/buildkit/cmd/buildkitd"
)
