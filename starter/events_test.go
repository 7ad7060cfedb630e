package starter

import (
	"errors"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func sample(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "webhooks", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func hdr(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return h
}

func TestParseGitPushes(t *testing.T) {
	for _, tc := range []struct {
		provider, file string
		h              http.Header
		kind           string
		refs           []string
		commit         string
		repo           string
	}{
		{ProviderGitHub, "github-push.json", hdr("X-GitHub-Event", "push"), EventPush, []string{"refs/heads/release-v1"}, "79a45a5dbf3a7751531ff88322789c84df6e925c", "acme/sample-app"},
		{ProviderGitHub, "github-tag.json", hdr("X-GitHub-Event", "push"), EventPush, []string{"refs/tags/v1.2.0"}, "b3de816add4d602acde14e9f51d433621d9d4e88", "acme/sample-app"},
		// An annotated tag: after is the tag object, head_commit.id (GitHub) or checkout_sha (GitLab) the commit.
		{ProviderGitHub, "github-tag-annotated.json", hdr("X-GitHub-Event", "push"), EventPush, []string{"refs/tags/v1.2.1"}, "b3de816add4d602acde14e9f51d433621d9d4e88", "acme/sample-app"},
		{ProviderGitLab, "gitlab-tag-annotated.json", nil, EventPush, []string{"refs/tags/v2.0.1"}, "b3de816add4d602acde14e9f51d433621d9d4e88", "acme/sample-app"},
		{ProviderGitHub, "github-delete.json", hdr("X-GitHub-Event", "push"), EventIgnore, nil, "", "acme/sample-app"},
		{ProviderGitHub, "github-ping.json", hdr("X-GitHub-Event", "ping"), EventPing, nil, "", ""},
		{ProviderGitLab, "gitlab-push.json", nil, EventPush, []string{"refs/heads/main"}, "79a45a5dbf3a7751531ff88322789c84df6e925c", "acme/sample-app"},
		{ProviderGitLab, "gitlab-tag.json", nil, EventPush, []string{"refs/tags/v2.0.0"}, "b3de816add4d602acde14e9f51d433621d9d4e88", "acme/sample-app"},
		{ProviderGitLab, "gitlab-delete.json", nil, EventIgnore, nil, "", "acme/sample-app"},
		{ProviderGitee, "gitee-push.json", hdr("X-Gitee-Event", "Push Hook"), EventPush, []string{"refs/heads/release-v2"}, "b3de816add4d602acde14e9f51d433621d9d4e88", "acme/sample-app"},
		{ProviderGitee, "gitee-delete.json", hdr("X-Gitee-Event", "Tag Push Hook"), EventIgnore, nil, "", "acme/sample-app"},
		{ProviderBitbucket, "bitbucket-push.json", hdr("X-Event-Key", "repo:push"), EventPush, []string{"refs/heads/main", "refs/tags/v1.0.0"}, "79a45a5dbf3a7751531ff88322789c84df6e925c", "acme/sample-app"},
		{ProviderBitbucket, "bitbucket-delete.json", hdr("X-Event-Key", "repo:push"), EventIgnore, nil, "", "acme/sample-app"},
		{ProviderBitbucket, "github-ping.json", hdr("X-Event-Key", "diagnostics:ping"), EventPing, nil, "", ""},
	} {
		t.Run(tc.file+"/"+tc.provider, func(t *testing.T) {
			ev, err := Parse(tc.provider, tc.h, sample(t, tc.file))
			if err != nil {
				t.Fatal(err)
			}
			if ev.Kind != tc.kind || len(ev.Pushes) != len(tc.refs) {
				t.Fatalf("kind %s (%s), pushes %+v", ev.Kind, ev.Reason, ev.Pushes)
			}
			for i, p := range ev.Pushes {
				if string(p.Ref) != tc.refs[i] || string(p.Commit) != tc.commit {
					t.Errorf("push %d: %+v", i, p)
				}
			}
			if ev.Repository.FullName != tc.repo {
				t.Errorf("repository %+v", ev.Repository)
			}
			if tc.kind != EventPush && ev.Reason == "" {
				t.Error("an event that starts nothing must say why")
			}
		})
	}
}

// The seed's build time is the push time: the provider's where the payload
// has one (GitHub's and Gitee's repository.pushed_at), else zero, which the
// delivery turns into the time it received the event — never the commit's
// author time (head_commit.timestamp, Bitbucket's target.date).
func TestParsePushTimeAndPusher(t *testing.T) {
	ev, err := Parse(ProviderGitHub, hdr("X-GitHub-Event", "push"), sample(t, "github-push.json"))
	if err != nil {
		t.Fatal(err)
	}
	p := ev.Pushes[0]
	if !p.At.Equal(time.Date(2026, 11, 22, 8, 13, 0, 0, time.UTC)) || p.Pusher != "alice" {
		t.Fatalf("push %+v", p)
	}
	for _, tc := range []struct {
		provider, file string
		h              http.Header
		at             time.Time
	}{
		{ProviderGitee, "gitee-push.json", hdr("X-Gitee-Event", "Push Hook"), time.Date(2026, 11, 22, 8, 31, 0, 0, time.UTC)},
		{ProviderGitHub, "github-tag.json", hdr("X-GitHub-Event", "push"), time.Time{}}, // no pushed_at: not head_commit.timestamp
		{ProviderGitLab, "gitlab-push.json", nil, time.Time{}},
		{ProviderBitbucket, "bitbucket-push.json", hdr("X-Event-Key", "repo:push"), time.Time{}},
	} {
		ev, err := Parse(tc.provider, tc.h, sample(t, tc.file))
		if err != nil {
			t.Fatal(err)
		}
		if got := ev.Pushes[0].At; !got.Equal(tc.at) {
			t.Errorf("%s: push time %v, want %v", tc.file, got, tc.at)
		}
	}
	if !SameRepository("git@github.com:acme/sample-app.git", ev.Repository) || !SameRepository("https://token@github.com/acme/sample-app", ev.Repository) ||
		SameRepository("https://github.com/acme/other", ev.Repository) {
		t.Fatal("repository matching")
	}
}

func TestParseImagePushes(t *testing.T) {
	for _, tc := range []struct {
		provider, file string
		kind           string
		images         int
	}{
		{ProviderDistribution, "distribution-push.json", EventImage, 1}, // the layer push and the pull start nothing
		{ProviderHarbor, "harbor-push.json", EventImage, 1},
		{ProviderHarbor, "harbor-delete.json", EventIgnore, 0},
		// Current Harbor puts the digest in tag for a push by digest: well formed, so
		// accepted and ignored with a reason (a 4xx makes Harbor retry forever).
		{ProviderHarbor, "harbor-push-digest.json", EventIgnore, 0},
	} {
		ev, err := Parse(tc.provider, nil, sample(t, tc.file))
		if err != nil {
			t.Fatalf("%s: %v", tc.file, err)
		}
		if ev.Kind != tc.kind || len(ev.Images) != tc.images {
			t.Fatalf("%s: %s %+v", tc.file, ev.Kind, ev.Images)
		}
		if tc.images > 0 && (ev.Images[0].Repository != "demo/app" || ev.Images[0].Tag != "v3" || !strings.HasPrefix(ev.Images[0].Digest, "sha256:4e8d")) {
			t.Fatalf("%s: %+v", tc.file, ev.Images[0])
		}
	}
}

func TestParseMalformed(t *testing.T) {
	for _, tc := range []struct {
		provider string
		h        http.Header
		body     string
		msg      string
	}{
		{ProviderGitHub, hdr("X-GitHub-Event", "push"), `{"ref":`, "not JSON"},
		{ProviderGitHub, hdr("X-GitHub-Event", "push"), `{"ref":"refs/heads/x","after":"abc1234"}`, "repository.full_name"},
		{ProviderGitHub, nil, `{}`, "X-GitHub-Event"},
		{ProviderGitHub, hdr("X-GitHub-Event", "push"), `{"ref":"main","after":"abc1234","repository":{"full_name":"a/b"}}`, "refs/heads"},
		{ProviderGitHub, hdr("X-GitHub-Event", "push"), `{"ref":"refs/heads/x","after":"not-a-sha","repository":{"full_name":"a/b"}}`, "not a commit id"},
		{ProviderGitLab, nil, `{"ref":"refs/heads/x"}`, "object_kind"},
		{ProviderBitbucket, hdr("X-Event-Key", "repo:push"), `{"repository":{"full_name":"a/b"},"push":{"changes":[]}}`, "push.changes"},
		{ProviderDistribution, nil, `{"events":[{"action":"push","target":{"repository":"a/b","tag":"v1","digest":"md5:x"}}]}`, "sha256"},
		{ProviderDistribution, nil, `{"events":[{"action":"push","target":{"repository":"a/b","tag":"v1","digest":"sha256:"}}]}`, "events[0].target.digest"},
		{ProviderDistribution, nil, `{"events":[{"action":"push","target":{"repository":"a/b","tag":"v1","digest":"sha256:zz"}}]}`, "events[0].target.digest"},
		{ProviderDistribution, nil, `{"events":[{"action":"push","target":{"repository":"A/../b","tag":"v1","digest":"sha256:` + strings.Repeat("a", 64) + `"}}]}`, "events[0].target.repository"},
		{ProviderHarbor, nil, `{"type":"PUSH_ARTIFACT","event_data":{"repository":{"repo_full_name":"a/b"},"resources":[{"tag":"v1","digest":"sha256:1"}]}}`, "resources[0].digest"},
		// Hostile refs and commits: option-looking, query-breaking, not Git ref names.
		{ProviderGitHub, hdr("X-GitHub-Event", "push"), `{"ref":"refs/heads/a\\' OR WorkflowType = \"ChainRun\" -- ","after":"` + strings.Repeat("a", 40) + `","repository":{"full_name":"a/b"}}`, "not a valid ref"},
		{ProviderGitHub, hdr("X-GitHub-Event", "push"), `{"ref":"refs/heads/--upload-pack=id","after":"` + strings.Repeat("a", 40) + `","repository":{"full_name":"a/b"}}`, "starts with \"-\""},
		{ProviderGitHub, hdr("X-GitHub-Event", "push"), `{"ref":"refs/heads/x","after":"--upload-pack=id","repository":{"full_name":"a/b"}}`, "not a commit id"},
		{ProviderGitHub, hdr("X-GitHub-Event", "push"), `{"ref":"refs/heads/x","after":"abc1234","repository":{"full_name":"a/b"}}`, "40 or 64"},
		{ProviderHarbor, nil, `{"type":"PUSH_ARTIFACT","event_data":{"resources":[]}}`, "repo_full_name"},
	} {
		_, err := Parse(tc.provider, tc.h, []byte(tc.body))
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s %s: %v, want malformed mentioning %q", tc.provider, tc.body, err, tc.msg)
		}
	}
}

// GitHub's default content type is a form with the JSON in its payload
// field; the signature covers the raw form body.
func TestParseGitHubFormEncoded(t *testing.T) {
	raw := sample(t, "github-push.json")
	body := []byte(url.Values{"payload": {string(raw)}}.Encode())
	h, err := SignedHeaders(ProviderGitHub, "s3cret", body, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	h.Set("Content-Type", "application/x-www-form-urlencoded")
	if err := Verify(ProviderGitHub, "s3cret", h, body); err != nil {
		t.Fatal(err)
	}
	ev, err := Parse(ProviderGitHub, h, body)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Kind != EventPush || ev.Pushes[0].Ref != "refs/heads/release-v1" {
		t.Fatalf("%+v", ev)
	}
	if _, err := Parse(ProviderGitHub, h, []byte("nopayload=1")); !errors.Is(err, ErrMalformed) {
		t.Fatalf("a form without payload: %v", err)
	}
}

func TestVerify(t *testing.T) {
	body := sample(t, "github-push.json")
	now := time.Unix(1795335600, 0)
	for _, p := range []string{ProviderGitHub, ProviderGitLab, ProviderGitee, ProviderBitbucket, ProviderDistribution, ProviderHarbor} {
		good, err := SignedHeaders(p, "s3cret", body, now)
		if err != nil {
			t.Fatal(err)
		}
		if err := VerifyAt(p, "s3cret", good, body, now); err != nil {
			t.Errorf("%s: good signature refused: %v", p, err)
		}
		if err := VerifyAt(p, "other", good, body, now); !errors.Is(err, ErrSignature) {
			t.Errorf("%s: signature with another secret accepted", p)
		}
		if err := VerifyAt(p, "s3cret", http.Header{}, body, now); !errors.Is(err, ErrSignature) {
			t.Errorf("%s: missing signature accepted", p)
		}
		if p == ProviderGitHub || p == ProviderBitbucket || p == ProviderGitee {
			tampered := append([]byte{}, body...)
			tampered[10] ^= 1
			if p != ProviderGitee && VerifyAt(p, "s3cret", good, tampered, now) == nil {
				t.Errorf("%s: a changed body kept its signature", p)
			}
		}
	}
	// Gitee's signature covers the timestamp, not the body: a signed
	// timestamp older (or newer) than the replay window is refused, saying
	// so; inside it, accepted; a timestamp that is not a number, refused.
	gitee, _ := SignedHeaders(ProviderGitee, "s3cret", body, now)
	for _, d := range []time.Duration{ReplayWindow + time.Second, -ReplayWindow - time.Second, 6 * 365 * 24 * time.Hour} {
		err := VerifyAt(ProviderGitee, "s3cret", gitee, body, now.Add(d))
		if !errors.Is(err, ErrSignature) || !strings.Contains(err.Error(), "outside the 5m0s replay window") {
			t.Errorf("Gitee delivery checked %s later: %v", d, err)
		}
	}
	if err := VerifyAt(ProviderGitee, "s3cret", gitee, body, now.Add(ReplayWindow-time.Second)); err != nil {
		t.Errorf("Gitee delivery inside the window: %v", err)
	}
	bad := hdr("X-Gitee-Timestamp", "soon", "X-Gitee-Token", GiteeSign("s3cret", "soon"))
	if err := VerifyAt(ProviderGitee, "s3cret", bad, body, now); !errors.Is(err, ErrSignature) || !strings.Contains(err.Error(), "not a time") {
		t.Errorf("a signed non-numeric timestamp: %v", err)
	}
	// Gitee's password mode: the secret itself as the token.
	if err := Verify(ProviderGitee, "pw", hdr("X-Gitee-Token", "pw"), body); err != nil {
		t.Error(err)
	}
	if err := Verify(ProviderGitHub, "", hdr("X-Hub-Signature-256", HubSign("", body)), body); !errors.Is(err, ErrSignature) {
		t.Error("a source without a secret must refuse everything")
	}
}
