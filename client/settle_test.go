package client_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/refgate/refgate/client"
	"github.com/refgate/refgate/internal/apitest"
)

// TestClientSettle: Settle POSTs {"program","through"?} to
// /v1/admin/statements with the token, and returns the statements of the
// 201 answer, an empty list when there are none. An error answer is an
// *Error and no statements; an answer without "statements" is no success.
func TestClientSettle(t *testing.T) {
	var got struct {
		method, path, auth, ctype string
		body                      map[string]any
	}
	answer := func(w http.ResponseWriter) {}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got.method, got.path, got.auth, got.ctype = r.Method, r.URL.RequestURI(), r.Header.Get("Authorization"), r.Header.Get("Content-Type")
		got.body = nil
		json.Unmarshal(b, &got.body)
		answer(w)
	}))
	defer srv.Close()
	rg := client.New(srv.URL+"/", apitest.AdminToken).WithRetry(fast)
	ctx := context.Background()

	answer = func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"statements":[
			{"id":"st_0123456789abcdef_shop","program":"shop","promoter":"alice","currency":"CNY","through":"2026-12-06T03:00:00Z",
			 "entries":3,"amount":4500,"status":"open","created_at":"2026-12-06T03:00:01Z"},
			{"id":"st_fedcba9876543210_shop","program":"shop","promoter":"bob","currency":"RUB","through":"2026-12-06T03:00:00Z",
			 "entries":1,"amount":100000,"status":"open","created_at":"2026-12-06T03:00:01Z"}]}`)
	}
	through := time.Date(2026, 12, 6, 3, 0, 0, 0, time.UTC)
	sts, err := rg.Settle(ctx, "shop", through)
	if err != nil || len(sts) != 2 {
		t.Fatalf("settle: %+v %v", sts, err)
	}
	if got.method != "POST" || got.path != "/v1/admin/statements" || got.auth != "Bearer "+apitest.AdminToken ||
		got.ctype != "application/json" || len(got.body) != 2 || got.body["program"] != "shop" || got.body["through"] != "2026-12-06T03:00:00Z" {
		t.Errorf("request %+v", got)
	}
	if s := sts[0]; s.ID != "st_0123456789abcdef_shop" || s.Promoter != "alice" || s.Currency != "CNY" || s.Entries != 3 ||
		s.Amount != 4500 || s.Status != "open" || !s.Through.Equal(through) || s.CreatedAt.IsZero() || s.PaidAt != nil {
		t.Errorf("statement %+v", s)
	}

	// No through: refgate's now, and the field is left out.
	answer = func(w http.ResponseWriter) {
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"statements":[]}`)
	}
	if sts, err := rg.Settle(ctx, "shop", time.Time{}); err != nil || sts == nil || len(sts) != 0 {
		t.Errorf("nothing due: %#v %v", sts, err)
	}
	if _, ok := got.body["through"]; ok || got.body["program"] != "shop" {
		t.Errorf("without through the body is %v", got.body)
	}

	answer = func(w http.ResponseWriter) {
		w.WriteHeader(http.StatusUnprocessableEntity)
		io.WriteString(w, `{"error":{"code":"invalid","message":"through is later than now"}}`)
	}
	sts, err = rg.Settle(ctx, "shop", time.Now().Add(time.Hour))
	var e *client.Error
	if !asError(err, &e) || e.Status != 422 || e.Code != "invalid" || e.Message != "through is later than now" || sts != nil {
		t.Errorf("422: %+v %v", sts, err)
	}

	// A 2xx that is not the contract's answer (a proxy, another server).
	answer = func(w http.ResponseWriter) { io.WriteString(w, `{}`) }
	if sts, err := rg.Settle(ctx, "shop", time.Time{}); err == nil || !strings.Contains(err.Error(), "no statements") || sts != nil {
		t.Errorf("an answer without statements: %+v %v", sts, err)
	}
}

// TestClientSettleRetries: settling is retried on 503 and on a refused
// connection, with the same body; a 4xx is not.
func TestClientSettleRetries(t *testing.T) {
	srv := record(t, func(n int, w http.ResponseWriter) {
		if n <= 2 {
			status(w, http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"statements":[{"id":"st_0123456789abcdef_shop","promoter":"alice","currency":"CNY","entries":1,"amount":10}]}`)
	})
	sts, err := client.New(srv.URL, apitest.AdminToken).WithRetry(fast).Settle(context.Background(), "shop", time.Time{})
	reqs := srv.requests()
	if err != nil || len(sts) != 1 || len(reqs) != 3 || reqs[0] != reqs[2] || reqs[0] != `POST /v1/admin/statements {"program":"shop"}` {
		t.Errorf("503, 503, 201: %+v %v %q", sts, err, reqs)
	}

	srv = record(t, func(n int, w http.ResponseWriter) { status(w, http.StatusForbidden) })
	if _, err := client.New(srv.URL, apitest.AdminToken).WithRetry(fast).Settle(context.Background(), "shop", time.Time{}); client.IsUnavailable(err) || len(srv.requests()) != 1 {
		t.Errorf("403: %v, %d requests", err, len(srv.requests()))
	}

	closed := closedPort(t)
	_, err = client.New(closed, apitest.AdminToken).WithRetry(fast).Settle(context.Background(), "shop", time.Time{})
	if !client.IsUnavailable(err) || !strings.Contains(err.Error(), closed) || !strings.Contains(err.Error(), "(3 attempts)") {
		t.Errorf("closed port: %v", err)
	}
}

// TestClientSettleLargeAnswer: a settlement of many promoters answers more
// than the other calls' 1 MiB, and is read whole.
func TestClientSettleLargeAnswer(t *testing.T) {
	const n = 10000
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"statements":[`)
		for i := range n {
			if i > 0 {
				io.WriteString(w, ",")
			}
			io.WriteString(w, `{"id":"st_0123456789abcdef_shop","program":"shop","promoter":"promoter-`+strings.Repeat("x", 60)+
				`","currency":"CNY","through":"2026-12-06T03:00:00Z","entries":12,"amount":123456,"status":"open","created_at":"2026-12-06T03:00:01Z"}`)
		}
		io.WriteString(w, `]}`)
	}))
	defer srv.Close()
	sts, err := client.New(srv.URL, apitest.AdminToken).Settle(context.Background(), "shop", time.Time{})
	if err != nil || len(sts) != n {
		t.Errorf("%d statements, %v; want %d", len(sts), err, n)
	}
}
