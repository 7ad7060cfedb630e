package buildkit

import (
	"errors"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dchain-dev/dchain/activities"
)

// A registry that cannot be reached during a build (the base image's, the
// cache's) is worth another attempt; a failing step is not.
func TestTransientBuildError(t *testing.T) {
	for msg, transient := range map[string]bool{
		`failed to solve: 127.0.0.1:5999/base/busybox:1: failed to resolve source metadata for 127.0.0.1:5999/base/busybox:1: failed to do request: Head "http://127.0.0.1:5999/v2/base/busybox/manifests/1": dial tcp 127.0.0.1:5999: connect: connection refused`: true,
		`failed to solve: failed to fetch anonymous token: unexpected status from GET request to https://auth.example/token: 503 Service Unavailable`:                                                                                                               true,
		`failed to solve: registry.example/base:1: dial tcp: lookup registry.example: no such host`:                                                                                                                                                                 true,
		`failed to solve: process "/bin/sh -c exit 3" did not complete successfully: exit code: 3`:                                                                                                                                                                  false,
		`failed to solve: dockerfile parse error on line 2: unknown instruction: RUNN`:                                                                                                                                                                              false,
		`failed to solve: base:1: not found`: false,
	} {
		if got := transientBuildError(errors.New(msg)); got != transient {
			t.Errorf("%q: transient %v, want %v", msg, got, transient)
		}
	}
	if !transientBuildError(status.Error(codes.Unavailable, "buildkitd is restarting")) {
		t.Error("an unavailable buildkitd is transient")
	}
}

// What the build activity retries is what this package marks: its text
// stays the failure's own.
func TestUnavailableIsRetried(t *testing.T) {
	err := error(unavailable{errors.New("connect to buildkitd at unix:///nowhere: no such file")})
	if !errors.Is(err, activities.ErrBuildUnavailable) || err.Error() != "connect to buildkitd at unix:///nowhere: no such file" {
		t.Fatalf("%v: not marked, or its text changed", err)
	}
	if errors.Is(errors.New("exit code: 3"), activities.ErrBuildUnavailable) {
		t.Fatal("an unmarked failure counts as unavailable")
	}
}
