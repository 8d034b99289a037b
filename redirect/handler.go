package redirect

import (
	"bytes"
	"log/slog"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/cookie"
	"github.com/refgate/refgate/internal/logsample"
	"github.com/refgate/refgate/internal/ratelimit"
)

// Links resolves a link code. It returns (nil, nil) for an unknown or
// deleted code, and an error only when it cannot tell.
type Links interface {
	Lookup(code []byte) (*Target, error)
}

// ClickLog takes every click (whatever its outcome) off the request path:
// its record for the store and its event, together; events.Pipeline is
// one. Click must not block, and must copy what it keeps of c and seen
// (both are reused when the handler returns).
type ClickLog interface {
	Click(c *attribution.Click, seen *attribution.Seen) bool
}

// Config is what a Handler needs. Links, Log and Signer are required.
type Config struct {
	Links  Links
	Log    ClickLog
	Signer *cookie.Signer
	// Hasher turns the client IP into the promoters' fingerprint form for
	// the self-click check; nil disables the check.
	Hasher *attribution.FingerprintHasher
	// Now is the server's clock [time.Now].
	Now            func() time.Time
	TrustedProxies []netip.Prefix
	CookieDomain   string
	CookieSecure   bool
	Logger         *slog.Logger
	Metrics        *Metrics
	// Bots tells crawlers, preview fetchers and scripts by their
	// User-Agent [DefaultBotList]: the embedded crawler-user-agents
	// release and the generic patterns.
	Bots *BotList
	// AttributionRate is how many attributable clicks a second one client
	// address (ratelimit.Key) may have, with bursts of 4x, per instance;
	// past it a click is redirected without a cookie, as rate_limited.
	// 0 = no limit. The limit runs on real time, not the server's clock.
	AttributionRate float64
}

// Handler serves the public edge: GET /r/{code} and GET /healthz.
type Handler struct {
	cfg      Config
	bots     *botFilter
	draining atomic.Bool
	starting atomic.Bool
	scratch  sync.Pool
	limit    *ratelimit.Limiter
	logEvery logsample.Sampler // one log line a second: a flood of bad clicks is not a flood of lines
}

// New returns the edge handler.
func New(cfg Config) *Handler {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(prometheus.NewRegistry())
	}
	if cfg.Bots == nil {
		cfg.Bots = DefaultBotList()
	}
	h := &Handler{cfg: cfg, bots: newBotFilter(cfg.Bots, 16384),
		limit: ratelimit.New(ratelimit.Config{Rate: cfg.AttributionRate, Burst: int(4 * cfg.AttributionRate), Now: time.Now})}
	h.scratch.New = func() any { return new(scratch) }
	return h
}

// SetDraining makes /healthz answer 503, so load balancers stop sending
// clicks before the listener closes.
func (h *Handler) SetDraining(v bool) { h.draining.Store(v) }

// SetStarting makes /healthz answer 503 "starting" until it is set back to
// false: a server whose store has not answered once has no links to serve.
// Once it has, /healthz answers 200 whatever the store's state (the link
// cache answers clicks through an outage), so a store outage never takes
// every instance out of its load balancer at once; /readyz on the API
// reports the store.
func (h *Handler) SetStarting(v bool) { h.starting.Store(v) }

// Starting reports what SetStarting set.
func (h *Handler) Starting() bool { return h.starting.Load() }

// scratch holds per-request buffers. fasthttp copies header values, so the
// buffers go back to the pool when the handler returns.
type scratch struct {
	vid, cid, tok, hdr, loc, ip, fp []byte
	// Kept here rather than on the stack: an idle keep-alive connection's
	// goroutine keeps the stack its deepest request needed.
	rec   attribution.Click
	seen  attribution.Seen
	token cookie.Token
}

// Prebuilt header names and values: no per-request conversions.
var (
	hdrLocation       = []byte("Location")
	hdrCacheControl   = []byte("Cache-Control")
	hdrReferrerPolicy = []byte("Referrer-Policy")
	hdrRobots         = []byte("X-Robots-Tag")
	hdrSetCookie      = []byte("Set-Cookie")
	hdrAllow          = []byte("Allow")
	hdrXFF            = []byte("X-Forwarded-For")
	hdrRetryAfter     = []byte("Retry-After")
	valNoStore        = []byte("no-store")
	valReferrer       = []byte("strict-origin-when-cross-origin")
	valNoIndex        = []byte("noindex")
	valGetHead        = []byte("GET, HEAD")
	valOne            = []byte("1")
	cookieVid         = []byte("rg_vid")
	argTo             = []byte("to")
	argToken          = []byte("rg_token=")
	pathHealth        = []byte("/healthz")
	pathClick         = []byte("/r/")
	ctJSON            = []byte("application/json")
	ctText            = []byte("text/plain; charset=utf-8")
	bodyNotFound      = []byte(`{"error":{"code":"not_found","message":"unknown link"}}`)
	bodyNoRoute       = []byte(`{"error":{"code":"not_found","message":"no such route"}}`)
	bodyMethod        = []byte(`{"error":{"code":"method_not_allowed","message":"only GET and HEAD are served here"}}`)
	bodyUnavailable   = []byte(`{"error":{"code":"unavailable","message":"link store unavailable, try again"}}`)
)

const visitorMaxAge = 365 * 86400

// ServeFastHTTP routes the edge's two paths; everything else is a 404 and
// every method but GET and HEAD a 405.
func (h *Handler) ServeFastHTTP(ctx *fasthttp.RequestCtx) {
	if !ctx.IsGet() && !ctx.IsHead() {
		ctx.Response.Header.SetCanonical(hdrAllow, valGetHead)
		h.jsonError(ctx, fasthttp.StatusMethodNotAllowed, bodyMethod)
		return
	}
	path := ctx.Path()
	switch {
	case bytes.HasPrefix(path, pathClick):
		h.click(ctx, path[len(pathClick):])
	case bytes.Equal(path, pathHealth):
		ctx.SetContentTypeBytes(ctText)
		switch {
		case h.draining.Load():
			ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
			ctx.SetBodyString("draining\n")
		case h.starting.Load():
			ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
			ctx.SetBodyString("starting: the store has not answered yet\n")
		default:
			ctx.SetBodyString("ok\n")
		}
	default:
		h.jsonError(ctx, fasthttp.StatusNotFound, bodyNoRoute)
	}
}

func (h *Handler) jsonError(ctx *fasthttp.RequestCtx, status int, body []byte) {
	ctx.SetStatusCode(status)
	ctx.SetContentTypeBytes(ctJSON)
	ctx.Response.Header.SetCanonical(hdrCacheControl, valNoStore)
	ctx.SetBody(body)
}

func (h *Handler) click(ctx *fasthttp.RequestCtx, code []byte) {
	start := time.Now()
	m := h.cfg.Metrics
	defer func() { m.latency.Observe(time.Since(start).Seconds()) }()

	if !attribution.ValidCode(string(code)) { // no allocation: the conversion does not escape
		m.clicks[attribution.OutcomeNotFound].Inc()
		h.jsonError(ctx, fasthttp.StatusNotFound, bodyNotFound)
		return
	}
	t, err := h.cfg.Links.Lookup(code)
	if err != nil {
		h.unavailable(ctx, code, err)
		return
	}
	if t == nil {
		m.clicks[attribution.OutcomeNotFound].Inc()
		h.jsonError(ctx, fasthttp.StatusNotFound, bodyNotFound)
		return
	}

	s := h.scratch.Get().(*scratch)
	defer h.scratch.Put(s)

	now := h.cfg.Now()
	inactive := t.Inactive(now.UnixNano())
	dest := t.Link.Destination
	if inactive && t.expiredURL != "" {
		dest = t.expiredURL
	} else if to := ctx.QueryArgs().PeekBytes(argTo); len(to) > 0 {
		dest = override(t, to, dest)
	}

	seen := &s.seen
	*seen = attribution.Seen{IP: h.clientIP(ctx), UserAgent: ctx.UserAgent(), Referer: ctx.Referer()}
	var r request
	outcome := h.bots.classify(&ctx.Request, seen, &r) // also fills seen for the event
	p := t.Program
	switch {
	case inactive:
		// A paused or expired link comes first: it attributes nothing,
		// whoever clicks, and uses no address's budget.
		outcome = attribution.OutcomeInactive
	case outcome != "":
	case seen.FetchSite == attribution.FetchSiteCrossSite && r.navigate && !seen.UserActivation && p.UserActivationRequired():
		// A navigation from another site that no gesture started: a meta
		// refresh, location set by a script, a form submitted by one.
		outcome = attribution.OutcomeSuspect
	case r.gpc && p.HonorGPC:
		outcome = attribution.OutcomeGPC
	case len(t.PromoterIPs) > 0 && h.cfg.Hasher != nil && h.isSelfClick(seen.IP, t, s):
		outcome = attribution.OutcomeSelfClick
	case !h.limit.Allow(seen.IP):
		// Only clicks that would set a cookie use the address's budget.
		outcome = attribution.OutcomeRateLimited
	}

	rec := &s.rec
	*rec = attribution.Click{Program: p.ID, Promoter: t.Link.Promoter, Link: t.Link.Code,
		At: now, Outcome: outcome, Model: p.ClickModel}
	if outcome == "" {
		rec.Outcome = attribution.OutcomeAttributed
		dest = h.attribute(ctx, t, s, rec, dest)
	}
	if !h.cfg.Log.Click(rec, seen) {
		h.dropped(t.Link.Code)
	}
	m.clicks[rec.Outcome].Inc()

	hdr := &ctx.Response.Header
	ctx.SetStatusCode(fasthttp.StatusFound)
	hdr.SetCanonical(hdrLocation, s2b(dest))
	hdr.SetCanonical(hdrCacheControl, valNoStore)
	hdr.SetCanonical(hdrReferrerPolicy, valReferrer)
	hdr.SetCanonical(hdrRobots, valNoIndex)
	ctx.Response.ResetBody()
}

// unavailable answers 503 when the link store cannot tell what code is.
// It and dropped are kept out of click, which every connection's goroutine
// needs stack for: the rare paths' locals would be in its frame.
func (h *Handler) unavailable(ctx *fasthttp.RequestCtx, code []byte, err error) {
	h.cfg.Metrics.unavailable.Inc()
	h.cfg.Metrics.clickErrors.WithLabelValues("link_lookup").Inc()
	if h.logEvery.Allow(time.Second) {
		h.cfg.Logger.Error("cannot resolve link; answering 503", "code", string(code), "err", err)
	}
	ctx.Response.Header.SetCanonical(hdrRetryAfter, valOne)
	h.jsonError(ctx, fasthttp.StatusServiceUnavailable, bodyUnavailable)
}

func (h *Handler) dropped(code string) {
	if h.logEvery.Allow(time.Second) {
		h.cfg.Logger.Error("click queue full; click dropped", "code", code)
	}
}

// override is the destination ?to= asks for if the program allows its host,
// else dest: any other value is ignored, never followed.
func override(t *Target, to []byte, dest string) string {
	if u, host, err := attribution.ParseDestination(string(to)); err == nil && t.Program.AllowsHost(host) {
		return u.String()
	}
	return dest
}

// attribute sets the visitor and attribution cookies for a real click, fills
// in the click record, and returns the destination (with rg_token appended
// when the program asks for it).
func (h *Handler) attribute(ctx *fasthttp.RequestCtx, t *Target, s *scratch, rec *attribution.Click, dest string) string {
	now := rec.At
	hdr := &ctx.Response.Header
	vid := ctx.Request.Header.CookieBytes(cookieVid)
	if !cookie.ValidVisitorID(vid) {
		s.vid = cookie.AppendVisitorID(s.vid[:0])
		vid = s.vid
		s.hdr = appendSetCookie(s.hdr[:0], cookieVid, vid, visitorMaxAge, h.cfg.CookieDomain, h.cfg.CookieSecure)
		hdr.SetCanonical(hdrSetCookie, s.hdr)
	}
	rec.Visitor = string(vid)
	rec.ExpiresAt = now.Add(t.Program.CookieTTL())

	tok := &s.token
	if t.Program.ClickModel == attribution.FirstClick {
		// An unexpired valid cookie of this program stands. The click still
		// counts for its link, but it is not the visitor's click: the record
		// goes without a visitor, so the store leaves the first one alone.
		if old := ctx.Request.Header.CookieBytes(t.cookieName); len(old) > 0 &&
			h.cfg.Signer.Verify(old, now, tok) == nil && tok.Program == t.Program.ID {
			rec.Visitor = ""
			return dest
		}
	}
	s.cid = cookie.AppendClickID(s.cid[:0], now)
	rec.ID = string(s.cid)
	*tok = cookie.Token{Program: t.Program.ID, Promoter: t.Link.Promoter, Link: t.Link.Code,
		Click: rec.ID, Visitor: rec.Visitor, Issued: now, Expires: rec.ExpiresAt}
	var err error
	s.tok, err = h.cfg.Signer.AppendToken(s.tok[:0], tok)
	if err != nil { // only for over-long ids, which validation prevents
		h.cfg.Metrics.clickErrors.WithLabelValues("sign").Inc()
		h.cfg.Logger.Error("cannot sign token", "err", err)
		return dest
	}
	s.hdr = appendSetCookie(s.hdr[:0], t.cookieName, s.tok, t.maxAge, h.cfg.CookieDomain, h.cfg.CookieSecure)
	hdr.SetCanonical(hdrSetCookie, s.hdr)
	if t.Program.AppendToken {
		s.loc = appendQueryToken(s.loc[:0], dest, s.tok)
		return b2s(s.loc)
	}
	return dest
}

// clientIP is the click's client IP, taken from X-Forwarded-For only when
// the peer is a trusted proxy.
func (h *Handler) clientIP(ctx *fasthttp.RequestCtx) netip.Addr {
	peer, _ := netip.AddrFromSlice(ctx.RemoteIP())
	var xff [][]byte
	if isTrusted(peer.Unmap(), h.cfg.TrustedProxies) {
		xff = ctx.Request.Header.PeekAll(string(hdrXFF))
	}
	return ClientIP(peer, xff, h.cfg.TrustedProxies)
}

// isSelfClick hashes the client IP the way promoters' IP fingerprints are
// hashed and looks it up among the link's promoter's: only the hashes are
// kept, so the comparison is between hashes.
func (h *Handler) isSelfClick(ip netip.Addr, t *Target, s *scratch) bool {
	if !ip.IsValid() {
		return false
	}
	s.ip = ip.AppendTo(s.ip[:0]) // the same form as attribution.NormalizeIP
	s.fp = h.cfg.Hasher.AppendSum(s.fp[:0], attribution.FPIP, s.ip)
	return t.PromoterIPs.HasBytes(s.fp)
}

// appendSetCookie writes a Set-Cookie value with the attributes in the order
// the design fixes: Path=/; Max-Age; HttpOnly; SameSite=Lax; Secure; Domain.
func appendSetCookie(dst, name, value []byte, maxAge int, domain string, secure bool) []byte {
	dst = append(dst, name...)
	dst = append(dst, '=')
	dst = append(dst, value...)
	dst = append(dst, "; Path=/; Max-Age="...)
	dst = strconv.AppendInt(dst, int64(maxAge), 10)
	dst = append(dst, "; HttpOnly; SameSite=Lax"...)
	if secure {
		dst = append(dst, "; Secure"...)
	}
	if domain != "" {
		dst = append(dst, "; Domain="...)
		dst = append(dst, domain...)
	}
	return dst
}

// appendQueryToken appends dest with rg_token=tok added to its query, before
// any fragment. tok is base64url and dots: nothing to escape.
func appendQueryToken(dst []byte, dest string, tok []byte) []byte {
	base, frag := dest, ""
	if i := bytes.IndexByte(s2b(dest), '#'); i >= 0 {
		base, frag = dest[:i], dest[i:]
	}
	dst = append(dst, base...)
	switch {
	case !bytes.ContainsRune(s2b(base), '?'):
		dst = append(dst, '?')
	case base[len(base)-1] != '?' && base[len(base)-1] != '&':
		dst = append(dst, '&')
	}
	dst = append(dst, argToken...)
	dst = append(dst, tok...)
	return append(dst, frag...)
}
