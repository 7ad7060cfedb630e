package chain

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// nodeAt is a field of a YAML document: its path ("replication[0].tagFilter"),
// its key node (nil for a list item) and its value node.
type nodeAt struct {
	path       string
	key, value *yaml.Node
}

// nodePaths lists every field and list item below n, in document order.
func nodePaths(n *yaml.Node) []nodeAt {
	var out []nodeAt
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, path)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				p := n.Content[i].Value
				if path != "" {
					p = path + "." + p
				}
				out = append(out, nodeAt{p, n.Content[i], n.Content[i+1]})
				walk(n.Content[i+1], p)
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				p := path + "[" + strconv.Itoa(i) + "]"
				out = append(out, nodeAt{p, nil, c})
				walk(c, p)
			}
		}
	}
	walk(n, "")
	return out
}

var (
	unknownKeyErr = regexp.MustCompile(`^line (\d+): field (.+) not found in type (\S+)$`)
	wrongTypeErr  = regexp.MustCompile(`^line (\d+): cannot unmarshal !!(\w+)(?: .*)? into (\S+)$`)
)

// typeProblems turns yaml.v3's type errors of a document decoded into a
// value of type root into problems that name the field path and say what
// is wrong in the terms of the file ("want a string, got a list"; an
// unknown key with the closest known one), and returns the paths whose
// values were refused: what validation says about their (zero) values
// would only echo the refusal. refused is nil when an error is of another
// kind (a custom type's own): then the document is not validated further.
func typeProblems(file string, doc *yaml.Node, root reflect.Type, err error) (Problems, map[string]bool) {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return yamlProblems(file, err), nil
	}
	other := false
	nodes := nodePaths(doc)
	refused := map[string]bool{}
	var ps Problems
	for _, msg := range te.Errors {
		if m := unknownKeyErr.FindStringSubmatch(msg); m != nil {
			line, _ := strconv.Atoi(m[1])
			path := m[2]
			for _, n := range nodes {
				if n.key != nil && n.key.Line == line && n.key.Value == m[2] {
					path = n.path
					break
				}
			}
			parent := ""
			if i := strings.LastIndex(path, "."); i >= 0 {
				parent = path[:i]
			}
			msg, meant := unknownKey(m[2], yamlKeys(typeAt(root, parent)))
			if meant != "" { // "destination is required" would only echo the misspelling
				if parent != "" {
					meant = parent + "." + meant
				}
				refused[meant] = true
			}
			ps = append(ps, Problem{File: file, Line: line, Field: path, Message: msg})
			continue
		}
		if m := wrongTypeErr.FindStringSubmatch(msg); m != nil {
			line, _ := strconv.Atoi(m[1])
			path := ""
			for _, n := range nodes {
				if n.value.Line == line && n.value.Tag == "!!"+m[2] {
					path = n.path
					break
				}
			}
			refused[path] = true
			want := wantOf(m[3])
			if t := typeAt(root, path); t != nil && path != "" {
				want = wantKind(t, want)
			}
			ps = append(ps, Problem{File: file, Line: line, Field: path, Message: fmt.Sprintf("want %s, got %s", want, gotOf(m[2]))})
			continue
		}
		ps = append(ps, yamlProblems(file, errors.New(msg))...)
		other = true
	}
	if other {
		return ps, nil
	}
	return ps, refused
}

// withoutRefused drops the problems of refused fields and of what is below them.
func withoutRefused(ps Problems, refused map[string]bool) Problems {
	out := ps[:0]
next:
	for _, p := range ps {
		for r := range refused {
			if p.Field == r || strings.HasPrefix(p.Field, r+".") || strings.HasPrefix(p.Field, r+"[") {
				continue next
			}
		}
		out = append(out, p)
	}
	return out
}

// unknownKey is the problem of an unknown key and the known key it is
// closest to ("" when none is close).
func unknownKey(key string, known []string) (msg, meant string) {
	best, dist := "", len(key)/2+2
	for _, k := range known {
		if d := editDistance(strings.ToLower(key), strings.ToLower(k)); d < dist {
			best, dist = k, d
		}
	}
	switch {
	case best != "":
		return fmt.Sprintf("unknown key; did you mean %q?", best), best
	case len(known) > 0:
		return "unknown key (known here: " + strings.Join(known, ", ") + ")", ""
	}
	return "unknown key", ""
}

// typeAt is the Go type of the value at path below root (nil if none).
func typeAt(root reflect.Type, path string) reflect.Type {
	t := root
	for _, part := range strings.FieldsFunc(path, func(r rune) bool { return r == '.' }) {
		name, _, _ := strings.Cut(part, "[")
		t = deref(t)
		if t == nil || t.Kind() != reflect.Struct {
			return nil
		}
		var next reflect.Type
		for i := range t.NumField() {
			if f := t.Field(i); yamlName(f) == name {
				next = f.Type
			}
		}
		if next = deref(next); next != nil && strings.Contains(part, "[") && (next.Kind() == reflect.Slice || next.Kind() == reflect.Array) {
			next = deref(next.Elem())
		}
		t = next
	}
	return deref(t)
}

func deref(t reflect.Type) reflect.Type {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

// yamlKeys are the keys a struct type takes in YAML, sorted.
func yamlKeys(t reflect.Type) []string {
	if t == nil || t.Kind() != reflect.Struct {
		return nil
	}
	var keys []string
	for i := range t.NumField() {
		if n := yamlName(t.Field(i)); n != "" && n != "-" {
			keys = append(keys, n)
		}
	}
	sort.Strings(keys)
	return keys
}

func yamlName(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name == "" {
		return strings.ToLower(f.Name)
	}
	return name
}

// gotOf says what a YAML tag is, in the file's terms.
func gotOf(tag string) string {
	switch tag {
	case "seq":
		return "a list"
	case "map":
		return "a mapping"
	case "str":
		return "a string"
	case "int", "float":
		return "a number"
	case "bool":
		return "true/false"
	case "null":
		return "nothing"
	}
	return tag
}

// wantOf says what a Go type takes, in the file's terms.
func wantOf(goType string) string {
	switch t := strings.TrimLeft(goType, "*"); {
	case strings.HasPrefix(t, "[]"):
		return "a list"
	case strings.HasPrefix(t, "map["):
		return "a mapping"
	case t == "string" || t == "chain.SecretRef":
		return "a string"
	case t == "bool":
		return "true or false"
	case strings.HasPrefix(t, "int") || strings.HasPrefix(t, "uint") || strings.HasPrefix(t, "float"):
		return "a number"
	case t == "chain.Duration":
		return `a duration ("90s", "2m", "24h")`
	case strings.HasPrefix(t, "chain."):
		return "a mapping"
	default:
		return t
	}
}

// wantKind says what a Go type takes by its kind (def for the others).
func wantKind(t reflect.Type, def string) string {
	if t.Name() == "Duration" {
		return def
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Map, reflect.Struct:
		return "a mapping"
	}
	return def
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}
