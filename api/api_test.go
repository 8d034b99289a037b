package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/cookie"
	"github.com/refgate/refgate/internal/clock"
	"github.com/refgate/refgate/store"
	"github.com/refgate/refgate/store/embedded"
)

const (
	adminTok = "admin-token-0123456789"
	sfTok    = "storefront-token-0123"
	metTok   = "metrics-token-0123456"
)

type env struct {
	t      testing.TB
	client *http.Client
	ln     *fasthttputil.InmemoryListener
	st     store.Store
	clock  *clock.Clock
	signer *cookie.Signer
	server *Server
	clicks int // tokens signed so far
}

// newEnv serves the API with fasthttp over an in-memory listener and the
// real embedded store, and talks to it with net/http.
func newEnv(t testing.TB, testClock bool) *env {
	t.Helper()
	st, err := embedded.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "refgate_test_total", Help: "x"}))
	return newEnvWith(t, Config{Store: st, TestClock: testClock, Gatherer: reg})
}

// newEnvWith serves the API as newEnv does, with cfg's store, test clock,
// gatherer, registerer, logger, store writes' health, trusted proxies and
// failed-authentication limit.
func newEnvWith(t testing.TB, cfg Config) *env {
	t.Helper()
	st := cfg.Store
	c := new(clock.Clock)
	signer, _ := cookie.NewSigner([]cookie.Key{{ID: "k1", Secret: []byte("0123456789abcdef0123")}})
	s := New(Config{Store: st, AdminToken: adminTok, StorefrontToken: sfTok, MetricsToken: metTok, Clock: c,
		TestClock: cfg.TestClock, Hasher: attribution.NewFingerprintHasher([]byte("0123456789abcdef")), Signer: signer,
		PublicURL: "https://go.example.com/", Gatherer: cfg.Gatherer, Registerer: cfg.Registerer, Logger: cfg.Logger,
		StoreWrites: cfg.StoreWrites, TrustedProxies: cfg.TrustedProxies, AuthFailureLimit: cfg.AuthFailureLimit,
		AccessLog: cfg.AccessLog})
	ln := fasthttputil.NewInmemoryListener()
	srv := &fasthttp.Server{Handler: s.ServeFastHTTP, ErrorHandler: s.ErrorHandler, MaxRequestBodySize: MaxBodySize}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Shutdown() })
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return ln.Dial()
	}}}
	return &env{t: t, client: client, ln: ln, st: st, clock: c, signer: signer, server: s}
}

type result struct {
	status int
	body   map[string]any
	raw    string
	header http.Header
}

func (e *env) call(method, path, token, body string) result {
	e.t.Helper()
	req, _ := http.NewRequest(method, "http://api"+path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	var resp *http.Response
	var err error
	if len(body) > MaxBodySize {
		resp, err = e.oversized(req)
	} else {
		resp, err = e.client.Do(req)
	}
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := result{status: resp.StatusCode, raw: string(raw), header: resp.Header}
	json.Unmarshal(raw, &r.body)
	return r
}

// oversized sends a request whose body is over the limit the way a careful
// client does: the server answers 413 from the headers alone and closes
// without reading the body, so the body is written in the background (its
// write may fail) while the response is read.
func (e *env) oversized(req *http.Request) (*http.Response, error) {
	conn, err := e.ln.Dial()
	if err != nil {
		return nil, err
	}
	e.t.Cleanup(func() { conn.Close() })
	go req.Write(conn)
	return http.ReadResponse(bufio.NewReader(conn), req)
}

func (r result) errCode() string {
	e, _ := r.body["error"].(map[string]any)
	if e == nil {
		return ""
	}
	if m, _ := e["message"].(string); m == "" {
		return "(no message)"
	}
	c, _ := e["code"].(string)
	return c
}

const programBody = `{"cookie_days":30,"allowed_hosts":["shop.example.com",".example.org"],"rates":{"protected":0.3,"standard":0.25},"tier_bonus":[0,0.02]}`

func (e *env) seed() {
	e.t.Helper()
	if r := e.call("PUT", "/v1/admin/programs/shop", adminTok, programBody); r.status != 200 {
		e.t.Fatalf("seed program: %d %s", r.status, r.raw)
	}
	if r := e.call("PUT", "/v1/admin/promoters/alice", adminTok, `{"status":"active","tier":1,"fingerprints":{"ips":["203.0.113.7"],"phones":["+86 138-0000-0000"]}}`); r.status != 200 {
		e.t.Fatalf("seed promoter: %d %s", r.status, r.raw)
	}
}

func TestPrograms(t *testing.T) {
	e := newEnv(t, false)
	r := e.call("PUT", "/v1/admin/programs/shop", adminTok, programBody)
	if r.status != 200 || r.body["id"] != "shop" || r.body["click_model"] != "last" || r.body["protect_days"] != 30.0 {
		t.Fatalf("PUT: %d %s", r.status, r.raw)
	}
	if !strings.Contains(r.raw, `"rates":{"protected":0.3,"standard":0.25}`) {
		t.Errorf("rates must round-trip exactly: %s", r.raw)
	}
	g := e.call("GET", "/v1/admin/programs/shop", adminTok, "")
	if g.status != 200 || g.raw != r.raw {
		t.Errorf("GET: %d %s, want %s", g.status, g.raw, r.raw)
	}
	if g := e.call("GET", "/v1/admin/programs/none", adminTok, ""); g.status != 404 || g.errCode() != "not_found" {
		t.Errorf("GET unknown: %d %s", g.status, g.raw)
	}
}

func TestAdminErrors(t *testing.T) {
	e := newEnv(t, false)
	e.seed()
	f := func(name, method, path, token, body string, status int, code string) {
		t.Helper()
		r := e.call(method, path, token, body)
		if r.status != status || r.errCode() != code {
			t.Errorf("%s: got %d %q (%s), want %d %q", name, r.status, r.errCode(), r.raw, status, code)
		}
		if !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
			t.Errorf("%s: content type %q", name, r.header.Get("Content-Type"))
		}
	}
	prog := "/v1/admin/programs/p2"
	f("ErrUnauthorizedNoToken", "GET", prog, "", "", 401, "unauthorized")
	f("ErrUnauthorizedBadToken", "GET", prog, "wrong", "", 401, "unauthorized")
	f("ErrForbiddenStorefront", "GET", prog, sfTok, "", 403, "forbidden")
	f("ErrForbiddenMetricsToken", "GET", prog, metTok, "", 403, "forbidden")
	f("ErrMalformed", "PUT", prog, adminTok, `{"cookie_days":`, 400, "malformed")
	f("ErrMalformedEmpty", "PUT", prog, adminTok, ``, 400, "malformed")
	f("ErrMalformedTrailing", "PUT", prog, adminTok, `{"cookie_days":7,"allowed_hosts":["a.com"]} {}`, 400, "malformed")
	f("ErrUnknownField", "PUT", prog, adminTok, `{"cookie_days":7,"allowed_hosts":["a.com"],"cookie_dayz":1}`, 400, "malformed")
	f("ErrCookieDaysLow", "PUT", prog, adminTok, `{"cookie_days":0,"allowed_hosts":["a.com"]}`, 422, "invalid")
	f("ErrCookieDaysHigh", "PUT", prog, adminTok, `{"cookie_days":366,"allowed_hosts":["a.com"]}`, 422, "invalid")
	f("ErrClickModel", "PUT", prog, adminTok, `{"cookie_days":7,"click_model":"middle","allowed_hosts":["a.com"]}`, 422, "invalid")
	f("ErrWrongType", "PUT", prog, adminTok, `{"cookie_days":"7","allowed_hosts":["a.com"]}`, 422, "invalid")
	f("ErrRatePrecision", "PUT", prog, adminTok, `{"cookie_days":7,"allowed_hosts":["a.com"],"rates":{"protected":0.1234567}}`, 422, "invalid")
	f("ErrRateRange", "PUT", prog, adminTok, `{"cookie_days":7,"allowed_hosts":["a.com"],"rates":{"protected":1.5}}`, 422, "invalid")
	f("ErrNoHosts", "PUT", prog, adminTok, `{"cookie_days":7}`, 422, "invalid")
	f("ErrBadHost", "PUT", prog, adminTok, `{"cookie_days":7,"allowed_hosts":["a b.com"]}`, 422, "invalid")
	f("ErrIDMismatch", "PUT", prog, adminTok, `{"id":"other","cookie_days":7,"allowed_hosts":["a.com"]}`, 422, "invalid")
	f("ErrBadProgramID", "PUT", "/v1/admin/programs/has.dot", adminTok, `{"cookie_days":7,"allowed_hosts":["a.com"]}`, 422, "invalid")
	f("ErrTooLarge", "PUT", prog, adminTok, `{"cookie_days":7,"allowed_hosts":["`+strings.Repeat("a", 70000)+`"]}`, 413, "too_large")
	f("ErrMethod", "POST", prog, adminTok, `{}`, 405, "method_not_allowed")
	f("ErrNoRoute", "GET", "/v1/admin/nothing", adminTok, ``, 404, "not_found")
	f("ErrNoRouteOutside", "GET", "/v2/x", adminTok, ``, 404, "not_found")
	f("ErrPromoterStatus", "PUT", "/v1/admin/promoters/bob", adminTok, `{"status":"gone"}`, 422, "invalid")
	f("ErrPromoterTier", "PUT", "/v1/admin/promoters/bob", adminTok, `{"tier":-1}`, 422, "invalid")
	f("ErrPromoterUnknownField", "PUT", "/v1/admin/promoters/bob", adminTok, `{"fingerprints":{"ipz":[]}}`, 400, "malformed")
	f("ErrPromoterNotFound", "GET", "/v1/admin/promoters/bob", adminTok, ``, 404, "not_found")

	links := "/v1/admin/links"
	f("ErrLinkUnknownProgram", "POST", links, adminTok, `{"program":"none","promoter":"alice","destination":"https://shop.example.com/"}`, 422, "invalid")
	f("ErrLinkUnknownPromoter", "POST", links, adminTok, `{"program":"shop","promoter":"nobody","destination":"https://shop.example.com/"}`, 422, "invalid")
	f("ErrLinkHostNotAllowed", "POST", links, adminTok, `{"program":"shop","promoter":"alice","destination":"https://evil.com/"}`, 422, "invalid")
	f("ErrLinkBadDestination", "POST", links, adminTok, `{"program":"shop","promoter":"alice","destination":"javascript:alert(1)"}`, 422, "invalid")
	f("ErrLinkUserinfo", "POST", links, adminTok, `{"program":"shop","promoter":"alice","destination":"https://shop.example.com@evil.com/"}`, 422, "invalid")
	f("ErrLinkBadCode", "POST", links, adminTok, `{"program":"shop","promoter":"alice","destination":"https://shop.example.com/","code":"a/b"}`, 422, "invalid")
	if r := e.call("POST", links, adminTok, `{"program":"shop","promoter":"alice","destination":"https://shop.example.com/","code":"mine"}`); r.status != 201 {
		t.Fatalf("create: %d %s", r.status, r.raw)
	}
	f("ErrLinkDuplicate", "POST", links, adminTok, `{"program":"shop","promoter":"alice","destination":"https://shop.example.com/","code":"mine"}`, 409, "conflict")
	f("ErrLinkNotFound", "GET", links+"/nope", adminTok, ``, 404, "not_found")
	f("ErrLinkDeleteNotFound", "DELETE", links+"/nope", adminTok, ``, 404, "not_found")
	f("ErrLinkStorefront", "POST", links, sfTok, `{}`, 403, "forbidden")
	f("ErrTestClockDisabled", "POST", "/v1/admin/test-clock", adminTok, `{"advance":"1h"}`, 404, "not_found")
}

func TestPromoterFingerprintsNotEchoed(t *testing.T) {
	e := newEnv(t, false)
	e.seed()
	for _, m := range []string{"PUT", "GET"} {
		body := ""
		if m == "PUT" {
			body = `{"fingerprints":{"emails":["Alice@Example.com"," alice@example.com"],"phones":["138 0000 0000"]}}`
		}
		r := e.call(m, "/v1/admin/promoters/alice", adminTok, body)
		if r.status != 200 || strings.Contains(strings.ToLower(r.raw), "example.com") || strings.Contains(r.raw, "13800000000") {
			t.Errorf("%s: %d %s", m, r.status, r.raw)
		}
		if r.body["fingerprints"] != 2.0 || r.body["status"] != "active" {
			t.Errorf("%s: want 2 fingerprints after normalising, active: %s", m, r.raw)
		}
	}
	p, _ := e.st.Promoter(context.Background(), "alice")
	for _, fp := range p.Fingerprints {
		if strings.Contains(fp, "alice") || strings.Contains(fp, "138") {
			t.Errorf("fingerprint kept in the clear: %s", fp)
		}
	}
}

func TestLinks(t *testing.T) {
	e := newEnv(t, false)
	e.seed()
	r := e.call("POST", "/v1/admin/links", adminTok, `{"program":"shop","promoter":"alice","destination":"https://SHOP.example.com/landing?a=1"}`)
	if r.status != 201 {
		t.Fatalf("create: %d %s", r.status, r.raw)
	}
	code, _ := r.body["code"].(string)
	if len(code) != 10 || !attribution.ValidCode(code) {
		t.Errorf("generated code %q", code)
	}
	if r.body["url"] != "https://go.example.com/r/"+code || r.body["destination"] != "https://shop.example.com/landing?a=1" ||
		r.body["program"] != "shop" || r.body["promoter"] != "alice" {
		t.Errorf("create answer: %s", r.raw)
	}
	g := e.call("GET", "/v1/admin/links/"+code, adminTok, "")
	if g.status != 200 || g.body["code"] != code {
		t.Errorf("GET: %d %s", g.status, g.raw)
	}
	// Generated codes do not repeat.
	seen := map[string]bool{code: true}
	for i := 0; i < 50; i++ {
		r := e.call("POST", "/v1/admin/links", adminTok, `{"program":"shop","promoter":"alice","destination":"https://shop.example.com/"}`)
		c, _ := r.body["code"].(string)
		if seen[c] {
			t.Fatalf("code %s generated twice", c)
		}
		seen[c] = true
	}
	if d := e.call("DELETE", "/v1/admin/links/"+code, adminTok, ""); d.status != 204 || d.raw != "" {
		t.Errorf("DELETE: %d %q", d.status, d.raw)
	}
	if g := e.call("GET", "/v1/admin/links/"+code, adminTok, ""); g.status != 404 {
		t.Errorf("GET after DELETE: %d", g.status)
	}
}

func TestTestClock(t *testing.T) {
	e := newEnv(t, true)
	r := e.call("POST", "/v1/admin/test-clock", adminTok, `{"set":"2027-01-01T00:00:00Z"}`)
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	now := e.clock.Now()
	if now.Before(time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)) || now.After(time.Date(2027, 1, 1, 0, 1, 0, 0, time.UTC)) {
		t.Errorf("clock reads %v", now)
	}
	r = e.call("POST", "/v1/admin/test-clock", adminTok, `{"advance":"720h"}`)
	got, _ := time.Parse(time.RFC3339Nano, r.body["now"].(string))
	if r.status != 200 || got.Before(time.Date(2027, 1, 31, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("advance: %d %s", r.status, r.raw)
	}
	for _, bad := range []string{`{}`, `{"set":"2027-01-01","advance":"1h"}`, `{"set":"tomorrow"}`, `{"advance":"a month"}`} {
		if r := e.call("POST", "/v1/admin/test-clock", adminTok, bad); r.status != 422 {
			t.Errorf("%s: %d", bad, r.status)
		}
	}
	if r := e.call("POST", "/v1/admin/test-clock", sfTok, `{"advance":"1h"}`); r.status != 403 {
		t.Errorf("storefront token: %d", r.status)
	}
}

func TestProbesAndMetrics(t *testing.T) {
	e := newEnv(t, false)
	if r := e.call("GET", "/livez", "", ""); r.status != 200 {
		t.Errorf("livez %d", r.status)
	}
	if r := e.call("GET", "/readyz", "", ""); r.status != 200 {
		t.Errorf("readyz %d", r.status)
	}
	for tok, want := range map[string]int{"": 401, sfTok: 403, metTok: 200, adminTok: 200} {
		r := e.call("GET", "/metrics", tok, "")
		if r.status != want {
			t.Errorf("metrics with %q: %d, want %d", tok, r.status, want)
		}
		if want == 200 && !strings.Contains(r.raw, "refgate_test_total") {
			t.Errorf("metrics body: %.200s", r.raw)
		}
	}
	for _, p := range []string{"/debug/pprof", "/debug/pprof/", "/debug/pprof/heap"} {
		if r := e.call("GET", p, "", ""); r.status != 401 {
			t.Errorf("%s without token: %d", p, r.status)
		}
	}
	for _, p := range []string{"/debug/pprof", "/debug/pprof/", "/debug/pprof/heap", "/debug/pprof/cmdline"} {
		if r := e.call("GET", p, adminTok, ""); r.status != 200 {
			t.Errorf("%s with admin token: %d", p, r.status)
		}
	}
	// The index, documented as /debug/pprof, answers with and without the
	// trailing slash.
	for _, p := range []string{"/debug/pprof", "/debug/pprof/"} {
		if r := e.call("GET", p, adminTok, ""); !strings.Contains(r.raw, "heap") || !strings.Contains(r.raw, "goroutine") {
			t.Errorf("%s is not the profile index: %.200s", p, r.raw)
		} else if !strings.Contains(r.raw, `<base href="/debug/pprof/">`) {
			t.Errorf("%s: the index's relative links need a base URL without the trailing slash: %.300s", p, r.raw)
		}
	}
	e.st.Close()
	if r := e.call("GET", "/readyz", "", ""); r.status != 503 {
		t.Errorf("readyz with the store closed: %d", r.status)
	}
	if r := e.call("GET", "/v1/admin/programs/shop", adminTok, ""); r.status != 503 || r.errCode() != "unavailable" {
		t.Errorf("a read with the store down must be 503, never a made-up answer: %d %s", r.status, r.raw)
	}
}

// FuzzDecodeProgram feeds arbitrary bodies to the program route's decoding
// and validation: never a panic, and anything accepted re-encodes to a
// program that is accepted again unchanged.
func FuzzDecodeProgram(f *testing.F) {
	f.Add([]byte(programBody))
	f.Add([]byte(`{"cookie_days":7,"allowed_hosts":["bücher.example"],"rates":{"protected":"0.1"}}`))
	f.Add([]byte(`{"cookie_days":1e2}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var ctx fasthttp.RequestCtx
		ctx.Request.SetBody(body)
		var p attribution.Program
		if err := decode(&ctx, &p); err != nil {
			if e := toError(err); e.Code != attribution.EMalformed && e.Code != attribution.EInvalid {
				t.Fatalf("decode error %v mapped to %s", err, e.Code)
			}
			return
		}
		p.ID = "p"
		p.Normalize()
		if p.Validate() != nil {
			return
		}
		b, err := json.Marshal(&p)
		if err != nil {
			t.Fatal(err)
		}
		var again attribution.Program
		ctx.Request.SetBody(b)
		if err := decode(&ctx, &again); err != nil {
			t.Fatalf("re-decode of %s: %v", b, err)
		}
		again.Normalize()
		b2, _ := json.Marshal(&again)
		if !bytes.Equal(b, b2) {
			t.Fatalf("round trip changed the program:\n%s\n%s", b, b2)
		}
	})
}
