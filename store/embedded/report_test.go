package embedded

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	bolt "go.etcd.io/bbolt"

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

// TestReportVisitorsWritten: the visitors kept in memory reach the file
// within a second of batches (what a crash keeps) and at Close (what a
// restart reads), and reads see them at once.
func TestReportVisitorsWritten(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	at := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)
	wall := at
	s, err := New(Config{Dir: dir, SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	s.now = func() time.Time { return wall }
	v := 0
	record := func(n int) {
		t.Helper()
		clicks := make([]attribution.Click, n)
		for i := range clicks {
			v++
			clicks[i] = attribution.Click{ID: fmt.Sprint("c", v), Program: "p", Promoter: "a", Link: "l", Visitor: fmt.Sprint("v", v),
				At: at, ExpiresAt: at.Add(time.Hour), Outcome: attribution.OutcomeAttributed}
		}
		if err := s.RecordClicks(ctx, fmt.Sprint("b", v), clicks); err != nil {
			t.Fatal(err)
		}
	}
	day := store.DayStart(at)
	q := store.ReportQuery{Program: "p", Link: "l", From: day, To: day}
	visitors := func(s *Store) int64 {
		t.Helper()
		got, err := s.Report(ctx, q)
		if err != nil || len(got) != 1 {
			t.Fatal(got, err)
		}
		return got[0].Visitors
	}
	// inFile is what a crash would leave: the sketch as written.
	inFile := func() int64 {
		t.Helper()
		var n int64
		err := s.db.View(func(tx *bolt.Tx) error {
			v := tx.Bucket(bReports).Get(visitorsKey(reportKey("p", day, store.ReportScope{Kind: 'l', ID: "l"})))
			sk, err := decodeSketch(v)
			n = int64(sk.Estimate())
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	record(100)
	if got, file := visitors(s), inFile(); got != 100 || file != 0 {
		t.Fatalf("after a batch: %d visitors read, %d in the file; want 100, 0", got, file)
	}
	wall = wall.Add(sketchWriteEvery)
	record(100)
	if got, file := visitors(s), inFile(); got != 200 || file != 200 {
		t.Fatalf("a second later: %d visitors read, %d in the file; want 200, 200", got, file)
	}
	record(50)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := New(Config{Dir: dir, SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if got := visitors(s2); got != 250 {
		t.Errorf("after a restart: %d visitors, want 250", got)
	}
}

// TestReportVisitorsEvicted: sketches that leave the memory bound are
// written and read back from the file.
func TestReportVisitorsEvicted(t *testing.T) {
	defer func(n int) { maxCachedSketches = n }(maxCachedSketches)
	maxCachedSketches = 4
	ctx := context.Background()
	s := open(t, t.TempDir())
	at := time.Now().UTC()
	for l := range 10 {
		clicks := make([]attribution.Click, 20)
		for i := range clicks {
			clicks[i] = attribution.Click{ID: fmt.Sprint("c", l, "-", i), Program: "p", Promoter: "a", Link: fmt.Sprint("l", l),
				Visitor: fmt.Sprint("v", l, "-", i), At: at, ExpiresAt: at.Add(time.Hour), Outcome: attribution.OutcomeAttributed}
		}
		if err := s.RecordClicks(ctx, fmt.Sprint("b", l), clicks); err != nil {
			t.Fatal(err)
		}
		if n := len(s.sketches.m); n > maxCachedSketches {
			t.Fatalf("%d sketches in memory, want at most %d", n, maxCachedSketches)
		}
	}
	day := store.DayStart(at)
	for l := range 10 {
		got, err := s.Report(ctx, store.ReportQuery{Program: "p", Link: fmt.Sprint("l", l), From: day, To: day})
		if err != nil || len(got) != 1 || got[0].Visitors != 20 {
			t.Errorf("link l%d: %+v %v, want 20 visitors", l, got, err)
		}
	}
	got, err := s.Report(ctx, store.ReportQuery{Program: "p", From: day, To: day})
	if err != nil || len(got) != 1 || got[0].Visitors != 200 {
		t.Errorf("program: %+v %v, want 200 visitors", got, err)
	}
}

// TestReportDeltas: a batch's counts wait as one delta, which reads count
// at once; a batch a second later, or past maxDeltas, folds them into the
// day buckets; what waits at a crash is read after it, and Close folds.
func TestReportDeltas(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	at := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)
	wall := at
	s := open(t, dir)
	s.now = func() time.Time { return wall }
	n := 0
	record := func() {
		t.Helper()
		n++
		c := attribution.Click{ID: fmt.Sprint("c", n), Program: "p", Promoter: "a", Link: fmt.Sprint("l", n%3), Visitor: fmt.Sprint("v", n),
			At: at, ExpiresAt: at.Add(time.Hour), Outcome: attribution.OutcomeAttributed}
		if err := s.RecordClicks(ctx, fmt.Sprint("b", n), []attribution.Click{c}); err != nil {
			t.Fatal(err)
		}
	}
	deltas := func() int {
		t.Helper()
		var k int
		if err := s.db.View(func(tx *bolt.Tx) error { k = tx.Bucket(bReportDeltas).Stats().KeyN; return nil }); err != nil {
			t.Fatal(err)
		}
		return k
	}
	check := func(when string, wantDeltas int) {
		t.Helper()
		got, err := s.Report(ctx, store.ReportQuery{Program: "p", From: store.DayStart(at), To: store.DayStart(at)})
		if err != nil {
			t.Fatal(err)
		}
		if c := got[0].Counts[store.ClickField(attribution.OutcomeAttributed)]; c != int64(n) {
			t.Errorf("%s: %d clicks reported, want %d", when, c, n)
		}
		if d := deltas(); d != wantDeltas {
			t.Errorf("%s: %d deltas waiting, want %d", when, d, wantDeltas)
		}
	}
	record() // the first batch folds: none was folded yet
	check("first batch", 0)
	record()
	record()
	check("two batches within the second", 2)
	wall = wall.Add(foldEvery)
	record()
	check("a batch a second later", 0)
	for range maxDeltas {
		record()
	}
	check("maxDeltas batches", maxDeltas)
	record()
	check("one more", 0)
	record()
	record()
	// A crash: the process ends without Close (which the cleanup's call
	// skips).
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	close(s.stop)
	<-s.swept
	if err := s.db.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir)
	s.now = func() time.Time { return wall }
	check("after a crash", 2)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir)
	check("after Close", 0)
}
