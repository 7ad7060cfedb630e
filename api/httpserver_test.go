package api

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// Clients that send a body one byte at a time, or headers that never end,
// lose their connections once the request time is up, however many there
// are; a prompt client on the same server is answered meanwhile.
func TestSlowClientsAreCutOff(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewHTTPServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			http.Error(w, "reading the body: "+err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprint(w, "ok")
	}), Timeouts{Header: time.Second, Request: 2 * time.Second, Write: 5 * time.Second, Idle: 5 * time.Second})
	go srv.Serve(ln)
	defer srv.Close()
	addr := ln.Addr().String()

	const slow = 50
	var wg sync.WaitGroup
	cut := make(chan time.Duration, 2*slow)
	for i := range 2 * slow {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			start := time.Now()
			if i%2 == 0 { // slow body
				fmt.Fprintf(c, "POST /webhooks/gh HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
			} else { // headers that never end
				fmt.Fprintf(c, "POST /webhooks/gh HTTP/1.1\r\nHost: x\r\n")
			}
			// One byte every 200 ms for up to 20 s, until the server hangs up.
			for j := 0; j < 100; j++ {
				if _, err := c.Write([]byte("x")); err != nil {
					break
				}
				_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
				if _, err := c.Read(make([]byte, 512)); err != nil && !isTimeout(err) {
					break // answered and closed, or reset
				}
			}
			cut <- time.Since(start)
		}()
	}
	// Meanwhile a prompt client is answered.
	resp, err := http.Post("http://"+addr+"/webhooks/gh", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "ok" {
		t.Fatalf("prompt client: %d %q", resp.StatusCode, b)
	}
	wg.Wait()
	close(cut)
	n := 0
	for d := range cut {
		n++
		if d > 15*time.Second {
			t.Errorf("a slow connection was held %s (request timeout 2 s)", d.Round(time.Millisecond))
		}
	}
	if n != 2*slow {
		t.Fatalf("%d of %d slow clients finished", n, 2*slow)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
