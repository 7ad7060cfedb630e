package buildkit

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	bk "github.com/moby/buildkit/client"
	digest "github.com/opencontainers/go-digest"

	"github.com/dchain-dev/dchain/workflows"
)

// A running build's heartbeat carries the log's last lines as the stored
// log will read them: counted, capped, and with every secret masked, a
// value of several lines too, even where it straddles the lines kept.
func TestProgressCarriesTheLogTail(t *testing.T) {
	secret := "first-half\nsecond-half"
	l := &buildLog{secrets: [][]byte{[]byte(secret)}}
	ch := make(chan *bk.SolveStatus, 512)
	v := digest.FromString("step")
	now := time.Now()
	ch <- &bk.SolveStatus{Vertexes: []*bk.Vertex{{Digest: v, Name: "RUN noisy", Started: &now}}}
	for i := range 300 {
		ch <- &bk.SolveStatus{Logs: []*bk.VertexLog{{Vertex: v, Data: fmt.Appendf(nil, "line %d\n", i)}}}
	}
	ch <- &bk.SolveStatus{Logs: []*bk.VertexLog{{Vertex: v, Data: []byte("x " + secret + " y\nlast\n")}}}
	close(ch)
	var last workflows.BuildProgress
	l.consume(ch, func(p workflows.BuildProgress) { last = p })
	p := l.progress()
	if !slices.Equal(p.Tail, last.Tail) || p.Lines != last.Lines {
		t.Fatalf("the last event's progress %d lines, now %d: the tail lags behind", last.Lines, p.Lines)
	}
	stored := strings.Split(strings.TrimSuffix(string(l.bytes()), "\n"), "\n")
	if p.Lines != len(stored) || len(p.Tail) != workflows.TailLines {
		t.Fatalf("%d lines, tail of %d; the stored log has %d", p.Lines, len(p.Tail), len(stored))
	}
	if got, want := p.Tail, stored[len(stored)-workflows.TailLines:]; !slices.Equal(got, want) {
		t.Fatalf("tail %q\nwant %q", got[len(got)-3:], want[len(want)-3:])
	}
	for _, line := range p.Tail {
		if strings.Contains(line, "first-half") || strings.Contains(line, "second-half") {
			t.Fatalf("the tail shows the secret: %q", line)
		}
	}
	if last.Lines == 0 {
		t.Fatal("no progress counted lines while the build ran")
	}
	// A follower shows each line once, and says when some went by unseen.
	if lines, missed := p.NewLines(p.Lines - 2); missed != 0 || !slices.Equal(lines, p.Tail[len(p.Tail)-2:]) {
		t.Errorf("NewLines(Lines-2) = %q, %d", lines, missed)
	}
	if lines, missed := p.NewLines(0); missed != p.Lines-len(p.Tail) || len(lines) != len(p.Tail) {
		t.Errorf("NewLines(0) = %d lines, %d missed", len(lines), missed)
	}
	if lines, _ := p.NewLines(p.Lines); lines != nil {
		t.Errorf("NewLines(Lines) = %q", lines)
	}
}
