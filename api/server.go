package api

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.temporal.io/sdk/client"

	"github.com/dchain-dev/dchain/chain"
	"github.com/dchain-dev/dchain/starter"
)

// DefaultMaxBody is the default request body limit.
const DefaultMaxBody = 1 << 20

// Server serves the API.
type Server struct {
	Starter *starter.Starter
	Client  client.Client
	Config  *chain.Loaded
	// Tokens are the resolved bearer tokens of /api/v1 (none: every
	// request is refused, not let in), each with its identity.
	Tokens []Token
	// Secrets are the resolved webhook secrets by source name.
	Secrets map[string]string
	MaxBody int64
	UIURL   string
	// Namespace is the Temporal namespace, for UI links.
	Namespace string
	metrics   *metrics
	recent    *recentDeliveries
}

// ErrorBody is the shape of every error answer.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail says what went wrong.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// Field names the refused field of a bad request.
	Field string `json:"field,omitempty"`
}

// NewServer resolves the config's secrets (inside this process, never into
// a workflow) and prepares the server; its metrics go into reg, the
// process's registry (nil: one of its own).
func NewServer(st *starter.Starter, l *chain.Loaded, namespace string, reg *prometheus.Registry) (*Server, error) {
	return newServer(st, l, namespace, newMetrics(reg))
}

// WithConfig is a server like s for another config (a reload): the same
// Temporal client, task queue and metrics; the new sources, secrets and
// chains.
func (s *Server) WithConfig(l *chain.Loaded) (*Server, error) {
	st := *s.Starter
	st.Config = l
	return newServer(&st, l, s.Namespace, s.metrics)
}

func newServer(st *starter.Starter, l *chain.Loaded, namespace string, m *metrics) (*Server, error) {
	s := &Server{Starter: st, Client: st.Client, Config: l, Secrets: map[string]string{}, MaxBody: l.Config.API.MaxBodyBytes,
		UIURL: l.Config.API.UIURL, Namespace: namespace, metrics: m, recent: newRecentDeliveries(10*time.Minute, 20000)}
	if s.MaxBody == 0 {
		s.MaxBody = DefaultMaxBody
	}
	if s.UIURL == "" {
		s.UIURL = "http://127.0.0.1:8233"
	}
	var err error
	if s.Tokens, err = resolveTokens(l.Config.API); err != nil {
		return nil, err
	}
	for _, src := range l.Config.Sources {
		if s.Secrets[src.Name], err = src.Secret.Resolve(); err != nil {
			return nil, fmt.Errorf("source %s: %w", src.Name, err)
		}
	}
	return s, nil
}

// Handler is the echo instance with every route.
func (s *Server) Handler() *echo.Echo {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.errorHandler
	e.Use(middleware.Recover()) // a handler's panic is a logged 500, not a dropped connection
	e.Use(accessLog, s.count)
	e.POST("/webhooks/:source", s.webhook)
	e.GET("/healthz", func(c echo.Context) error { return c.JSON(http.StatusOK, map[string]string{"status": "ok"}) })
	e.GET("/readyz", s.ready)
	e.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(s.metrics.registry, promhttp.HandlerOpts{})))
	v1 := e.Group("/api/v1", s.auth)
	v1.GET("/chains", s.listChains)
	v1.GET("/runs", s.listRuns)
	v1.POST("/runs", s.startRun)
	v1.POST("/replications", s.startReplication)
	// Run IDs hold "/" and ":": the id is the rest of the path (escaped or not).
	v1.GET("/runs/*", s.getRun)
	v1.POST("/runs/*", s.runAction) // …/runs/<id>/cancel, …/runs/<id>/approval
	return e
}

// apiError answers with the common error body.
func apiError(c echo.Context, status int, code, format string, args ...any) error {
	return c.JSON(status, ErrorBody{Error: ErrorDetail{Code: code, Message: fmt.Sprintf(format, args...)}})
}

// isBadInput reports whether err is a value the shared validator refused.
func isBadInput(err error) bool {
	var in *chain.InputError
	return errors.As(err, &in)
}

// badInput answers 400 for a refused value, naming the field.
func badInput(c echo.Context, err error) error {
	d := ErrorDetail{Code: "bad_request", Message: err.Error()}
	var in *chain.InputError
	if errors.As(err, &in) {
		d.Field = in.Field
	}
	return c.JSON(http.StatusBadRequest, ErrorBody{Error: d})
}

func (s *Server) errorHandler(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	status, msg := http.StatusInternalServerError, err.Error()
	var he *echo.HTTPError
	if errors.As(err, &he) {
		status, msg = he.Code, fmt.Sprint(he.Message)
	}
	_ = apiError(c, status, strings.ToLower(strings.ReplaceAll(http.StatusText(status), " ", "_")), "%s", msg)
}

// Token is a bearer token of /api/v1 and who a request with it acts as.
type Token struct {
	Identity, Value string
}

// resolveTokens reads api.token and api.tokens (inside this process).
func resolveTokens(a chain.API) ([]Token, error) {
	var out []Token
	if v, err := a.Token.Resolve(); err != nil {
		return nil, fmt.Errorf("api.token: %w", err)
	} else if v != "" {
		out = append(out, Token{Identity: chain.TokenIdentity, Value: v})
	}
	for i, t := range a.Tokens {
		v, err := t.Token.Resolve()
		if err != nil {
			return nil, fmt.Errorf("api.tokens[%d] (%s): %w", i, t.Name, err)
		}
		if v == "" {
			return nil, fmt.Errorf("api.tokens[%d] (%s): the token is empty", i, t.Name)
		}
		out = append(out, Token{Identity: t.Name, Value: v})
	}
	return out, nil
}

// identityKey is where auth leaves the request's identity in echo's context.
const identityKey = "dchain.identity"

// auth requires a bearer token on /api/v1 and records whose it is.
func (s *Server) auth(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if len(s.Tokens) == 0 {
			return apiError(c, http.StatusUnauthorized, "unauthorized", "the API has no token configured (api.token or api.tokens in the config); it refuses every request")
		}
		got, ok := strings.CutPrefix(c.Request().Header.Get("Authorization"), "Bearer ")
		who := ""
		for _, t := range s.Tokens { // every token compared, in constant time each
			if subtle.ConstantTimeCompare([]byte(got), []byte(t.Value)) == 1 && who == "" {
				who = t.Identity
			}
		}
		if !ok || who == "" {
			return apiError(c, http.StatusUnauthorized, "unauthorized", "a valid bearer token is required (Authorization: Bearer <api.token>)")
		}
		c.Set(identityKey, who)
		return next(c)
	}
}

func (s *Server) ready(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), 3*time.Second)
	defer cancel()
	if _, err := s.Client.CheckHealth(ctx, &client.CheckHealthRequest{}); err != nil {
		return apiError(c, http.StatusServiceUnavailable, "temporal_unavailable", "Temporal is not reachable: %v", err)
	}
	return c.JSON(http.StatusOK, map[string]string{"status": "ready"})
}

// readBody reads at most MaxBody bytes; more is ErrTooLarge.
func (s *Server) readBody(c echo.Context) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(c.Request().Body, s.MaxBody+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > s.MaxBody {
		return nil, errTooLarge
	}
	return b, nil
}

var errTooLarge = errors.New("body too large")

// runLink is the run's page in the Temporal Web UI.
func (s *Server) runLink(workflowID string) string {
	return fmt.Sprintf("%s/namespaces/%s/workflows/%s", strings.TrimSuffix(s.UIURL, "/"), url.PathEscape(s.Namespace), url.PathEscape(workflowID))
}
