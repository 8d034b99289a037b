package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
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

// TestStorefrontUnavailable: with refgate not listening, checkouts and
// refunds succeed for the shopper and their reports wait in the queue,
// never booked unattributed.
func TestStorefrontUnavailable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()
	s := &Shop{RG: client.New(closed, apitest.StorefrontToken).WithRetry(fast), Program: "shop", QueueLimit: 2}
	shop := httptest.NewServer(s.Handler())
	defer shop.Close()
	e := &shopEnv{t: t, shop: shop}
	if status, out := e.post("/checkout", url.Values{"user": {"u1"}, "order": {"o1"}, "amount": {"10000"}}); status != 200 || out["commission"] != "pending" {
		t.Errorf("checkout: %d %v", status, out)
	}
	if status, out := e.post("/refund", url.Values{"order": {"o1"}, "refund": {"rf-1"}, "amount": {"2500"}}); status != 200 || out["commission"] != "pending" {
		t.Errorf("refund: %d %v", status, out)
	}
	// Past the bound the sale still goes through; the report is counted lost.
	if status, out := e.post("/checkout", url.Values{"user": {"u2"}, "order": {"o2"}, "amount": {"10000"}}); status != 200 || out["commission"] != "unreported" {
		t.Errorf("checkout with the queue full: %d %v", status, out)
	}
	if st := e.status(); st.Pending != 2 || st.Dropped != 1 || st.Oldest == nil {
		t.Errorf("status: %+v", st)
	}
}

// TestStorefrontQueue: refgate goes down after a registration; checkouts
// and a refund succeed for the shopper and wait in the queue; once refgate
// is back, each is reported once, in order, with the decision the order
// would have had.
func TestStorefrontQueue(t *testing.T) {
	rg := apitest.Serve(t)
	gate := newSwitch(t, strings.TrimPrefix(rg.URL, "http://"))
	gate.up()
	s := &Shop{RG: client.New("http://"+gate.addr, apitest.StorefrontToken).WithRetry(fast), Program: "shop", RetryEvery: 20 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { s.Run(ctx) })
	defer wg.Wait()
	defer cancel()
	shop := httptest.NewServer(s.Handler())
	defer shop.Close()
	e := &shopEnv{t: t, rg: rg, shop: shop}
	if _, reg := e.post("/register", url.Values{"user": {"u1"}}, &http.Cookie{Name: "rg_shop", Value: e.token("link-1", "c1")}); reg["referral"].(map[string]any)["associated"] != true {
		t.Fatalf("register: %v", reg)
	}

	gate.down()
	for _, c := range []struct{ path, order, refund string }{{"/checkout", "o1", ""}, {"/refund", "o1", "rf-1"}, {"/checkout", "o2", ""}} {
		form := url.Values{"user": {"u1"}, "order": {c.order}, "amount": {"10000"}, "product": {"cvm"}}
		if c.refund != "" {
			form = url.Values{"order": {c.order}, "refund": {c.refund}, "amount": {"2500"}}
		}
		if status, out := e.post(c.path, form); status != 200 || out["commission"] != "pending" || out["order"] != c.order {
			t.Fatalf("%s %s with refgate down: %d %v", c.path, c.order, status, out)
		}
	}
	time.Sleep(100 * time.Millisecond) // a few retry rounds against the closed port
	if st := e.status(); st.Pending != 3 || st.Sent != 0 || st.Dropped != 0 {
		t.Fatalf("while refgate is down: %+v", st)
	}

	gate.up()
	deadline := time.Now().Add(5 * time.Second)
	for e.status().Pending > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if st := e.status(); st.Pending != 0 || st.Sent != 3 || st.Dropped != 0 {
		t.Fatalf("after refgate came back: %+v", st)
	}
	direct := client.New(rg.URL, apitest.StorefrontToken)
	ds, err := direct.Explain(context.Background(), "shop", "u1")
	if err != nil {
		t.Fatal(err)
	}
	var log []string
	for _, d := range ds {
		log = append(log, d.Event+":"+d.Order+d.Refund+":"+d.Outcome+d.Reason)
	}
	// Newest first: o2 a repeat purchase, rf-1 on o1, o1 attributed.
	if got := strings.Join(log, " "); !strings.HasPrefix(got, "conversion:o2:rejectedrepeat_purchase refund:o1rf-1:") ||
		!strings.Contains(got, " conversion:o1:") || strings.Count(got, "conversion:") != 2 || strings.Count(got, "refund:") != 1 {
		t.Errorf("want each report decided once, in order: %s", got)
	}
	conv, err := direct.Convert(context.Background(), client.Conversion{Program: "shop", Order: "o1", Customer: "u1", Amount: 10000, Currency: "CNY", Product: "cvm", Prepaid: true})
	if err != nil || !conv.Eligible || conv.Promoter != "alice" || conv.Commission != 3000 {
		t.Errorf("o1 must be alice's: %+v %v", conv, err)
	}
	if ref, err := direct.Refund(context.Background(), "o1", "rf-1", 2500); err != nil || ref.Refunded != 2500 {
		t.Errorf("rf-1 must be applied once: %+v %v", ref, err)
	}

	// With the queue empty, a checkout is decided at once again.
	if _, out := e.post("/checkout", url.Values{"user": {"u1"}, "order": {"o3"}, "amount": {"10000"}, "product": {"cvm"}}); out["commission"] == "pending" {
		t.Errorf("checkout with refgate up: %v", out)
	}
}

// fast retries quickly, so that the shop's checkouts do not wait in tests.
var fast = client.Retry{Attempts: 2, Base: time.Millisecond, Max: 5 * time.Millisecond}

func (e *shopEnv) status() Status {
	e.t.Helper()
	resp, err := http.Get(e.shop.URL + "/status")
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var st Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		e.t.Fatal(err)
	}
	return st
}

// gateSwitch is refgate as the shop sees it, on an address of its own: up,
// a TCP proxy to the real API; down, nothing listens there (connections
// are refused) and open ones are cut.
type gateSwitch struct {
	t      *testing.T
	addr   string
	target string
	mu     sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]bool
}

func newSwitch(t *testing.T, target string) *gateSwitch {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &gateSwitch{t: t, addr: ln.Addr().String(), target: target, conns: map[net.Conn]bool{}}
	ln.Close()
	t.Cleanup(g.down)
	return g
}

func (g *gateSwitch) up() {
	ln, err := net.Listen("tcp", g.addr)
	if err != nil {
		g.t.Fatal(err)
	}
	g.mu.Lock()
	g.ln = ln
	g.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", g.target)
			if err != nil {
				c.Close()
				continue
			}
			g.mu.Lock()
			g.conns[c], g.conns[u] = true, true
			g.mu.Unlock()
			go func() { io.Copy(u, c); u.Close() }()
			go func() { io.Copy(c, u); c.Close() }()
		}
	}()
}

func (g *gateSwitch) down() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ln != nil {
		g.ln.Close()
		g.ln = nil
	}
	for c := range g.conns {
		c.Close()
		delete(g.conns, c)
	}
}

// TestStorefrontNotRefgate: something else answering in refgate's place (a
// captive portal, a wrong address) does not fail the checkout either; the
// report is queued, and dropped with a log when it still is not refgate.
func TestStorefrontNotRefgate(t *testing.T) {
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "<html>welcome</html>")
	}))
	defer other.Close()
	s := &Shop{RG: client.New(other.URL, apitest.StorefrontToken), Program: "shop"}
	shop := httptest.NewServer(s.Handler())
	defer shop.Close()
	e := &shopEnv{t: t, shop: shop}
	if status, out := e.post("/checkout", url.Values{"user": {"u1"}, "order": {"o1"}, "amount": {"10000"}}); status != 200 || out["commission"] != "pending" {
		t.Errorf("checkout: %d %v", status, out)
	}
	s.flush(context.Background())
	if st := e.status(); st.Pending != 0 || st.Dropped != 1 {
		t.Errorf("status after a retry: %+v", st)
	}
}
