package main

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/client"
	"github.com/refgate/refgate/cookie"
	"github.com/refgate/refgate/internal/apitest"
)

// shopEnv is a storefront in front of a real refgate API.
type shopEnv struct {
	t    *testing.T
	rg   *apitest.Server
	shop *httptest.Server
}

func newShop(t *testing.T) *shopEnv {
	rg := apitest.Serve(t)
	shop := httptest.NewServer((&Shop{RG: client.New(rg.URL, apitest.StorefrontToken), Program: "shop"}).Handler())
	t.Cleanup(shop.Close)
	return &shopEnv{t: t, rg: rg, shop: shop}
}

// token is the attribution token of a click on a link of alice's (stored,
// since a token binds only while its link exists).
func (e *shopEnv) token(link, click string) string {
	e.t.Helper()
	now := time.Now()
	l := &attribution.Link{Code: link, Program: "shop", Promoter: "alice", Destination: "https://shop.example.com/", CreatedAt: now}
	if err := e.rg.Store.CreateLink(context.Background(), l); err != nil {
		e.t.Fatal(err)
	}
	tok, _ := e.rg.Signer.AppendToken(nil, &cookie.Token{Program: "shop", Promoter: "alice", Link: link, Click: click,
		Visitor: "v-" + click, Issued: now, Expires: now.Add(time.Hour)})
	return string(tok)
}

func (e *shopEnv) post(path string, form url.Values, cookies ...*http.Cookie) (int, map[string]any) {
	e.t.Helper()
	req, _ := http.NewRequest("POST", e.shop.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for _, c := range cookies {
		req.AddCookie(c)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// TestStorefront walks a visitor who clicked alice's link through register
// and checkout against a real refgate API.
func TestStorefront(t *testing.T) {
	e := newShop(t)
	_, reg := e.post("/register", url.Values{"user": {"u1"}}, &http.Cookie{Name: "rg_shop", Value: e.token("link-1", "c1")})
	if ref := reg["referral"].(map[string]any); ref["associated"] != true || ref["promoter"] != "alice" {
		t.Fatalf("register: %v", reg)
	}
	_, out := e.post("/checkout", url.Values{"user": {"u1"}, "order": {"o1"}, "amount": {"10000"}, "product": {"cvm"}})
	if c := out["commission"].(map[string]any); c["eligible"] != true || c["commission"] != 3000.0 {
		t.Fatalf("checkout: %v", out)
	}
	if _, login := e.post("/login", url.Values{"user": {"u1"}}); login["referral"].(map[string]any)["reason"] != "no_click" {
		t.Errorf("login without cookies: %v", login)
	}
	if status, _ := e.post("/checkout", url.Values{"user": {"u1"}, "order": {"o2"}, "amount": {"1000000000000001"}}); status != http.StatusBadRequest {
		t.Errorf("an amount over 10^15 is refused by the shop itself: %d", status)
	}
}

// TestStorefrontAppendToken: a link of an append_token program lands with
// rg_token in the query; the shop keeps it and binds with it at
// registration.
func TestStorefrontAppendToken(t *testing.T) {
	e := newShop(t)
	resp, err := http.Get(e.shop.URL + "/?rg_token=" + url.QueryEscape(e.token("link-1", "c1")))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var kept *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == landedToken {
			kept = c
		}
	}
	if kept == nil || !kept.HttpOnly {
		t.Fatalf("the landing page must keep the token in an HttpOnly cookie: %v", resp.Cookies())
	}
	_, reg := e.post("/register", url.Values{"user": {"u1"}}, kept)
	if ref := reg["referral"].(map[string]any); ref["associated"] != true || ref["promoter"] != "alice" {
		t.Fatalf("register with the landed token: %v", reg)
	}
}

// TestStorefrontRefund: refunds carry the shop's refund record id, so a
// retry refunds nothing more and a reused id is a conflict. Needs the
// server's refund ids.
func TestStorefrontRefund(t *testing.T) {
	e := newShop(t)
	e.post("/register", url.Values{"user": {"u1"}}, &http.Cookie{Name: "rg_shop", Value: e.token("link-1", "c1")})
	e.post("/checkout", url.Values{"user": {"u1"}, "order": {"o1"}, "amount": {"10000"}, "product": {"cvm"}})
	for i := range 2 { // the second is a retry with the same refund record
		status, out := e.post("/refund", url.Values{"order": {"o1"}, "refund": {"rf-1"}, "amount": {"2500"}})
		c, _ := out["commission"].(map[string]any)
		if status != 200 || c == nil || c["refunded"] != 2500.0 || c["commission"] != 2250.0 || out["refund"] != "rf-1" {
			t.Fatalf("refund, attempt %d: %d %v", i+1, status, out)
		}
	}
	if status, out := e.post("/refund", url.Values{"order": {"o1"}, "refund": {"rf-1"}, "amount": {"3000"}}); status != http.StatusConflict {
		t.Errorf("a refund id reused with another amount must be a 409: %d %v", status, out)
	}
}

// TestStorefrontUnavailable: with refgate not answering, orders and refunds
// are pending (to be retried with the same ids), never unattributed.
func TestStorefrontUnavailable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()
	shop := httptest.NewServer((&Shop{RG: client.New(closed, apitest.StorefrontToken), Program: "shop"}).Handler())
	defer shop.Close()
	e := &shopEnv{t: t, shop: shop}
	if status, out := e.post("/checkout", url.Values{"user": {"u1"}, "order": {"o1"}, "amount": {"10000"}}); status != 200 || out["commission"] != "pending" {
		t.Errorf("checkout: %d %v", status, out)
	}
	if status, out := e.post("/refund", url.Values{"order": {"o1"}, "refund": {"rf-1"}, "amount": {"2500"}}); status != 200 || out["commission"] != "pending" {
		t.Errorf("refund: %d %v", status, out)
	}
}
