package chain

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// Loaded is a validated config with its chains.
type Loaded struct {
	Config *Config
	Chains []Chain
}

// Chain returns the chain called name.
func (l *Loaded) Chain(name string) (Chain, error) {
	for _, c := range l.Chains {
		if c.Name == name {
			return c, nil
		}
	}
	return Chain{}, fmt.Errorf("chain %q is not defined (config %s has %d chains; see `dchain chain list`)", name, l.Config.Path, len(l.Chains))
}

// Registry returns the registry called name.
func (c *Config) Registry(name string) (Registry, bool) {
	for _, r := range c.Registries {
		if r.Name == name {
			return r, true
		}
	}
	return Registry{}, false
}

// Load reads the config file at path and every chain file its globs name,
// and validates all of it. The error, if any, is Problems listing everything wrong.
func Load(path string) (*Loaded, error) {
	l, ps, err := LoadAll(path)
	if err != nil {
		return nil, err
	}
	return l, ps.errOrNil()
}

// LoadAll is Load for processes that keep running (worker, API): a chain
// document with problems is left out and its problems returned, and the
// other chains load. Problems of the config file itself are the error.
func LoadAll(path string) (*Loaded, Problems, error) {
	cfg, err := ReadConfig(path)
	if err != nil {
		return nil, nil, err
	}
	files, err := cfg.ChainFiles()
	if err != nil {
		return nil, nil, err
	}
	chains, ps := cfg.loadChainFiles(files...)
	l := &Loaded{Config: cfg, Chains: chains}
	for i, src := range cfg.Sources {
		for j, name := range src.Chains {
			if _, err := l.Chain(name); err != nil {
				ps = append(ps, Problem{File: cfg.Path, Field: fmt.Sprintf("sources[%d].chains[%d]", i, j), Message: fmt.Sprintf("unknown chain %q", name)})
			}
		}
	}
	return l, ps.sorted(), nil
}

// ReadConfig reads and validates the config file (registries, globs, retry).
func ReadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	var cfg Config
	var node yaml.Node
	if err := yaml.Unmarshal(data, &node); err != nil {
		return nil, yamlProblems(path, err).errOrNil()
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var typeErrs Problems
	var refused map[string]bool
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		typeErrs, refused = typeProblems(path, &node, reflect.TypeFor[Config](), err)
	}
	cfg.Path = path
	if typeErrs != nil && refused == nil {
		return &cfg, typeErrs.errOrNil()
	}
	v := validator{file: path, lines: indexLines(&node), cfg: &cfg}
	v.config(&cfg)
	return &cfg, append(typeErrs, withoutRefused(v.problems, refused)...).errOrNil()
}

// ChainFiles expands the config's chain globs, relative to the config file.
func (c *Config) ChainFiles() ([]string, error) {
	base := filepath.Dir(c.Path)
	var files []string
	for _, g := range c.Chains {
		if !filepath.IsAbs(g) {
			g = filepath.Join(base, g)
		}
		m, err := filepath.Glob(g)
		if err != nil {
			return nil, Problems{{File: c.Path, Field: "chains", Message: fmt.Sprintf("bad glob %q: %v", g, err)}}
		}
		sort.Strings(m)
		files = append(files, m...)
	}
	return files, nil
}

// LoadChainFiles parses and validates chain files against the config's
// registries, checking names are unique across all of them.
func (c *Config) LoadChainFiles(files ...string) ([]Chain, error) {
	chains, ps := c.loadChainFiles(files...)
	return chains, ps.errOrNil()
}

// loadChainFiles returns the chains without problems and every problem;
// a name is checked for duplicates even where its document has other
// problems.
func (c *Config) loadChainFiles(files ...string) ([]Chain, Problems) {
	var all []Chain
	var problems Problems
	seen := map[string]Chain{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			problems = append(problems, Problem{File: f, Message: err.Error()})
			continue
		}
		parsed, ps := c.parseChains(f, data)
		problems = append(problems, ps...)
		for _, p := range parsed {
			ch := p.chain
			if prev, dup := seen[ch.Name]; dup && ch.Name != "" {
				problems = append(problems, Problem{File: f, Line: ch.Line, Field: "name",
					Message: fmt.Sprintf("duplicate chain name %q (also defined at %s:%d)", ch.Name, prev.File, prev.Line)})
				continue
			}
			seen[ch.Name] = ch
			if p.ok {
				all = append(all, ch)
			}
		}
	}
	return all, problems
}

// ParseChains parses the chain documents in data (several may be separated
// by "---") and validates each. It returns the chains without problems and
// every problem.
func (c *Config) ParseChains(file string, data []byte) ([]Chain, Problems) {
	parsed, ps := c.parseChains(file, data)
	var chains []Chain
	for _, p := range parsed {
		if p.ok {
			chains = append(chains, p.chain)
		}
	}
	return chains, ps
}

// parsedChain is one decoded document and whether it had no problems.
type parsedChain struct {
	chain Chain
	ok    bool
}

// parseChains decodes and validates every document in one pass: a type
// error (a list where a string belongs, an unknown key) is reported and the
// rest of the document still validated.
func (c *Config) parseChains(file string, data []byte) ([]parsedChain, Problems) {
	var out []parsedChain
	var problems Problems
	nodes := yaml.NewDecoder(bytes.NewReader(data))
	typed := yaml.NewDecoder(bytes.NewReader(data))
	typed.KnownFields(true)
	for {
		var node yaml.Node
		err := nodes.Decode(&node)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return out, append(problems, yamlProblems(file, err)...)
		}
		var ch Chain
		var typeErrs Problems
		var refused map[string]bool
		if err := typed.Decode(&ch); err != nil {
			typeErrs, refused = typeProblems(file, &node, reflect.TypeFor[Chain](), err)
		}
		if node.Kind == yaml.DocumentNode && len(node.Content) == 0 {
			continue // an empty document
		}
		ch.File, ch.Line = file, node.Line
		if len(node.Content) > 0 {
			ch.Line = node.Content[0].Line
		}
		ps := typeErrs
		if typeErrs == nil || refused != nil {
			v := validator{file: file, lines: indexLines(&node), cfg: c}
			v.chain(&ch)
			ps = append(ps, withoutRefused(v.problems, refused)...)
		}
		problems = append(problems, ps...)
		if len(ps) == 0 {
			if ch.Build != nil {
				ch.Build.Source.URL = localSource(file, ch.Build.Source.URL)
			}
			if ch.Concurrency == "" {
				ch.Concurrency = ConcurrencyQueue
			}
		}
		out = append(out, parsedChain{ch, len(ps) == 0})
	}
	return out, problems
}

// localSource makes a relative local path of a build source absolute,
// relative to the chain file; URLs and scp-like addresses pass unchanged.
func localSource(chainFile, url string) string {
	if strings.Contains(url, "://") || filepath.IsAbs(url) {
		return url
	}
	if at, colon := strings.Index(url, "@"), strings.Index(url, ":"); at >= 0 && colon > at {
		return url // git@host:owner/repo
	}
	abs, err := filepath.Abs(filepath.Join(filepath.Dir(chainFile), url))
	if err != nil {
		return url
	}
	return abs
}
