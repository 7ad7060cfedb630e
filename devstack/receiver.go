package devstack

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/dchain-dev/dchain/activities"
)

// Delivery is one trigger delivery the receiver got.
type Delivery struct {
	At             time.Time       `json:"at"`
	Path           string          `json:"path"`
	ContentType    string          `json:"contentType"`
	IdempotencyKey string          `json:"idempotencyKey"`
	Run            string          `json:"run"`
	Signed         bool            `json:"signed"`
	SignatureValid bool            `json:"signatureValid"`
	Duplicate      bool            `json:"duplicate"`
	Body           json.RawMessage `json:"body"`
}

// Receiver stands in for a cluster's redeploy hook: it accepts trigger
// deliveries on any path, checks the HMAC signature of signed ones (401 when
// it does not verify), recognises redeliveries by idempotency key, and records each one
// (in memory, served at GET /deliveries, and appended to a JSON-lines file).
type Receiver struct {
	Secret string
	URL    string

	mu         sync.Mutex
	deliveries []Delivery
	seen       map[string]bool
	log        *os.File
	srv        *http.Server
}

// StartReceiver listens on addr ("127.0.0.1:0" for any port). logPath may be empty.
func StartReceiver(addr, secret, logPath string) (*Receiver, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("trigger receiver: %w", err)
	}
	r := &Receiver{Secret: secret, URL: "http://" + l.Addr().String(), seen: map[string]bool{}}
	if logPath != "" {
		if r.log, err = os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644); err != nil {
			l.Close()
			return nil, fmt.Errorf("trigger receiver: %w", err)
		}
	}
	r.srv = &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second}
	go r.srv.Serve(l)
	return r, nil
}

// ServeHTTP records POSTs and lists deliveries on GET /deliveries.
func (r *Receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method == http.MethodGet && req.URL.Path == "/deliveries" {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(r.Deliveries())
		return
	}
	if req.Method != http.MethodPost {
		http.Error(w, "POST a trigger delivery, or GET /deliveries", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	d := Delivery{
		At: time.Now().UTC(), Path: req.URL.Path, ContentType: req.Header.Get("Content-Type"),
		IdempotencyKey: req.Header.Get(activities.HeaderDelivery), Run: req.Header.Get(activities.HeaderRun),
		Signed: req.Header.Get(activities.HeaderSignature) != "", Body: json.RawMessage(body),
	}
	if !json.Valid(body) {
		http.Error(w, "body is not JSON", http.StatusBadRequest)
		return
	}
	if r.Secret != "" && d.Signed {
		d.SignatureValid = activities.VerifySignature(r.Secret, body, req.Header.Get(activities.HeaderSignature))
		if !d.SignatureValid {
			http.Error(w, "bad "+activities.HeaderSignature, http.StatusUnauthorized)
			return
		}
	}
	r.mu.Lock()
	d.Duplicate = d.IdempotencyKey != "" && r.seen[d.IdempotencyKey]
	r.seen[d.IdempotencyKey] = true
	r.deliveries = append(r.deliveries, d)
	if r.log != nil {
		line, _ := json.Marshal(d)
		r.log.Write(append(line, '\n'))
	}
	r.mu.Unlock()
	w.WriteHeader(http.StatusAccepted)
}

// Deliveries returns what was received so far.
func (r *Receiver) Deliveries() []Delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Delivery(nil), r.deliveries...)
}

// Stop closes the receiver.
func (r *Receiver) Stop() {
	r.srv.Close()
	if r.log != nil {
		r.log.Close()
	}
}
