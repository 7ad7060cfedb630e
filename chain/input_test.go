package chain

import (
	"errors"
	"os/exec"
	"strings"
	"testing"
	"unicode/utf8"
)

// hostileRefs are refs an attacker sends: options, query breakers, Git's
// forbidden forms.
var hostileRefs = []string{
	`refs/heads/a\' OR WorkflowType = "ChainRun" -- `,
	`refs/heads/a\`,
	`refs/heads/--upload-pack=touch /tmp/x`,
	`refs/heads/-x`,
	`refs/heads/a..b`,
	`refs/heads/a@{1}`,
	`refs/heads/.hidden`,
	`refs/heads/x.lock`,
	`refs/heads/a//b`,
	`refs/heads/a/`,
	`refs/heads/a.`,
	`refs/heads/@`,
	"refs/heads/a\nb",
	"refs/heads/a\x7f",
	`refs/heads/a b`,
	`refs/heads/a~1`, `refs/heads/a^`, `refs/heads/a:b`, `refs/heads/a?`, `refs/heads/a*`, `refs/heads/a[b`,
	`refs/remotes/origin/main`, `main`, `refs/heads/`, ``,
	"refs/heads/\xff",
	"refs/heads/" + strings.Repeat("a", MaxRefBytes),
}

var goodRefs = []string{
	"refs/heads/main", "refs/heads/release-v1", "refs/tags/v1.2.3", "refs/heads/feature/a_b",
	"refs/heads/a'b", `refs/heads/a"b`, "refs/heads/ünïcode", "refs/tags/v1.0+build.7", "refs/heads/a@b",
}

func TestParseRef(t *testing.T) {
	for _, r := range goodRefs {
		if got, err := ParseRef("ref", r); err != nil || string(got) != r {
			t.Errorf("%q refused: %v", r, err)
		}
	}
	for _, r := range hostileRefs {
		_, err := ParseRef("ref", r)
		var in *InputError
		if !errors.As(err, &in) || in.Field != "ref" || in.Reason == "" {
			t.Errorf("%q accepted (%v)", r, err)
		}
	}
	typ, name := Ref("refs/tags/v1.2").Split()
	if typ != RuleTag || name != "v1.2" {
		t.Fatal(typ, name)
	}
}

// Every ref ParseRef accepts, real Git accepts too.
func gitAccepts(t testing.TB, ref string) bool {
	err := exec.Command("git", "check-ref-format", ref).Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatal(err)
	}
	return err == nil
}

func TestParseRefAgreesWithGit(t *testing.T) {
	for _, r := range append(append([]string{}, goodRefs...), hostileRefs...) {
		if _, err := ParseRef("ref", r); err == nil && !gitAccepts(t, r) {
			t.Errorf("%q: dchain accepts what git check-ref-format refuses", r)
		}
	}
}

func FuzzParseRef(f *testing.F) {
	for _, r := range append(append([]string{}, goodRefs...), hostileRefs...) {
		f.Add(r)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRef("ref", s)
		if err != nil {
			return
		}
		if string(r) != s || strings.ContainsAny(s, "\\ \x00") || !gitAccepts(t, s) {
			t.Fatalf("accepted %q", s)
		}
		for _, c := range strings.Split(s, "/") {
			if strings.HasPrefix(c, "-") {
				t.Fatalf("accepted %q: a component reads as an option", s)
			}
		}
	})
}

func TestParseCommit(t *testing.T) {
	sha1, sha256 := strings.Repeat("ab", 20), strings.Repeat("0f", 32)
	for _, c := range []string{sha1, sha256, strings.ToUpper(sha1)} {
		got, err := ParseCommit("commit", c)
		if err != nil || string(got) != strings.ToLower(c) {
			t.Errorf("%q: %v", c, err)
		}
	}
	for _, c := range []string{"", "--upload-pack=touch /tmp/x", "abc1234", sha1[:39], sha1 + "0", "g" + sha1[1:], "-" + sha1[1:], sha1[:39] + " "} {
		_, err := ParseCommit("commit", c)
		var in *InputError
		if !errors.As(err, &in) || in.Field != "commit" {
			t.Errorf("%q accepted (%v)", c, err)
		}
	}
	if Commit(sha1).Short() != sha1[:12] {
		t.Fatal("Short")
	}
}

func FuzzParseCommit(f *testing.F) {
	f.Add(strings.Repeat("ab", 20))
	f.Add("--upload-pack=id>/tmp/y;true")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCommit("commit", s)
		if err != nil {
			return
		}
		if (len(c) != 40 && len(c) != 64) || strings.Trim(string(c), "0123456789abcdef") != "" {
			t.Fatalf("accepted %q", s)
		}
	})
}

func TestParseImageAndDigest(t *testing.T) {
	if repo, tag, err := ParseImage("image", "demo/app:v1"); err != nil || repo != "demo/app" || tag != "v1" {
		t.Fatal(repo, tag, err)
	}
	for _, s := range []string{"app:v1", "demo/app", "demo/App:v1", "demo/app:-x", "demo/app:v1/x", "demo//app:v1", "--x/app:v1", "demo/app:" + strings.Repeat("a", 129)} {
		if _, _, err := ParseImage("image", s); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
	good := "sha256:" + strings.Repeat("a", 64)
	if d, err := ParseDigest("digest", good); err != nil || d != good {
		t.Fatal(d, err)
	}
	for _, s := range []string{"", "sha256:", "sha256:zz", "md5:" + strings.Repeat("a", 32), "sha512:" + strings.Repeat("a", 128), good + "0"} {
		if _, err := ParseDigest("digest", s); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
}

func FuzzParseImage(f *testing.F) {
	f.Add("demo/app:v1")
	f.Add("demo/app:sha256-" + strings.Repeat("a", 64))
	f.Fuzz(func(t *testing.T, s string) {
		repo, tag, err := ParseImage("image", s)
		if err != nil {
			return
		}
		if repo+":"+tag != s || !TagRe.MatchString(tag) || strings.HasPrefix(repo, "-") {
			t.Fatalf("accepted %q as %q %q", s, repo, tag)
		}
	})
}

func TestNotAnImage(t *testing.T) {
	hex := strings.Repeat("0a", 32)
	l := &Loaded{Chains: []Chain{{Name: "c", Scan: &Scan{Backup: &Backup{Repository: "demo/quarantine"}}}}}
	for _, tc := range []struct {
		repo, tag string
		not       bool
	}{
		{"demo/app", "v1", false},
		{"demo/app", "sha256-" + hex, true},
		{"demo/app", "sha256-" + hex + ".sig", true},
		{"demo/app", "sha256-" + hex + ".att", true},
		{"demo/app", "sha256-abc", false}, // not a digest: an ordinary (odd) tag
		{"dchain-logs/demo/app", "build-0123456789ab", true},
		{"dchain-cache/demo/app", "build", true},
		{"demo/quarantine", "v2", true},
	} {
		if why := l.NotAnImage(tc.repo, tc.tag); (why != "") != tc.not {
			t.Errorf("%s:%s: %q", tc.repo, tc.tag, why)
		}
	}
	if (Trigger{Mode: TriggerAll}).Matches("sha256-" + hex) {
		t.Error("a trigger fired for a referrer tag")
	}
}

func FuzzParseDigest(f *testing.F) {
	f.Add("sha256:" + strings.Repeat("a", 64))
	f.Add("sha256:")
	f.Add("sha256:zz")
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDigest("digest", s)
		if err != nil {
			return
		}
		if d != s || len(d) != 71 || strings.Trim(d[7:], "0123456789abcdef") != "" {
			t.Fatalf("accepted %q", s)
		}
	})
}

// Manual replication names: REGISTRY/NS/REPO(:TAG|@DIGEST) and REGISTRY[/NS/REPO[:TAG]].
func FuzzParseReplicationNames(f *testing.F) {
	cfg := &Config{Registries: []Registry{{Name: "hz", Address: "127.0.0.1:5001"}, {Name: "fra", Address: "registry.example:443"}}}
	for _, s := range []string{"hz/demo/app:v1", "127.0.0.1:5001/demo/app@sha256:" + strings.Repeat("a", 64), "fra", "fra/mirror/app:stable", "fra/mirror/app", "x/../y:z", "hz/demo/app:--x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if reg, repo, at, err := cfg.ParseRegistryImage("image", s); err == nil {
			if _, ok := cfg.Registry(reg.Name); !ok {
				t.Fatalf("%q: unknown registry accepted", s)
			}
			if _, err := ParseRepository("", repo); err != nil {
				t.Fatalf("%q: repository %q accepted: %v", s, repo, err)
			}
			_, derr := ParseDigest("", at)
			_, terr := ParseTag("", at)
			if derr != nil && terr != nil {
				t.Fatalf("%q: %q is neither a tag nor a digest", s, at)
			}
		}
		if reg, repo, tag, err := cfg.ParseTarget("to", s, "demo/app", "v1"); err == nil {
			if _, ok := cfg.Registry(reg.Name); !ok {
				t.Fatalf("%q: unknown registry accepted", s)
			}
			if _, _, err := ParseImage("", repo+":"+tag); err != nil {
				t.Fatalf("%q: target %s:%s accepted: %v", s, repo, tag, err)
			}
		}
	})
}

func TestParseReplicationNames(t *testing.T) {
	cfg := &Config{Registries: []Registry{{Name: "hz", Address: "127.0.0.1:5001"}, {Name: "fra", Address: "127.0.0.1:5002"}}}
	reg, repo, at, err := cfg.ParseRegistryImage("image", "127.0.0.1:5001/demo/app@sha256:"+strings.Repeat("a", 64))
	if err != nil || reg.Name != "hz" || repo != "demo/app" || at != "sha256:"+strings.Repeat("a", 64) {
		t.Fatal(reg, repo, at, err)
	}
	for s, want := range map[string]string{"fra": "fra demo/app:v1", "fra/mirror/app": "fra mirror/app:v1", "fra/mirror/app:stable": "fra mirror/app:stable"} {
		reg, repo, tag, err := cfg.ParseTarget("to", s, "demo/app", "v1")
		if got := reg.Name + " " + repo + ":" + tag; err != nil || got != want {
			t.Errorf("%s: %s %v, want %s", s, got, err, want)
		}
	}
	for _, s := range []string{"nowhere", "fra/Mirror/app", "fra/mirror/app:-x", "fra/mirror"} {
		if _, _, _, err := cfg.ParseTarget("to", s, "demo/app", "v1"); err == nil {
			t.Errorf("%s accepted", s)
		}
	}
	if _, _, _, err := cfg.ParseTarget("to", "fra", "demo/app", ""); err == nil {
		t.Error("a digest source without a target tag accepted")
	}
}

// A referrer tag names the image it is attached to; anything else is not one.
func TestReferrerSubject(t *testing.T) {
	hex := strings.Repeat("ab", 32)
	for tag, want := range map[string]string{
		"sha256-" + hex:                      "sha256:" + hex,
		"sha256-" + hex + ".sig":             "sha256:" + hex,
		"sha256-" + hex + ".att":             "sha256:" + hex,
		"sha256-" + hex + "x":                "",
		"sha256-" + strings.ToUpper(hex):     "",
		"sha256-" + hex[:63]:                 "",
		"v1":                                 "",
		"sha512-" + hex + hex:                "",
		"sha256-" + hex[:62] + "zz" + ".sig": "",
	} {
		got, ok := ReferrerSubject(tag)
		if got != want || ok != (want != "") {
			t.Errorf("%q: %q %v, want %q", tag, got, ok, want)
		}
	}
}

// An approver's identity and a decision's comment, from the CLI, a REST
// body or any Temporal client.
func FuzzParseDecision(f *testing.F) {
	f.Add("alice", "looks good")
	f.Add("ci-bot@example.com", "line\nbreak")
	f.Add("", "\x00")
	f.Add("a b", strings.Repeat("x", MaxCommentBytes+1))
	f.Fuzz(func(t *testing.T, who, comment string) {
		if id, err := ParseIdentity("by", who); err == nil {
			if id != who || len(id) > 128 || strings.ContainsAny(id, " \t\n'\"\\/") {
				t.Fatalf("accepted identity %q", who)
			}
		}
		if c, err := ParseComment("comment", comment, "a reason"); err == nil {
			if c != comment || len(c) > MaxCommentBytes || strings.TrimSpace(c) == "" || !utf8.ValidString(c) {
				t.Fatalf("accepted comment %q", comment)
			}
			for _, r := range c {
				if r < ' ' && r != '\n' && r != '\t' || r == 0x7f {
					t.Fatalf("accepted a control character in %q", comment)
				}
			}
		}
	})
}
