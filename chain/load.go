package chain

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
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
	cfg, err := ReadConfig(path)
	if err != nil {
		return nil, err
	}
	files, err := cfg.ChainFiles()
	if err != nil {
		return nil, err
	}
	chains, err := cfg.LoadChainFiles(files...)
	if err != nil {
		return nil, err
	}
	l := &Loaded{Config: cfg, Chains: chains}
	var ps Problems
	for i, src := range cfg.Sources {
		for j, name := range src.Chains {
			if _, err := l.Chain(name); err != nil {
				ps = append(ps, Problem{File: cfg.Path, Field: fmt.Sprintf("sources[%d].chains[%d]", i, j), Message: fmt.Sprintf("unknown chain %q", name)})
			}
		}
	}
	return l, ps.errOrNil()
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
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		return nil, yamlProblems(path, err).errOrNil()
	}
	cfg.Path = path
	v := validator{file: path, lines: indexLines(&node), cfg: &cfg}
	v.config(&cfg)
	return &cfg, v.problems.errOrNil()
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
	var all []Chain
	var problems Problems
	seen := map[string]Chain{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			problems = append(problems, Problem{File: f, Message: err.Error()})
			continue
		}
		chains, ps := c.ParseChains(f, data)
		problems = append(problems, ps...)
		for _, ch := range chains {
			if prev, dup := seen[ch.Name]; dup && ch.Name != "" {
				problems = append(problems, Problem{File: f, Line: ch.Line, Field: "name",
					Message: fmt.Sprintf("duplicate chain name %q (also defined at %s:%d)", ch.Name, prev.File, prev.Line)})
				continue
			}
			seen[ch.Name] = ch
			all = append(all, ch)
		}
	}
	return all, problems.errOrNil()
}

// ParseChains parses the chain documents in data (several may be separated
// by "---") and validates each. It returns the chains that parsed and every problem.
func (c *Config) ParseChains(file string, data []byte) ([]Chain, Problems) {
	var chains []Chain
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
			return chains, append(problems, yamlProblems(file, err)...)
		}
		var ch Chain
		if err := typed.Decode(&ch); err != nil {
			problems = append(problems, yamlProblems(file, err)...)
			continue
		}
		if node.Kind == yaml.DocumentNode && len(node.Content) == 0 {
			continue // an empty document
		}
		ch.File, ch.Line = file, node.Line
		if len(node.Content) > 0 {
			ch.Line = node.Content[0].Line
		}
		v := validator{file: file, lines: indexLines(&node), cfg: c}
		v.chain(&ch)
		if len(v.problems) > 0 {
			problems = append(problems, v.problems...)
			continue
		}
		if ch.Build != nil {
			ch.Build.Source.URL = localSource(file, ch.Build.Source.URL)
		}
		if ch.Concurrency == "" {
			ch.Concurrency = ConcurrencyQueue
		}
		chains = append(chains, ch)
	}
	return chains, problems
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
