package buildkit

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"sync"

	bk "github.com/moby/buildkit/client"

	"github.com/dchain-dev/dchain/workflows"
)

// buildLog renders BuildKit's status stream as a plain-text log and counts steps.
type buildLog struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	steps   map[string]bool
	started map[string]bool
	done    map[string]bool
	cached  map[string]bool
	current string
	// partial is each step's output after its last newline so far.
	partial map[string][]byte
	// secrets are values to mask wherever they appear (a RUN step that
	// prints a mounted secret).
	secrets [][]byte
	// lines counts the newlines of buf[:counted]; tail is the log's last
	// lines as of then (cut again only when the log has grown).
	lines, counted int
	tail           []string
}

func (l *buildLog) consume(ch chan *bk.SolveStatus, progress func(workflows.BuildProgress)) {
	for s := range ch {
		l.mu.Lock()
		if l.steps == nil {
			l.steps, l.started, l.done, l.cached = map[string]bool{}, map[string]bool{}, map[string]bool{}, map[string]bool{}
		}
		for _, v := range s.Vertexes {
			id := v.Digest.String()
			if !l.steps[id] && v.Name != "" {
				l.steps[id] = true
			}
			switch {
			case v.Cached && !l.cached[id]:
				l.cached[id], l.done[id] = true, true
				fmt.Fprintf(&l.buf, "CACHED %s\n", v.Name)
			case v.Error != "":
				fmt.Fprintf(&l.buf, "ERROR %s: %s\n", v.Name, v.Error)
			case v.Completed != nil && !l.done[id]:
				l.done[id] = true
				d := ""
				if v.Started != nil {
					d = fmt.Sprintf(" (%.1fs)", v.Completed.Sub(*v.Started).Seconds())
				}
				fmt.Fprintf(&l.buf, "DONE %s%s\n", v.Name, d)
			case v.Started != nil && v.Completed == nil && !l.started[id]:
				l.started[id], l.current = true, v.Name
				fmt.Fprintf(&l.buf, "START %s\n", v.Name)
			}
		}
		for _, lg := range s.Logs {
			// Whole lines only: a line (a secret in it) may come in pieces.
			if l.partial == nil {
				l.partial = map[string][]byte{}
			}
			id := lg.Vertex.String()
			data := append(l.partial[id], lg.Data...)
			end := bytes.LastIndexByte(data, '\n') + 1
			for line := range strings.Lines(string(data[:end])) {
				fmt.Fprintf(&l.buf, "  | %s", line)
			}
			l.partial[id] = append([]byte(nil), data[end:]...)
		}
		for _, w := range s.Warnings {
			fmt.Fprintf(&l.buf, "WARN %s\n", w.Short)
		}
		l.mu.Unlock()
		progress(l.progress())
	}
	l.mu.Lock()
	for _, rest := range l.partial {
		if len(rest) > 0 {
			fmt.Fprintf(&l.buf, "  | %s\n", rest)
		}
	}
	l.mu.Unlock()
}

func (l *buildLog) progress() workflows.BuildProgress {
	l.mu.Lock()
	defer l.mu.Unlock()
	if b := l.buf.Bytes(); len(b) > l.counted {
		l.lines += bytes.Count(b[l.counted:], []byte("\n"))
		l.counted = len(b)
		l.tail = tailLines(b, l.secrets)
	}
	return workflows.BuildProgress{Steps: len(l.steps), Completed: len(l.done), Cached: len(l.cached), Current: l.current,
		Lines: l.lines, Tail: l.tail}
}

// tailLines are the last whole lines of log (at most
// workflows.TailLines, and 16 KiB), secrets masked as the stored log
// masks them: the text masked reaches back the longest secret's length
// before the lines kept, so a value that ends among them is masked whole.
func tailLines(log []byte, secrets [][]byte) []string {
	const maxBytes = 16 << 10
	end := bytes.LastIndexByte(log, '\n') + 1
	longest := 0
	for _, s := range secrets {
		longest = max(longest, len(s))
	}
	start := max(0, end-maxBytes-longest)
	start = bytes.LastIndexByte(log[:start], '\n') + 1 // back to its line's start
	lines := strings.SplitAfter(string(redact(slices.Clone(log[start:end]), secrets)), "\n")
	lines = lines[:len(lines)-1] // after the last newline: ""
	keep, size := len(lines), 0
	for keep > 0 && len(lines)-keep < workflows.TailLines && size+len(lines[keep-1]) <= maxBytes {
		keep--
		size += len(lines[keep])
	}
	lines = lines[keep:]
	for i := range lines {
		lines[i] = strings.TrimSuffix(lines[i], "\n")
	}
	return lines
}

func (l *buildLog) bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return redact(append([]byte(nil), l.buf.Bytes()...), l.secrets)
}

// redacted is what a secret's value becomes in a log or an error.
const redacted = "***"

// redact masks every secret value in b: the longest first (one may hold
// another), and each line of a value of several lines on its own too,
// since the log shows output line by line.
func redact(b []byte, secrets [][]byte) []byte {
	var values [][]byte
	for _, s := range secrets {
		values = append(values, s)
		if bytes.Contains(s, []byte("\n")) {
			for _, line := range bytes.Split(s, []byte("\n")) {
				if line = bytes.TrimRight(line, "\r"); len(bytes.TrimSpace(line)) >= minMaskedLine {
					values = append(values, line)
				}
			}
		}
	}
	slices.SortFunc(values, func(a, b []byte) int { return len(b) - len(a) })
	for _, v := range values {
		if len(v) > 0 {
			b = bytes.ReplaceAll(b, v, []byte(redacted))
		}
	}
	return b
}

// minMaskedLine is the shortest line of a secret of several lines that is
// masked on its own (shorter ones, such as "}" or "[global]", are not
// secret and are everywhere).
const minMaskedLine = 6

// redactedError is a build error with the secrets' values masked in its text.
type redactedError struct {
	msg string
	err error
}

func (e redactedError) Error() string { return e.msg }
func (e redactedError) Unwrap() error { return e.err }

// redactError masks the secrets in err's text (nil stays nil).
func redactError(err error, secrets [][]byte) error {
	if err == nil {
		return nil
	}
	msg := string(redact([]byte(err.Error()), secrets))
	if msg == err.Error() {
		return err
	}
	return redactedError{msg, err}
}
