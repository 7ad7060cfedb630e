package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
)

// A REST body is JSON and nothing else: one value with nothing after it,
// no member twice (the second must not win), none unknown or misspelt,
// sent as application/json; anything else is a 400 that says why.
func TestDecodeIsStrict(t *testing.T) {
	s := &Server{MaxBody: 1 << 10}
	decode := func(contentType, body string) (StartRequest, int, string) {
		req := httptest.NewRequest(http.MethodPost, "/api/v1/runs", strings.NewReader(body))
		if contentType != "" {
			req.Header.Set(echo.HeaderContentType, contentType)
		}
		rec := httptest.NewRecorder()
		var v StartRequest
		err := s.decode(echo.New().NewContext(req, rec), &v)
		if err == nil {
			return v, 0, ""
		}
		var eb ErrorBody
		_ = json.Unmarshal(rec.Body.Bytes(), &eb)
		return v, rec.Code, eb.Error.Message
	}
	for _, ct := range []string{"application/json", "application/json; charset=utf-8"} {
		if v, code, msg := decode(ct, `{"chain":"demo","image":"demo/app:v1"}`+"\n"); code != 0 || v.Chain != "demo" {
			t.Fatalf("%s: a good body: %d %s", ct, code, msg)
		}
	}
	for _, c := range []struct{ name, contentType, body, want string }{
		{"duplicate member", "application/json", `{"chain":"a","chain":"b"}`, `duplicate object member name "chain"`},
		{"trailing garbage", "application/json", `{"chain":"a"} {"chain":"b"}`, "after top-level value"},
		{"trailing text", "application/json", `{"chain":"a"}xyz`, "after top-level value"},
		{"unknown member", "application/json", `{"chain":"a","branch":"main"}`, `unknown object member name "branch"`},
		{"case folded name", "application/json", `{"Chain":"a"}`, `unknown object member name "Chain"`},
		{"text/plain", "text/plain", `{"chain":"a"}`, `Content-Type "text/plain"`},
		{"form", "application/x-www-form-urlencoded", `chain=a`, "must be application/json"},
		{"no content type", "", `{"chain":"a"}`, "must be application/json"},
		{"not JSON", "application/json", `chain: a`, "body:"},
	} {
		if _, code, msg := decode(c.contentType, c.body); code != http.StatusBadRequest || !strings.Contains(msg, c.want) {
			t.Errorf("%s: %d %q, want 400 with %q", c.name, code, msg, c.want)
		}
	}
}
