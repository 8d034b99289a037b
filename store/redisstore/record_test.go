package redisstore

import (
	"context"
	"testing"
	"time"

	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/internal/redistest"
	"github.com/refgate/refgate/store"
)

// TestRetryAfterFreezeCountsOnce is the lost-reply case: a batch sent to a
// frozen Redis times out on the client, yet the server applies it once it
// runs again; the batcher's retry of the same batch must not count it a
// second time.
func TestRetryAfterFreezeCountsOnce(t *testing.T) {
	srv := redistest.Start(t)
	s := open(t, srv)
	ctx := context.Background()
	if err := s.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	batch := benchBatch()
	want := map[attribution.Outcome]int64{}
	for _, c := range batch {
		if c.Link == "link0" {
			want[c.Outcome]++
		}
	}
	marker := batchKey(linkStatsKey("link0"), "b1")

	srv.Pause()
	// The batcher's budget for one attempt: the client's read timeout
	// fires first, after the pipeline went out.
	c, cancel := context.WithTimeout(ctx, 2*time.Second)
	err := s.RecordClicks(c, "b1", batch)
	cancel()
	srv.Resume()
	if err == nil {
		t.Fatal("a write to a frozen redis succeeded")
	}
	// Wait for the server to work through what it received while frozen,
	// so the retry below really is the second copy.
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if srv.Client().Exists(ctx, marker).Val() == 1 {
			break
		}
	}
	if srv.Client().Exists(ctx, marker).Val() == 0 {
		t.Log("the timed-out write was not applied; the retry below is the first copy")
	}
	for range 2 {
		if err := s.RecordClicks(ctx, "b1", batch); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.LinkStats(ctx, "link0")
	if err != nil {
		t.Fatal(err)
	}
	for o, n := range want {
		if got[o] != n {
			t.Errorf("%s: got %d clicks, want %d", o, got[o], n)
		}
	}
	// The marker is garbage collected after store.BatchKeep: memory stays
	// bounded however many batches go through.
	if ttl := srv.Client().PTTL(ctx, marker).Val(); ttl <= store.BatchKeep-time.Minute || ttl > store.BatchKeep {
		t.Errorf("marker TTL %s, want about %s", ttl, store.BatchKeep)
	}
}

// TestScriptsReloaded: the batch's scripts go by EVALSHA; a server that
// lost them (a restart, a failover, SCRIPT FLUSH) gets them again, and the
// batch is counted once, its first clicks kept by the script.
func TestScriptsReloaded(t *testing.T) {
	srv := redistest.Start(t)
	s := open(t, srv)
	ctx := context.Background()
	batch := benchBatch()
	for i, id := range []string{"b1", "b1", "b2"} {
		if err := srv.Client().ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		if err := s.RecordClicks(ctx, id, batch); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	got, err := s.LinkStats(ctx, "link0")
	if err != nil {
		t.Fatal(err)
	}
	if got[attribution.OutcomeAttributed] != 2*6 || got[attribution.OutcomeBot] != 2*2 {
		t.Errorf("two batches of 6 attributed and 2 bot clicks on link0: got %v", got)
	}
	if c, err := s.VisitorClick(ctx, "shop", "v0"); err != nil || c.Model != attribution.FirstClick {
		t.Errorf("first-click record: %v, %v", c, err)
	}
}
