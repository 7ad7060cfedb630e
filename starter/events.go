package starter

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/dchain-dev/dchain/chain"
)

// Webhook providers.
const (
	ProviderGitHub       = "github"
	ProviderGitLab       = "gitlab"
	ProviderGitee        = "gitee"
	ProviderBitbucket    = "bitbucket"
	ProviderDistribution = "distribution" // CNCF distribution notifications
	ProviderHarbor       = "harbor"
)

// Event kinds.
const (
	EventPush   = "push"   // branch or tag push: may start builds
	EventImage  = "image"  // image push to a registry: may start image runs
	EventPing   = "ping"   // a provider's test delivery: starts nothing
	EventIgnore = "ignore" // something else (deletions, other events): starts nothing
)

// Errors a delivery can be refused with.
var (
	ErrSignature = errors.New("bad or missing signature")
	ErrMalformed = errors.New("malformed payload")
)

// Event is a verified, parsed webhook delivery.
type Event struct {
	Provider string `json:"provider"`
	Kind     string `json:"kind"`
	// Delivery is the provider's delivery id, when it sends one.
	Delivery string `json:"delivery,omitempty"`
	// Repository names the Git repository of a push: full name and clone URLs.
	Repository GitRepository `json:"repository,omitzero"`
	Pushes     []chain.Push  `json:"pushes,omitempty"`
	Images     []ImagePush   `json:"images,omitempty"`
	// Reason says why an event starts nothing.
	Reason string `json:"reason,omitempty"`
}

// GitRepository identifies the pushed repository.
type GitRepository struct {
	FullName string   `json:"fullName"`
	URLs     []string `json:"urls"`
}

// ImagePush is one tag pushed to a registry.
type ImagePush struct {
	Repository string    `json:"repository"`
	Tag        string    `json:"tag"`
	Digest     string    `json:"digest"`
	At         time.Time `json:"at"`
	Actor      string    `json:"actor,omitempty"`
}

const zeroSHA = "0000000000000000000000000000000000000000"

// ReplayWindow is how far from now a signed delivery's timestamp may be,
// either way (clock skew), where the provider's scheme signs one (Gitee's
// signature mode): older signed headers are refused, so a captured
// delivery cannot be replayed, with its body or another, after that.
const ReplayWindow = 5 * time.Minute

// Verify checks a delivery's signature or token against secret, in
// constant time, and a signed timestamp against ReplayWindow.
func Verify(provider, secret string, h http.Header, body []byte) error {
	return VerifyAt(provider, secret, h, body, time.Now())
}

// VerifyAt is Verify at the given time.
func VerifyAt(provider, secret string, h http.Header, body []byte, now time.Time) error {
	if secret == "" {
		return fmt.Errorf("%w: no secret is configured for this source", ErrSignature)
	}
	ok := false
	switch provider {
	case ProviderGitHub:
		ok = hmacHex(secret, body, h.Get("X-Hub-Signature-256"))
	case ProviderBitbucket:
		ok = hmacHex(secret, body, h.Get("X-Hub-Signature"))
	case ProviderGitLab:
		ok = equal(h.Get("X-Gitlab-Token"), secret)
	case ProviderGitee:
		// Gitee sends the password itself, or a signature of timestamp+"\n"+secret
		// (not of the body: the timestamp's age is what stops a replay).
		tok := h.Get("X-Gitee-Token")
		if ts := h.Get("X-Gitee-Timestamp"); ts != "" && !equal(tok, secret) {
			if ok = equal(tok, GiteeSign(secret, ts)); ok {
				if err := inWindow("X-Gitee-Timestamp", ts, now); err != nil {
					return err
				}
			}
		} else {
			ok = equal(tok, secret)
		}
	case ProviderDistribution:
		ok = equal(h.Get("Authorization"), "Bearer "+secret)
	case ProviderHarbor:
		a := h.Get("Authorization")
		ok = equal(a, secret) || equal(a, "Bearer "+secret)
	default:
		return fmt.Errorf("unknown provider %q", provider)
	}
	if !ok {
		return ErrSignature
	}
	return nil
}

// inWindow checks a signed timestamp (milliseconds since the epoch)
// against ReplayWindow around now.
func inWindow(header, ms string, now time.Time) error {
	n, err := strconv.ParseInt(ms, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: %s %q is not a time in milliseconds", ErrSignature, header, ms)
	}
	at := time.UnixMilli(n)
	if d := now.Sub(at); d > ReplayWindow || d < -ReplayWindow {
		return fmt.Errorf("%w: %s is %s from this server's clock, outside the %s replay window (a replayed delivery, or a clock to set right)",
			ErrSignature, header, d.Round(time.Second), ReplayWindow)
	}
	return nil
}

func equal(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

func hmacHex(secret string, body []byte, header string) bool {
	return equal(header, HubSign(secret, body))
}

// HubSign is the "sha256=<hex>" HMAC signature GitHub and Bitbucket send.
func HubSign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// GiteeSign is Gitee's signature: base64(HMAC-SHA256(secret, timestamp+"\n"+secret)).
func GiteeSign(secret, timestamp string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(timestamp + "\n" + secret))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// Parse parses a delivery of provider. Errors wrap ErrMalformed and say what is wrong.
func Parse(provider string, h http.Header, body []byte) (Event, error) {
	ev := Event{Provider: provider}
	var err error
	switch provider {
	case ProviderGitHub:
		ev.Delivery = h.Get("X-GitHub-Delivery")
		err = parseGitHub(&ev, h.Get("X-GitHub-Event"), h.Get("Content-Type"), body)
	case ProviderGitLab:
		ev.Delivery = h.Get("X-Gitlab-Event-UUID")
		err = parseGitLab(&ev, body)
	case ProviderGitee:
		ev.Delivery = h.Get("X-Gitee-Delivery")
		err = parseGitee(&ev, h.Get("X-Gitee-Event"), body)
	case ProviderBitbucket:
		ev.Delivery = h.Get("X-Request-UUID")
		err = parseBitbucket(&ev, h.Get("X-Event-Key"), body)
	case ProviderDistribution:
		err = parseDistribution(&ev, body)
	case ProviderHarbor:
		err = parseHarbor(&ev, body)
	default:
		return ev, fmt.Errorf("unknown provider %q", provider)
	}
	if err != nil {
		return ev, fmt.Errorf("%w: %s", ErrMalformed, err)
	}
	return ev, nil
}

func decode(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("not JSON: %v", err)
	}
	return nil
}

// gitPush fills a push event from the common fields, or marks it ignored.
// The ref and commit go through the chain package's validator; at is the
// provider's push time (zero when the payload has none: the time the event
// is received is used then).
func gitPush(ev *Event, ref, commit string, deleted bool, at time.Time, pusher string) error {
	r, err := chain.ParseRef("ref", ref)
	if err != nil {
		return err
	}
	if deleted || commit == zeroSHA || commit == "" {
		ev.Kind, ev.Reason = EventIgnore, ref+" was deleted: deletions start nothing"
		return nil
	}
	c, err := chain.ParseCommit("commit", commit)
	if err != nil {
		return err
	}
	ev.Kind = EventPush
	ev.Pushes = append(ev.Pushes, chain.Push{Ref: r, Commit: c, At: at, Pusher: pusher})
	return nil
}

// pushTime reads a push time that providers send as Unix seconds or as a
// timestamp string.
func pushTime(raw json.RawMessage) time.Time {
	var secs int64
	if json.Unmarshal(raw, &secs) == nil && secs > 0 {
		return time.Unix(secs, 0).UTC()
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return parseTime(s)
	}
	return time.Time{}
}

func parseTime(s string) time.Time {
	for _, layout := range []string{time.RFC3339, "2006-01-02 15:04:05 MST", "2006-01-02T15:04:05-07:00"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC()
		}
	}
	return time.Time{}
}

func nonEmptyStrings(ss ...string) []string {
	var out []string
	for _, s := range ss {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

func parseGitHub(ev *Event, kind, contentType string, body []byte) error {
	switch kind {
	case "ping":
		ev.Kind, ev.Reason = EventPing, "ping"
		return nil
	case "push":
	case "":
		return errors.New("header X-GitHub-Event is missing")
	default:
		ev.Kind, ev.Reason = EventIgnore, "event "+kind+" starts nothing"
		return nil
	}
	if mt, _, _ := mime.ParseMediaType(contentType); mt == "application/x-www-form-urlencoded" {
		// GitHub's default content type: the JSON is the payload form field.
		form, err := url.ParseQuery(string(body))
		if err != nil || !form.Has("payload") {
			return errors.New("a form-encoded delivery needs a payload field")
		}
		body = []byte(form.Get("payload"))
	}
	return parseHubPush(ev, body)
}

// parseHubPush parses the push payload GitHub and Gitee share (ref, after,
// deleted, repository, pusher, head_commit). For a tag push, after may be
// the annotated tag object: the commit is head_commit.id. The push time is
// repository.pushed_at.
func parseHubPush(ev *Event, body []byte) error {
	var p struct {
		Ref        string `json:"ref"`
		After      string `json:"after"`
		Deleted    bool   `json:"deleted"`
		Repository struct {
			FullName string          `json:"full_name"`
			CloneURL string          `json:"clone_url"`
			SSHURL   string          `json:"ssh_url"`
			HTMLURL  string          `json:"html_url"`
			PushedAt json.RawMessage `json:"pushed_at"`
		} `json:"repository"`
		Pusher struct {
			Name string `json:"name"`
		} `json:"pusher"`
		HeadCommit *struct {
			ID string `json:"id"`
		} `json:"head_commit"`
	}
	if err := decode(body, &p); err != nil {
		return err
	}
	if p.Repository.FullName == "" {
		return errors.New("field repository.full_name is missing")
	}
	ev.Repository = GitRepository{FullName: p.Repository.FullName, URLs: nonEmptyStrings(p.Repository.CloneURL, p.Repository.SSHURL, p.Repository.HTMLURL)}
	commit := p.After
	if strings.HasPrefix(p.Ref, "refs/tags/") && p.HeadCommit != nil && p.HeadCommit.ID != "" {
		commit = p.HeadCommit.ID
	}
	return gitPush(ev, p.Ref, commit, p.Deleted, pushTime(p.Repository.PushedAt), p.Pusher.Name)
}

func parseGitLab(ev *Event, body []byte) error {
	var p struct {
		ObjectKind   string  `json:"object_kind"`
		Ref          string  `json:"ref"`
		After        string  `json:"after"`
		CheckoutSHA  *string `json:"checkout_sha"`
		UserUsername string  `json:"user_username"`
		Project      struct {
			PathWithNamespace string `json:"path_with_namespace"`
			GitHTTPURL        string `json:"git_http_url"`
			GitSSHURL         string `json:"git_ssh_url"`
			WebURL            string `json:"web_url"`
		} `json:"project"`
	}
	if err := decode(body, &p); err != nil {
		return err
	}
	switch p.ObjectKind {
	case "push", "tag_push":
	case "":
		return errors.New("field object_kind is missing")
	default:
		ev.Kind, ev.Reason = EventIgnore, "event "+p.ObjectKind+" starts nothing"
		return nil
	}
	if p.Project.PathWithNamespace == "" {
		return errors.New("field project.path_with_namespace is missing")
	}
	ev.Repository = GitRepository{FullName: p.Project.PathWithNamespace, URLs: nonEmptyStrings(p.Project.GitHTTPURL, p.Project.GitSSHURL, p.Project.WebURL)}
	// checkout_sha is the commit; after is the tag object of an annotated
	// tag. GitLab's payload carries no push time.
	commit := p.After
	if p.CheckoutSHA != nil && *p.CheckoutSHA != "" {
		commit = *p.CheckoutSHA
	}
	return gitPush(ev, p.Ref, commit, p.CheckoutSHA == nil && p.After == zeroSHA, time.Time{}, p.UserUsername)
}

func parseGitee(ev *Event, kind string, body []byte) error {
	switch kind {
	case "Push Hook", "Tag Push Hook":
	case "":
		return errors.New("header X-Gitee-Event is missing")
	default:
		ev.Kind, ev.Reason = EventIgnore, "event "+kind+" starts nothing"
		return nil
	}
	return parseHubPush(ev, body)
}

func parseBitbucket(ev *Event, kind string, body []byte) error {
	switch kind {
	case "diagnostics:ping":
		ev.Kind, ev.Reason = EventPing, "ping"
		return nil
	case "repo:push":
	case "":
		return errors.New("header X-Event-Key is missing")
	default:
		ev.Kind, ev.Reason = EventIgnore, "event "+kind+" starts nothing"
		return nil
	}
	type refState struct {
		Type   string `json:"type"`
		Name   string `json:"name"`
		Target struct {
			Hash string `json:"hash"`
		} `json:"target"`
	}
	var p struct {
		Push struct {
			Changes []struct {
				New *refState `json:"new"`
				Old *refState `json:"old"`
			} `json:"changes"`
		} `json:"push"`
		Repository struct {
			FullName string `json:"full_name"`
			Links    struct {
				HTML struct {
					Href string `json:"href"`
				} `json:"html"`
			} `json:"links"`
		} `json:"repository"`
		Actor struct {
			Nickname string `json:"nickname"`
		} `json:"actor"`
	}
	if err := decode(body, &p); err != nil {
		return err
	}
	if p.Repository.FullName == "" {
		return errors.New("field repository.full_name is missing")
	}
	if len(p.Push.Changes) == 0 {
		return errors.New("field push.changes is empty")
	}
	ev.Repository = GitRepository{FullName: p.Repository.FullName, URLs: nonEmptyStrings(p.Repository.Links.HTML.Href)}
	for i, c := range p.Push.Changes {
		if c.New == nil {
			continue // a deletion
		}
		prefix := map[string]string{"branch": "refs/heads/", "tag": "refs/tags/"}[c.New.Type]
		if prefix == "" {
			return fmt.Errorf("field push.changes[%d].new.type %q: want branch or tag", i, c.New.Type)
		}
		one := Event{}
		// target is the commit (also for an annotated tag); its date is the
		// commit's, not the push's: Bitbucket's payload has no push time.
		if err := gitPush(&one, prefix+c.New.Name, c.New.Target.Hash, false, time.Time{}, p.Actor.Nickname); err != nil {
			return fmt.Errorf("push.changes[%d]: %v", i, err)
		}
		ev.Pushes = append(ev.Pushes, one.Pushes...)
	}
	if len(ev.Pushes) == 0 {
		ev.Kind, ev.Reason = EventIgnore, "every change is a deletion: deletions start nothing"
		return nil
	}
	ev.Kind = EventPush
	return nil
}

func parseDistribution(ev *Event, body []byte) error {
	var p struct {
		Events []struct {
			ID        string `json:"id"`
			Timestamp string `json:"timestamp"`
			Action    string `json:"action"`
			Target    struct {
				MediaType  string `json:"mediaType"`
				Digest     string `json:"digest"`
				Repository string `json:"repository"`
				Tag        string `json:"tag"`
			} `json:"target"`
			Actor struct {
				Name string `json:"name"`
			} `json:"actor"`
		} `json:"events"`
	}
	if err := decode(body, &p); err != nil {
		return err
	}
	if p.Events == nil {
		return errors.New("field events is missing")
	}
	for i, e := range p.Events {
		if e.Action != "push" || e.Target.Tag == "" {
			continue // pulls, deletes, blob and by-digest pushes
		}
		im, err := imagePush(fmt.Sprintf("events[%d].target.", i), e.Target.Repository, e.Target.Tag, e.Target.Digest)
		if err != nil {
			return err
		}
		im.At, im.Actor = parseTime(e.Timestamp), e.Actor.Name
		ev.Images = append(ev.Images, im)
	}
	return imageEvent(ev, "no tagged image push in the delivery")
}

func parseHarbor(ev *Event, body []byte) error {
	var p struct {
		Type      string `json:"type"`
		OccurAt   int64  `json:"occur_at"`
		Operator  string `json:"operator"`
		EventData struct {
			Resources []struct {
				Digest string `json:"digest"`
				Tag    string `json:"tag"`
			} `json:"resources"`
			Repository struct {
				RepoFullName string `json:"repo_full_name"`
			} `json:"repository"`
		} `json:"event_data"`
	}
	if err := decode(body, &p); err != nil {
		return err
	}
	switch p.Type {
	case "PUSH_ARTIFACT":
	case "":
		return errors.New("field type is missing")
	default:
		ev.Kind, ev.Reason = EventIgnore, "event "+p.Type+" starts nothing"
		return nil
	}
	repo := p.EventData.Repository.RepoFullName
	if repo == "" {
		return errors.New("field event_data.repository.repo_full_name is missing")
	}
	for i, r := range p.EventData.Resources {
		if r.Tag == "" || strings.HasPrefix(r.Tag, "sha256:") {
			continue // a push by digest: current Harbor puts the digest in tag
		}
		im, err := imagePush(fmt.Sprintf("event_data.resources[%d].", i), repo, r.Tag, r.Digest)
		if err != nil {
			return err
		}
		im.At, im.Actor = time.Unix(p.OccurAt, 0).UTC(), p.Operator
		ev.Images = append(ev.Images, im)
	}
	return imageEvent(ev, "a push by digest (no tag): dchain runs chains on tags, so it starts nothing")
}

// imagePush checks one pushed image's fields with the chain package's
// validator; field prefixes the payload path in errors.
func imagePush(field, repo, tag, digest string) (ImagePush, error) {
	var err error
	im := ImagePush{}
	if im.Repository, err = chain.ParseRepository(field+"repository", repo); err != nil {
		return im, err
	}
	if im.Tag, err = chain.ParseTag(field+"tag", tag); err != nil {
		return im, err
	}
	if im.Digest, err = chain.ParseDigest(field+"digest", digest); err != nil {
		return im, err
	}
	return im, nil
}

func imageEvent(ev *Event, none string) error {
	if len(ev.Images) == 0 {
		ev.Kind, ev.Reason = EventIgnore, none
		return nil
	}
	ev.Kind = EventImage
	return nil
}

// SignedHeaders are the headers a provider sends with body: its event header
// and its signature or token made with secret. `dchain webhook test`, the
// tests and the load benchmark sign deliveries with it.
func SignedHeaders(provider, secret string, body []byte, now time.Time) (http.Header, error) {
	h := http.Header{"Content-Type": {"application/json"}}
	switch provider {
	case ProviderGitHub:
		h.Set("X-GitHub-Event", "push")
		h.Set("X-Hub-Signature-256", HubSign(secret, body))
	case ProviderBitbucket:
		h.Set("X-Event-Key", "repo:push")
		h.Set("X-Hub-Signature", HubSign(secret, body))
	case ProviderGitLab:
		h.Set("X-Gitlab-Event", "Push Hook")
		h.Set("X-Gitlab-Token", secret)
	case ProviderGitee:
		ts := fmt.Sprint(now.UnixMilli())
		h.Set("X-Gitee-Event", "Push Hook")
		h.Set("X-Gitee-Timestamp", ts)
		h.Set("X-Gitee-Token", GiteeSign(secret, ts))
	case ProviderDistribution:
		h.Set("Content-Type", "application/vnd.docker.distribution.events.v1+json")
		h.Set("Authorization", "Bearer "+secret)
	case ProviderHarbor:
		h.Set("Authorization", secret)
	default:
		return nil, fmt.Errorf("unknown provider %q", provider)
	}
	return h, nil
}
