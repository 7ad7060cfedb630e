package api

import (
	"errors"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/dchain-dev/dchain/chain"
	"github.com/dchain-dev/dchain/starter"
)

// WebhookAnswer is the body of a webhook answer.
type WebhookAnswer struct {
	Runs    []RunLink `json:"runs"`
	Ignored []string  `json:"ignored,omitempty"`
}

// RunLink names a run and its page in the Temporal Web UI.
type RunLink struct {
	WorkflowID string `json:"workflowId"`
	RunID      string `json:"runId"`
	Existing   bool   `json:"existing"`
	UI         string `json:"ui"`
}

// webhook verifies, parses and delivers one event: 202 with the runs it
// started, 200 when it started nothing new (ignored, or a redelivery), 400
// malformed, 401 bad signature, 404 unknown source, 413 too large, 503 when
// Temporal cannot be reached (the sender retries; the run IDs are
// deterministic, so nothing is started twice).
func (s *Server) webhook(c echo.Context) error {
	name := c.Param("source")
	src, ok := s.source(name)
	if !ok {
		s.metrics.event("unknown", "unknown_source")
		return apiError(c, http.StatusNotFound, "unknown_source", "no webhook source %q is configured (sources in %s)", name, s.Config.Config.Path)
	}
	body, err := s.readBody(c)
	if errors.Is(err, errTooLarge) {
		s.metrics.event(name, "too_large")
		return apiError(c, http.StatusRequestEntityTooLarge, "too_large", "the body is larger than %d bytes", s.MaxBody)
	}
	if err != nil {
		return apiError(c, http.StatusBadRequest, "bad_body", "reading the body: %v", err)
	}
	if err := starter.Verify(src.Provider, s.Secrets[name], c.Request().Header, body); err != nil {
		s.metrics.event(name, "signature")
		return apiError(c, http.StatusUnauthorized, "bad_signature", "%s delivery refused: %v", src.Provider, err)
	}
	key := deliveryKey(name, body)
	if runs, ignored, ok := s.recent.get(key, time.Now()); ok {
		s.metrics.event(name, "existing")
		return s.answerRuns(c, name, runs, ignored)
	}
	ev, err := starter.Parse(src.Provider, c.Request().Header, body)
	if err != nil {
		s.metrics.event(name, "malformed")
		return apiError(c, http.StatusBadRequest, "malformed_payload", "%v", err)
	}
	d, err := s.Starter.Deliver(c.Request().Context(), src, ev)
	if errors.Is(err, starter.ErrUnavailable) {
		s.metrics.event(name, "unavailable")
		return apiError(c, http.StatusServiceUnavailable, "temporal_unavailable", "%v; retry the delivery", err)
	}
	if isBadInput(err) {
		s.metrics.event(name, "malformed")
		return badInput(c, err)
	}
	if err != nil {
		s.metrics.event(name, "error")
		return apiError(c, http.StatusInternalServerError, "start_failed", "%v", err)
	}
	s.metrics.event(name, webhookResult(d.Runs, d.Ignored))
	s.recent.put(key, d.Runs, d.Ignored, time.Now())
	return s.answerRuns(c, name, d.Runs, d.Ignored)
}

// answerRuns answers with the runs and counts the new ones for origin:
// 202 when a run was started, 200 when none was (ignored, or all existing).
func (s *Server) answerRuns(c echo.Context, origin string, runs []starter.Started, ignored []string) error {
	ans := WebhookAnswer{Runs: []RunLink{}, Ignored: ignored}
	started := 0
	for _, r := range runs {
		ans.Runs = append(ans.Runs, RunLink{WorkflowID: r.WorkflowID, RunID: r.RunID, Existing: r.Existing, UI: s.runLink(r.WorkflowID)})
		if !r.Existing {
			started++
		}
	}
	s.metrics.starts.WithLabelValues(origin).Add(float64(started))
	if started > 0 {
		return c.JSON(http.StatusAccepted, ans)
	}
	return c.JSON(http.StatusOK, ans)
}

func (s *Server) source(name string) (chain.Source, bool) {
	for _, src := range s.Config.Config.Sources {
		if src.Name == name {
			return src, true
		}
	}
	return chain.Source{}, false
}

// webhookResult is what a delivery came to: accepted (a run started),
// existing (a redelivery: its runs exist), or ignored.
func webhookResult(runs []starter.Started, ignored []string) string {
	existing := false
	for _, r := range runs {
		if !r.Existing {
			return "accepted"
		}
		existing = true
	}
	if existing {
		return "existing"
	}
	return "ignored"
}
