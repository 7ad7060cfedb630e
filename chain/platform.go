package chain

import (
	"fmt"
	"slices"
	"strings"
)

// The platforms a build may name: the operating systems and architectures
// of the OCI image index (Go's GOOS and GOARCH values that images are made
// for), and the variants each architecture has (arm v5–v8, arm64 v8/v9 and
// their minor versions, amd64 microarchitecture levels v1–v4).
var (
	platformOS   = []string{"linux", "windows", "freebsd", "darwin", "netbsd", "openbsd", "solaris", "illumos", "aix", "plan9", "dragonfly", "android", "ios", "js", "wasip1"}
	platformArch = []string{"amd64", "arm64", "arm", "386", "ppc64le", "ppc64", "s390x", "riscv64", "mips64le", "mips64", "mipsle", "mips", "loong64", "wasm"}
	armVariants  = map[string][]string{
		"arm":   {"v5", "v6", "v7", "v8"},
		"arm64": {"v8", "v8.0", "v8.1", "v8.2", "v8.3", "v8.4", "v8.5", "v8.6", "v8.7", "v8.8", "v8.9", "v9", "v9.0", "v9.1", "v9.2", "v9.3", "v9.4", "v9.5"},
		"amd64": {"v1", "v2", "v3", "v4"},
	}
)

// checkPlatform says what is wrong with os/arch[/variant] ("" when nothing).
func checkPlatform(p string) string {
	parts := strings.Split(p, "/")
	if len(parts) < 2 || len(parts) > 3 {
		return fmt.Sprintf("%q is not a platform (os/arch[/variant], e.g. linux/arm64)", p)
	}
	switch os, arch := parts[0], parts[1]; {
	case !slices.Contains(platformOS, os):
		return fmt.Sprintf("%q: %q is not an operating system images are made for (%s)", p, os, strings.Join(platformOS, ", "))
	case !slices.Contains(platformArch, arch):
		return fmt.Sprintf("%q: %q is not an architecture (%s)", p, arch, strings.Join(platformArch, ", "))
	case len(parts) == 3 && !slices.Contains(armVariants[arch], parts[2]):
		if len(armVariants[arch]) == 0 {
			return fmt.Sprintf("%q: %s has no variants", p, arch)
		}
		return fmt.Sprintf("%q: %q is not a variant of %s (%s)", p, parts[2], arch, strings.Join(armVariants[arch], ", "))
	}
	return ""
}
