// Package api is refgate's JSON API for storefronts, administrators and
// promoters, served by fasthttp on its own listener (loopback by default).
// Every /v1 route needs a bearer token: the admin token for /v1/admin/*, a
// promoter token (issued by POST /v1/admin/promoters/{id}/tokens) for
// /v1/promoter/* and nothing else, the storefront or admin token for the
// rest. /livez and /readyz are open (they
// say nothing but up or down), and so is the console under /ui/ (static
// files, which send the token with every call they make); /metrics and
// /debug/pprof need the admin token, or the metrics token for /metrics.
//
// Failed authentications are throttled per client address: past
// Config.AuthFailureLimit a minute, a request without a known token gets
// 429 instead of 401. A request with a known token is never throttled, so
// that someone behind the storefront's NAT cannot lock the storefront out.
package api

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http/pprof"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
	"github.com/valyala/fasthttp/pprofhandler"

	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/cookie"
	"github.com/refgate/refgate/events"
	"github.com/refgate/refgate/internal/clock"
	"github.com/refgate/refgate/internal/logsample"
	"github.com/refgate/refgate/internal/ratelimit"
	"github.com/refgate/refgate/redirect"
	"github.com/refgate/refgate/store"
)

var pprofHTMLIndex = fasthttpadaptor.NewFastHTTPHandlerFunc(pprof.Index)

// pprofIndex is net/http/pprof's index with a base URL: its links are
// relative (allocs?debug=1), and from /debug/pprof, without the slash, a
// browser would resolve them to /debug/allocs.
func pprofIndex(ctx *fasthttp.RequestCtx) {
	pprofHTMLIndex(ctx)
	if b := ctx.Response.Body(); bytes.Contains(b, []byte("<head>")) {
		ctx.Response.SetBody(bytes.Replace(b, []byte("<head>"), []byte(`<head><base href="/debug/pprof/">`), 1))
	}
}

// MaxBodySize is the largest request body accepted; larger bodies get 413.
const MaxBodySize = 64 << 10

// Config is what the API needs. Store, AdminToken and StorefrontToken are
// required.
type Config struct {
	Store           store.Store
	AdminToken      string
	StorefrontToken string
	MetricsToken    string // optional: may read /metrics only
	Clock           *clock.Clock
	TestClock       bool // enable POST /v1/admin/test-clock
	Hasher          *attribution.FingerprintHasher
	// Signer verifies attribution tokens for bind and attribution lookups.
	Signer *cookie.Signer
	// PublicURL is the edge's base URL, used for links' "url" field.
	PublicURL string
	Gatherer  prometheus.Gatherer
	// Registerer takes the API's own metrics [a throwaway registry].
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	// StoreTimeout bounds one request's store calls [2s].
	StoreTimeout time.Duration
	// Events takes decision events; nil for none.
	Events Emitter
	// Log reports the pipeline's state in /readyz; nil for none.
	Log Log
	// StoreWrites reports in /readyz whether the store takes writes; nil
	// for none.
	StoreWrites StoreWrites
	// TrustedProxies are the peers whose X-Forwarded-For names the client
	// (redirect.ClientIP, the edge's rule), for the throttle of failed
	// authentications; none: the client is the TCP peer.
	TrustedProxies []netip.Prefix
	// AuthFailureLimit is how many failed authentications (no or unknown
	// token) one client address (IPv4 address, IPv6 /64) may have per
	// minute, all at once or spread out, before its requests without a
	// known token get 429 [DefaultAuthFailureLimit]; negative: no limit.
	// The throttle's clock is Clock.
	AuthFailureLimit int
	// AccessLog logs every request at info: method, route template, path
	// (without the query, which names customers), status, duration, body
	// bytes and client address.
	AccessLog bool
}

// StoreWrites says whether the store takes writes; store.Instrumented is
// one.
type StoreWrites interface {
	WriteHealth() store.WriteHealth
}

// DefaultAuthFailureLimit is Config.AuthFailureLimit's default: 10 failed
// authentications a minute per client address, as a burst of 10, then one
// every 6 seconds.
const DefaultAuthFailureLimit = 10

// authLogEvery is how often a failed authentication is logged at most: a
// scan of tokens must not become a flood of log lines.
const authLogEvery = time.Second

// Log is the pipeline of clicks and events as /readyz sees it;
// events.Pipeline is one.
type Log interface {
	LogBytes() int64
	MaxBytes() int64
	SinkName() string // "" with events off
	Deliveries() []events.Delivery
}

// Server is the API handler.
type Server struct {
	cfg      Config
	svc      *Service
	metrics  fasthttp.RequestHandler
	requests *requestMetrics
	draining atomic.Bool

	authLimit     *ratelimit.Limiter
	authFailed    prometheus.Counter // answered 401
	authThrottled prometheus.Counter // answered 429
	authLog       logsample.Sampler
	authUnlogged  atomic.Int64 // failed authentications not logged since the last line
}

// New returns the API handler.
func New(cfg Config) *Server {
	if cfg.Clock == nil {
		cfg.Clock = new(clock.Clock)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Gatherer == nil {
		cfg.Gatherer = prometheus.NewRegistry()
	}
	if cfg.StoreTimeout == 0 {
		cfg.StoreTimeout = 2 * time.Second
	}
	cfg.PublicURL = strings.TrimRight(cfg.PublicURL, "/")
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	s := &Server{cfg: cfg, svc: &Service{Store: cfg.Store, Signer: cfg.Signer, Hasher: cfg.Hasher, Now: cfg.Clock.Now,
		Decisions: NewDecisionMetrics(cfg.Registerer), LedgerMetrics: NewLedgerMetrics(cfg.Registerer), Events: cfg.Events, PublicURL: cfg.PublicURL, Logger: cfg.Logger}}
	if cfg.TestClock {
		s.svc.Clock = cfg.Clock
	}
	s.metrics = fasthttpadaptor.NewFastHTTPHandler(promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{}))
	s.requests = newRequestMetrics(cfg.Registerer)
	s.initAuthThrottle()
	return s
}

func (s *Server) initAuthThrottle() {
	n := s.cfg.AuthFailureLimit
	if n == 0 {
		n = DefaultAuthFailureLimit
	}
	rl := ratelimit.Config{Now: s.cfg.Clock.Now}
	if n > 0 {
		rl.Rate, rl.Burst = float64(n)/60, n
	}
	s.authLimit = ratelimit.New(rl)
	f := promauto.With(s.cfg.Registerer)
	s.authFailed = f.NewCounter(prometheus.CounterOpts{
		Name: "refgate_api_auth_failures_total",
		Help: "API requests without a known bearer token answered 401.",
	})
	s.authThrottled = f.NewCounter(prometheus.CounterOpts{
		Name: "refgate_api_auth_throttled_total",
		Help: "API requests without a known bearer token answered 429: their client address had too many failed authentications.",
	})
	f.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "refgate_api_auth_throttle_addresses",
		Help: fmt.Sprintf("Client addresses the failed-authentication throttle keeps (at most %d).", ratelimit.DefaultMaxAddrs),
	}, func() float64 { return float64(s.authLimit.Len()) })
	f.NewCounterFunc(prometheus.CounterOpts{
		Name: "refgate_api_auth_throttle_evictions_total",
		Help: "Client addresses dropped from the full failed-authentication throttle while still throttled or close to it.",
	}, func() float64 { return float64(s.authLimit.Evictions()) })
}

// Invalidate drops cached programs and promoters; wire it to the store's
// invalidation feed, so admin changes on any instance apply at once.
func (s *Server) Invalidate(inv store.Invalidation) { s.svc.Invalidate(inv) }

// SetDraining makes /readyz answer 503 from now on.
func (s *Server) SetDraining(v bool) { s.draining.Store(v) }

// ErrorHandler answers requests fasthttp rejects before the handler runs,
// bodies over MaxBodySize among them, with the JSON error body.
func (s *Server) ErrorHandler(ctx *fasthttp.RequestCtx, err error) {
	if errors.Is(err, fasthttp.ErrBodyTooLarge) {
		s.fail(ctx, attribution.Errorf(attribution.ETooLarge, "request body over 64 KiB"))
		return
	}
	s.fail(ctx, attribution.Errorf(attribution.EMalformed, "malformed request: %v", err))
}

type role int

const (
	roleNone role = iota
	roleMetrics
	roleStorefront
	roleAdmin
	// rolePromoter is a promoter token's, for /v1/promoter/* only; no
	// other token may use those routes, which read the token's promoter.
	rolePromoter
)

// role says whose the request's bearer token is. A promoter token is
// verified in full (signature, expiry, revocation, promoter), and its
// promoter kept for promoterFrom; err is the store's when it cannot say.
func (s *Server) role(ctx *fasthttp.RequestCtx) (role, error) {
	h := ctx.Request.Header.Peek("Authorization")
	tok, ok := bytes.CutPrefix(h, []byte("Bearer "))
	if !ok || len(tok) == 0 {
		return roleNone, nil
	}
	eq := func(want string) bool { return want != "" && subtle.ConstantTimeCompare(tok, []byte(want)) == 1 }
	switch {
	case eq(s.cfg.AdminToken):
		return roleAdmin, nil
	case eq(s.cfg.StorefrontToken):
		return roleStorefront, nil
	case eq(s.cfg.MetricsToken):
		return roleMetrics, nil
	}
	c, cancel := s.storeCtx()
	defer cancel()
	p, err := s.svc.VerifyPromoterToken(c, tok)
	switch {
	case errors.Is(err, errPromoterToken):
		return roleNone, nil
	case err != nil:
		return roleNone, err
	}
	ctx.SetUserValue(promoterKey, p)
	return rolePromoter, nil
}

// allowed reports whether a token of role r may use a route that needs
// need: the admin token anything but the promoter routes, the storefront
// token its own routes, the metrics token /metrics, a promoter token the
// promoter routes alone.
func allowed(r, need role) bool {
	switch {
	case r == rolePromoter || need == rolePromoter:
		return r == need
	case need == roleMetrics:
		return r == roleMetrics || r == roleAdmin
	}
	return r >= need
}

// require checks the bearer token: 401 without a known one (429 once the
// client address has had too many of those), 403 with one that may not do
// this, 503 when the store cannot say whether a promoter token is revoked.
func (s *Server) require(ctx *fasthttp.RequestCtx, need role) bool {
	r, err := s.role(ctx)
	if err != nil {
		s.fail(ctx, err)
		return false
	}
	if r == roleNone {
		s.unauthorized(ctx)
		return false
	}
	if !allowed(r, need) {
		s.fail(ctx, attribution.Errorf(attribution.EForbidden, "this token may not use this route"))
		return false
	}
	return true
}

// unauthorized answers a request without a known token: 401, which
// counts against its client address, or 429 with Retry-After once the
// address has no failures left. The token was compared first, so a known
// token always gets through: the throttle cannot lock out a storefront
// that shares its address with an attacker. It slows nobody's guessing
// (a throttled guesser still learns from a 200); tokens of 16 bytes or
// more do that. What it does is keep a scan cheap and visible: counted,
// and logged once a second with its client address.
func (s *Server) unauthorized(ctx *fasthttp.RequestCtx) {
	client := s.clientIP(ctx)
	ok, wait := s.authLimit.Take(client)
	var e *attribution.Error
	if ok {
		s.authFailed.Inc()
		ctx.Response.Header.Set("WWW-Authenticate", `Bearer realm="refgate"`)
		e = attribution.Errorf(attribution.EUnauthorized, "missing or unknown bearer token")
	} else {
		s.authThrottled.Inc()
		secs := int64((wait + time.Second - 1) / time.Second)
		ctx.Response.Header.Set("Retry-After", strconv.FormatInt(secs, 10))
		e = attribution.Errorf(attribution.ETooManyRequests,
			"too many failed authentications from this address; retry in %d s", secs)
	}
	status := statusOf[e.Code]
	if s.authLog.Allow(authLogEvery) {
		s.cfg.Logger.Warn("api authentication failed", "client", client.String(), "method", string(ctx.Method()),
			"path", string(ctx.Path()), "status", status, "code", e.Code, "unlogged_before", s.authUnlogged.Swap(0))
	} else {
		s.authUnlogged.Add(1)
	}
	s.reply(ctx, status, map[string]*attribution.Error{"error": e})
}

// clientIP is the address the request came from: the TCP peer, or what
// X-Forwarded-For says when the peer is a trusted proxy.
func (s *Server) clientIP(ctx *fasthttp.RequestCtx) netip.Addr {
	peer, _ := netip.AddrFromSlice(ctx.RemoteIP())
	var xff [][]byte
	if len(s.cfg.TrustedProxies) > 0 {
		xff = ctx.Request.Header.PeekAll("X-Forwarded-For")
	}
	return redirect.ClientIP(peer, xff, s.cfg.TrustedProxies)
}

// route is one API route. Patterns match whole path segments; {name}
// matches one non-empty segment, passed to the handler in order.
type route struct {
	method  string
	pattern string
	role    role
	handle  func(s *Server, ctx *fasthttp.RequestCtx, params []string)
}

// routes is every API route; api/openapi.yaml documents exactly these (a
// test checks both ways).
var routes = []route{
	{"GET", "/livez", roleNone, func(s *Server, ctx *fasthttp.RequestCtx, _ []string) {
		s.reply(ctx, 200, map[string]string{"status": "ok"})
	}},
	{"GET", "/readyz", roleNone, func(s *Server, ctx *fasthttp.RequestCtx, _ []string) { s.ready(ctx) }},
	// The console's static files (console.go): open, since they hold no
	// data; the page sends the token with every API call it makes.
	{"GET", "/ui", roleNone, func(s *Server, ctx *fasthttp.RequestCtx, _ []string) { s.consoleIndex(ctx) }},
	{"GET", "/ui/{asset}", roleNone, func(s *Server, ctx *fasthttp.RequestCtx, p []string) { s.consoleAsset(ctx, p[0]) }},
	{"GET", "/ui/vendor/{asset}", roleNone, func(s *Server, ctx *fasthttp.RequestCtx, p []string) { s.consoleAsset(ctx, "vendor/"+p[0]) }},
	{"GET", "/metrics", roleMetrics, func(s *Server, ctx *fasthttp.RequestCtx, _ []string) { s.metrics(ctx) }},
	{"GET", "/debug/pprof", roleAdmin, func(s *Server, ctx *fasthttp.RequestCtx, _ []string) { pprofIndex(ctx) }},
	{"GET", "/debug/pprof/{profile}", roleAdmin, func(s *Server, ctx *fasthttp.RequestCtx, _ []string) { pprofhandler.PprofHandler(ctx) }},
	{"GET", "/v1/admin/programs", roleAdmin, func(s *Server, ctx *fasthttp.RequestCtx, _ []string) { s.getPrograms(ctx) }},
	{"GET", "/v1/admin/promoters", roleAdmin, func(s *Server, ctx *fasthttp.RequestCtx, _ []string) { s.getPromoters(ctx) }},
	{"GET", "/v1/admin/links", roleAdmin, func(s *Server, ctx *fasthttp.RequestCtx, _ []string) { s.getLinks(ctx) }},
	{"PATCH", "/v1/admin/links/{code}", roleAdmin, func(s *Server, ctx *fasthttp.RequestCtx, p []string) { s.patchLink(ctx, p[0]) }},
	{"PUT", "/v1/admin/programs/{id}", roleAdmin, func(s *Server, ctx *fasthttp.RequestCtx, p []string) { s.putProgram(ctx, p[0]) }},
	{"GET", "/v1/admin/programs/{id}", roleAdmin, func(s *Server, ctx *fasthttp.RequestCtx, p []string) { s.getProgram(ctx, p[0]) }},
	{"PUT", "/v1/admin/promoters/{id}", roleAdmin, func(s *Server, ctx *fasthttp.RequestCtx, p []string) { s.putPromoter(ctx, p[0]) }},
	{"GET", "/v1/admin/promoters/{id}", roleAdmin, func(s *Server, ctx *fasthttp.RequestCtx, p []string) { s.getPromoter(ctx, p[0]) }},
	{"POST", "/v1/admin/links", roleAdmin, func(s *Server, ctx *fasthttp.RequestCtx, _ []string) { s.createLink(ctx) }},
	{"GET", "/v1/admin/links/{code}", roleAdmin, func(s *Server, ctx *fasthttp.RequestCtx, p []string) { s.getLink(ctx, p[0]) }},
	{"DELETE", "/v1/admin/links/{code}", roleAdmin, func(s *Server, ctx *fasthttp.RequestCtx, p []string) { s.deleteLink(ctx, p[0]) }},
	{"POST", "/v1/admin/ledger/adjustments", roleAdmin, func(s *Server, ctx *fasthttp.RequestCtx, _ []string) { s.postAdjustment(ctx) }},
	{"GET", "/v1/admin/ledger", roleAdmin, func(s *Server, ctx *fasthttp.RequestCtx, _ []string) { s.getLedger(ctx) }},
	{"POST", "/v1/admin/statements", roleAdmin, func(s *Server, ctx *fasthttp.RequestCtx, _ []string) { s.postStatements(ctx) }},
	{"GET", "/v1/admin/statements", roleAdmin, func(s *Server, ctx *fasthttp.RequestCtx, _ []string) { s.getStatements(ctx) }},
	{"GET", "/v1/admin/statements/{id}", roleAdmin, func(s *Server, ctx *fasthttp.RequestCtx, p []string) { s.getStatement(ctx, p[0]) }},
	{"GET", "/v1/admin/statements/{id}/entries", roleAdmin, func(s *Server, ctx *fasthttp.RequestCtx, p []string) { s.getStatementEntries(ctx, p[0]) }},
	{"POST", "/v1/admin/statements/{id}/paid", roleAdmin, func(s *Server, ctx *fasthttp.RequestCtx, p []string) { s.postPaid(ctx, p[0]) }},
	{"GET", "/v1/admin/reports", roleAdmin, func(s *Server, ctx *fasthttp.RequestCtx, _ []string) { s.getReport(ctx) }},
	{"GET", "/v1/admin/promoters/{id}/balance", roleAdmin, func(s *Server, ctx *fasthttp.RequestCtx, p []string) { s.getBalance(ctx, p[0]) }},
	{"POST", "/v1/admin/promoters/{id}/tokens", roleAdmin, func(s *Server, ctx *fasthttp.RequestCtx, p []string) { s.postPromoterToken(ctx, p[0]) }},
	{"DELETE", "/v1/admin/promoters/{id}/tokens", roleAdmin, func(s *Server, ctx *fasthttp.RequestCtx, p []string) { s.deletePromoterTokens(ctx, p[0]) }},
	{"POST", "/v1/admin/test-clock", roleAdmin, func(s *Server, ctx *fasthttp.RequestCtx, _ []string) { s.testClock(ctx) }},
	{"POST", "/v1/bind", roleStorefront, func(s *Server, ctx *fasthttp.RequestCtx, _ []string) { s.bind(ctx) }},
	{"PUT", "/v1/customers/{id}", roleStorefront, func(s *Server, ctx *fasthttp.RequestCtx, p []string) { s.putCustomer(ctx, p[0]) }},
	{"DELETE", "/v1/customers/{id}", roleStorefront, func(s *Server, ctx *fasthttp.RequestCtx, p []string) { s.deleteCustomer(ctx, p[0]) }},
	{"GET", "/v1/attribution", roleStorefront, func(s *Server, ctx *fasthttp.RequestCtx, _ []string) { s.attribution(ctx) }},
	{"GET", "/v1/attribution/explain", roleStorefront, func(s *Server, ctx *fasthttp.RequestCtx, _ []string) { s.explain(ctx) }},
	{"POST", "/v1/conversions", roleStorefront, func(s *Server, ctx *fasthttp.RequestCtx, _ []string) { s.convert(ctx) }},
	{"POST", "/v1/conversions/{order}/refunds", roleStorefront, func(s *Server, ctx *fasthttp.RequestCtx, p []string) { s.refund(ctx, p[0]) }},
	// The promoter's own view: each reads promoterFrom(ctx)'s data only.
	{"GET", "/v1/promoter/ledger", rolePromoter, func(s *Server, ctx *fasthttp.RequestCtx, _ []string) { s.getPromoterLedger(ctx) }},
	{"GET", "/v1/promoter/statements", rolePromoter, func(s *Server, ctx *fasthttp.RequestCtx, _ []string) { s.getPromoterStatements(ctx) }},
	{"GET", "/v1/promoter/statements/{id}", rolePromoter, func(s *Server, ctx *fasthttp.RequestCtx, p []string) { s.getPromoterStatement(ctx, p[0]) }},
	{"GET", "/v1/promoter/balance", rolePromoter, func(s *Server, ctx *fasthttp.RequestCtx, _ []string) { s.getPromoterBalance(ctx) }},
	{"GET", "/v1/promoter/links", rolePromoter, func(s *Server, ctx *fasthttp.RequestCtx, _ []string) { s.getPromoterLinks(ctx) }},
	{"GET", "/v1/promoter/reports", rolePromoter, func(s *Server, ctx *fasthttp.RequestCtx, _ []string) { s.getPromoterReport(ctx) }},
	{"GET", "/v1/promoter/customers", rolePromoter, func(s *Server, ctx *fasthttp.RequestCtx, _ []string) { s.getPromoterCustomers(ctx) }},
}

// match reports whether path fits pattern and returns the {param} segments.
func match(pattern, path string) ([]string, bool) {
	var params []string
	for {
		pseg, prest, pmore := strings.Cut(strings.TrimPrefix(pattern, "/"), "/")
		seg, rest, more := strings.Cut(strings.TrimPrefix(path, "/"), "/")
		if strings.HasPrefix(pseg, "{") {
			if seg == "" {
				return nil, false
			}
			params = append(params, seg)
		} else if pseg != seg {
			return nil, false
		}
		if pmore != more {
			return nil, false
		}
		if !pmore {
			return params, true
		}
		pattern, path = "/"+prest, "/"+rest
	}
}

// ServeFastHTTP serves every API request, counts it in
// refgate_api_requests_total and times it in
// refgate_api_request_duration_seconds by route template, and logs it with
// Config.AccessLog.
func (s *Server) ServeFastHTTP(ctx *fasthttp.RequestCtx) {
	start := time.Now()
	pattern := s.route(ctx)
	took := time.Since(start)
	status := ctx.Response.StatusCode()
	s.requests.observe(pattern, ctx.Method(), status, took)
	if s.cfg.AccessLog {
		if pattern == "" {
			pattern = unmatched
		}
		s.cfg.Logger.Info("api request", "method", string(ctx.Method()), "route", pattern, "path", string(ctx.Path()),
			"status", status, "duration_ms", float64(took.Microseconds())/1000, "bytes", len(ctx.Response.Body()),
			"client", s.clientIP(ctx).String())
	}
}

// route routes the request: 404 for an unknown path, 405 (with Allow) for
// a known path and another method, then the token check. It returns the
// pattern of the route whose path matched, "" for none.
func (s *Server) route(ctx *fasthttp.RequestCtx) (pattern string) {
	path, method := string(ctx.Path()), string(ctx.Method())
	// The profile index answers with and without the trailing slash, as
	// net/http/pprof's users expect; the route (and its metric label) is
	// /debug/pprof, since OpenAPI paths take no trailing slash.
	if path == "/debug/pprof/" {
		path = "/debug/pprof"
	}
	// The same for the console's page, /ui/ (route /ui), and every answer
	// under /ui carries the console's security headers, its 404s too.
	if isConsolePath(path) {
		consoleHeaders(ctx)
		if path == "/ui/" {
			path = "/ui"
		}
	}
	var allow []string
	for i := range routes {
		r := &routes[i]
		params, ok := match(r.pattern, path)
		if !ok {
			continue
		}
		pattern = r.pattern
		if r.method != method {
			allow = append(allow, r.method)
			continue
		}
		if r.pattern == "/v1/admin/test-clock" && !s.cfg.TestClock {
			pattern = ""
			break
		}
		if r.role != roleNone && !s.require(ctx, r.role) {
			return pattern
		}
		r.handle(s, ctx, params)
		return pattern
	}
	if len(allow) > 0 {
		ctx.Response.Header.Set("Allow", strings.Join(allow, ", "))
		s.fail(ctx, attribution.Errorf(attribution.EMethodNotAllowed, "method %s not allowed on %s", method, path))
		return pattern
	}
	s.fail(ctx, attribution.Errorf(attribution.ENotFound, "no route %s", path))
	return ""
}

func (s *Server) ready(ctx *fasthttp.RequestCtx) {
	if s.draining.Load() {
		s.reply(ctx, 503, map[string]string{"status": "draining"})
		return
	}
	c, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	r := readiness{Status: "ok", Store: "ok"}
	if l := s.cfg.Log; l != nil {
		r.Log = &logReadiness{Bytes: l.LogBytes(), MaxBytes: l.MaxBytes(), Deliveries: l.Deliveries()}
		if name := l.SinkName(); name != "" {
			r.Events = &eventsReadiness{Sink: name, Status: "ok"}
			for _, d := range r.Log.Deliveries {
				if d.To == events.ToSink {
					r.Events.Status, r.Events.SpoolBytes = d.Status, d.LagBytes
				}
			}
		}
	}
	if w := s.cfg.StoreWrites; w != nil {
		r.StoreWrites = &storeWrites{Status: "ok"}
		if h := w.WriteHealth(); h.Refused {
			since := h.Since.UTC()
			r.StoreWrites = &storeWrites{Status: "degraded", Reason: h.Reason, Error: h.Message, Since: &since, Refused: h.Refusals}
			r.Status, r.Store = "degraded", "degraded"
		}
	}
	if err := s.cfg.Store.Ping(c); err != nil {
		s.cfg.Logger.Warn("not ready: store does not answer", "err", err)
		r.Status, r.Store = "store unavailable", "unavailable"
		s.reply(ctx, 503, r)
		return
	}
	// A store that answers but refuses writes (Redis full, a read-only
	// replica) keeps the instance ready, and so does a failing event sink:
	// clicks are answered from the link cache and wait in the log, reads
	// answer. Every instance shares the store, so taking them all out of
	// the load balancer would only add the clicks to what fails. It is
	// reported here and in the metrics, and alerted on.
	s.reply(ctx, 200, r)
}

// readiness is the /readyz body.
type readiness struct {
	Status      string           `json:"status"` // ok, degraded (the store refuses writes), store unavailable, draining
	Store       string           `json:"store"`  // ok, degraded, unavailable
	StoreWrites *storeWrites     `json:"store_writes,omitempty"`
	Log         *logReadiness    `json:"log,omitempty"`
	Events      *eventsReadiness `json:"events,omitempty"`
}

// storeWrites says whether the store takes writes: degraded from the first
// write it refuses until one is taken again.
type storeWrites struct {
	Status  string     `json:"status"`           // ok or degraded
	Reason  string     `json:"reason,omitempty"` // store.RefusalReasons: oom, readonly, ...
	Error   string     `json:"error,omitempty"`  // the store's words
	Since   *time.Time `json:"since,omitempty"`
	Refused int64      `json:"refused,omitempty"` // writes refused since
}

// logReadiness is the state of the local log of clicks and events and of
// its consumers.
type logReadiness struct {
	Bytes      int64             `json:"bytes"` // not yet taken by the store or the sink
	MaxBytes   int64             `json:"max_bytes"`
	Deliveries []events.Delivery `json:"deliveries"`
}

// eventsReadiness is the event sink's delivery, as before the log.
type eventsReadiness struct {
	Sink       string `json:"sink"`
	Status     string `json:"status"`      // ok, replaying or degraded
	SpoolBytes int64  `json:"spool_bytes"` // of the log, not yet taken by the sink
}

// storeCtx bounds the store calls of one request.
func (s *Server) storeCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), s.cfg.StoreTimeout)
}

// decode reads the body as exactly one JSON value into v, refusing unknown
// fields (400), trailing data (400), an empty body (400) and an object that
// names a key twice at any depth (400: see duplicateKey).
func decode(ctx *fasthttp.RequestCtx, v any) error {
	body := ctx.PostBody()
	if len(bytes.TrimSpace(body)) == 0 {
		return attribution.Errorf(attribution.EMalformed, "empty body; want a JSON object")
	}
	if key, path, dup := duplicateKey(body); dup {
		where := "the top-level object"
		if path != "" {
			where = "the object at " + path
		}
		return attribution.Errorf(attribution.EMalformed,
			"duplicate key %q in %s: a key may appear once per object (keys that differ only in case are one key)", key, where)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if strings.HasPrefix(err.Error(), "json: unknown field") {
			return attribution.Errorf(attribution.EMalformed, "%v", err)
		}
		if e := toError(err); e.Code != attribution.EUnavailable {
			return e
		}
		return attribution.Errorf(attribution.EMalformed, "malformed JSON: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return attribution.Errorf(attribution.EMalformed, "trailing data after the JSON value")
	}
	return nil
}

func (s *Server) reply(ctx *fasthttp.RequestCtx, status int, v any) {
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.Response.Header.Set("Cache-Control", "no-store")
	if v == nil {
		return
	}
	b, err := json.Marshal(v)
	if err != nil {
		s.cfg.Logger.Error("cannot encode response", "err", err)
		ctx.SetStatusCode(500)
		b = []byte(`{"error":{"code":"internal","message":"cannot encode response"}}`)
	}
	ctx.SetBody(append(b, '\n'))
}

// fail writes err as the JSON error body with its status and logs it: 4xx at
// info (the caller's mistake), 5xx at error.
func (s *Server) fail(ctx *fasthttp.RequestCtx, err error) {
	e := toError(err)
	status, ok := statusOf[e.Code]
	if !ok {
		status = 500
	}
	lvl := slog.LevelInfo
	if status >= 500 {
		lvl = slog.LevelError
	}
	s.cfg.Logger.Log(context.Background(), lvl, "api request failed", "method", string(ctx.Method()),
		"path", string(ctx.Path()), "status", status, "code", e.Code, "err", e.Message)
	s.reply(ctx, status, map[string]*attribution.Error{"error": e})
}
