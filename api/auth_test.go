package api

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/refgate/refgate/store/embedded"
)

// lockedBuffer is a log sink the test reads while the server writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// newAuthEnv is newEnv with mod applied to the API's Config.
func newAuthEnv(t *testing.T, mod func(*Config)) *env {
	t.Helper()
	st, err := embedded.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cfg := Config{Store: st, Gatherer: prometheus.NewRegistry()}
	mod(&cfg)
	return newEnvWith(t, cfg)
}

// callFrom is call with an X-Forwarded-For header.
func (e *env) callFrom(xff, method, path, token string) result {
	e.t.Helper()
	req, _ := http.NewRequest(method, "http://api"+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if xff != "" {
		req.Header.Set("X-Forwarded-For", xff)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	buf.ReadFrom(resp.Body)
	r := result{status: resp.StatusCode, raw: buf.String(), header: resp.Header}
	return r
}

// TestAuthThrottle: after the limit of failed authentications a client
// address's requests without a known token get 429 with Retry-After; a
// known token still works from it; another address is not affected; the
// failures refill at the limit's rate.
func TestAuthThrottle(t *testing.T) {
	reg := prometheus.NewRegistry()
	logs := new(lockedBuffer)
	e := newAuthEnv(t, func(c *Config) {
		c.Registerer, c.Gatherer = reg, reg
		c.Logger = slog.New(slog.NewTextHandler(logs, nil))
		// The in-memory listener's peer is 0.0.0.0: a trusted proxy here,
		// so X-Forwarded-For names the client.
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/32")}
	})
	const path = "/v1/admin/programs/shop"
	const attacker = "198.51.100.66"
	for i := range DefaultAuthFailureLimit {
		tok := "wrong-token-0123456789"
		if i%2 == 1 {
			tok = "" // no token counts the same
		}
		if r := e.callFrom(attacker, "GET", path, tok); r.status != 401 {
			t.Fatalf("failure %d: %d %s, want 401", i+1, r.status, r.raw)
		}
	}
	r := e.callFrom(attacker, "GET", path, "wrong-token-0123456789")
	if r.status != 429 || r.header.Get("Retry-After") != "6" || !strings.Contains(r.raw, `"code":"too_many_requests"`) {
		t.Fatalf("past the limit: %d Retry-After %q %s, want 429, 6 and too_many_requests", r.status, r.header.Get("Retry-After"), r.raw)
	}
	if r.header.Get("WWW-Authenticate") != "" {
		t.Error("a 429 asks for no credentials")
	}
	if r := e.callFrom(attacker, "GET", "/v1/attribution?program=shop&customer=c1", ""); r.status != 429 {
		t.Errorf("no token, throttled address: %d, want 429", r.status)
	}
	// The known tokens still work from the throttled address: an attacker
	// behind the storefront's NAT cannot lock it out.
	if r := e.callFrom(attacker, "PUT", path, adminTok); r.status == 401 || r.status == 429 {
		t.Errorf("admin token from a throttled address: %d %s", r.status, r.raw)
	}
	if r := e.callFrom(attacker, "GET", "/v1/attribution?program=shop&customer=c1", sfTok); r.status == 401 || r.status == 429 {
		t.Errorf("storefront token from a throttled address: %d %s", r.status, r.raw)
	}
	if r := e.callFrom(attacker, "GET", "/metrics", metTok); r.status != 200 {
		t.Errorf("metrics token from a throttled address: %d", r.status)
	}
	if r := e.callFrom(attacker, "GET", path, sfTok); r.status != 403 {
		t.Errorf("a known token on a route it may not use: %d, want 403 (not throttled, not counted)", r.status)
	}
	if r := e.callFrom("198.51.100.67", "GET", path, "wrong-token-0123456789"); r.status != 401 {
		t.Errorf("another address: %d, want 401", r.status)
	}

	e.clock.Advance(5 * time.Second)
	if r := e.callFrom(attacker, "GET", path, ""); r.status != 429 || r.header.Get("Retry-After") != "1" {
		t.Errorf("5 s later: %d Retry-After %q, want 429 and 1", r.status, r.header.Get("Retry-After"))
	}
	e.clock.Advance(time.Second)
	if r := e.callFrom(attacker, "GET", path, ""); r.status != 401 {
		t.Errorf("6 s later one more failure is a 401: %d", r.status)
	}
	if r := e.callFrom(attacker, "GET", path, ""); r.status != 429 {
		t.Errorf("and only one: %d", r.status)
	}

	m := e.callFrom("", "GET", "/metrics", metTok).raw
	for _, want := range []string{"refgate_api_auth_failures_total 12", "refgate_api_auth_throttled_total 4",
		"refgate_api_auth_throttle_addresses 2", "refgate_api_auth_throttle_evictions_total 0"} {
		if !strings.Contains(m, want+"\n") {
			t.Errorf("metrics lack %q", want)
		}
	}
	// 16 failures in well under a second or two: sampled, and the lines
	// say who and how many went unlogged.
	out := logs.String()
	n := strings.Count(out, `msg="api authentication failed"`)
	if n < 1 || n > 4 {
		t.Errorf("%d log lines for 16 failed authentications, want them sampled (one a second):\n%s", n, out)
	}
	if !strings.Contains(out, "client="+attacker) || !strings.Contains(out, "unlogged_before=") {
		t.Errorf("a failed authentication's line names the client address:\n%s", out)
	}
	if strings.Contains(out, "wrong-token") {
		t.Errorf("a presented token was logged:\n%s", out)
	}
}

// TestAuthThrottleIPv6: the addresses of one IPv6 /64 are one client.
func TestAuthThrottleIPv6(t *testing.T) {
	e := newAuthEnv(t, func(c *Config) {
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/32")}
		c.AuthFailureLimit = 2
	})
	f := func(xff string, want int) {
		t.Helper()
		if r := e.callFrom(xff, "GET", "/v1/admin/programs/shop", ""); r.status != want {
			t.Errorf("from %s: %d, want %d", xff, r.status, want)
		}
	}
	f("2001:db8:7:7::1", 401)
	f("2001:db8:7:7::2", 401)
	f("2001:db8:7:7:ffff::3", 429)
	f("2001:db8:7:8::1", 401)
}

// TestAuthThrottleOff: a negative limit never throttles.
func TestAuthThrottleOff(t *testing.T) {
	e := newAuthEnv(t, func(c *Config) { c.AuthFailureLimit = -1 })
	for i := range 3 * DefaultAuthFailureLimit {
		if r := e.call("GET", "/v1/admin/programs/shop", "", ""); r.status != 401 {
			t.Fatalf("failure %d: %d, want 401", i+1, r.status)
		}
	}
}

// TestOpenAPIThrottled: every route that needs a token documents the 429
// of the failed-authentication throttle beside its 401.
func TestOpenAPIThrottled(t *testing.T) {
	doc := loadSpec(t)
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			if op.Responses.Status(401) != nil && op.Responses.Status(429) == nil {
				t.Errorf("%s %s documents 401 and not 429", method, path)
			}
		}
	}
}
