package embedded

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/store"
	"github.com/refgate/refgate/store/storetest"
)

// TestReportVisitorsAccuracy: 10,000 visitors within 2 %.
func TestReportVisitorsAccuracy(t *testing.T) {
	storetest.VisitorsAccuracy(t, open(t, t.TempDir()))
}

// TestReportRetention: the sweeper deletes a report's day once the
// retention has passed since the day's end, and keeps the days after.
func TestReportRetention(t *testing.T) {
	ctx := context.Background()
	day0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	now := day0
	const retention = 10 * 24 * time.Hour
	s, err := New(Config{Dir: t.TempDir(), Now: func() time.Time { return now }, SweepInterval: -1, ReportRetention: retention})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	for i, at := range []time.Time{day0.Add(time.Hour), day0.Add(25 * time.Hour)} {
		c := attribution.Click{ID: "c", Program: "p", Promoter: "a", Link: "l", Visitor: "v", At: at,
			ExpiresAt: at.Add(time.Hour), Outcome: attribution.OutcomeAttributed}
		if err := s.RecordClicks(ctx, string(rune('a'+i)), []attribution.Click{c}); err != nil {
			t.Fatal(err)
		}
	}
	q := store.ReportQuery{Program: "p", From: day0, To: day0.AddDate(0, 0, 1)}
	clicks := func() []int64 {
		t.Helper()
		got, err := s.Report(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		var out []int64
		for _, p := range got {
			out = append(out, p.Counts[store.ClickField(attribution.OutcomeAttributed)])
		}
		return out
	}
	now = day0.Add(24*time.Hour + retention) // the first day's last moment kept
	if _, err := s.sweep(); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]int64{1, 1}, clicks()); d != "" {
		t.Errorf("within the retention (-want +got):\n%s", d)
	}
	now = now.Add(time.Second)
	n, err := s.sweep()
	if err != nil {
		t.Fatal(err)
	}
	if n[sweptReportDay] != 3 { // the program's, the promoter's and the link's
		t.Errorf("swept %v, want 3 report days", n)
	}
	if d := cmp.Diff([]int64{0, 1}, clicks()); d != "" {
		t.Errorf("past the retention (-want +got):\n%s", d)
	}
	if got := testutil.ToFloat64(s.m.swept[sweptReportDay]); got != 3 {
		t.Errorf("refgate_store_swept_total{record=report_day} = %v", got)
	}
}
