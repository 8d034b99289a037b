package redisstore

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"

	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/internal/redistest"
	"github.com/refgate/refgate/store"
	"github.com/refgate/refgate/store/storetest"
)

// roundTrips counts what a client sends: pipelines and single commands.
type roundTrips struct{ pipelines, commands atomic.Int64 }

func (h *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.commands.Add(1)
		return next(ctx, cmd)
	}
}

func (h *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.pipelines.Add(1)
		return next(ctx, cmds)
	}
}

// TestRecordClicksOneRoundTrip: a batch's report counts travel in the
// batch's one pipeline; no other command goes out, whatever the number of
// programs, promoters and links in it.
func TestRecordClicksOneRoundTrip(t *testing.T) {
	t.Run("Single", func(t *testing.T) { oneRoundTrip(t, open(t, redistest.Start(t))) })
	t.Run("Cluster", func(t *testing.T) { oneRoundTrip(t, openCluster(t, redistest.StartCluster(t, 3, 0))) })
}

// oneRoundTrip checks one pipeline per batch (on a cluster, go-redis
// splits it into one per node, in parallel).
func oneRoundTrip(t *testing.T, s *Store) {
	ctx := context.Background()
	batch := benchBatch()
	for i := range batch {
		if i%3 == 0 {
			batch[i].Program = "other"
		}
	}
	if err := s.RecordClicks(ctx, "warm", batch); err != nil { // loads the scripts
		t.Fatal(err)
	}
	var h roundTrips
	s.rdb.AddHook(&h)
	if err := s.RecordClicks(ctx, "b1", batch); err != nil {
		t.Fatal(err)
	}
	if p, c := h.pipelines.Load(), h.commands.Load(); p != 1 || c != 0 {
		t.Errorf("RecordClicks sent %d pipelines and %d commands, want 1 and 0", p, c)
	}
	got, err := s.Report(ctx, store.ReportQuery{Program: "shop", From: store.DayStart(batch[0].At), To: store.DayStart(batch[0].At)})
	if err != nil {
		t.Fatal(err)
	}
	want := int64(0)
	for _, c := range batch {
		if c.Program == "shop" {
			want++
		}
	}
	var n int64
	for _, v := range got[0].Counts {
		n += v
	}
	if n != 2*want {
		t.Errorf("two batches: %d clicks of shop, want %d", n, 2*want)
	}
}

// TestReportVisitorsAccuracy: 10,000 visitors within 2 %, on a single
// node and on a cluster.
func TestReportVisitorsAccuracy(t *testing.T) {
	t.Run("Single", func(t *testing.T) { storetest.VisitorsAccuracy(t, open(t, redistest.Start(t))) })
	t.Run("Cluster", func(t *testing.T) {
		storetest.VisitorsAccuracy(t, openCluster(t, redistest.StartCluster(t, 3, 0)))
	})
}

// TestReportKeys: report days share the ledger's slot and expire at the
// day's end plus the retention, counted from the write's time; the batch
// and count markers after store.BatchKeep; waiting deltas a day past the
// retention, and none is left once Report has folded them.
func TestReportKeys(t *testing.T) {
	srv := redistest.Start(t)
	const retention = 10 * 24 * time.Hour
	s, err := New(Config{URL: srv.URL(), ReportRetention: retention})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx := context.Background()
	admin := srv.Client()
	// A fold a moment ago: the deltas wait.
	if err := admin.Set(ctx, "refgate:{lg:shop}:rp:f", "1", time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 1, 18, 0, 0, 0, time.UTC)
	c := attribution.Click{ID: "c1", Program: "shop", Promoter: "alice", Link: "la", Visitor: "v1", At: at,
		ExpiresAt: at.Add(time.Hour), Outcome: attribution.OutcomeAttributed}
	if err := s.RecordClicks(ctx, "b1", []attribution.Click{c}); err != nil {
		t.Fatal(err)
	}
	if err := s.CountReport(ctx, "d1", "shop", "alice", "la", at, store.ReportCounts{store.FieldCash: 1}); err != nil {
		t.Fatal(err)
	}
	e := storetest.Accrual("alice", "o1", 100, at)
	e.Link = "la"
	storetest.Post(t, s, e)
	const waiting = "refgate:{lg:shop}:rp:w"
	if n := admin.LLen(ctx, waiting).Val(); n != 2 {
		t.Fatalf("%d deltas wait, want the batch's and the count's", n)
	}
	if ttl := admin.PTTL(ctx, waiting).Val(); ttl > retention+24*time.Hour || ttl < retention+24*time.Hour-time.Minute {
		t.Errorf("waiting deltas: TTL %v, want %v", ttl, retention+24*time.Hour)
	}
	r, err := s.Report(ctx, store.ReportQuery{Program: "shop", From: store.DayStart(at), To: store.DayStart(at)})
	if err != nil {
		t.Fatal(err)
	}
	if got := r[0].Counts; got[store.ClickField(attribution.OutcomeAttributed)] != 1 || got[store.FieldCash] != 1 || r[0].Visitors != 1 {
		t.Fatalf("report %+v", r[0])
	}
	keys, err := admin.Keys(ctx, "refgate:{lg:shop}:r*").Result()
	if err != nil {
		t.Fatal(err)
	}
	day := 6*time.Hour + retention // from 18:00 to the day's end, and on
	want := map[string]time.Duration{
		"refgate:{lg:shop}:rp:20261101:p":       day,
		"refgate:{lg:shop}:rp:20261101:a:alice": day,
		"refgate:{lg:shop}:rp:20261101:l:la":    day,
		"refgate:{lg:shop}:rv:20261101:p":       day,
		"refgate:{lg:shop}:rv:20261101:a:alice": day,
		"refgate:{lg:shop}:rv:20261101:l:la":    day,
		"refgate:{lg:shop}:rp:b:b1":             store.BatchKeep,
		"refgate:{lg:shop}:rp:o:d1":             store.BatchKeep,
		"refgate:{lg:shop}:rp:f":                time.Hour,
	}
	for _, k := range keys {
		w, ok := want[k]
		if !ok {
			t.Errorf("unexpected report key %s", k)
			continue
		}
		delete(want, k)
		if ttl := admin.PTTL(ctx, k).Val(); ttl > w || ttl < w-time.Minute {
			t.Errorf("%s: TTL %v, want %v", k, ttl, w)
		}
		if strings.Contains(k, ":rv:") {
			if typ := admin.Type(ctx, k).Val(); typ != "string" { // a HyperLogLog
				t.Errorf("%s is a %s", k, typ)
			}
		}
	}
	for k := range want {
		t.Errorf("no key %s", k)
	}
}

// TestReportFold: a first batch folds at once and starts the interval;
// batches within it wait as deltas, and a read folds and counts them; the
// batch that makes maxDeltas wait folds them all.
func TestReportFold(t *testing.T) {
	srv := redistest.Start(t)
	s, admin := open(t, srv), srv.Client()
	ctx := context.Background()
	const waiting, folded = "refgate:{lg:shop}:rp:w", "refgate:{lg:shop}:rp:f"
	at := time.Now().UTC().Truncate(time.Millisecond)
	day := store.DayKey(at)
	batch := func(i int) {
		t.Helper()
		c := attribution.Click{ID: fmt.Sprint("c", i), Program: "shop", Promoter: "alice", Link: "la",
			Visitor: fmt.Sprint("v", i), At: at, ExpiresAt: at.Add(time.Hour), Outcome: attribution.OutcomeAttributed}
		if err := s.RecordClicks(ctx, fmt.Sprint("b", i), []attribution.Click{c}); err != nil {
			t.Fatal(err)
		}
	}
	stored := func() int64 {
		t.Helper()
		n, err := admin.HGet(ctx, "refgate:{lg:shop}:rp:"+day+":l:la", store.ClickField(attribution.OutcomeAttributed)).Int64()
		if err != nil && err != redis.Nil {
			t.Fatal(err)
		}
		return n
	}
	read := func() store.ReportPeriod {
		t.Helper()
		r, err := s.Report(ctx, store.ReportQuery{Program: "shop", Link: "la", From: store.DayStart(at), To: store.DayStart(at)})
		if err != nil {
			t.Fatal(err)
		}
		return r[0]
	}

	start := time.Now()
	batch(0)
	ttl := admin.PTTL(ctx, folded).Val()
	if n := stored(); n != 1 {
		t.Fatalf("a first batch: %d clicks in the day, want 1", n)
	}
	if ttl > foldEvery || ttl <= 0 && time.Since(start) < foldEvery {
		t.Errorf("fold marker TTL %v, want up to %v", ttl, foldEvery)
	}

	// Within the interval (held open here), batches wait, and a read
	// counts them.
	if err := admin.Set(ctx, folded, "1", time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < maxDeltas; i++ {
		batch(i)
	}
	if n := admin.LLen(ctx, waiting).Val(); n != maxDeltas-1 {
		t.Fatalf("%d deltas wait, want %d", n, maxDeltas-1)
	}
	if n := stored(); n != 1 {
		t.Fatalf("%d clicks in the day before a fold, want 1", n)
	}
	if p := read(); p.Counts[store.ClickField(attribution.OutcomeAttributed)] != maxDeltas || p.Visitors != maxDeltas {
		t.Fatalf("read: %+v, want %d clicks and visitors", p, maxDeltas)
	}
	if admin.Exists(ctx, waiting).Val() != 0 {
		t.Fatal("a read left deltas waiting")
	}

	// The batch that makes maxDeltas wait folds them.
	for i := maxDeltas; i < 2*maxDeltas; i++ {
		batch(i)
	}
	if admin.Exists(ctx, waiting).Val() != 0 {
		t.Fatalf("%d deltas wait after the %dth", admin.LLen(ctx, waiting).Val(), maxDeltas)
	}
	if n := stored(); n != 2*maxDeltas {
		t.Fatalf("%d clicks in the day, want %d", n, 2*maxDeltas)
	}
	if p := read(); p.Visitors != 2*maxDeltas {
		t.Fatalf("%d visitors, want %d", p.Visitors, 2*maxDeltas)
	}
}

// TestReportDeltaStrings: a delta is JSON whatever the strings in it, so a
// fold never fails on an id from outside the usual alphabet.
func TestReportDeltaStrings(t *testing.T) {
	odd := []string{"alice", "a:b.c@d-e_f", `q"uote`, `back\slash`, "tab\there", "\x00\x1f\x7f", "é中", "bad\xffutf8"}
	for _, s := range odd {
		b := appendJSONString(nil, s)
		var got string
		if err := json.Unmarshal(b, &got); err != nil {
			t.Errorf("%q: %s is no JSON string: %v", s, b, err)
		} else if utf8.ValidString(s) && got != s {
			t.Errorf("%q: %s reads back as %q", s, b, got)
		}
	}

	srv := redistest.Start(t)
	s := open(t, srv)
	ctx := context.Background()
	at := time.Now().UTC().Truncate(time.Millisecond)
	for i, p := range odd[2:7] {
		c := attribution.Click{ID: fmt.Sprint("c", i), Program: "shop", Promoter: p, Link: "la", Visitor: "v",
			At: at, ExpiresAt: at.Add(time.Hour), Outcome: attribution.OutcomeAttributed}
		if err := s.RecordClicks(ctx, fmt.Sprint("b", i), []attribution.Click{c}); err != nil {
			t.Fatal(err)
		}
		r, err := s.Report(ctx, store.ReportQuery{Program: "shop", Promoter: p, From: store.DayStart(at), To: store.DayStart(at)})
		if err != nil {
			t.Fatalf("promoter %q: %v", p, err)
		}
		if n := r[0].Counts[store.ClickField(attribution.OutcomeAttributed)]; n != 1 {
			t.Errorf("promoter %q: %d clicks", p, n)
		}
	}
}
