package redirect

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/cookie"
	"github.com/refgate/refgate/store"
	"github.com/refgate/refgate/store/embedded"
)

var now0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

const browserUA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36"

// recorder is an in-memory ClickLog.
type recorder struct {
	mu     sync.Mutex
	clicks []attribution.Click
	seen   []attribution.Seen
}

func (r *recorder) Click(c *attribution.Click, seen *attribution.Seen) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.clicks = append(r.clicks, *c)
	s := *seen
	s.UserAgent, s.Referer = bytes.Clone(s.UserAgent), bytes.Clone(s.Referer)
	r.seen = append(r.seen, s)
	return true
}

func (r *recorder) last(t *testing.T) attribution.Click {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.clicks) == 0 {
		t.Fatal("no click recorded")
	}
	return r.clicks[len(r.clicks)-1]
}

type edge struct {
	h      *Handler
	q      *recorder
	st     store.Store
	signer *cookie.Signer
	hasher *attribution.FingerprintHasher
	cache  *LinkCache
}

func newEdge(t testing.TB, mod func(*Config)) *edge {
	t.Helper()
	st, err := embedded.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	signer, _ := cookie.NewSigner([]cookie.Key{{ID: "k1", Secret: []byte("0123456789abcdef0123")}})
	hasher := attribution.NewFingerprintHasher([]byte("fingerprint-key-0123"))
	e := &edge{q: &recorder{}, st: st, signer: signer, hasher: hasher}
	e.cache = NewLinkCache(st, LinkCacheConfig{})
	ctx, cancel := context.WithCancel(context.Background())
	go st.WatchInvalidations(ctx, e.cache.Invalidate)
	t.Cleanup(cancel)
	trusted, _ := ParsePrefixes("10.0.0.0/8")
	cfg := Config{Links: e.cache, Log: e.q, Signer: signer, Hasher: hasher, Now: func() time.Time { return now0 },
		TrustedProxies: trusted, CookieSecure: true}
	if mod != nil {
		mod(&cfg)
	}
	e.h = New(cfg)

	bg := context.Background()
	for _, p := range []*attribution.Program{
		{ID: "shop", CookieDays: 30, AllowedHosts: []string{"shop.example.com", ".example.org"}},
		{ID: "lessons", CookieDays: 7, AllowedHosts: []string{"lessons.example.net"}, ClickModel: attribution.FirstClick},
		{ID: "xdomain", CookieDays: 30, AllowedHosts: []string{"store.example.io"}, AppendToken: true},
	} {
		p.Normalize()
		if err := p.Validate(); err != nil {
			t.Fatal(err)
		}
		st.PutProgram(bg, p)
	}
	fp, err := hasher.Hash(attribution.Fingerprints{IPs: []string{"203.0.113.7"}})
	if err != nil {
		t.Fatal(err)
	}
	st.PutPromoter(bg, &attribution.Promoter{ID: "alice", Status: "active", Fingerprints: fp})
	for _, l := range []attribution.Link{
		{Code: "shop1", Program: "shop", Promoter: "alice", Destination: "https://shop.example.com/landing?utm=x"},
		{Code: "less1", Program: "lessons", Promoter: "alice", Destination: "https://lessons.example.net/"},
		{Code: "less2", Program: "lessons", Promoter: "bob", Destination: "https://lessons.example.net/b"},
		{Code: "xdom1", Program: "xdomain", Promoter: "alice", Destination: "https://store.example.io/buy?a=1#top"},
	} {
		if err := st.CreateLink(bg, &l); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

type req struct {
	method  string
	uri     string
	remote  string
	headers [][2]string
	cookies [][2]string
}

func (e *edge) do(t *testing.T, r req) *fasthttp.Response {
	t.Helper()
	var ctx fasthttp.RequestCtx
	var rq fasthttp.Request
	rq.Header.SetMethod(cmpOr(r.method, "GET"))
	rq.SetRequestURI(r.uri)
	rq.Header.SetHost("go.example.com")
	rq.Header.Set("User-Agent", browserUA)
	for _, h := range r.headers {
		rq.Header.Set(h[0], h[1])
	}
	for _, c := range r.cookies {
		rq.Header.SetCookie(c[0], c[1])
	}
	// Read the request back from its wire form, as the server does: the
	// handler's fast paths use the raw header block only a parse keeps.
	// A request no parser accepts (TestNoHeaderInjection's raw CR/LF) is
	// handed over as built.
	in := &rq
	var parsed fasthttp.Request
	if err := parsed.Read(bufio.NewReader(strings.NewReader(rq.String()))); err == nil {
		in = &parsed
	}
	remote := &net.TCPAddr{IP: net.ParseIP(cmpOr(r.remote, "198.51.100.20")), Port: 40000}
	ctx.Init(in, remote, nil)
	e.h.ServeFastHTTP(&ctx)
	var resp fasthttp.Response
	ctx.Response.CopyTo(&resp)
	return &resp
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func setCookies(resp *fasthttp.Response) map[string]string {
	m := map[string]string{}
	for k, v := range resp.Header.Cookies() {
		m[string(k)] = string(v)
	}
	return m
}

func TestClickAttributed(t *testing.T) {
	e := newEdge(t, nil)
	resp := e.do(t, req{uri: "/r/shop1"})
	if resp.StatusCode() != 302 {
		t.Fatalf("status %d", resp.StatusCode())
	}
	want := map[string]string{
		"Location":        "https://shop.example.com/landing?utm=x",
		"Cache-Control":   "no-store",
		"Referrer-Policy": "strict-origin-when-cross-origin",
		"X-Robots-Tag":    "noindex",
	}
	for k, v := range want {
		if got := string(resp.Header.Peek(k)); got != v {
			t.Errorf("%s: got %q, want %q", k, got, v)
		}
	}
	if len(resp.Body()) != 0 {
		t.Errorf("body %q, want empty", resp.Body())
	}
	if s := resp.Header.Peek("Server"); len(s) != 0 {
		t.Errorf("Server header %q", s)
	}
	cs := setCookies(resp)
	vid, ok := cs["rg_vid"]
	if !ok {
		t.Fatalf("no rg_vid cookie: %v", cs)
	}
	vidVal := strings.TrimPrefix(strings.SplitN(vid, ";", 2)[0], "rg_vid=")
	if !strings.HasSuffix(vid, "; Path=/; Max-Age=31536000; HttpOnly; SameSite=Lax; Secure") {
		t.Errorf("rg_vid attributes: %s", vid)
	}
	att, ok := cs["rg_shop"]
	if !ok {
		t.Fatalf("no rg_shop cookie: %v", cs)
	}
	if !strings.HasSuffix(att, "; Path=/; Max-Age=2592000; HttpOnly; SameSite=Lax; Secure") {
		t.Errorf("rg_shop attributes: %s", att)
	}
	tokVal := strings.TrimPrefix(strings.SplitN(att, ";", 2)[0], "rg_shop=")
	var tok cookie.Token
	if err := e.signer.Verify([]byte(tokVal), now0, &tok); err != nil {
		t.Fatalf("token does not verify: %v", err)
	}
	rec := e.q.last(t)
	if tok.Program != "shop" || tok.Promoter != "alice" || tok.Link != "shop1" || tok.Visitor != vidVal ||
		tok.Click != rec.ID || !tok.Expires.Equal(now0.Add(30*24*time.Hour)) {
		t.Errorf("token %+v, record %+v", tok, rec)
	}
	if rec.Outcome != attribution.OutcomeAttributed || rec.Visitor != vidVal || !rec.ExpiresAt.Equal(now0.Add(30*24*time.Hour)) {
		t.Errorf("record %+v", rec)
	}
}

func TestClickKeepsVisitorAndCookieOptions(t *testing.T) {
	e := newEdge(t, func(c *Config) { c.CookieSecure = false; c.CookieDomain = "example.com" })
	vid := string(cookie.AppendVisitorID(nil))
	resp := e.do(t, req{uri: "/r/shop1", cookies: [][2]string{{"rg_vid", vid}}})
	cs := setCookies(resp)
	if _, ok := cs["rg_vid"]; ok {
		t.Error("a valid rg_vid must be kept, not set again")
	}
	if att := cs["rg_shop"]; !strings.HasSuffix(att, "; HttpOnly; SameSite=Lax; Domain=example.com") {
		t.Errorf("attributes without Secure, with Domain: %s", att)
	}
	if got := e.q.last(t).Visitor; got != vid {
		t.Errorf("visitor %q, want %q", got, vid)
	}
	// A malformed visitor cookie is replaced.
	resp = e.do(t, req{uri: "/r/shop1", cookies: [][2]string{{"rg_vid", "forged"}}})
	if _, ok := setCookies(resp)["rg_vid"]; !ok {
		t.Error("a malformed rg_vid must be replaced")
	}
}

func TestClickNotFound(t *testing.T) {
	e := newEdge(t, nil)
	for _, uri := range []string{"/r/nope99", "/r/a", "/r/bad%20code", "/r/shop1/", "/r/" + strings.Repeat("x", 65), "/r/"} {
		resp := e.do(t, req{uri: uri})
		if resp.StatusCode() != 404 || len(setCookies(resp)) != 0 || len(resp.Header.Peek("Location")) != 0 {
			t.Errorf("%s: status %d, cookies %v", uri, resp.StatusCode(), setCookies(resp))
		}
		if !strings.Contains(string(resp.Body()), `"code":"not_found"`) {
			t.Errorf("%s: body %s", uri, resp.Body())
		}
	}
	if len(e.q.clicks) != 0 {
		t.Errorf("not-found clicks must record nothing: %v", e.q.clicks)
	}
	if err := e.st.DeleteLink(context.Background(), "shop1"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Second)
	for e.do(t, req{uri: "/r/shop1"}).StatusCode() != 404 {
		if time.Now().After(deadline) {
			t.Fatal("a deleted link still resolves after 1s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestClickTo(t *testing.T) {
	e := newEdge(t, nil)
	f := func(to, want string) {
		t.Helper()
		resp := e.do(t, req{uri: "/r/shop1?to=" + to})
		if got := string(resp.Header.Peek("Location")); got != want {
			t.Errorf("to=%s: Location %q, want %q", to, got, want)
		}
		if resp.StatusCode() != 302 {
			t.Errorf("to=%s: status %d", to, resp.StatusCode())
		}
	}
	def := "https://shop.example.com/landing?utm=x"
	f("https%3A%2F%2Fshop.example.com%2Fother", "https://shop.example.com/other")
	f("https%3A%2F%2Fwww.example.org%2Fx", "https://www.example.org/x")
	f("https%3A%2F%2FSHOP.Example.COM%2F", "https://shop.example.com/")
	f("https%3A%2F%2Fevil.com%2F", def)
	f("https%3A%2F%2Fevil.example.com.evil.org%2F", def)
	f("https%3A%2F%2Fexample.org.evil.com%2F", def)
	f("https%3A%2F%2Fshop.example.com%5C%40evil.com%2F", def) // backslash
	f("https%3A%2F%2Fshop.example.com%40evil.com%2F", def)    // user info
	f("https%3A%2F%2Fevil.com%23shop.example.com", def)
	f("javascript%3Aalert(1)", def)
	f("%2F%2Fevil.com", def)
	f("https%3A%2F%2Fshop.example.com%2F%0D%0ASet-Cookie%3A%20x%3Dy", def) // CR/LF
	f("https%3A%2F%2Fshop.example.com%09%2F", def)                         // tab
	f("ftp%3A%2F%2Fshop.example.com%2F", def)
}

func TestNoHeaderInjection(t *testing.T) {
	e := newEdge(t, nil)
	for _, to := range []string{"%0D%0AX-Evil:%201", "https://shop.example.com/%0D%0AX-Evil:%201", "https://shop.example.com/\r\nX-Evil: 1"} {
		resp := e.do(t, req{uri: "/r/shop1?to=" + to})
		raw := resp.String()
		br := bufio.NewReader(strings.NewReader(raw))
		var parsed fasthttp.Response
		if err := parsed.Read(br); err != nil {
			t.Fatalf("response does not parse: %v\n%s", err, raw)
		}
		if len(parsed.Header.Peek("X-Evil")) != 0 || strings.Contains(raw, "\nX-Evil") {
			t.Errorf("header injected through to=%q:\n%s", to, raw)
		}
	}
}

func TestClickBotsAndSuspects(t *testing.T) {
	e := newEdge(t, nil)
	f := func(name string, r req, want attribution.Outcome) {
		t.Helper()
		r.uri = "/r/shop1"
		resp := e.do(t, r)
		if resp.StatusCode() != 302 || string(resp.Header.Peek("Location")) != "https://shop.example.com/landing?utm=x" {
			t.Errorf("%s: status %d location %q", name, resp.StatusCode(), resp.Header.Peek("Location"))
		}
		if cs := setCookies(resp); len(cs) != 0 {
			t.Errorf("%s: cookies set: %v", name, cs)
		}
		if got := e.q.last(t); got.Outcome != want || got.Visitor != "" {
			t.Errorf("%s: recorded %+v, want outcome %s", name, got, want)
		}
	}
	ua := func(s string) [][2]string { return [][2]string{{"User-Agent", s}} }
	f("Head", req{method: "HEAD"}, "bot")
	f("Googlebot", req{headers: ua("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)")}, "bot")
	f("FacebookPreview", req{headers: ua("facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)")}, "bot")
	f("Slack", req{headers: ua("Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)")}, "bot")
	f("Telegram", req{headers: ua("TelegramBot (like TwitterBot)")}, "bot")
	f("Curl", req{headers: ua("curl/8.5.0")}, "bot")
	f("EmptyUA", req{headers: ua("")}, "bot")
	// Fetchers the crawler list of April 2025 did not know.
	f("ClaudeUser", req{headers: ua("Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; Claude-User/1.0; +Claude-User@anthropic.com)")}, "bot")
	f("PerplexityUser", req{headers: ua("Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; Perplexity-User/1.0; +https://perplexity.ai/perplexity-user)")}, "bot")
	f("MetaExternalAds", req{headers: ua("meta-externalads/1.1 (+https://developers.facebook.com/docs/sharing/webmasters/crawler)")}, "bot")
	f("GoogleAdsConversions", req{headers: ua("Mozilla/5.0 AppleWebKit/537.36 Chrome/139.0.7258.127 Safari/537.36 Google-Ads-Conversions")}, "bot")
	f("Censys", req{headers: ua("Mozilla/5.0 (compatible; CensysInspect/1.1; +https://about.censys.io/)")}, "bot")
	// Caught by the generic patterns alone.
	f("ApacheBench", req{headers: ua("ApacheBench/2.3")}, "bot")
	f("Java", req{headers: ua("Java/17.0.9")}, "bot")
	f("GoHTTP", req{headers: ua("Go-http-client/2.0")}, "bot")
	f("PrivateBot", req{headers: ua("Mozilla/5.0 (compatible; AcmeInternalBot/0.3)")}, "bot")
	f("Purpose", req{headers: [][2]string{{"Purpose", "prefetch"}}}, "bot")
	f("SecPurpose", req{headers: [][2]string{{"Sec-Purpose", "prefetch;prerender"}}}, "bot")
	f("Img", req{headers: [][2]string{{"Sec-Fetch-Mode", "no-cors"}, {"Sec-Fetch-Dest", "image"}}}, "suspect")
	f("Iframe", req{headers: [][2]string{{"Sec-Fetch-Mode", "navigate"}, {"Sec-Fetch-Dest", "iframe"}}}, "suspect")
	f("Fetch", req{headers: [][2]string{{"Sec-Fetch-Mode", "cors"}}}, "suspect")
	f("Script", req{headers: [][2]string{{"Sec-Fetch-Dest", "script"}}}, "suspect")

	resp := e.do(t, req{uri: "/r/shop1", headers: [][2]string{{"Sec-Fetch-Mode", "navigate"}, {"Sec-Fetch-Dest", "document"}}})
	if _, ok := setCookies(resp)["rg_shop"]; !ok || e.q.last(t).Outcome != "attributed" {
		t.Error("a top-level navigation must be attributed")
	}
}

// Config.Bots replaces the built-in list; the generic patterns stay.
func TestClickBotList(t *testing.T) {
	list, err := ParseBotList([]byte(`[{"pattern": "AcmeBrowserCheck"}]`), "test")
	if err != nil {
		t.Fatal(err)
	}
	e := newEdge(t, func(c *Config) { c.Bots = list })
	f := func(name, ua string, want attribution.Outcome) {
		t.Helper()
		e.do(t, req{uri: "/r/shop1", headers: [][2]string{{"User-Agent", ua}}})
		if got := e.q.last(t).Outcome; got != want {
			t.Errorf("%s: outcome %q, want %q", name, got, want)
		}
	}
	chrome := "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/150.0.0.0 Safari/537.36"
	f("Listed", chrome+" AcmeBrowserCheck", "bot")
	f("Generic", "curl/8.5.0", "bot")
	f("OnlyInBuiltIn", chrome+" PTST/220609.133020", "attributed")
	f("Browser", chrome, "attributed")
}

func TestSelfClick(t *testing.T) {
	e := newEdge(t, nil)
	f := func(name string, r req, want attribution.Outcome) {
		t.Helper()
		r.uri = "/r/shop1"
		resp := e.do(t, r)
		if resp.StatusCode() != 302 {
			t.Errorf("%s: status %d", name, resp.StatusCode())
		}
		_, hasCookie := setCookies(resp)["rg_shop"]
		if got := e.q.last(t).Outcome; got != want || hasCookie != (want == "attributed") {
			t.Errorf("%s: outcome %s cookie %v, want %s", name, got, hasCookie, want)
		}
	}
	f("Direct", req{remote: "203.0.113.7"}, "self_click")
	f("ViaTrustedProxy", req{remote: "10.1.2.3", headers: [][2]string{{"X-Forwarded-For", "203.0.113.7, 10.9.9.9"}}}, "self_click")
	f("SpoofedXFFFromUntrusted", req{remote: "198.51.100.1", headers: [][2]string{{"X-Forwarded-For", "203.0.113.7"}}}, "attributed")
	f("SpoofedLeftOfClient", req{remote: "10.1.2.3", headers: [][2]string{{"X-Forwarded-For", "203.0.113.7, 198.51.100.9"}}}, "attributed")
	f("OtherIP", req{remote: "198.51.100.20"}, "attributed")
}

func TestFirstClickModel(t *testing.T) {
	e := newEdge(t, nil)
	resp := e.do(t, req{uri: "/r/less1"})
	att := setCookies(resp)["rg_lessons"]
	if !strings.Contains(att, "Max-Age=604800;") {
		t.Fatalf("7-day cookie: %s", att)
	}
	tok := strings.TrimPrefix(strings.SplitN(att, ";", 2)[0], "rg_lessons=")
	resp = e.do(t, req{uri: "/r/less2", cookies: [][2]string{{"rg_lessons", tok}}})
	if _, ok := setCookies(resp)["rg_lessons"]; ok {
		t.Error("first-click: an unexpired cookie must be kept")
	}
	if got := e.q.last(t); got.Link != "less2" || got.Outcome != attribution.OutcomeAttributed || got.Visitor != "" {
		t.Errorf("the click counts for its link but is not the visitor's click: %+v", got)
	}
	bad := []byte(tok)
	bad[len(bad)-1] ^= 1 // another base64url character, always
	resp = e.do(t, req{uri: "/r/less2", cookies: [][2]string{{"rg_lessons", string(bad)}}})
	if _, ok := setCookies(resp)["rg_lessons"]; !ok {
		t.Error("first-click: an invalid cookie is replaced")
	}
	// Last-click program: a new click replaces the cookie.
	resp = e.do(t, req{uri: "/r/shop1", cookies: [][2]string{{"rg_shop", tok}}})
	if _, ok := setCookies(resp)["rg_shop"]; !ok {
		t.Error("last-click: the cookie is replaced")
	}
}

func TestFirstClickExpired(t *testing.T) {
	clock := now0
	e := newEdge(t, func(c *Config) { c.Now = func() time.Time { return clock } })
	att := setCookies(e.do(t, req{uri: "/r/less1"}))["rg_lessons"]
	tok := strings.TrimPrefix(strings.SplitN(att, ";", 2)[0], "rg_lessons=")
	clock = now0.Add(7 * 24 * time.Hour)
	if _, ok := setCookies(e.do(t, req{uri: "/r/less2", cookies: [][2]string{{"rg_lessons", tok}}}))["rg_lessons"]; !ok {
		t.Error("first-click: an expired cookie gives way")
	}
}

func TestAppendToken(t *testing.T) {
	e := newEdge(t, nil)
	resp := e.do(t, req{uri: "/r/xdom1"})
	loc := string(resp.Header.Peek("Location"))
	att := setCookies(resp)["rg_xdomain"]
	tok := strings.TrimPrefix(strings.SplitN(att, ";", 2)[0], "rg_xdomain=")
	if want := "https://store.example.io/buy?a=1&rg_token=" + tok + "#top"; loc != want {
		t.Errorf("Location %q, want %q", loc, want)
	}
	f := func(dest, want string) {
		t.Helper()
		if got := string(appendQueryToken(nil, dest, []byte("T"))); got != want {
			t.Errorf("%s: got %s, want %s", dest, got, want)
		}
	}
	f("https://a.io/", "https://a.io/?rg_token=T")
	f("https://a.io/?", "https://a.io/?rg_token=T")
	f("https://a.io/?x=1&", "https://a.io/?x=1&rg_token=T")
	f("https://a.io/#f?x", "https://a.io/?rg_token=T#f?x")
}

func TestRoutesAndMethods(t *testing.T) {
	e := newEdge(t, nil)
	for _, m := range []string{"POST", "PUT", "DELETE", "OPTIONS", "PATCH"} {
		resp := e.do(t, req{method: m, uri: "/r/shop1"})
		if resp.StatusCode() != 405 || string(resp.Header.Peek("Allow")) != "GET, HEAD" {
			t.Errorf("%s: %d %q", m, resp.StatusCode(), resp.Header.Peek("Allow"))
		}
	}
	for _, p := range []string{"/", "/metrics", "/v1/admin/programs/shop", "/readyz"} {
		if resp := e.do(t, req{uri: p}); resp.StatusCode() != 404 {
			t.Errorf("%s: %d, the edge serves only /r/ and /healthz", p, resp.StatusCode())
		}
	}
	if resp := e.do(t, req{uri: "/healthz"}); resp.StatusCode() != 200 {
		t.Errorf("healthz %d", resp.StatusCode())
	}
	e.h.SetStarting(true)
	if resp := e.do(t, req{uri: "/healthz"}); resp.StatusCode() != 503 || !strings.HasPrefix(string(resp.Body()), "starting") {
		t.Errorf("healthz before the store answered: %d %q", resp.StatusCode(), resp.Body())
	}
	e.h.SetStarting(false)
	if resp := e.do(t, req{uri: "/healthz"}); resp.StatusCode() != 200 {
		t.Errorf("healthz once the store answered: %d", resp.StatusCode())
	}
	e.h.SetDraining(true)
	if resp := e.do(t, req{uri: "/healthz"}); resp.StatusCode() != 503 {
		t.Errorf("healthz while draining %d", resp.StatusCode())
	}
}

// failingSource fails every read after the first n.
type failingSource struct {
	LinkSource
	fail bool
}

func (f *failingSource) Link(ctx context.Context, code string) (*attribution.Link, error) {
	if f.fail {
		return nil, context.DeadlineExceeded
	}
	return f.LinkSource.Link(ctx, code)
}

func TestStoreDown(t *testing.T) {
	e := newEdge(t, nil)
	src := &failingSource{LinkSource: e.st}
	cache := NewLinkCache(src, LinkCacheConfig{TTL: time.Nanosecond})
	e.h.cfg.Links = cache
	if resp := e.do(t, req{uri: "/r/shop1"}); resp.StatusCode() != 302 {
		t.Fatalf("status %d", resp.StatusCode())
	}
	src.fail = true
	if resp := e.do(t, req{uri: "/r/shop1"}); resp.StatusCode() != 302 {
		t.Errorf("Stale: an expired entry must be served when the store fails, got %d", resp.StatusCode())
	}
	resp := e.do(t, req{uri: "/r/less1"})
	if resp.StatusCode() != 503 || !strings.Contains(string(resp.Body()), "unavailable") {
		t.Errorf("Unavailable: unknown to the cache and store down: %d %s", resp.StatusCode(), resp.Body())
	}
}

func TestClientIP(t *testing.T) {
	trusted, err := ParsePrefixes("127.0.0.0/8, ::1/128, 10.0.0.0/8,192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	f := func(peer string, xff []string, want string) {
		t.Helper()
		var h [][]byte
		for _, x := range xff {
			h = append(h, []byte(x))
		}
		if got := ClientIP(netip.MustParseAddr(peer), h, trusted); got.String() != want {
			t.Errorf("peer %s xff %q: got %s, want %s", peer, xff, got, want)
		}
	}
	f("198.51.100.1", []string{"1.2.3.4"}, "198.51.100.1")
	f("127.0.0.1", []string{"1.2.3.4"}, "1.2.3.4")
	f("127.0.0.1", []string{"6.6.6.6, 1.2.3.4"}, "1.2.3.4")
	f("127.0.0.1", []string{"1.2.3.4, 10.0.0.5"}, "1.2.3.4")
	f("127.0.0.1", []string{"1.2.3.4", "10.0.0.5"}, "1.2.3.4")
	f("127.0.0.1", []string{"10.0.0.9, 10.0.0.5"}, "10.0.0.9")
	f("127.0.0.1", []string{"garbage, 1.2.3.4"}, "1.2.3.4")
	f("127.0.0.1", []string{"1.2.3.4, garbage"}, "127.0.0.1")
	f("127.0.0.1", []string{"[2001:db8::1]:443"}, "2001:db8::1")
	f("127.0.0.1", []string{"1.2.3.4:5555"}, "1.2.3.4")
	f("::ffff:127.0.0.1", []string{"::ffff:1.2.3.4"}, "1.2.3.4")
	f("127.0.0.1", nil, "127.0.0.1")
	f("192.0.2.1", []string{"5.6.7.8"}, "5.6.7.8")
	if _, err := ParsePrefixes("nonsense"); err == nil {
		t.Error("bad prefix accepted")
	}
}

// TestInvalidationKeepsServing: an invalidation of any kind (a reconnect's
// "anything may have changed", or a late one for the link itself, its program
// or its promoter) while the store is down must not turn a cached link into
// 503s; once the store is back, the entry is re-read: at once for the link
// or everything, in the background for its program or promoter.
func TestInvalidationKeepsServing(t *testing.T) {
	for _, inv := range []store.Invalidation{
		{Kind: store.All},
		{Kind: store.Link, ID: "shop1"},
		{Kind: store.Program, ID: "shop"},
		{Kind: store.Promoter, ID: "alice"},
	} {
		t.Run(fmt.Sprintf("%c", inv.Kind), func(t *testing.T) {
			e := newEdge(t, nil)
			src := &failingSource{LinkSource: e.st}
			cache := NewLinkCache(src, LinkCacheConfig{})
			e.h.cfg.Links = cache
			if resp := e.do(t, req{uri: "/r/shop1"}); resp.StatusCode() != 302 {
				t.Fatal(resp.StatusCode())
			}
			src.fail = true
			cache.Invalidate(inv)
			if resp := e.do(t, req{uri: "/r/shop1"}); resp.StatusCode() != 302 {
				t.Errorf("after %+v with the store down: %d", inv, resp.StatusCode())
			}
			cache.wait()
			src.fail = false
			e.st.DeleteLink(context.Background(), "shop1")
			cache.Invalidate(inv)
			if inv.Kind == store.Program || inv.Kind == store.Promoter {
				// Served as cached once more while it is re-read.
				if resp := e.do(t, req{uri: "/r/shop1"}); resp.StatusCode() != 302 {
					t.Errorf("a program or promoter change is served stale: %d", resp.StatusCode())
				}
				cache.wait()
			}
			if resp := e.do(t, req{uri: "/r/shop1"}); resp.StatusCode() != 404 {
				t.Errorf("with the store back, a stale entry is re-read: %d", resp.StatusCode())
			}
		})
	}
}

// racingSource delivers an invalidation while a link is being read, as a
// pub/sub message can arrive just then, and fails every read once fail is
// set.
type racingSource struct {
	LinkSource
	cache *LinkCache
	inv   store.Invalidation
	race  bool
	fail  bool
	reads int
}

func (r *racingSource) Link(ctx context.Context, code string) (*attribution.Link, error) {
	r.reads++
	if r.fail {
		return nil, context.DeadlineExceeded
	}
	if r.race {
		r.cache.Invalidate(r.inv)
	}
	return r.LinkSource.Link(ctx, code)
}

// racingEdge is an edge whose cache reads through a racingSource, after a
// first click on shop1 whose read raced with inv.
func racingEdge(t *testing.T, inv store.Invalidation) (*edge, *racingSource) {
	t.Helper()
	e := newEdge(t, nil)
	src := &racingSource{LinkSource: e.st, inv: inv, race: true}
	src.cache = NewLinkCache(src, LinkCacheConfig{})
	e.h.cfg.Links = src.cache
	if resp := e.do(t, req{uri: "/r/shop1"}); resp.StatusCode() != 302 {
		t.Fatalf("first click: %d", resp.StatusCode())
	}
	return e, src
}

// TestLoadRacingInvalidation: a link read while an invalidation of it, its
// program or everything arrives is answered, kept stale (the next click reads
// it again), and served if the store is down by then; an unknown code read
// while a link or everything is invalidated is not remembered, since the
// invalidation may be its creation.
func TestLoadRacingInvalidation(t *testing.T) {
	for _, inv := range []store.Invalidation{{Kind: store.All}, {Kind: store.Link, ID: "shop1"}, {Kind: store.Program, ID: "shop"}} {
		t.Run(fmt.Sprintf("%c", inv.Kind), func(t *testing.T) {
			e, src := racingEdge(t, inv)
			src.race = false
			if resp := e.do(t, req{uri: "/r/shop1"}); resp.StatusCode() != 302 || src.reads != 2 {
				t.Fatalf("second click: %d after %d reads, want 302 after 2 (the raced read is not fresh)", resp.StatusCode(), src.reads)
			}
			if resp := e.do(t, req{uri: "/r/shop1"}); resp.StatusCode() != 302 || src.reads != 2 {
				t.Fatalf("third click: %d after %d reads, want a cache hit", resp.StatusCode(), src.reads)
			}

			src.race, src.reads = true, 0
			if resp := e.do(t, req{uri: "/r/nope99"}); resp.StatusCode() != 404 {
				t.Fatal(resp.StatusCode())
			}
			src.race = false
			e.do(t, req{uri: "/r/nope99"})
			src.cache.wait()
			want := 2
			if inv.Kind == store.Program {
				want = 1 // a program change cannot be the code's creation
			}
			if src.reads != want {
				t.Errorf("an unknown code read during %+v: %d reads, want %d", inv, src.reads, want)
			}
		})
	}
	t.Run("store down", func(t *testing.T) {
		e, src := racingEdge(t, store.Invalidation{Kind: store.All})
		src.fail = true
		for i := 0; i < 3; i++ {
			if resp := e.do(t, req{uri: "/r/shop1"}); resp.StatusCode() != 302 {
				t.Fatalf("click %d with the store down: %d, want the stale entry", i, resp.StatusCode())
			}
		}
	})
}

// blockingSource never answers until released, like a frozen Redis.
type blockingSource struct {
	LinkSource
	release chan struct{}
}

func (b *blockingSource) Link(ctx context.Context, code string) (*attribution.Link, error) {
	select {
	case <-b.release:
		return b.LinkSource.Link(ctx, code)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// TestExpiredEntryDoesNotWait: a cached link past its TTL is answered from
// the cache while the store hangs; the re-read happens in the background.
func TestExpiredEntryDoesNotWait(t *testing.T) {
	e := newEdge(t, nil)
	src := &blockingSource{LinkSource: e.st, release: make(chan struct{})}
	close(src.release)
	cache := NewLinkCache(src, LinkCacheConfig{TTL: time.Nanosecond, LoadTimeout: time.Hour})
	e.h.cfg.Links = cache
	if resp := e.do(t, req{uri: "/r/shop1"}); resp.StatusCode() != 302 {
		t.Fatal(resp.StatusCode())
	}
	src.release = make(chan struct{}) // the store hangs from now on
	defer close(src.release)
	done := make(chan int)
	go func() {
		for i := 0; i < 100; i++ {
			if resp := e.do(t, req{uri: "/r/shop1"}); resp.StatusCode() != 302 {
				done <- resp.StatusCode()
				return
			}
		}
		done <- 302
	}()
	select {
	case s := <-done:
		if s != 302 {
			t.Fatalf("status %d", s)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("clicks on a cached link waited for a hanging store")
	}
}

// Cross-site navigations no gesture started are suspect unless the program
// says otherwise; every click records what Sec-Fetch-Site and
// Sec-Fetch-User said.
func TestClickUserActivation(t *testing.T) {
	e := newEdge(t, nil)
	relaxed := &attribution.Program{ID: "relaxed", CookieDays: 7, AllowedHosts: []string{"shop.example.com"},
		RequireUserActivation: new(bool)}
	relaxed.Normalize()
	e.st.PutProgram(context.Background(), relaxed)
	e.st.CreateLink(context.Background(), &attribution.Link{Code: "relax1", Program: "relaxed", Promoter: "alice", Destination: "https://shop.example.com/"})
	nav := func(site, user string) [][2]string {
		h := [][2]string{{"Sec-Fetch-Mode", "navigate"}, {"Sec-Fetch-Dest", "document"}}
		if site != "" {
			h = append(h, [2]string{"Sec-Fetch-Site", site})
		}
		if user != "" {
			h = append(h, [2]string{"Sec-Fetch-User", user})
		}
		return h
	}
	for _, tc := range []struct {
		name, code string
		headers    [][2]string
		want       attribution.Outcome
		site       attribution.FetchSite
		activated  bool
	}{
		{"tapped link from another site", "shop1", nav("cross-site", "?1"), attribution.OutcomeAttributed, attribution.FetchSiteCrossSite, true},
		{"meta refresh or location= from another site", "shop1", nav("cross-site", ""), attribution.OutcomeSuspect, attribution.FetchSiteCrossSite, false},
		{"Sec-Fetch-User ?0", "shop1", nav("cross-site", "?0"), attribution.OutcomeSuspect, attribution.FetchSiteCrossSite, false},
		{"typed or bookmarked", "shop1", nav("none", ""), attribution.OutcomeAttributed, attribution.FetchSiteNone, false},
		{"same site, no gesture", "shop1", nav("same-site", ""), attribution.OutcomeAttributed, attribution.FetchSiteSameSite, false},
		{"a browser without fetch metadata", "shop1", nil, attribution.OutcomeAttributed, attribution.FetchSiteAbsent, false},
		{"an odd value", "shop1", nav("elsewhere", "?1"), attribution.OutcomeAttributed, attribution.FetchSiteOther, true},
		{"program that does not require it", "relax1", nav("cross-site", ""), attribution.OutcomeAttributed, attribution.FetchSiteCrossSite, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := e.do(t, req{uri: "/r/" + tc.code, headers: tc.headers})
			if resp.StatusCode() != 302 {
				t.Fatalf("status %d", resp.StatusCode())
			}
			_, cookie := setCookies(resp)["rg_"+map[string]string{"shop1": "shop", "relax1": "relaxed"}[tc.code]]
			if c := e.q.last(t); c.Outcome != tc.want || cookie != (tc.want == attribution.OutcomeAttributed) {
				t.Errorf("outcome %s, cookie %v; want %s", c.Outcome, cookie, tc.want)
			}
			if s := e.q.seen[len(e.q.seen)-1]; s.FetchSite != tc.site || s.UserActivation != tc.activated {
				t.Errorf("seen site %q activation %v, want %q %v", s.FetchSite, s.UserActivation, tc.site, tc.activated)
			}
		})
	}
}

func TestClickGPC(t *testing.T) {
	e := newEdge(t, nil)
	gpc := &attribution.Program{ID: "private", CookieDays: 7, AllowedHosts: []string{"shop.example.com"}, HonorGPC: true}
	gpc.Normalize()
	e.st.PutProgram(context.Background(), gpc)
	e.st.CreateLink(context.Background(), &attribution.Link{Code: "priv1", Program: "private", Promoter: "alice", Destination: "https://shop.example.com/"})
	for _, tc := range []struct {
		code, value string
		want        attribution.Outcome
	}{
		{"priv1", "1", attribution.OutcomeGPC},
		{"priv1", "0", attribution.OutcomeAttributed},
		{"shop1", "1", attribution.OutcomeAttributed}, // honor_gpc is false there
	} {
		resp := e.do(t, req{uri: "/r/" + tc.code, headers: [][2]string{{"Sec-GPC", tc.value}}})
		cs := setCookies(resp)
		if c := e.q.last(t); resp.StatusCode() != 302 || c.Outcome != tc.want || c.Visitor != "" && tc.want == attribution.OutcomeGPC {
			t.Errorf("%s Sec-GPC %s: %d %s, want %s", tc.code, tc.value, resp.StatusCode(), c.Outcome, tc.want)
		}
		if _, ok := cs["rg_private"]; ok && tc.want == attribution.OutcomeGPC {
			t.Errorf("cookie set under Sec-GPC: %v", cs)
		}
	}
}

// Past --attribution-rate, an address's clicks are redirected without a
// cookie or a visitor; another address is not held back, and bots do not
// use up the budget.
func TestClickRateLimit(t *testing.T) {
	e := newEdge(t, func(c *Config) { c.AttributionRate = 1 }) // burst 4
	for range 10 {
		e.do(t, req{uri: "/r/shop1", remote: "198.51.100.1", headers: [][2]string{{"User-Agent", "Googlebot/2.1"}}})
	}
	outcomes := map[attribution.Outcome]int{}
	for range 10 {
		resp := e.do(t, req{uri: "/r/shop1", remote: "198.51.100.1"})
		c := e.q.last(t)
		outcomes[c.Outcome]++
		_, cookie := setCookies(resp)["rg_shop"]
		if resp.StatusCode() != 302 || string(resp.Header.Peek("Location")) != "https://shop.example.com/landing?utm=x" {
			t.Fatalf("limited click not redirected: %d", resp.StatusCode())
		}
		if c.Outcome == attribution.OutcomeRateLimited && (cookie || c.Visitor != "" || c.ID != "") {
			t.Errorf("rate-limited click got a cookie %v or a visitor %q", cookie, c.Visitor)
		}
	}
	if outcomes[attribution.OutcomeAttributed] != 4 || outcomes[attribution.OutcomeRateLimited] != 6 {
		t.Errorf("one address, 10 clicks at once: %v; want 4 attributed, 6 rate_limited", outcomes)
	}
	// The same /64 is the same client; another address is not.
	if e.do(t, req{uri: "/r/shop1", remote: "2001:db8:1:2::1"}); e.q.last(t).Outcome != attribution.OutcomeAttributed {
		t.Error("first IPv6 click limited")
	}
	for range 4 {
		e.do(t, req{uri: "/r/shop1", remote: "2001:db8:1:2::9"})
	}
	if c := e.q.last(t); c.Outcome != attribution.OutcomeRateLimited {
		t.Errorf("fifth click from one /64: %s", c.Outcome)
	}
	if e.do(t, req{uri: "/r/shop1", remote: "198.51.100.2"}); e.q.last(t).Outcome != attribution.OutcomeAttributed {
		t.Error("another address limited")
	}
	// Behind a trusted proxy, the limit is the client's, not the proxy's.
	for i := range 6 {
		e.do(t, req{uri: "/r/shop1", remote: "10.0.0.1", headers: [][2]string{{"X-Forwarded-For", fmt.Sprintf("192.0.2.%d", i+1)}}})
		if c := e.q.last(t); c.Outcome != attribution.OutcomeAttributed {
			t.Errorf("client %d behind the proxy: %s", i, c.Outcome)
		}
	}
}
