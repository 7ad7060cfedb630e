package chain

import (
	"strconv"
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
	l.walk(n, "")
	return l
}

func (l lines) walk(n *yaml.Node, path string) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			l.walk(c, path)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			p := n.Content[i].Value
			if path != "" {
				p = path + "." + p
			}
			l[p] = n.Content[i].Line
			l.walk(n.Content[i+1], p)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			p := path + "[" + strconv.Itoa(i) + "]"
			l[p] = c.Line
			l.walk(c, p)
		}
	}
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
