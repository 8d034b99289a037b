package api

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/internal/redistest"
	"github.com/refgate/refgate/store"
	"github.com/refgate/refgate/store/redisstore"
)

// TestRedisTTLs walks every kind of record through the API onto a real
// redis-server, then checks every key's TTL: none is longer than the
// window its record serves plus a week, and the keys kept for ever are the
// money records, the customers whose facts every later order depends on,
// and the configuration. A key of a kind the test does not know fails it:
// a new kind of record must be added here with its lifetime.
func TestRedisTTLs(t *testing.T) {
	srv := redistest.Start(t)
	rs, err := redisstore.New(redisstore.Config{URL: srv.URL()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rs.Close() })
	e := newEnvWith(t, Config{Store: rs, Gatherer: prometheus.NewRegistry()})
	e.seedStorefront()
	if r := e.call("PUT", "/v1/admin/programs/shop", adminTok, `{"cookie_days":30,"protect_days":20,"associate_days":45,"allowed_hosts":["shop.example.com"],"rates":{"protected":0.3,"standard":0.25}}`); r.status != 200 {
		t.Fatal(r.raw)
	}
	ctx := context.Background()
	now := time.Now()
	const day = 24 * time.Hour
	click := attribution.Click{ID: "k1", Program: "shop", Promoter: "bob", Link: "l-bob", Visitor: "v1", At: now,
		ExpiresAt: now.Add(30 * day), Outcome: attribution.OutcomeAttributed}
	if err := rs.RecordClicks(ctx, "batch-1", []attribution.Click{click}); err != nil {
		t.Fatal(err)
	}
	steps := []struct{ path, body string }{
		{"/v1/bind", `{"program":"shop","customer":"paid","event":"register","token":"` + e.token("shop", "bob", 30) + `"}`},
		{"/v1/conversions", `{"program":"shop","order":"o1","customer":"paid","amount":10000,"currency":"CNY","product":"cvm","prepaid":true}`},
		{"/v1/conversions/o1/refunds", `{"refund":"r1","amount":100}`},
		{"/v1/bind", `{"program":"shop","customer":"protected","event":"register","token":"` + e.token("shop", "carol", 30) + `"}`},
		{"/v1/bind", `{"program":"shop","customer":"standard","event":"login","token":"` + e.token("shop", "carol", 30) + `"}`},
		{"/v1/bind", `{"program":"shop","customer":"noclick","event":"register"}`},
		{"/v1/conversions", `{"program":"shop","order":"o2","customer":"free","amount":0,"currency":"CNY","product":"cvm","prepaid":true}`},
	}
	for _, s := range steps {
		if r := e.call("POST", s.path, sfTok, s.body); r.status != 200 {
			t.Fatalf("%s %s: %d %s", s.path, s.body, r.status, r.raw)
		}
	}
	if r := e.call("PUT", "/v1/customers/served", sfTok, `{"agent_served":true}`); r.status != 200 {
		t.Fatal(r.raw)
	}
	if r := e.call("PUT", "/v1/customers/known", sfTok, `{"fingerprints":{"emails":["k@example.com"]}}`); r.status != 200 {
		t.Fatal(r.raw)
	}

	// The lifetime each kind of key may have: for ever (0, 0), or a TTL
	// between least and most.
	type life struct{ least, most time.Duration }
	forever := life{}
	week := 7 * day
	retention := store.DefaultReportRetention
	lives := []struct {
		prefix string
		life
	}{
		{"refgate:program:", forever},
		{"refgate:promoter:", forever},
		{"refgate:link:", forever},
		{"refgate:index:", forever}, // the lists' indexes, as long as what they list
		{"refgate:linkstats:{l-bob}:b:", life{time.Minute, store.BatchKeep}},
		{"refgate:linkstats:", forever},
		{"refgate:visitor:{v1}:shop", life{30 * day, 30*day + week}},          // cookie window + 1 day
		{"refgate:clickuse:", life{30*day - time.Minute, 30*day + week}},      // token life + 1 day
		{"refgate:customer:{paid}", forever},                                  // paid: decides every later order
		{"refgate:decisions:{paid}:shop", forever},                            // with it
		{"refgate:decisionlogs:{paid}", forever},                              // the programs of its logs, with them
		{"refgate:customer:{served}", forever},                                // agent-served stays so
		{"refgate:customer:{protected}", life{20 * day, 20*day + week}},       // protect_days + 7 days
		{"refgate:decisions:{protected}:shop", life{20 * day, 20*day + week}}, // with it
		{"refgate:decisionlogs:{protected}", life{20 * day, 20*day + week}},   // the programs of its logs, with them
		{"refgate:customer:{standard}", life{45 * day, 45*day + week}},        // associate_days + 7 days
		{"refgate:decisions:{standard}:shop", life{45 * day, 45*day + week}},
		{"refgate:decisionlogs:{standard}", life{45 * day, 45*day + week}},          // the programs of its logs, with them
		{"refgate:customer:{noclick}", life{week, week + attribution.ReplayWindow}}, // nothing to keep but the retry memory
		{"refgate:decisions:{noclick}:shop", life{week, week + attribution.ReplayWindow}},
		{"refgate:decisionlogs:{noclick}", life{week, week + attribution.ReplayWindow}}, // the programs of its logs, with them
		{"refgate:customer:{free}", life{week - time.Minute, week}},                     // a 0-yuan order does not make it paid; the order keeps its answer
		{"refgate:decisions:{free}:shop", life{week - time.Minute, week}},
		{"refgate:decisionlogs:{free}", life{week - time.Minute, week}}, // the programs of its logs, with them
		{"refgate:customer:{known}", life{week - time.Minute, week}},    // fingerprints only
		{"refgate:holders:{shop:bob}", life{20 * day, 20*day + week}},   // bob's customers: the latest protection + 7 days
		{"refgate:holders:{shop:carol}", life{45 * day, 45*day + week}}, // carol's: the latest association + 7 days
		{"refgate:orders:", forever},                                    // money records
		{"refgate:order:", forever},
		{"refgate:{lg:shop}:rp:b:", life{time.Minute, store.BatchKeep}},           // a click batch counted in the reports
		{"refgate:{lg:shop}:rp:o:", life{time.Minute, store.BatchKeep}},           // a decision counted in the reports
		{"refgate:{lg:shop}:rp:f", life{0, time.Hour}},                            // the last fold of the reports' deltas was a moment ago (set below)
		{"refgate:{lg:shop}:rp:w", life{retention, retention + day}},              // deltas waiting for the next fold, as long as their days
		{"refgate:{lg:shop}:rp:", life{retention - time.Minute, retention + day}}, // a report day: its end + --report-retention
		{"refgate:{lg:shop}:rv:", life{retention - time.Minute, retention + day}}, // its visitors, with it
		{"refgate:{lg:shop}:", forever},                                           // the ledger: money records
	}
	// A report read folds the waiting deltas; then, as if a fold had just
	// run (the store's marker lives a quarter of a second, this one an
	// hour), the next batch's delta waits for the next fold, and the
	// list's TTL is checked too.
	if r := e.call("GET", "/v1/admin/reports?program=shop&from="+now.UTC().Format(time.DateOnly)+"&to="+now.UTC().Format(time.DateOnly), adminTok, ""); r.status != 200 {
		t.Fatal(r.raw)
	}
	if err := srv.Client().Set(ctx, "refgate:{lg:shop}:rp:f", "1", time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	click.ID = "k2"
	if err := rs.RecordClicks(ctx, "batch-2", []attribution.Click{click}); err != nil {
		t.Fatal(err)
	}
	keys, err := srv.Client().Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, k := range keys {
		ttl, err := srv.Client().PTTL(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		i := 0
		for i < len(lives) && !strings.HasPrefix(k, lives[i].prefix) {
			i++
		}
		if i == len(lives) {
			t.Errorf("key %s (TTL %v) is of no kind this test knows: add it with its lifetime", k, ttl)
			continue
		}
		seen[lives[i].prefix] = true
		l := lives[i].life
		switch {
		case l == forever && ttl != -1:
			t.Errorf("%s: TTL %v, want none", k, ttl)
		case l != forever && (ttl < l.least || ttl > l.most):
			t.Errorf("%s: TTL %v, want %v to %v", k, ttl.Round(time.Second), l.least, l.most)
		}
	}
	for _, l := range lives {
		if !seen[l.prefix] {
			t.Errorf("no key %s* to check", l.prefix)
		}
	}
	t.Logf("%d keys checked", len(keys))
}
