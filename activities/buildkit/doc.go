// Package buildkit is the build activity's BuildKit adapter: it solves a
// checkout's Dockerfile on buildkitd for the plan's platforms, pushes one
// image under every tag with the registry build cache, and renders
// BuildKit's status stream as the build log and progress. Package
// activities reaches it through its ImageBuilder interface, so that
// processes that never build (dchain's client build) do not link BuildKit.
package buildkit
