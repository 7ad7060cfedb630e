package starter

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/dchain-dev/dchain/chain"
)

// fuzzParse feeds the provider's parser arbitrary bodies: it must never
// panic, and whatever it accepts must be a well-formed event.
func fuzzParse(f *testing.F, provider string, h http.Header) {
	files, _ := filepath.Glob(filepath.Join("testdata", "webhooks", "*.json"))
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, body []byte) {
		ev, err := Parse(provider, h, body)
		if err != nil {
			return
		}
		switch ev.Kind {
		case EventPush:
			if len(ev.Pushes) == 0 {
				t.Fatal("a push event without pushes")
			}
			for _, p := range ev.Pushes {
				if _, err := chain.ParseRef("ref", string(p.Ref)); err != nil {
					t.Fatalf("accepted push %+v: %v", p, err)
				}
				if _, err := chain.ParseCommit("commit", string(p.Commit)); err != nil {
					t.Fatalf("accepted push %+v: %v", p, err)
				}
			}
		case EventImage:
			for _, im := range ev.Images {
				if _, _, err := chain.ParseImage("image", im.Repository+":"+im.Tag); err != nil {
					t.Fatalf("accepted image %+v: %v", im, err)
				}
				if _, err := chain.ParseDigest("digest", im.Digest); err != nil {
					t.Fatalf("accepted image %+v: %v", im, err)
				}
			}
		case EventPing, EventIgnore:
			if ev.Reason == "" {
				t.Fatal("ignored without a reason")
			}
		default:
			t.Fatalf("kind %q", ev.Kind)
		}
	})
}

func FuzzParseGitHub(f *testing.F) { fuzzParse(f, ProviderGitHub, hdr("X-GitHub-Event", "push")) }
func FuzzParseGitLab(f *testing.F) { fuzzParse(f, ProviderGitLab, nil) }
func FuzzParseGitee(f *testing.F)  { fuzzParse(f, ProviderGitee, hdr("X-Gitee-Event", "Push Hook")) }
func FuzzParseBitbucket(f *testing.F) {
	fuzzParse(f, ProviderBitbucket, hdr("X-Event-Key", "repo:push"))
}
func FuzzParseDistribution(f *testing.F) {
	fuzzParse(f, ProviderDistribution, nil)
}
func FuzzParseHarbor(f *testing.F) { fuzzParse(f, ProviderHarbor, nil) }
