package store

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/refgate/refgate/attribution"
)

// TestClickBuckets: a batch's clicks grouped by program and day, the
// program's bucket first, each visitor held once, by the lowest bucket.
func TestClickBuckets(t *testing.T) {
	d1 := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	d2 := d1.Add(24 * time.Hour)
	A, Bot := attribution.OutcomeAttributed, attribution.OutcomeBot
	odd := attribution.Outcome("odd") // not in RecordedOutcomes
	click := func(program, promoter, link, visitor string, at time.Time, o attribution.Outcome) attribution.Click {
		return attribution.Click{Program: program, Promoter: promoter, Link: link, Visitor: visitor, At: at, Outcome: o}
	}
	got := ClickBuckets([]attribution.Click{
		click("shop", "alice", "la", "v1", d1, A),
		click("zoo", "bob", "lz", "v9", d1, A),
		click("shop", "alice", "la", "v2", d1.Add(time.Hour), A),
		click("shop", "alice", "lb", "", d1, Bot),
		click("shop", "", "ln", "v3", d1, A),         // a link of no promoter
		click("shop", "carol", "la", "v4", d1, A),    // la given to carol within the batch
		click("shop", "alice", "", "v5", d1, A),      // no link
		click("shop", "alice", "la", "v6", d2, odd),  // another day, an outcome of its own
		click("shop", "alice", "la", "v7", d2, Bot),  // a bot's visitor is none
		click("", "", "", "", time.Unix(-5, 0), Bot), // before 1970
	})
	cA, cBot, cOdd := ClickField(A), ClickField(Bot), ClickField(odd)
	p := ReportScope{Kind: 'p'}
	want := []ClickDay{
		{Program: "", Day: time.Unix(0, 0).UTC(), Latest: time.Unix(-5, 0), Buckets: []ClickBucket{
			{Scope: p, Counts: ReportCounts{cBot: 1}},
		}},
		{Program: "shop", Day: time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC), Latest: d1.Add(time.Hour), Buckets: []ClickBucket{
			{Scope: p, Counts: ReportCounts{cA: 5, cBot: 1}},
			{Scope: ReportScope{'a', "alice"}, Counts: ReportCounts{cA: 3, cBot: 1}, Visitors: []string{"v5"}},
			{Scope: ReportScope{'l', "la"}, Counts: ReportCounts{cA: 2}, Visitors: []string{"v1", "v2"}, Of: 1},
			{Scope: ReportScope{'l', "lb"}, Counts: ReportCounts{cBot: 1}, Of: 1},
			{Scope: ReportScope{'l', "ln"}, Counts: ReportCounts{cA: 1}, Visitors: []string{"v3"}},
			{Scope: ReportScope{'a', "carol"}, Counts: ReportCounts{cA: 1}},
			{Scope: ReportScope{'l', "la"}, Counts: ReportCounts{cA: 1}, Visitors: []string{"v4"}, Of: 5},
		}},
		{Program: "shop", Day: time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC), Latest: d2, Buckets: []ClickBucket{
			{Scope: p, Counts: ReportCounts{cOdd: 1, cBot: 1}},
			{Scope: ReportScope{'a', "alice"}, Counts: ReportCounts{cOdd: 1, cBot: 1}},
			{Scope: ReportScope{'l', "la"}, Counts: ReportCounts{cOdd: 1, cBot: 1}, Of: 1},
		}},
		{Program: "zoo", Day: time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC), Latest: d1, Buckets: []ClickBucket{
			{Scope: p, Counts: ReportCounts{cA: 1}},
			{Scope: ReportScope{'a', "bob"}, Counts: ReportCounts{cA: 1}},
			{Scope: ReportScope{'l', "lz"}, Counts: ReportCounts{cA: 1}, Visitors: []string{"v9"}, Of: 1},
		}},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("ClickBuckets (-want +got):\n%s", d)
	}
	var of []int
	got[1].VisitorsOf(6, func(j int) { of = append(of, j) })
	if d := cmp.Diff([]int{6, 5, 0}, of); d != "" {
		t.Errorf("VisitorsOf(la under carol) (-want +got):\n%s", d)
	}
}
