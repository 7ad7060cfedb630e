package chain

import (
	"strings"

	"gopkg.in/yaml.v3"
)

// lines maps a field path ("replication[1].tagFilter") to its line in a YAML document.
type lines map[string]int

// indexLines records the line of every field below n.
func indexLines(n *yaml.Node) lines {
	l := lines{"": n.Line}
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		l[""] = n.Content[0].Line
	}
	for _, f := range nodePaths(n) {
		if f.key != nil {
			l[f.path] = f.key.Line
		} else {
			l[f.path] = f.value.Line
		}
	}
	return l
}

// of returns the line of path, or of its nearest parent that is present.
func (l lines) of(path string) int {
	for path != "" {
		if n, ok := l[path]; ok {
			return n
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return l[""]
}
