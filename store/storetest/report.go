package storetest

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/store"
)

var reportTests = []struct {
	name string
	fn   func(t *testing.T, s store.Store)
}{
	{"ReportClicks", testReportClicks},
	{"ReportBatchCountedOnce", testReportBatchOnce},
	{"ReportMonthVisitorsUnion", testReportMonthUnion},
	{"ReportCountOnce", testReportCountOnce},
	{"ReportCommission", testReportCommission},
	{"ReportBadQueries", testReportBadQueries},
	{"ReportLinkChangesPromoter", testReportLinkChangesPromoter},
	{"ReportManyBatches", testReportManyBatches},
	{"ReportLargeSums", testReportLargeSums},
}

// day0 is the first day of the report tests, a UTC midnight.
var day0 = time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC)

func reportClick(id, program, promoter, link, visitor string, at time.Time, o attribution.Outcome) attribution.Click {
	return attribution.Click{ID: id, Program: program, Promoter: promoter, Link: link, Visitor: visitor,
		At: at, ExpiresAt: at.Add(7 * 24 * time.Hour), Outcome: o}
}

// Report reads q and fails the test on an error.
func Report(t *testing.T, s store.Store, q store.ReportQuery) []store.ReportPeriod {
	t.Helper()
	got, err := s.Report(ctx(t), q)
	if err != nil {
		t.Fatalf("Report(%+v): %v", q, err)
	}
	return got
}

func period(date string, visitors int64, counts store.ReportCounts) store.ReportPeriod {
	if counts == nil {
		counts = store.ReportCounts{}
	}
	return store.ReportPeriod{Date: date, Counts: counts, Visitors: visitors}
}

func testReportClicks(t *testing.T, s store.Store) {
	c := ctx(t)
	d1, d2 := day0.Add(10*time.Hour), day0.Add(24*time.Hour+23*time.Hour)
	A, Bot, Inactive := attribution.OutcomeAttributed, attribution.OutcomeBot, attribution.OutcomeInactive
	batch := []attribution.Click{
		reportClick("c1", "shop", "alice", "la", "v1", d1, A),
		reportClick("c2", "shop", "alice", "la", "v1", d1, A), // the same visitor again
		reportClick("c3", "shop", "alice", "la2", "v2", d1, A),
		reportClick("c4", "shop", "bob", "lb", "", d1, Bot),
		reportClick("c5", "shop", "bob", "lb", "v3", d2, A),
		reportClick("c6", "shop", "bob", "lb", "v4", d2, Inactive), // no visitor counted
		reportClick("c7", "other", "alice", "lo", "v1", d1, A),     // another program
	}
	if err := s.RecordClicks(c, "rb1", batch); err != nil {
		t.Fatal(err)
	}
	q := store.ReportQuery{Program: "shop", From: day0, To: day0.AddDate(0, 0, 2)}
	cA, cBot, cIn := store.ClickField(A), store.ClickField(Bot), store.ClickField(Inactive)
	f := func(name string, q store.ReportQuery, want []store.ReportPeriod) {
		t.Helper()
		if d := cmp.Diff(want, Report(t, s, q)); d != "" {
			t.Errorf("%s (-want +got):\n%s", name, d)
		}
	}
	f("program by day", q, []store.ReportPeriod{
		period("2026-11-29", 2, store.ReportCounts{cA: 3, cBot: 1}),
		period("2026-11-30", 1, store.ReportCounts{cA: 1, cIn: 1}),
		period("2026-12-01", 0, nil),
	})
	q.Month = true
	f("program by month", q, []store.ReportPeriod{
		period("2026-11", 3, store.ReportCounts{cA: 4, cBot: 1, cIn: 1}),
		period("2026-12", 0, nil),
	})
	q.Month = false
	q.Promoter = "alice"
	f("promoter", q, []store.ReportPeriod{
		period("2026-11-29", 2, store.ReportCounts{cA: 3}),
		period("2026-11-30", 0, nil),
		period("2026-12-01", 0, nil),
	})
	q.Promoter, q.Link = "", "lb"
	f("link", q, []store.ReportPeriod{
		period("2026-11-29", 0, store.ReportCounts{cBot: 1}),
		period("2026-11-30", 1, store.ReportCounts{cA: 1, cIn: 1}),
		period("2026-12-01", 0, nil),
	})
	f("other program", store.ReportQuery{Program: "other", From: day0, To: day0},
		[]store.ReportPeriod{period("2026-11-29", 1, store.ReportCounts{cA: 1})})
	f("unknown program", store.ReportQuery{Program: "nope", From: day0, To: day0},
		[]store.ReportPeriod{period("2026-11-29", 0, nil)})
}

func testReportBatchOnce(t *testing.T, s store.Store) {
	c := ctx(t)
	at := day0.Add(time.Hour)
	batch := []attribution.Click{
		reportClick("c1", "shop", "alice", "la", "v1", at, attribution.OutcomeAttributed),
		reportClick("c2", "other", "bob", "lb", "v2", at, attribution.OutcomeBot),
	}
	for range 3 { // the batcher's retries: one id
		if err := s.RecordClicks(c, "rb-once", batch); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.RecordClicks(c, "rb-next", batch[:1]); err != nil {
		t.Fatal(err)
	}
	q := store.ReportQuery{Program: "shop", Link: "la", From: day0, To: day0}
	want := []store.ReportPeriod{period("2026-11-29", 1, store.ReportCounts{store.ClickField(attribution.OutcomeAttributed): 2})}
	if d := cmp.Diff(want, Report(t, s, q)); d != "" {
		t.Errorf("a batch sent three times, then another (-want +got):\n%s", d)
	}
	q = store.ReportQuery{Program: "other", From: day0, To: day0}
	want = []store.ReportPeriod{period("2026-11-29", 0, store.ReportCounts{store.ClickField(attribution.OutcomeBot): 1})}
	if d := cmp.Diff(want, Report(t, s, q)); d != "" {
		t.Errorf("the batch's other program (-want +got):\n%s", d)
	}
}

func testReportMonthUnion(t *testing.T, s store.Store) {
	c := ctx(t)
	// v1 on three days, v2 on two, v3 on one: 6 day-visitors, 3 distinct.
	days := map[int][]string{0: {"v1", "v2"}, 1: {"v1"}, 2: {"v1", "v2", "v3"}}
	for d, vs := range days {
		var batch []attribution.Click
		for i, v := range vs {
			batch = append(batch, reportClick(fmt.Sprint("c", d, i), "shop", "alice", "la", v, day0.AddDate(0, 0, d).Add(time.Hour), attribution.OutcomeAttributed))
		}
		if err := s.RecordClicks(c, fmt.Sprint("ru", d), batch); err != nil {
			t.Fatal(err)
		}
	}
	got := Report(t, s, store.ReportQuery{Program: "shop", Promoter: "alice", From: day0, To: day0.AddDate(0, 0, 2), Month: true})
	a := store.ClickField(attribution.OutcomeAttributed)
	want := []store.ReportPeriod{period("2026-11", 2, store.ReportCounts{a: 3}), period("2026-12", 3, store.ReportCounts{a: 3})}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("months: visitors are a union (-want +got):\n%s", d)
	}
	// A month only partly inside the range sums the days inside.
	got = Report(t, s, store.ReportQuery{Program: "shop", From: day0.AddDate(0, 0, 1), To: day0.AddDate(0, 0, 2), Month: true})
	want = []store.ReportPeriod{period("2026-11", 1, store.ReportCounts{a: 1}), period("2026-12", 3, store.ReportCounts{a: 3})}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("a month cut by from (-want +got):\n%s", d)
	}
}

func testReportCountOnce(t *testing.T, s store.Store) {
	c := ctx(t)
	at := day0.Add(5 * time.Hour)
	counts := store.ReportCounts{store.BindField(attribution.DecisionCreated): 1}
	for range 3 {
		if err := s.CountReport(c, "d-1", "shop", "alice", "la", at, counts); err != nil {
			t.Fatal(err)
		}
	}
	conv := store.ReportCounts{store.ConversionField(attribution.ReasonNoAssociation): 1, store.FieldCash: 9900}
	if err := s.CountReport(c, "d-2", "shop", "", "", at, conv); err != nil {
		t.Fatal(err)
	}
	if err := s.CountReport(c, "", "shop", "", "", at, conv); err == nil {
		t.Error("CountReport with no id: no error")
	}
	f := func(q store.ReportQuery, want store.ReportCounts) {
		t.Helper()
		q.Program, q.From, q.To = "shop", day0, day0
		if d := cmp.Diff([]store.ReportPeriod{period("2026-11-29", 0, want)}, Report(t, s, q)); d != "" {
			t.Errorf("%+v (-want +got):\n%s", q, d)
		}
	}
	all := store.ReportCounts{store.BindField(attribution.DecisionCreated): 1,
		store.ConversionField(attribution.ReasonNoAssociation): 1, store.FieldCash: 9900}
	f(store.ReportQuery{}, all)
	f(store.ReportQuery{Promoter: "alice"}, counts)
	f(store.ReportQuery{Link: "la"}, counts)
	f(store.ReportQuery{Promoter: "bob"}, nil)
}

func testReportCommission(t *testing.T, s store.Store) {
	c := ctx(t)
	at := day0.Add(3 * time.Hour)
	acc := Accrual("alice", "o1", 3000, at)
	acc.Link = "la"
	Post(t, s, acc)
	again := *acc
	if _, created, err := s.PostEntry(c, &again, ""); err != nil || created {
		t.Fatalf("posting again: created %v, %v", created, err)
	}
	rev := Reversal("alice", "o1", "r1", -1000, at.Add(24*time.Hour))
	rev.Link = "la"
	Post(t, s, rev)
	Post(t, s, Adjustment("alice", "adj1", -500, "CNY", at))
	Post(t, s, Adjustment("bob", "adj2", 700, "CNY", at))
	f := func(q store.ReportQuery, want ...int64) {
		t.Helper()
		q.Program, q.From, q.To = "shop", day0, day0.AddDate(0, 0, 1)
		got := Report(t, s, q)
		var ws []store.ReportPeriod
		for i, w := range want {
			var counts store.ReportCounts
			if w != 0 {
				counts = store.ReportCounts{store.FieldCommission: w}
			}
			ws = append(ws, period(day0.AddDate(0, 0, i).Format(time.DateOnly), 0, counts))
		}
		if d := cmp.Diff(ws, got); d != "" {
			t.Errorf("commission of %+v (-want +got):\n%s", q, d)
		}
	}
	f(store.ReportQuery{}, 3000-500+700, -1000)
	f(store.ReportQuery{Promoter: "alice"}, 2500, -1000)
	f(store.ReportQuery{Promoter: "bob"}, 700, 0)
	f(store.ReportQuery{Link: "la"}, 3000, -1000)
}

func testReportBadQueries(t *testing.T, s store.Store) {
	c := ctx(t)
	for name, q := range map[string]store.ReportQuery{
		"PromoterAndLink": {Program: "shop", Promoter: "a", Link: "l", From: day0, To: day0},
		"FromAfterTo":     {Program: "shop", From: day0.AddDate(0, 0, 1), To: day0},
		"TooLong":         {Program: "shop", From: day0, To: day0.AddDate(0, 0, store.MaxReportDays)},
		"NotMidnight":     {Program: "shop", From: day0.Add(time.Hour), To: day0.AddDate(0, 0, 1)},
	} {
		if _, err := s.Report(c, q); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	q := store.ReportQuery{Program: "shop", From: day0, To: day0.AddDate(0, 0, store.MaxReportDays-1)}
	if got := Report(t, s, q); len(got) != store.MaxReportDays {
		t.Errorf("%d days: %d periods", store.MaxReportDays, len(got))
	}
}

// testReportLinkChangesPromoter: a link given to another promoter within
// one batch counts each click, and its visitor, for the promoter it had.
func testReportLinkChangesPromoter(t *testing.T, s store.Store) {
	c := ctx(t)
	at := day0.Add(time.Hour)
	A := attribution.OutcomeAttributed
	batch := []attribution.Click{
		reportClick("c1", "shop", "carol", "lc", "v1", at, A),
		reportClick("c2", "shop", "dave", "lc", "v2", at, A),
		reportClick("c3", "shop", "dave", "lc", "v3", at, A),
		reportClick("c4", "shop", "", "ln", "v4", at, A), // a link of no promoter
	}
	if err := s.RecordClicks(c, "rb-move", batch); err != nil {
		t.Fatal(err)
	}
	cA := store.ClickField(A)
	for _, tc := range []struct {
		q    store.ReportQuery
		want store.ReportPeriod
	}{
		{store.ReportQuery{}, period("2026-11-29", 4, store.ReportCounts{cA: 4})},
		{store.ReportQuery{Promoter: "carol"}, period("2026-11-29", 1, store.ReportCounts{cA: 1})},
		{store.ReportQuery{Promoter: "dave"}, period("2026-11-29", 2, store.ReportCounts{cA: 2})},
		{store.ReportQuery{Link: "lc"}, period("2026-11-29", 3, store.ReportCounts{cA: 3})},
		{store.ReportQuery{Link: "ln"}, period("2026-11-29", 1, store.ReportCounts{cA: 1})},
	} {
		tc.q.Program, tc.q.From, tc.q.To = "shop", day0, day0
		if d := cmp.Diff([]store.ReportPeriod{tc.want}, Report(t, s, tc.q)); d != "" {
			t.Errorf("%+v (-want +got):\n%s", tc.q, d)
		}
	}
}

// testReportManyBatches sends more batches than a store may keep
// unmerged, reading the report between them: every read counts every
// batch written before it, once.
func testReportManyBatches(t *testing.T, s store.Store) {
	c := ctx(t)
	A, Bot := attribution.OutcomeAttributed, attribution.OutcomeBot
	const batches, links = 300, 8
	q := store.ReportQuery{Program: "shop", From: day0, To: day0.AddDate(0, 0, 1), Month: true}
	for i := range batches {
		var batch []attribution.Click
		for l := range links {
			at := day0.Add(time.Duration(i*links+l) * time.Second)
			if l%2 == 1 {
				at = at.Add(24 * time.Hour) // the next day
			}
			batch = append(batch,
				reportClick(fmt.Sprint("c", i, "-", l), "shop", fmt.Sprint("p", l%3), fmt.Sprint("l", l), fmt.Sprint("v", i%50), at, A),
				reportClick(fmt.Sprint("b", i, "-", l), "shop", fmt.Sprint("p", l%3), fmt.Sprint("l", l), "", at, Bot))
		}
		if err := s.RecordClicks(c, fmt.Sprint("many-", i), batch); err != nil {
			t.Fatal(err)
		}
		if i%37 == 0 || i == batches-1 {
			n := int64(i+1) * links
			want := []store.ReportPeriod{period("2026-11", int64(min(i+1, 50)), store.ReportCounts{
				store.ClickField(A): n, store.ClickField(Bot): n})}
			if d := cmp.Diff(want, Report(t, s, q), approxVisitors); d != "" {
				t.Fatalf("after batch %d (-want +got):\n%s", i, d)
			}
		}
	}
	q.Month, q.To, q.Link = false, day0, "l2"
	want := []store.ReportPeriod{period("2026-11-29", 50, store.ReportCounts{store.ClickField(A): batches, store.ClickField(Bot): batches})}
	if d := cmp.Diff(want, Report(t, s, q), approxVisitors); d != "" {
		t.Errorf("one link's day (-want +got):\n%s", d)
	}
}

// approxVisitors compares visitor estimates within 2 %.
var approxVisitors = cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".Visitors" },
	cmp.Comparer(func(a, b int64) bool { return math.Abs(float64(a-b)) <= 0.02*math.Max(float64(a), float64(b)) }))

// VisitorsAccuracy sends 10,000 distinct visitors, each twice, through
// RecordClicks on an empty store and wants the day's visitors within 2 %
// of 10,000, for the program, the promoter and the link, and for the
// month. Each store runs it as TestReportVisitorsAccuracy.
func VisitorsAccuracy(t *testing.T, s store.Store) {
	c := ctx(t)
	const n, per = 10000, 500
	for round := range 2 {
		for i := 0; i < n; i += per {
			batch := make([]attribution.Click, 0, per)
			for j := i; j < i+per; j++ {
				batch = append(batch, reportClick(fmt.Sprint("c", j), "shop", "alice", "la",
					fmt.Sprintf("visitor-%06d", j), day0.Add(time.Duration(j)*time.Second), attribution.OutcomeAttributed))
			}
			if err := s.RecordClicks(c, fmt.Sprint("acc-", round, "-", i), batch); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, q := range []store.ReportQuery{{}, {Promoter: "alice"}, {Link: "la"}, {Month: true}} {
		q.Program, q.From, q.To = "shop", day0, day0
		got := Report(t, s, q)
		v := got[0].Visitors
		t.Logf("%+v: %d visitors estimated for %d", q, v, n)
		if math.Abs(float64(v-n))/n > 0.02 {
			t.Errorf("%+v: %d visitors, want %d ± 2 %%", q, v, n)
		}
		if clicks := got[0].Counts[store.ClickField(attribution.OutcomeAttributed)]; clicks != 2*n {
			t.Errorf("%+v: %d clicks, want %d", q, clicks, 2*n)
		}
	}
}

// testReportLargeSums adds sums far past what a double holds exactly, and
// many that together pass it: every unit counts.
func testReportLargeSums(t *testing.T, s store.Store) {
	c := ctx(t)
	at := day0.Add(time.Hour)
	counts := []int64{1<<62 + 1, -(1<<61 + 3), 1<<53 - 1, 1<<53 - 1, 1, 1<<53 + 1, 7}
	var want int64
	for i, n := range counts {
		if err := s.CountReport(c, fmt.Sprint("big-", i), "shop", "", "", at, store.ReportCounts{store.FieldCash: n}); err != nil {
			t.Fatal(err)
		}
		want += n
	}
	got := Report(t, s, store.ReportQuery{Program: "shop", From: day0, To: day0})
	if n := got[0].Counts[store.FieldCash]; n != want {
		t.Errorf("cash %d, want %d (off by %d)", n, want, n-want)
	}
}
