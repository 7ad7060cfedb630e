package chain

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Problem is one thing wrong with a config or chain file.
type Problem struct {
	File    string `json:"file"`
	Line    int    `json:"line"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

func (p Problem) String() string {
	loc := p.File
	if p.Line > 0 {
		loc += ":" + strconv.Itoa(p.Line)
	}
	if p.Field != "" {
		return fmt.Sprintf("%s: %s: %s", loc, p.Field, p.Message)
	}
	return fmt.Sprintf("%s: %s", loc, p.Message)
}

// Problems is every problem found; as an error it lists them one per line.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// sorted orders problems by file and line, keeping discovery order otherwise.
func (ps Problems) sorted() Problems {
	sort.SliceStable(ps, func(i, j int) bool {
		if ps[i].File != ps[j].File {
			return ps[i].File < ps[j].File
		}
		return ps[i].Line < ps[j].Line
	})
	return ps
}

// errOrNil returns ps as an error, or nil when empty.
func (ps Problems) errOrNil() error {
	if len(ps) == 0 {
		return nil
	}
	return ps.sorted()
}

// yamlLineErr matches the "line N: message" items of yaml.v3 errors.
var yamlLineErr = regexp.MustCompile(`line (\d+): (.*)`)

// yamlProblems turns a yaml.v3 decode error into problems with line numbers.
func yamlProblems(file string, err error) Problems {
	var ps Problems
	for _, l := range strings.Split(err.Error(), "\n") {
		if m := yamlLineErr.FindStringSubmatch(l); m != nil {
			n, _ := strconv.Atoi(m[1])
			ps = append(ps, Problem{File: file, Line: n, Message: strings.TrimPrefix(m[2], "yaml: ")})
		}
	}
	if len(ps) == 0 {
		ps = Problems{{File: file, Message: strings.TrimPrefix(err.Error(), "yaml: ")}}
	}
	return ps
}
