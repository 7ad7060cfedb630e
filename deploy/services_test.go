package deploy

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/dotenv"
	"github.com/compose-spec/compose-go/v2/types"
)

// service is a compose service as this test runs it on a host: its
// command, and its environment (its env files, then its environment
// block) with every path a container would see mapped to the file or
// directory its bind mount or named volume gives it here.
type service struct {
	name        string
	command     []string
	env         map[string]string
	healthcheck []string
	mounts      map[string]string // container path → host path
}

// loadServices loads root/docker-compose.yml with the compose spec's own
// loader; named volumes become directories under root/volumes.
func loadServices(t *testing.T, root string) map[string]*service {
	t.Helper()
	opts, err := cli.NewProjectOptions([]string{filepath.Join(root, "docker-compose.yml")},
		cli.WithWorkingDirectory(root), cli.WithoutEnvironmentResolution)
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	out := map[string]*service{}
	for _, s := range p.Services {
		svc := &service{name: s.Name, command: s.Command, env: map[string]string{}, mounts: map[string]string{}}
		for _, v := range s.Volumes {
			src := v.Source
			if v.Type == types.VolumeTypeVolume {
				src = filepath.Join(root, "volumes", s.Name+"-"+v.Source)
				if err := os.MkdirAll(src, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			svc.mounts[v.Target] = src
		}
		for _, f := range s.EnvFiles {
			vars, err := dotenv.Read(f.Path)
			if err != nil {
				t.Fatalf("%s: env file %s: %v", s.Name, f.Path, err)
			}
			maps.Copy(svc.env, vars)
		}
		for k, v := range s.Environment {
			if v != nil {
				svc.env[k] = svc.path(*v)
			}
		}
		if s.HealthCheck != nil && len(s.HealthCheck.Test) > 1 {
			switch s.HealthCheck.Test[0] {
			case "CMD":
				svc.healthcheck = s.HealthCheck.Test[1:]
			case "CMD-SHELL":
				svc.healthcheck = []string{"sh", "-c", s.HealthCheck.Test[1]}
			}
		}
		out[s.Name] = svc
	}
	return out
}

// path maps a path inside the service's container to the host: the
// longest mount that holds it decides.
func (s *service) path(p string) string {
	targets := slices.Collect(maps.Keys(s.mounts))
	sort.Slice(targets, func(i, j int) bool { return len(targets[i]) > len(targets[j]) })
	for _, target := range targets {
		if p == target {
			return s.mounts[target]
		}
		if rest, ok := strings.CutPrefix(p, target+"/"); ok {
			return filepath.Join(s.mounts[target], rest)
		}
	}
	return p
}

// environ is the service's environment as a process's, over a minimal
// base (PATH, HOME), plus extra.
func (s *service) environ(extra ...string) []string {
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "GOEXPERIMENT=" + os.Getenv("GOEXPERIMENT")}
	for _, k := range sortedKeys(s.env) {
		env = append(env, k+"="+s.env[k])
	}
	return append(env, extra...)
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}
