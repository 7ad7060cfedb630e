package api

import (
	"encoding/json/jsontext"
	jsonv2 "encoding/json/v2"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"go.temporal.io/api/serviceerror"

	"github.com/dchain-dev/dchain/chain"
	"github.com/dchain-dev/dchain/runs"
	"github.com/dchain-dev/dchain/starter"
	"github.com/dchain-dev/dchain/workflows"
)

func (s *Server) listChains(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]any{"chains": s.Config.Chains})
}

// StartRequest starts a run: an image in the chain's source registry, or a
// build of a ref (as a person: push-only rules refuse unless asPush).
type StartRequest struct {
	Chain  string `json:"chain"`
	Image  string `json:"image,omitempty"`
	Ref    string `json:"ref,omitempty"`
	Commit string `json:"commit,omitempty"`
	// Rule, with ref, is the one build rule to run.
	Rule   string `json:"rule,omitempty"`
	AsPush bool   `json:"asPush,omitempty"`
	Rerun  bool   `json:"rerun,omitempty"`
}

func (s *Server) startRun(c echo.Context) error {
	var req StartRequest
	err := s.decode(c, &req)
	if err != nil {
		return err
	}
	if req.Chain == "" || (req.Image == "") == (req.Ref == "") {
		return apiError(c, http.StatusBadRequest, "bad_request", "chain and exactly one of image or ref are required")
	}
	if _, err := s.Config.Chain(req.Chain); err != nil {
		return apiError(c, http.StatusNotFound, "unknown_chain", "%v", err)
	}
	ctx := c.Request().Context()
	cause := workflows.Cause{Kind: "api", Actor: "api", At: time.Now().UTC()}
	var started []starter.Started
	if req.Image != "" {
		if req.Commit != "" || req.AsPush || req.Rule != "" {
			return apiError(c, http.StatusBadRequest, "bad_request", "commit, rule and asPush only apply with ref")
		}
		repo, tag, perr := chain.ParseImage("image", req.Image)
		if perr != nil {
			return badInput(c, perr)
		}
		var st starter.Started
		st, err = s.Starter.StartImage(ctx, starter.ImageRequest{Chain: req.Chain, Repository: repo, Tag: tag, Cause: cause, Rerun: req.Rerun})
		started = append(started, st)
	} else {
		push, perr := starter.ParsePushFields("ref", req.Ref, "commit", req.Commit)
		if perr == nil && req.Rule != "" {
			push.Rule, perr = chain.ParseName("rule", req.Rule)
			push.RuleField = "rule"
		}
		if perr != nil {
			return badInput(c, perr)
		}
		push.At, push.Pusher, push.Manual, push.Cause, push.Rerun, push.Chain = cause.At, "api", !req.AsPush, cause, req.Rerun, req.Chain
		started, err = s.Starter.StartPush(ctx, push)
	}
	if err != nil {
		return notStarted(c, err)
	}
	return s.answerRuns(c, "api", started, nil)
}

// ReplicationRequest starts a manual replication: source is
// REGISTRY/NAMESPACE/REPO:TAG (or @sha256:…), each of to is
// REGISTRY[/NAMESPACE/REPO[:TAG]].
type ReplicationRequest struct {
	Source    string   `json:"source"`
	To        []string `json:"to"`
	Overwrite bool     `json:"overwrite,omitempty"`
}

func (s *Server) startReplication(c echo.Context) error {
	var req ReplicationRequest
	if err := s.decode(c, &req); err != nil {
		return err
	}
	st, err := s.Starter.StartReplication(c.Request().Context(), starter.ReplicationRequest{
		Source: req.Source, To: req.To, Overwrite: req.Overwrite, SourceField: "source", ToField: "to"})
	if err != nil {
		return notStarted(c, err)
	}
	return s.answerRuns(c, "api", []starter.Started{st}, nil)
}

// notStarted answers a start that failed: 400 naming a refused field, 503
// when Temporal (or a registry) cannot be reached, else 422.
func notStarted(c echo.Context, err error) error {
	switch {
	case isBadInput(err):
		return badInput(c, err)
	case errors.Is(starter.Unavailable(err), starter.ErrUnavailable):
		return apiError(c, http.StatusServiceUnavailable, "temporal_unavailable", "%v", err)
	}
	return apiError(c, http.StatusUnprocessableEntity, "not_started", "%v", err)
}

func (s *Server) listRuns(c echo.Context) error {
	limit := 0
	if l := c.QueryParam("limit"); l != "" {
		var err error
		if limit, err = strconv.Atoi(l); err != nil {
			return badInput(c, &chain.InputError{Field: "limit", Reason: fmt.Sprintf("%q is not a number", l)})
		}
	}
	var waiting bool
	switch w := c.QueryParam("waiting"); w {
	case "", "false":
	case "true":
		waiting = true
	default:
		return badInput(c, &chain.InputError{Field: "waiting", Reason: fmt.Sprintf("%q: want true or false", w)})
	}
	f, err := runs.Filter{
		Kind: c.QueryParam("kind"), Chain: c.QueryParam("chain"), Outcome: c.QueryParam("outcome"), Repository: c.QueryParam("repository"), Tag: c.QueryParam("tag"),
		Waiting: waiting, Limit: limit,
	}.Check(func(f string) string { return f })
	if err != nil {
		return badInput(c, err)
	}
	list, err := runs.List(c.Request().Context(), s.Client, f)
	if err != nil {
		return apiError(c, http.StatusServiceUnavailable, "temporal_unavailable", "%v", err)
	}
	return c.JSON(http.StatusOK, map[string]any{"runs": list})
}

// runID is the run id at the end of the path, unescaped.
func runID(c echo.Context) string {
	id := c.Param("*")
	if u, err := url.PathUnescape(id); err == nil {
		id = u
	}
	return id
}

func (s *Server) getRun(c echo.Context) error {
	id := runID(c)
	st, err := runs.Status(c.Request().Context(), s.Client, id)
	if errors.Is(err, runs.ErrNotFound) {
		return apiError(c, http.StatusNotFound, "unknown_run", "%v", err)
	}
	if err != nil {
		return apiError(c, http.StatusServiceUnavailable, "status_unavailable", "%v", err)
	}
	return c.JSON(http.StatusOK, map[string]any{"run": st, "ui": s.runLink(id)})
}

// runAction is POST /api/v1/runs/<id>/cancel and …/approval.
func (s *Server) runAction(c echo.Context) error {
	id := runID(c)
	if id, ok := strings.CutSuffix(id, "/cancel"); ok {
		return s.cancelRun(c, id)
	}
	if id, ok := strings.CutSuffix(id, "/approval"); ok {
		return s.decide(c, id)
	}
	if id, ok := strings.CutSuffix(id, "/rerun"); ok {
		return s.rerun(c, id)
	}
	return apiError(c, http.StatusNotFound, "not_found", "POST /api/v1/runs/<id>/cancel cancels a run, …/approval decides one waiting for approval, …/rerun runs an ended one again from a stage; POST /api/v1/runs starts one")
}

func (s *Server) cancelRun(c echo.Context, id string) error {
	err := s.Client.CancelWorkflow(c.Request().Context(), id, "")
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return apiError(c, http.StatusNotFound, "unknown_run", "run %s: %v", id, err)
	}
	if err != nil {
		return apiError(c, http.StatusConflict, "not_canceled", "run %s: %v", id, err)
	}
	return c.JSON(http.StatusAccepted, map[string]string{"workflowId": id, "status": "cancellation requested"})
}

// decode reads the request body into v: JSON (Content-Type
// application/json), one value and nothing after it, no member twice and
// none unknown. When it cannot, it answers (413 or 400) and returns that
// answer's error.
func (s *Server) decode(c echo.Context, v any) error {
	if mt, _, err := mime.ParseMediaType(c.Request().Header.Get(echo.HeaderContentType)); err != nil || mt != echo.MIMEApplicationJSON {
		_ = apiError(c, http.StatusBadRequest, "bad_request", "Content-Type %q: the body must be application/json",
			c.Request().Header.Get(echo.HeaderContentType))
		return errAnswered
	}
	body, err := s.readBody(c)
	switch {
	case errors.Is(err, errTooLarge):
		_ = apiError(c, http.StatusRequestEntityTooLarge, "too_large", "the body is larger than %d bytes", s.MaxBody)
		return errAnswered
	case err == nil:
		err = jsonStrict(body, v)
	}
	if err != nil {
		_ = apiError(c, http.StatusBadRequest, "bad_request", "%v", err)
		return errAnswered
	}
	return nil
}

// errAnswered is returned by a handler that has answered an error already
// (the error handler leaves committed responses alone).
var errAnswered = errors.New("answered")

// jsonStrict decodes a request body with encoding/json/v2: exactly one
// JSON value (trailing data refused), member names matched exactly, a
// duplicate member or an unknown one refused ({"chain":"a","chain":"b"}
// must not start chain b).
func jsonStrict(b []byte, v any) error {
	if err := jsonv2.Unmarshal(b, v, jsonv2.RejectUnknownMembers(true), jsontext.AllowDuplicateNames(false)); err != nil {
		return fmt.Errorf("body: %v", err)
	}
	return nil
}

// ApprovalRequest decides a run waiting for approval, as the request's
// token (its name in api.tokens) — POST /api/v1/runs/<id>/approval.
type ApprovalRequest struct {
	// Decision is "approve" or "reject".
	Decision string `json:"decision"`
	// Comment is the approver's comment; a rejection's reason (required).
	Comment string `json:"comment,omitempty"`
}

// ApprovalAnswer is the decision as the run recorded it.
type ApprovalAnswer struct {
	WorkflowID string                     `json:"workflowId"`
	Decision   workflows.ApprovalDecision `json:"decision"`
	Link       string                     `json:"link"`
}

func (s *Server) decide(c echo.Context, id string) error {
	var req ApprovalRequest
	if err := s.decode(c, &req); err != nil {
		return err
	}
	var d workflows.ApprovalDecision
	switch req.Decision {
	case "approve":
		d.Approve = true
	case "reject":
	default:
		return badInput(c, &chain.InputError{Field: "decision", Reason: fmt.Sprintf("%q: want approve or reject", req.Decision)})
	}
	d.By, _ = c.Get(identityKey).(string)
	d.Via, d.Comment = "api", req.Comment
	d, err := workflows.CheckDecision(d, func(f string) string { return f })
	if err != nil {
		return badInput(c, err)
	}
	got, err := runs.Decide(c.Request().Context(), s.Client, id, d)
	var de *runs.DecisionError
	switch {
	case err == nil:
		return c.JSON(http.StatusOK, ApprovalAnswer{WorkflowID: id, Decision: got, Link: s.runLink(id)})
	case errors.Is(err, runs.ErrNotFound):
		return apiError(c, http.StatusNotFound, "unknown_run", "%v", err)
	case errors.As(err, &de) && de.Kind == workflows.ErrTypeNotAnApprover:
		return apiError(c, http.StatusForbidden, "not_an_approver", "%v", err)
	case errors.As(err, &de) && de.Kind == workflows.ErrTypeNotWaiting:
		return apiError(c, http.StatusConflict, "not_waiting", "%v", err)
	case errors.As(err, &de):
		return apiError(c, http.StatusBadRequest, "bad_request", "%v", err)
	}
	return apiError(c, http.StatusServiceUnavailable, "decision_unavailable", "%v", err)
}

// RerunRequest runs an ended run again from a stage — POST
// /api/v1/runs/<id>/rerun; with destinations (from replicate), it copies
// into those again only.
type RerunRequest struct {
	From         string   `json:"from"`
	Destinations []string `json:"destinations,omitempty"`
}

func (s *Server) rerun(c echo.Context, id string) error {
	var body RerunRequest
	if err := s.decode(c, &body); err != nil {
		return err
	}
	req, err := starter.CheckRerun(starter.RerunRequest{Run: id, From: body.From, Destinations: body.Destinations}, func(f string) string {
		if f == "destination" {
			return "destinations"
		}
		return f
	})
	if err != nil {
		return badInput(c, err)
	}
	who, _ := c.Get(identityKey).(string)
	req.Cause = workflows.Cause{Kind: "rerun", Actor: who, At: time.Now().UTC()}
	st, err := s.Starter.StartRerun(c.Request().Context(), req)
	var re *starter.RerunError
	switch {
	case err == nil:
		code := http.StatusAccepted
		if st.Existing {
			code = http.StatusOK
		}
		return c.JSON(code, map[string]any{"run": st, "link": s.runLink(st.WorkflowID)})
	case errors.Is(err, runs.ErrNotFound):
		return apiError(c, http.StatusNotFound, "unknown_run", "%v", err)
	case errors.As(err, &re):
		return apiError(c, http.StatusConflict, "not_rerunnable", "%v", err)
	case isBadInput(err):
		return badInput(c, err)
	}
	return apiError(c, http.StatusServiceUnavailable, "rerun_unavailable", "%v", err)
}
