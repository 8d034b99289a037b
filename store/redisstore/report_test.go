package redisstore

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

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
// and count markers after store.BatchKeep.
func TestReportKeys(t *testing.T) {
	srv := redistest.Start(t)
	const retention = 10 * 24 * time.Hour
	s, err := New(Config{URL: srv.URL(), ReportRetention: retention})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx := context.Background()
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
	admin := srv.Client()
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
