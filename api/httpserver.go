package api

import (
	"net/http"
	"time"
)

// Timeouts bound what one connection may hold of the API's server: a
// client that sends its headers or its body slowly (one byte every few
// seconds) is cut off, on every route, before anything is authenticated.
type Timeouts struct {
	// Header is the time to read a request's headers.
	Header time.Duration
	// Request is the time to read a whole request, body included.
	Request time.Duration
	// Write is the time from the end of the request's headers to the end
	// of the answer.
	Write time.Duration
	// Idle is how long a kept-alive connection may wait for its next request.
	Idle time.Duration
}

// DefaultTimeouts: a webhook delivery or REST body (at most
// api.maxBodyBytes, 1 MiB by default) has 30 s to arrive whole; an answer
// (a run start waits up to 10 s for Temporal) 60 s to leave.
var DefaultTimeouts = Timeouts{Header: 10 * time.Second, Request: 30 * time.Second, Write: 60 * time.Second, Idle: 2 * time.Minute}

// MaxHeaderBytes bounds a request's headers.
const MaxHeaderBytes = 64 << 10

// NewHTTPServer is the API's HTTP server around h, with the timeouts t.
func NewHTTPServer(h http.Handler, t Timeouts) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: t.Header, ReadTimeout: t.Request, WriteTimeout: t.Write,
		IdleTimeout: t.Idle, MaxHeaderBytes: MaxHeaderBytes}
}
