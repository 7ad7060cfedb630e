package starter

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/temporal"

	"github.com/dchain-dev/dchain/activities"
	"github.com/dchain-dev/dchain/chain"
	"github.com/dchain-dev/dchain/workflows"
)

// ErrUnavailable means Temporal could not be reached: the sender should retry.
var ErrUnavailable = errors.New("temporal is unreachable")

// Delivery is what an event started.
type Delivery struct {
	Runs    []Started `json:"runs"`
	Ignored []string  `json:"ignored,omitempty"`
}

// Deliver starts the runs an event from src asks for: a Git push starts the
// matching build rules of every chain built from that repository; an image
// push starts every chain without a build section whose scope covers the
// repository in src's registry (chains that build are started by their
// source's pushes, not by their own image pushes). Run IDs are
// deterministic, so a redelivered event starts nothing new.
func (s *Starter) Deliver(ctx context.Context, src chain.Source, ev Event) (Delivery, error) {
	d := Delivery{Runs: []Started{}}
	switch ev.Kind {
	case EventPush:
		return d, s.deliverPushes(ctx, src, ev, &d)
	case EventImage:
		return d, s.deliverImages(ctx, src, ev, &d)
	default:
		d.Ignored = append(d.Ignored, ev.Reason)
		return d, nil
	}
}

func (s *Starter) allowed(src chain.Source, name string) bool {
	return len(src.Chains) == 0 || slices.Contains(src.Chains, name)
}

func (s *Starter) deliverPushes(ctx context.Context, src chain.Source, ev Event, d *Delivery) error {
	cause := workflows.Cause{Kind: src.Provider + "-push", Actor: src.Name}
	for _, push := range ev.Pushes {
		matched := false
		var fromRepo []string // the chains built from the pushed repository
		for _, ch := range s.Config.Chains {
			if ch.Build == nil || !s.allowed(src, ch.Name) || !SameRepository(ch.Build.Source.URL, ev.Repository) {
				continue
			}
			fromRepo = append(fromRepo, ch.Name)
			if !ch.Build.Automatic() {
				matched = true // (it matched; it says why it did not start)
				d.Ignored = append(d.Ignored, fmt.Sprintf("chain %s: automatic builds are off (build.autoBuild: false); start one with `dchain run start --chain %s --ref %s`",
					ch.Name, ch.Name, push.Ref))
				continue
			}
			plans, err := chain.PlanBuilds(ch, push, false, "")
			if err != nil {
				d.Ignored = append(d.Ignored, fmt.Sprintf("chain %s: %v", ch.Name, err))
				continue
			}
			if len(plans) == 0 {
				continue
			}
			matched = true
			c := cause
			c.Actor, c.At = push.Pusher, orNow(push.At)
			runs, err := s.StartPush(ctx, PushRequest{Chain: ch.Name, Ref: push.Ref, Commit: push.Commit, At: orNow(push.At), Pusher: push.Pusher, Cause: c})
			if err != nil {
				return Unavailable(err)
			}
			d.Runs = append(d.Runs, runs...)
		}
		switch {
		case matched:
		case len(fromRepo) == 0:
			d.Ignored = append(d.Ignored, fmt.Sprintf("no chain this source may start is built from %s (the repository's URLs %v match no chain's build.source.url)",
				ev.Repository.FullName, ev.Repository.URLs))
		default:
			d.Ignored = append(d.Ignored, fmt.Sprintf("no build rule of chain %s (built from %s) matches %s", strings.Join(fromRepo, ", "), ev.Repository.FullName, push.Ref))
		}
	}
	return nil
}

func (s *Starter) deliverImages(ctx context.Context, src chain.Source, ev Event, d *Delivery) error {
	for _, im := range ev.Images {
		if subject, ok := chain.ReferrerSubject(im.Tag); ok {
			if err := s.deliverReferrers(ctx, src, im, subject, d); err != nil {
				return err
			}
			continue
		}
		if why := s.Config.NotAnImage(im.Repository, im.Tag); why != "" {
			d.Ignored = append(d.Ignored, why)
			continue
		}
		matched := false
		for _, ch := range s.Config.Chains {
			if ch.Build != nil || ch.Scope.Registry != src.Registry || !ch.Scope.Covers(im.Repository) || !s.allowed(src, ch.Name) {
				continue
			}
			matched = true
			st, err := s.StartImage(ctx, ImageRequest{Chain: ch.Name, Repository: im.Repository, Tag: im.Tag, Digest: im.Digest,
				Cause: workflows.Cause{Kind: src.Provider + "-push", Actor: im.Actor, At: orNow(im.At)}})
			if gone(err) {
				// Deleted again since the push: nothing to run, and nothing a retry would change.
				d.Ignored = append(d.Ignored, fmt.Sprintf("chain %s: %v", ch.Name, err))
				continue
			}
			if err != nil {
				return Unavailable(err)
			}
			d.Runs = append(d.Runs, st)
		}
		if !matched {
			d.Ignored = append(d.Ignored, fmt.Sprintf("no chain without a build section covers %s in registry %s", im.Repository, src.Registry))
		}
	}
	return nil
}

// deliverReferrers follows an artifact attached to an image (its referrer
// tag changed) to the destinations of every chain covering the image that
// already have it.
func (s *Starter) deliverReferrers(ctx context.Context, src chain.Source, im ImagePush, subject string, d *Delivery) error {
	matched := false
	for _, ch := range s.Config.Chains {
		if ch.Scope.Registry != src.Registry || !ch.Scope.Covers(im.Repository) || !s.allowed(src, ch.Name) ||
			s.Config.NotAnImage(im.Repository, "") != "" {
			continue
		}
		st, err := s.StartReferrers(ctx, ReferrersRequest{Chain: ch.Name, Repository: im.Repository, Tag: im.Tag, Digest: im.Digest, Subject: subject,
			Cause: workflows.Cause{Kind: src.Provider + "-referrer", Actor: im.Actor, At: orNow(im.At)}})
		if errors.Is(err, errNothingToFollow) {
			d.Ignored = append(d.Ignored, fmt.Sprintf("chain %s: %v", ch.Name, err))
			continue
		}
		if err != nil {
			return Unavailable(err)
		}
		matched = true
		d.Runs = append(d.Runs, st)
	}
	if !matched {
		d.Ignored = append(d.Ignored, fmt.Sprintf("%s:%s is a referrer tag (an artifact attached to %s) and no chain covering %s in registry %s copies referrers",
			im.Repository, im.Tag, subject, im.Repository, src.Registry))
	}
	return nil
}

func orNow(t time.Time) time.Time {
	if t.IsZero() {
		return time.Now().UTC()
	}
	return t
}

// Unavailable marks errors reaching Temporal, and transient registry
// errors, as ErrUnavailable: the sender should retry.
func Unavailable(err error) error {
	if err == nil {
		return nil
	}
	var u *serviceerror.Unavailable
	var dl *serviceerror.DeadlineExceeded
	var app *temporal.ApplicationError
	if errors.As(err, &u) || errors.As(err, &dl) || errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "connection refused") ||
		(errors.As(err, &app) && app.Type() == activities.ErrTransient) {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return err
}

// gone reports an image the registry no longer has.
func gone(err error) bool {
	var app *temporal.ApplicationError
	return errors.As(err, &app) && app.Type() == activities.ErrNotFound
}

// SameRepository reports whether a chain's source URL names the pushed
// repository: the URLs are compared without scheme, credentials and ".git",
// and a URL ending in the repository's full name matches too.
func SameRepository(sourceURL string, repo GitRepository) bool {
	want := normalizeRepoURL(sourceURL)
	for _, u := range repo.URLs {
		if normalizeRepoURL(u) == want {
			return true
		}
	}
	full := strings.ToLower(strings.Trim(repo.FullName, "/"))
	return full != "" && (want == full || strings.HasSuffix(want, "/"+full))
}

func normalizeRepoURL(s string) string {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "/") {
		return filepath.Clean(s)
	}
	if u, err := url.Parse(s); err == nil && u.Scheme != "" && u.Host != "" {
		s = u.Host + u.Path
	} else if at, colon := strings.Index(s, "@"), strings.Index(s, ":"); at >= 0 && colon > at {
		s = s[at+1:colon] + "/" + s[colon+1:] // git@host:owner/repo
	} else if strings.HasPrefix(s, "file://") {
		return filepath.Clean(strings.TrimPrefix(s, "file://"))
	}
	s = strings.TrimSuffix(strings.TrimSuffix(strings.ToLower(s), "/"), ".git")
	return s
}
