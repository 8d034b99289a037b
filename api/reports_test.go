package api

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/internal/redistest"
	"github.com/refgate/refgate/store"
	"github.com/refgate/refgate/store/redisstore"
)

// zeroPoint is a report point of date with every count 0, then set.
func zeroPoint(date string, set func(p *ReportPoint)) ReportPoint {
	p := reportPoint(store.ReportPeriod{Date: date, Counts: store.ReportCounts{}})
	if set != nil {
		set(&p)
	}
	return p
}

func (e *env) report(query string) []ReportPoint {
	e.t.Helper()
	r := e.call("GET", "/v1/admin/reports?"+query, adminTok, "")
	if r.status != 200 {
		e.t.Fatalf("report %s: %d %s", query, r.status, r.raw)
	}
	var a ReportAnswer
	if err := json.Unmarshal([]byte(r.raw), &a); err != nil {
		e.t.Fatal(err)
	}
	return a.Series
}

// TestReports walks clicks, binds, conversions, a refund and an adjustment
// over two days, replaying each request, and reads the program's, a
// promoter's and a link's series by day and by month, as JSON and CSV, on
// the embedded store and on Redis.
func TestReports(t *testing.T) {
	t.Run("Embedded", func(t *testing.T) { reportWalk(t, newEnv(t, true)) })
	t.Run("Redis", func(t *testing.T) {
		srv := redistest.Start(t)
		rs, err := redisstore.New(redisstore.Config{URL: srv.URL()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rs.Close() })
		reportWalk(t, newEnvWith(t, Config{Store: rs, TestClock: true, Gatherer: prometheus.NewRegistry()}))
	})
}

func reportWalk(t *testing.T, e *env) {
	e.seedStorefront()
	if r := e.call("POST", "/v1/admin/test-clock", adminTok, `{"set":"2026-11-30T10:00:00Z"}`); r.status != 200 {
		t.Fatal(r.raw)
	}
	now := e.clock.Now()
	ctx := context.Background()
	bobTok := e.token("shop", "bob", 30) // creates link l-bob
	A, Bot, Inactive := attribution.OutcomeAttributed, attribution.OutcomeBot, attribution.OutcomeInactive
	var clicks []attribution.Click
	for i, c := range []struct {
		visitor string
		o       attribution.Outcome
	}{{"v1", A}, {"v2", A}, {"v2", A}, {"", Bot}, {"v3", Inactive}} {
		clicks = append(clicks, attribution.Click{ID: "k" + string(rune('0'+i)), Program: "shop", Promoter: "bob", Link: "l-bob",
			Visitor: c.visitor, At: now, ExpiresAt: now.Add(30 * 24 * time.Hour), Outcome: c.o})
	}
	for range 2 { // the batcher's retry
		if err := e.st.RecordClicks(ctx, "rb1", clicks); err != nil {
			t.Fatal(err)
		}
	}
	twice := func(method, path, body string, want int) {
		t.Helper()
		for i := range 2 {
			if r := e.call(method, path, sfTok, body); r.status != want {
				t.Fatalf("%s %s (%d): %d %s", method, path, i, r.status, r.raw)
			}
		}
	}
	twice("POST", "/v1/bind", `{"program":"shop","customer":"c1","event":"register","token":"`+bobTok+`"}`, 200)
	twice("POST", "/v1/bind", `{"program":"shop","customer":"c2","event":"register","token":"`+tamper(bobTok)+`"}`, 200)
	twice("POST", "/v1/conversions", `{"program":"shop","order":"o1","customer":"c1","amount":10000,"currency":"CNY","product":"cvm","prepaid":true}`, 200)
	twice("POST", "/v1/conversions", `{"program":"shop","order":"o2","customer":"c9","amount":500,"currency":"CNY","product":"cvm","prepaid":true}`, 200)

	e.advance("24h") // 2026-12-01
	twice("POST", "/v1/conversions/o1/refunds", `{"refund":"rf1","amount":5000}`, 200)
	for range 2 {
		if r := e.call("POST", "/v1/admin/ledger/adjustments", adminTok, `{"id":"adj1","program":"shop","promoter":"bob","amount":-200,"currency":"CNY","reason":"goodwill"}`); r.status/100 != 2 {
			t.Fatalf("adjustment: %d %s", r.status, r.raw)
		}
	}

	day1 := func(p *ReportPoint) {
		p.Clicks["attributed"], p.Clicks["bot"], p.Clicks["inactive"] = 3, 1, 1
		p.Visitors = 2
		p.Binds["created"] = 1
		p.Conversions["attributed"] = 1
		p.Cash, p.Commission = 10000, 3000
	}
	f := func(query string, want []ReportPoint) {
		t.Helper()
		if d := cmp.Diff(want, e.report(query)); d != "" {
			t.Errorf("%s (-want +got):\n%s", query, d)
		}
	}
	const days = "&from=2026-11-29&to=2026-12-02"
	f("program=shop"+days, []ReportPoint{
		zeroPoint("2026-11-29", nil),
		zeroPoint("2026-11-30", func(p *ReportPoint) {
			day1(p)
			p.Binds["rejected"] = 1 // token_invalid: no click, the program's alone
			p.Conversions["no_association"] = 1
			p.Cash += 500
		}),
		zeroPoint("2026-12-01", func(p *ReportPoint) { p.Refunded, p.Commission = 5000, -1500-200 }),
		zeroPoint("2026-12-02", nil),
	})
	f("program=shop&promoter=bob"+days, []ReportPoint{
		zeroPoint("2026-11-29", nil),
		zeroPoint("2026-11-30", day1),
		zeroPoint("2026-12-01", func(p *ReportPoint) { p.Refunded, p.Commission = 5000, -1500-200 }),
		zeroPoint("2026-12-02", nil),
	})
	f("program=shop&link=l-bob"+days, []ReportPoint{
		zeroPoint("2026-11-29", nil),
		zeroPoint("2026-11-30", day1),
		zeroPoint("2026-12-01", func(p *ReportPoint) { p.Refunded, p.Commission = 5000, -1500 }), // the adjustment has no link
		zeroPoint("2026-12-02", nil),
	})
	f("program=shop&promoter=carol"+days+"&interval=day", []ReportPoint{
		zeroPoint("2026-11-29", nil), zeroPoint("2026-11-30", nil), zeroPoint("2026-12-01", nil), zeroPoint("2026-12-02", nil),
	})
	f("program=shop&promoter=bob"+days+"&interval=month", []ReportPoint{
		zeroPoint("2026-11", day1),
		zeroPoint("2026-12", func(p *ReportPoint) { p.Refunded, p.Commission = 5000, -1700 }),
	})
	f("program=shop&link=l-bob&from=2026-12-01&to=2026-12-01&interval=month", []ReportPoint{
		zeroPoint("2026-12", func(p *ReportPoint) { p.Refunded, p.Commission = 5000, -1500 }),
	})

	// CSV: a header row, then one row per day.
	body := e.get("http://api/v1/admin/reports?program=shop&promoter=bob"+days, adminTok, "text/csv")
	rows, err := csv.NewReader(strings.NewReader(body)).ReadAll()
	if err != nil {
		t.Fatalf("CSV: %v\n%s", err, body)
	}
	if len(rows) != 5 || strings.Join(rows[0], ",") != "date,clicks_attributed,clicks_bot,clicks_suspect,clicks_self_click,clicks_rate_limited,clicks_inactive,clicks_gpc,visitors,"+
		"binds_created,binds_renewed,binds_overridden,binds_kept,binds_rejected,conversions_attributed,conversions_zero_amount,conversions_agent_served,"+
		"conversions_no_association,conversions_same_person,conversions_promoter_suspended,conversions_repeat_purchase,conversions_not_prepaid,"+
		"conversions_product_not_eligible,cash,commission,refunded" {
		t.Fatalf("CSV:\n%s", body)
	}
	if got := strings.Join(rows[2], ","); got != "2026-11-30,3,1,0,0,0,1,0,2,1,0,0,0,0,1,0,0,0,0,0,0,0,0,10000,3000,0" {
		t.Errorf("CSV row of 2026-11-30: %s", got)
	}
	if got := strings.Join(rows[3], ","); got != "2026-12-01,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,-1700,5000" {
		t.Errorf("CSV row of 2026-12-01: %s", got)
	}

	bad := func(name, query, token string, status int) {
		t.Helper()
		r := e.call("GET", "/v1/admin/reports?"+query, token, "")
		if r.status != status || r.errCode() == "" {
			t.Errorf("%s: %d %s, want %d with an error", name, r.status, r.raw, status)
		}
	}
	bad("ErrPromoterAndLink", "program=shop&promoter=bob&link=l-bob"+days, adminTok, 422)
	bad("ErrBadFrom", "program=shop&from=2026-11-31&to=2026-12-02", adminTok, 422)
	bad("ErrBadTo", "program=shop&from=2026-11-01&to=yesterday", adminTok, 422)
	bad("ErrNoDates", "program=shop", adminTok, 422)
	bad("ErrFromAfterTo", "program=shop&from=2026-12-02&to=2026-12-01", adminTok, 422)
	bad("ErrTooManyDays", "program=shop&from=2024-01-01&to=2026-12-01", adminTok, 422)
	bad("ErrInterval", "program=shop&interval=week"+days, adminTok, 422)
	bad("ErrNoProgram", "from=2026-11-01&to=2026-11-02", adminTok, 422)
	bad("ErrUnknownProgram", "program=nope"+days, adminTok, 404)
	bad("ErrBadPromoter", "program=shop&promoter=a%20b"+days, adminTok, 422)
	bad("ErrStorefrontToken", "program=shop"+days, sfTok, 403)
	if got := e.report("program=shop&from=2024-03-07&to=2026-12-01"); len(got) != 1000 {
		t.Errorf("1000 days: %d points", len(got))
	}
}
