package buildkit

import (
	"errors"
	"testing"
	"time"

	bk "github.com/moby/buildkit/client"
	digest "github.com/opencontainers/go-digest"

	"github.com/dchain-dev/dchain/workflows"
)

// A secret printed in pieces (the log's chunks split lines anywhere) is
// masked all the same: lines are joined before they are written.
func TestLogJoinsLinesAcrossChunks(t *testing.T) {
	l := &buildLog{secrets: [][]byte{[]byte("s3cret-token")}}
	ch := make(chan *bk.SolveStatus, 4)
	v := digest.FromString("step")
	now := time.Now()
	ch <- &bk.SolveStatus{Vertexes: []*bk.Vertex{{Digest: v, Name: "RUN cat secret", Started: &now}}}
	ch <- &bk.SolveStatus{Logs: []*bk.VertexLog{{Vertex: v, Data: []byte("before\ns3cr")}}}
	ch <- &bk.SolveStatus{Logs: []*bk.VertexLog{{Vertex: v, Data: []byte("et-token\nafter")}}}
	close(ch)
	l.consume(ch, func(workflows.BuildProgress) {})
	if got := string(l.bytes()); got != "START RUN cat secret\n  | before\n  | ***\n  | after\n" {
		t.Fatalf("log: %q", got)
	}
}

// A RUN step that prints a mounted secret: the log and the error text hold
// it masked; an error without it stays the same error.
func TestRedact(t *testing.T) {
	secrets := [][]byte{[]byte("s3cret-token"), nil, []byte("")}
	l := &buildLog{secrets: secrets}
	l.buf.WriteString("START RUN --mount=type=secret,id=npmrc cat /run/secrets/npmrc\n  | s3cret-token\n  | xs3cret-tokenx\n")
	if got := string(l.bytes()); got != "START RUN --mount=type=secret,id=npmrc cat /run/secrets/npmrc\n  | ***\n  | x***x\n" {
		t.Fatalf("log: %q", got)
	}
	base := errors.New(`process "/bin/sh -c echo s3cret-token; exit 1" did not complete successfully`)
	err := redactError(base, secrets)
	if err.Error() != `process "/bin/sh -c echo ***; exit 1" did not complete successfully` || !errors.Is(err, base) {
		t.Fatalf("error: %v", err)
	}
	// A secret of several lines (an .npmrc), printed line by line; one
	// secret holding another.
	npmrc := []byte("//registry.npmjs.org/:_authToken=abc123secret\nalways-auth=true\n}")
	l = &buildLog{secrets: [][]byte{[]byte("abc"), npmrc}}
	l.buf.WriteString("  | //registry.npmjs.org/:_authToken=abc123secret\n  | always-auth=true\n  | }\n")
	if got := string(l.bytes()); got != "  | ***\n  | ***\n  | }\n" {
		t.Fatalf("multi-line secret: %q", got)
	}
	plain := errors.New("exit code: 3")
	if redactError(plain, secrets) != plain || redactError(nil, secrets) != nil {
		t.Fatal("an error without a secret changed")
	}
}
