package redirect

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/refgate/refgate/attribution"
)

// TestClickInactive: a paused link, or one past its expiry by the edge's
// clock, still answers 302 with the usual headers, to its expired URL when
// it has one (else its destination, where ?to= is honoured), but sets no
// cookie, keeps no visitor and is counted inactive, before any other
// classification and without using the address's budget.
func TestClickInactive(t *testing.T) {
	now := now0
	e := newEdge(t, func(c *Config) {
		c.Now = func() time.Time { return now }
		c.AttributionRate = 1 // burst 4
	})
	update := func(code string, fn func(l *attribution.Link)) {
		t.Helper()
		if _, err := e.st.UpdateLink(context.Background(), code, func(l *attribution.Link) error { fn(l); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	f := func(name string, r req, wantLoc string, wantOutcome attribution.Outcome) {
		t.Helper()
		n := len(e.q.clicks)
		resp := e.do(t, r)
		if resp.StatusCode() != 302 {
			t.Fatalf("%s: status %d", name, resp.StatusCode())
		}
		if got := string(resp.Header.Peek("Location")); got != wantLoc {
			t.Errorf("%s: Location %q, want %q", name, got, wantLoc)
		}
		for k, v := range map[string]string{"Cache-Control": "no-store", "Referrer-Policy": "strict-origin-when-cross-origin", "X-Robots-Tag": "noindex"} {
			if got := string(resp.Header.Peek(k)); got != v {
				t.Errorf("%s: %s %q, want %q", name, k, got, v)
			}
		}
		cs := setCookies(resp)
		if wantOutcome == attribution.OutcomeInactive && len(cs) != 0 {
			t.Errorf("%s: cookies %v, want none", name, cs)
		}
		if len(e.q.clicks) != n+1 {
			t.Fatalf("%s: %d clicks recorded, want 1", name, len(e.q.clicks)-n)
		}
		c := e.q.last(t)
		if c.Outcome != wantOutcome {
			t.Errorf("%s: outcome %q, want %q", name, c.Outcome, wantOutcome)
		}
		if wantOutcome == attribution.OutcomeInactive && (c.Visitor != "" || c.ID != "" || !c.ExpiresAt.IsZero()) {
			t.Errorf("%s: an inactive click keeps a visitor or a click id: %+v", name, c)
		}
	}
	const dest = "https://shop.example.com/landing?utm=x"
	waitFor := func(want bool) {
		t.Helper()
		deadline := time.Now().Add(time.Second)
		for {
			tg, err := e.cache.Lookup([]byte("shop1"))
			if err == nil && tg != nil && tg.Inactive(now.UnixNano()) == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("the link cache did not take the change within 1s")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	f("Active", req{uri: "/r/shop1"}, dest, attribution.OutcomeAttributed)

	update("shop1", func(l *attribution.Link) { l.Status = attribution.LinkPaused })
	waitFor(true)
	f("Paused", req{uri: "/r/shop1"}, dest, attribution.OutcomeInactive)
	f("PausedTo", req{uri: "/r/shop1?to=https://shop.example.com/other"}, "https://shop.example.com/other", attribution.OutcomeInactive)
	f("PausedBot", req{uri: "/r/shop1", headers: [][2]string{{"User-Agent", "Googlebot/2.1 (+http://www.google.com/bot.html)"}}}, dest, attribution.OutcomeInactive)
	f("PausedSelfClick", req{uri: "/r/shop1", remote: "203.0.113.7"}, dest, attribution.OutcomeInactive)
	// Many inactive clicks from one address use none of its budget.
	for range 10 {
		f("PausedFlood", req{uri: "/r/shop1", remote: "198.51.100.99"}, dest, attribution.OutcomeInactive)
	}

	update("shop1", func(l *attribution.Link) { l.ExpiredURL = "https://shop.example.com/ended" })
	deadline := time.Now().Add(time.Second)
	for {
		tg, _ := e.cache.Lookup([]byte("shop1"))
		if tg != nil && tg.expiredURL != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the expired URL did not reach the cache within 1s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	f("PausedExpiredURL", req{uri: "/r/shop1"}, "https://shop.example.com/ended", attribution.OutcomeInactive)
	f("PausedExpiredURLNoTo", req{uri: "/r/shop1?to=https://shop.example.com/other"}, "https://shop.example.com/ended", attribution.OutcomeInactive)

	// Active again, expiring an hour on: attributed until the clock gets
	// there, then inactive with no write at all.
	exp := now0.Add(time.Hour)
	update("shop1", func(l *attribution.Link) { l.Status, l.ExpiresAt = attribution.LinkActive, &exp })
	waitFor(false)
	f("BeforeExpiry", req{uri: "/r/shop1", remote: "198.51.100.99"}, dest, attribution.OutcomeAttributed)
	now = exp.Add(-time.Nanosecond)
	f("JustBeforeExpiry", req{uri: "/r/shop1"}, dest, attribution.OutcomeAttributed)
	now = exp
	f("AtExpiry", req{uri: "/r/shop1"}, "https://shop.example.com/ended", attribution.OutcomeInactive)

	// An expired URL whose host the program no longer allows is not
	// followed: the destination is.
	update("shop1", func(l *attribution.Link) { l.ExpiredURL = "https://evil.example.com/" })
	deadline = time.Now().Add(time.Second)
	for {
		tg, _ := e.cache.Lookup([]byte("shop1"))
		if tg != nil && tg.Link.ExpiredURL == "https://evil.example.com/" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the change did not reach the cache within 1s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	f("ExpiredURLNotAllowed", req{uri: "/r/shop1"}, dest, attribution.OutcomeInactive)

	if got := testutil.ToFloat64(e.h.cfg.Metrics.clicks[attribution.OutcomeInactive]); got != 18 {
		t.Errorf("refgate_clicks_total{outcome=inactive} = %v, want 18", got)
	}
}
