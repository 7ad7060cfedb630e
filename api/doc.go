// Package api is dchain's HTTP layer (echo): webhook endpoints that turn
// signed Git and registry pushes into chain runs (parsing and matching live
// in package starter), a versioned JSON API for tools (/api/v1, bearer
// token), health and readiness, and Prometheus metrics.
package api
