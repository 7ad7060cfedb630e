package buildkit

import (
	"errors"
	"testing"
)

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
	plain := errors.New("exit code: 3")
	if redactError(plain, secrets) != plain || redactError(nil, secrets) != nil {
		t.Fatal("an error without a secret changed")
	}
}
