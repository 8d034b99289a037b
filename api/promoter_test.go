package api

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/refgate/refgate/cookie"
	"github.com/refgate/refgate/internal/redistest"
	"github.com/refgate/refgate/store"
	"github.com/refgate/refgate/store/embedded"
	"github.com/refgate/refgate/store/redisstore"
)

// eachStore runs fn against the API on the embedded store and on a real
// redis-server.
func eachStore(t *testing.T, fn func(t *testing.T, st store.Store)) {
	t.Run("Embedded", func(t *testing.T) {
		st, err := embedded.Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		fn(t, st)
	})
	t.Run("Redis", func(t *testing.T) {
		srv := redistest.Start(t)
		rs, err := redisstore.New(redisstore.Config{URL: srv.URL()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rs.Close() })
		fn(t, rs)
	})
}

// Reset empties the buffer.
func (l *lockedBuffer) Reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.Reset()
}

// promoterToken issues a token for promoter and returns it.
func (e *env) promoterToken(promoter, ttl string) string {
	e.t.Helper()
	r := e.call("POST", "/v1/admin/promoters/"+promoter+"/tokens", adminTok, `{"ttl":"`+ttl+`"}`)
	tok, _ := r.body["token"].(string)
	if r.status != 201 || tok == "" || r.body["expires_at"] == nil {
		e.t.Fatalf("token for %s: %d %s", promoter, r.status, r.raw)
	}
	return tok
}

func TestPromoterView(t *testing.T) {
	eachStore(t, testPromoterView)
}

func testPromoterView(t *testing.T, st store.Store) {
	logs := new(lockedBuffer)
	e := newEnvWith(t, Config{Store: st, TestClock: true, Gatherer: prometheus.NewRegistry(),
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})), AccessLog: true,
		AuthFailureLimit: -1})
	e.seedStorefront()
	e.bind("customer-0042", "register", tok(e.token("shop", "bob", 30)))
	e.bind("c9", "register", tok(e.token("shop", "bob", 30)))
	e.bind("carols-1", "register", tok(e.token("shop", "carol", 30)))
	if r := e.convert("o1", "customer-0042", 10000, ""); r.body["commission"] != 3000.0 {
		t.Fatalf("conversion: %s", r.raw)
	}
	e.convert("o2", "carols-1", 10000, "")

	// Issuing: bad values, unknown promoters, the wrong tokens.
	f := func(name, method, path, token, body string, status int, code string) {
		t.Helper()
		r := e.call(method, path, token, body)
		if r.status != status || (code != "" && r.errCode() != code) {
			t.Errorf("%s: %d %s, want %d %s", name, r.status, r.raw, status, code)
		}
	}
	for _, ttl := range []string{"0s", "-1h", "8761h", "30d", "", "soon"} {
		f("ErrTTL"+ttl, "POST", "/v1/admin/promoters/bob/tokens", adminTok, `{"ttl":"`+ttl+`"}`, 422, "invalid")
	}
	f("ErrUnknownField", "POST", "/v1/admin/promoters/bob/tokens", adminTok, `{"ttl":"1h","scope":"all"}`, 400, "malformed")
	f("ErrUnknownPromoter", "POST", "/v1/admin/promoters/nobody/tokens", adminTok, `{"ttl":"1h"}`, 404, "not_found")
	f("ErrRevokeUnknownPromoter", "DELETE", "/v1/admin/promoters/nobody/tokens", adminTok, "", 404, "not_found")
	f("ErrStorefrontIssues", "POST", "/v1/admin/promoters/bob/tokens", sfTok, `{"ttl":"1h"}`, 403, "forbidden")

	bob := e.promoterToken("bob", "8760h")
	carol := e.promoterToken("carol", "8760h")
	mallory := e.promoterToken("mallory", "1h") // suspended

	// Auth: a promoter token reads the promoter routes and nothing else;
	// no other token reads those.
	f("ErrPromoterOnAdmin", "GET", "/v1/admin/promoters/bob", bob, "", 403, "forbidden")
	f("ErrPromoterIssues", "POST", "/v1/admin/promoters/bob/tokens", bob, `{"ttl":"1h"}`, 403, "forbidden")
	f("ErrPromoterOnAdminLedger", "GET", "/v1/admin/ledger?program=shop&promoter=bob", bob, "", 403, "forbidden")
	f("ErrPromoterOnStorefront", "GET", "/v1/attribution?program=shop&customer=customer-0042", bob, "", 403, "forbidden")
	f("ErrPromoterBinds", "POST", "/v1/bind", bob, `{"program":"shop","customer":"x","event":"login"}`, 403, "forbidden")
	f("ErrPromoterOnMetrics", "GET", "/metrics", bob, "", 403, "forbidden")
	f("ErrAdminOnPromoter", "GET", "/v1/promoter/balance?program=shop", adminTok, "", 403, "forbidden")
	f("ErrStorefrontOnPromoter", "GET", "/v1/promoter/ledger?program=shop", sfTok, "", 403, "forbidden")
	f("ErrMetricsOnPromoter", "GET", "/v1/promoter/ledger?program=shop", metTok, "", 403, "forbidden")
	f("ErrNoToken", "GET", "/v1/promoter/ledger?program=shop", "", "", 401, "unauthorized")
	f("ErrTampered", "GET", "/v1/promoter/ledger?program=shop", tamper(bob), "", 401, "unauthorized")
	f("ErrAttributionToken", "GET", "/v1/promoter/ledger?program=shop", e.token("shop", "bob", 30), "", 401, "unauthorized")
	now := e.clock.Now()
	ghost, err := e.signer.SignPromoter(&cookie.PromoterToken{Promoter: "nobody", Issued: now, Expires: now.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	f("ErrUnknownPromoterToken", "GET", "/v1/promoter/ledger?program=shop", ghost, "", 401, "unauthorized")
	otherKeys, _ := cookie.NewSigner([]cookie.Key{{ID: "k1", Secret: []byte("another-secret-0123456")}})
	forged, _ := otherKeys.SignPromoter(&cookie.PromoterToken{Promoter: "bob", Issued: now, Expires: now.Add(time.Hour)})
	f("ErrForged", "GET", "/v1/promoter/ledger?program=shop", forged, "", 401, "unauthorized")
	f("ErrOtherPromoterParam", "GET", "/v1/promoter/ledger?program=shop&promoter=carol", bob, "", 422, "invalid")
	f("ErrUnknownProgram", "GET", "/v1/promoter/customers?program=none", bob, "", 422, "invalid")
	f("ErrLimit", "GET", "/v1/promoter/statements?program=shop&limit=0", bob, "", 422, "invalid")
	f("ErrCursor", "GET", "/v1/promoter/customers?program=shop&cursor=abc", bob, "", 400, "malformed")
	f("ErrStatus", "GET", "/v1/promoter/ledger?program=shop&status=owed", bob, "", 422, "invalid")
	f("SuspendedReads", "GET", "/v1/promoter/balance?program=shop", mallory, "", 200, "")

	// The promoter's reads: the admin's, with the customer masked.
	logs.Reset()
	r := e.call("GET", "/v1/promoter/ledger?program=shop", bob, "")
	es := items(t, r)
	if r.status != 200 || len(es) != 1 || es[0]["id"] != "acc:o1" || es[0]["promoter"] != "bob" || es[0]["amount"] != 3000.0 ||
		es[0]["customer"] != "cu***42" || es[0]["status"] != "pending" {
		t.Fatalf("bob's ledger: %d %s", r.status, r.raw)
	}
	if r := e.call("GET", "/v1/promoter/ledger?program=shop&status=available", bob, ""); len(items(t, r)) != 0 {
		t.Errorf("bob's available entries: %s", r.raw)
	}
	if b := e.call("GET", "/v1/promoter/balance?program=shop", bob, ""); b.status != 200 ||
		b.raw != e.call("GET", "/v1/admin/promoters/bob/balance?program=shop", adminTok, "").raw {
		t.Errorf("bob's balance: %d %s", b.status, b.raw)
	}
	r = e.call("GET", "/v1/promoter/customers?program=shop", bob, "")
	cs := items(t, r)
	if r.status != 200 || len(cs) != 2 || cs[0]["customer"] != "***" || cs[1]["customer"] != "cu***42" ||
		cs[1]["kind"] != "protected" || cs[1]["since"] == nil || cs[1]["expires_at"] == nil {
		t.Errorf("bob's customers: %d %s", r.status, r.raw)
	}

	// Links: only the promoter's own.
	if r := e.call("GET", "/v1/promoter/links", bob, ""); r.status != 200 || len(items(t, r)) != 1 || items(t, r)[0]["code"] != "l-bob" {
		t.Errorf("bob's links: %d %s", r.status, r.raw)
	}
	if r := e.call("GET", "/v1/promoter/links?program=shop&limit=1", carol, ""); r.status != 200 || len(items(t, r)) != 1 || items(t, r)[0]["code"] != "l-carol" {
		t.Errorf("carol's links: %d %s", r.status, r.raw)
	}
	f("ErrLinksOtherPromoter", "GET", "/v1/promoter/links?promoter=carol", bob, "", 422, "invalid")
	f("ErrAdminLinksWithPromoterToken", "GET", "/v1/admin/links", bob, "", 403, "forbidden")

	// Reports: the admin's with the promoter fixed, or one of their own
	// links'; another promoter's link is a 404.
	day := e.clock.Now().UTC().Format("2006-01-02")
	rep := func(name, query, token string) map[string]any {
		t.Helper()
		r := e.call("GET", "/v1/promoter/reports?program=shop&from="+day+"&to="+day+query, token, "")
		ser, _ := r.body["series"].([]any)
		if r.status != 200 || len(ser) != 1 {
			t.Fatalf("%s: %d %s", name, r.status, r.raw)
		}
		return ser[0].(map[string]any)
	}
	for _, q := range []string{"", "&link=l-bob"} {
		p := rep("bob's report"+q, q, bob)
		if b := p["binds"].(map[string]any); p["cash"] != 10000.0 || p["commission"] != 3000.0 || b["created"] != 2.0 ||
			p["conversions"].(map[string]any)["attributed"] != 1.0 {
			t.Errorf("bob's report%s: %v", q, p)
		}
	}
	if p := rep("carol's report", "", carol); p["cash"] != 10000.0 || p["binds"].(map[string]any)["created"] != 1.0 {
		t.Errorf("carol's report: %v", p)
	}
	f("ErrOtherPromotersLink", "GET", "/v1/promoter/reports?program=shop&from="+day+"&to="+day+"&link=l-carol", bob, "", 404, "not_found")
	f("ErrUnknownLink", "GET", "/v1/promoter/reports?program=shop&from="+day+"&to="+day+"&link=l-none", bob, "", 404, "not_found")
	f("ErrReportOtherPromoter", "GET", "/v1/promoter/reports?program=shop&from="+day+"&to="+day+"&promoter=carol", bob, "", 422, "invalid")
	f("ErrReportNoDates", "GET", "/v1/promoter/reports?program=shop", bob, "", 422, "invalid")
	f("ErrAdminReportWithPromoterToken", "GET", "/v1/admin/reports?program=shop&from="+day+"&to="+day, bob, "", 403, "forbidden")
	if r := e.call("GET", "/v1/promoter/reports?program=shop&from="+day+"&to="+day, bob, ""); r.status != 200 {
		t.Errorf("report: %d", r.status)
	}

	e.advance("744h") // past the hold
	r = e.call("POST", "/v1/admin/statements", adminTok, `{"program":"shop"}`)
	sts, _ := r.body["statements"].([]any)
	if r.status != 201 || len(sts) != 2 {
		t.Fatalf("settlement: %d %s", r.status, r.raw)
	}
	ids := map[string]string{} // promoter → statement
	for _, s := range sts {
		m := s.(map[string]any)
		ids[m["promoter"].(string)] = m["id"].(string)
	}
	r = e.call("GET", "/v1/promoter/statements?program=shop", bob, "")
	if ss := items(t, r); r.status != 200 || len(ss) != 1 || ss[0]["id"] != ids["bob"] {
		t.Errorf("bob's statements: %d %s", r.status, r.raw)
	}
	if r := e.call("GET", "/v1/promoter/statements/"+ids["bob"], bob, ""); r.status != 200 || r.body["promoter"] != "bob" {
		t.Errorf("bob's statement: %d %s", r.status, r.raw)
	}
	f("ErrOtherPromotersStatement", "GET", "/v1/promoter/statements/"+ids["carol"], bob, "", 404, "not_found")
	f("ErrUnknownStatement", "GET", "/v1/promoter/statements/nope", bob, "", 404, "not_found")
	f("CarolsStatement", "GET", "/v1/promoter/statements/"+ids["carol"], carol, "", 200, "")
	if r := e.call("GET", "/v1/promoter/ledger?program=shop&status=settled", bob, ""); len(items(t, r)) != 1 {
		t.Errorf("bob's settled entries: %s", r.raw)
	}
	for _, id := range []string{"customer-0042", "carols-1"} {
		if strings.Contains(logs.String(), id) {
			t.Errorf("the promoter reads logged customer %s:\n%s", id, logs.String())
		}
	}

	// Expiry by the server's (test) clock: mallory's hour is over.
	f("ErrExpired", "GET", "/v1/promoter/balance?program=shop", mallory, "", 401, "unauthorized")

	// Revocation: every token issued until now is refused, one issued
	// after works, and a PUT of the promoter keeps the revocation.
	older := e.promoterToken("bob", "8760h")
	if r := e.call("DELETE", "/v1/admin/promoters/bob/tokens", adminTok, ""); r.status != 204 {
		t.Fatalf("revoke: %d %s", r.status, r.raw)
	}
	f("ErrRevoked", "GET", "/v1/promoter/balance?program=shop", bob, "", 401, "unauthorized")
	f("ErrRevokedLatest", "GET", "/v1/promoter/balance?program=shop", older, "", 401, "unauthorized")
	f("OthersStay", "GET", "/v1/promoter/balance?program=shop", carol, "", 200, "")
	fresh := e.promoterToken("bob", "1h")
	f("IssuedAfterRevocation", "GET", "/v1/promoter/balance?program=shop", fresh, "", 200, "")
	if r := e.call("PUT", "/v1/admin/promoters/bob", adminTok, `{"status":"active","tier":2}`); r.status != 200 || r.body["tokens_revoked_at"] == nil {
		t.Fatalf("PUT bob: %d %s", r.status, r.raw)
	}
	f("ErrRevokedAfterPut", "GET", "/v1/promoter/balance?program=shop", bob, "", 401, "unauthorized")
	f("FreshAfterPut", "GET", "/v1/promoter/balance?program=shop", fresh, "", 200, "")
	// A clock set back does not undo the revocation, and what it issues
	// still works.
	e.advance("-1000h")
	f("ErrRevokedClockBack", "GET", "/v1/promoter/balance?program=shop", older, "", 401, "unauthorized")
	back := e.promoterToken("bob", "1h")
	f("IssuedClockBack", "GET", "/v1/promoter/balance?program=shop", back, "", 200, "")
}

func TestPromoterCustomers(t *testing.T) {
	eachStore(t, testPromoterCustomers)
}

func testPromoterCustomers(t *testing.T, st store.Store) {
	e := newEnvWith(t, Config{Store: st, TestClock: true, Gatherer: prometheus.NewRegistry()})
	e.seedStorefront()
	if r := e.call("PUT", "/v1/admin/programs/shop", adminTok, `{"cookie_days":30,"protect_days":10,"associate_days":20,"allowed_hosts":["shop.example.com"],"rates":{"protected":0.3,"standard":0.25}}`); r.status != 200 {
		t.Fatal(r.raw)
	}
	bob, carol := e.promoterToken("bob", "8760h"), e.promoterToken("carol", "8760h")
	list := func(token string, limit string) []string {
		t.Helper()
		var out []string
		cursor := ""
		for range 20 {
			r := e.call("GET", "/v1/promoter/customers?program=shop&limit="+limit+"&cursor="+cursor, token, "")
			if r.status != 200 {
				t.Fatalf("customers: %d %s", r.status, r.raw)
			}
			for _, it := range items(t, r) {
				out = append(out, it["customer"].(string)+"/"+it["kind"].(string))
			}
			next, _ := r.body["next_cursor"].(string)
			if next == "" {
				return out
			}
			for _, id := range []string{"reg-alpha", "reg-bravo", "login-charlie"} {
				if strings.Contains(r.raw, id) {
					t.Errorf("a page shows customer %s whole: %s", id, r.raw)
				}
			}
			cursor = next
		}
		t.Fatal("the list does not end")
		return nil
	}
	same := func(what string, got []string, want ...string) {
		t.Helper()
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("%s: %v, want %v", what, got, want)
		}
	}
	e.bind("reg-alpha", "register", tok(e.token("shop", "bob", 30)))
	e.advance("1m")
	e.bind("reg-bravo", "register", tok(e.token("shop", "bob", 30)))
	e.advance("1m")
	e.bind("login-charlie", "login", tok(e.token("shop", "bob", 30)))
	same("bob's, a page each", list(bob, "1"), "lo***ie/standard", "re***vo/protected", "re***ha/protected")
	same("bob's", list(bob, "100"), "lo***ie/standard", "re***vo/protected", "re***ha/protected")
	same("carol's", list(carol, "100"))

	// An override moves a standard customer to carol; a protected one is
	// kept by bob.
	e.advance("1m")
	e.bind("login-charlie", "login", tok(e.token("shop", "carol", 30)))
	e.bind("reg-alpha", "login", tok(e.token("shop", "carol", 30)))
	same("bob's after the override", list(bob, "2"), "re***vo/protected", "re***ha/protected")
	same("carol's after the override", list(carol, "2"), "lo***ie/standard")

	// Erasure takes a customer out at once.
	if r := e.call("DELETE", "/v1/customers/reg-bravo", sfTok, ""); r.status != 204 {
		t.Fatalf("erase: %d %s", r.status, r.raw)
	}
	same("bob's after the erasure", list(bob, "1"), "re***ha/protected")

	// Expiry by the server's clock: the protection (10 days) ends first,
	// then the standard association (20 days).
	e.advance("241h")
	same("bob's after the protection", list(bob, "1"))
	same("carol's after the protection", list(carol, "1"), "lo***ie/standard")
	e.advance("240h")
	same("carol's after the association", list(carol, "1"))
}

// TestPromoterRevocationReachesInstances revokes on one instance and
// expects another, sharing the Redis store and watching its invalidation
// feed, to refuse the token within a second although it had the promoter
// cached.
func TestPromoterRevocationReachesInstances(t *testing.T) {
	srv := redistest.Start(t)
	open := func() *redisstore.Store {
		rs, err := redisstore.New(redisstore.Config{URL: srv.URL()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rs.Close() })
		return rs
	}
	a := newEnvWith(t, Config{Store: open(), Gatherer: prometheus.NewRegistry()})
	bst := open()
	b := newEnvWith(t, Config{Store: bst, Gatherer: prometheus.NewRegistry()})
	ctx, cancel := context.WithCancel(context.Background())
	watching := make(chan struct{})
	var once sync.Once
	done := make(chan struct{})
	go func() {
		defer close(done)
		bst.WatchInvalidations(ctx, func(inv store.Invalidation) {
			b.server.Invalidate(inv)
			once.Do(func() { close(watching) })
		})
	}()
	t.Cleanup(func() { cancel(); <-done })
	<-watching // the first call, Kind All, once subscribed
	a.seedStorefront()
	bob := a.promoterToken("bob", "1h")
	if r := b.call("GET", "/v1/promoter/balance?program=shop", bob, ""); r.status != 200 {
		t.Fatalf("the other instance: %d %s", r.status, r.raw)
	}
	if r := a.call("DELETE", "/v1/admin/promoters/bob/tokens", adminTok, ""); r.status != 204 {
		t.Fatal(r.raw)
	}
	start := time.Now()
	for {
		r := b.call("GET", "/v1/promoter/balance?program=shop", bob, "")
		if r.status == 401 {
			t.Logf("refused on the other instance %v after the revocation", time.Since(start).Round(time.Millisecond))
			break
		}
		if time.Since(start) > time.Second {
			t.Fatalf("the other instance still answers %d a second after the revocation", r.status)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if r := b.call("GET", "/v1/promoter/balance?program=shop", a.promoterToken("bob", "1h"), ""); r.status != 200 {
		t.Errorf("a token issued after the revocation, on the other instance: %d %s", r.status, r.raw)
	}
}
