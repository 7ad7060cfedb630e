package devstack

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
)

//go:embed sampleapp
var sampleApp embed.FS

// baseLine is the Dockerfile's default base image.
var baseLine = regexp.MustCompile(`(?m)^ARG BASE=.*$`)

// SampleRepo makes the sample app's Git repository at dir, unless it exists:
// branch main, branch release-v1 one commit ahead (VERSION 1.0.0, clean:
// it vendors lodash 4.17.21, what the scan finds to analyse on a busybox
// base), and branch release-v2 one more ahead (VERSION 2.0.0, which goes
// back to lodash 4.17.11: known-vulnerable in the demo vulnerability DB).
// Commit dates are fixed, so the commits are the same on every machine.
// base, if set, is the Dockerfile's default base image (the dev stack's
// seeded busybox, wherever its first registry listens).
func SampleRepo(ctx context.Context, dir, base string) error {
	if _, err := os.Stat(filepath.Join(dir, ".git")); err == nil {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	err := fs.WalkDir(sampleApp, "sampleapp", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := sampleApp.ReadFile(path)
		if err != nil {
			return err
		}
		if path == "sampleapp/Dockerfile" && base != "" {
			b = baseLine.ReplaceAll(b, []byte("ARG BASE="+base))
		}
		out := filepath.Join(dir, filepath.FromSlash(path[len("sampleapp/"):]))
		if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
			return err
		}
		return os.WriteFile(out, b, 0o644)
	})
	if err != nil {
		return err
	}
	git := func(date string, args ...string) error {
		cmd := exec.CommandContext(ctx, "git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=dchain", "GIT_AUTHOR_EMAIL=dchain@example.invalid",
			"GIT_COMMITTER_NAME=dchain", "GIT_COMMITTER_EMAIL=dchain@example.invalid",
			"GIT_AUTHOR_DATE="+date, "GIT_COMMITTER_DATE="+date, "GIT_CONFIG_NOSYSTEM=1", "HOME="+dir)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("git %v: %v: %s", args, err, out)
		}
		return nil
	}
	const d1, d2 = "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"
	for _, step := range [][]string{
		{"init", "-q", "-b", "main"},
		{"add", "."},
		{"commit", "-q", "-m", "sample app 0.1.0"},
		{"checkout", "-q", "-b", "release-v1"},
	} {
		if err := git(d1, step...); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "app", "VERSION"), []byte("1.0.0\n"), 0o644); err != nil {
		return err
	}
	if err := git(d2, "commit", "-q", "-am", "release 1.0.0"); err != nil {
		return err
	}
	if err := git(d2, "checkout", "-q", "-b", "release-v2"); err != nil {
		return err
	}
	lodash := filepath.Join(dir, "app", "node_modules", "lodash")
	if err := os.MkdirAll(lodash, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(lodash, "package.json"), []byte(`{"name": "lodash", "version": "4.17.11", "license": "MIT"}`+"\n"), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "app", "VERSION"), []byte("2.0.0\n"), 0o644); err != nil {
		return err
	}
	const d3 = "2026-01-03T00:00:00Z"
	for _, step := range [][]string{{"add", "."}, {"commit", "-q", "-m", "release 2.0.0: lodash 4.17.11"}, {"checkout", "-q", "main"}} {
		if err := git(d3, step...); err != nil {
			return err
		}
	}
	return nil
}
