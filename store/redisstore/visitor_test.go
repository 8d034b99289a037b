package redisstore

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/internal/redistest"
)

// TestVisitorRecordFormats: a record is one "EXPIRY_MS:JSON" string with a
// TTL; a hash written by an earlier version (exp, c) is still read, still
// protects a first click, and is replaced by the next last click.
func TestVisitorRecordFormats(t *testing.T) {
	srv := redistest.Start(t)
	s := open(t, srv)
	ctx := context.Background()
	rdb := srv.Client()
	at := time.Now().UTC().Truncate(time.Millisecond)
	click := func(id string, model attribution.ClickModel, at time.Time) attribution.Click {
		return attribution.Click{ID: id, Program: "shop", Promoter: "alice", Link: "x1", Visitor: "v1", At: at,
			ExpiresAt: at.Add(7 * 24 * time.Hour), Model: model, Outcome: attribution.OutcomeAttributed}
	}
	read := func() string {
		t.Helper()
		c, err := s.VisitorClick(ctx, "shop", "v1")
		if err != nil {
			t.Fatal(err)
		}
		return c.ID
	}
	k := visitorKey("v1", "shop")

	if err := s.RecordClicks(ctx, []attribution.Click{click("c1", attribution.LastClick, at)}); err != nil {
		t.Fatal(err)
	}
	if typ := rdb.Type(ctx, k).Val(); typ != "string" || read() != "c1" {
		t.Fatalf("type %s, click %s", typ, read())
	}
	if ttl := rdb.PTTL(ctx, k).Val(); ttl < 7*24*time.Hour {
		t.Errorf("TTL %s, want past the 7-day expiry", ttl)
	}

	// An earlier version's hash.
	old := click("c0", attribution.FirstClick, at)
	js, _ := json.Marshal(&old)
	rdb.Del(ctx, k)
	rdb.HSet(ctx, k, "exp", old.ExpiresAt.UnixMilli(), "c", js)
	if read() != "c0" {
		t.Fatal("hash record not read")
	}
	// A first click while the old record is unexpired keeps it ...
	if err := s.RecordClicks(ctx, []attribution.Click{click("c2", attribution.FirstClick, at.Add(time.Hour))}); err != nil {
		t.Fatal(err)
	}
	if read() != "c0" {
		t.Fatal("first click replaced an unexpired hash record")
	}
	// ... and one after its expiry replaces it, as a string.
	if err := s.RecordClicks(ctx, []attribution.Click{click("c3", attribution.FirstClick, at.Add(8*24*time.Hour))}); err != nil {
		t.Fatal(err)
	}
	if typ := rdb.Type(ctx, k).Val(); typ != "string" || read() != "c3" {
		t.Fatalf("type %s, click %s", typ, read())
	}
	// A last click replaces a hash too.
	rdb.Del(ctx, k)
	rdb.HSet(ctx, k, "exp", old.ExpiresAt.UnixMilli(), "c", js)
	if err := s.RecordClicks(ctx, []attribution.Click{click("c4", attribution.LastClick, at)}); err != nil {
		t.Fatal(err)
	}
	if read() != "c4" {
		t.Fatal("last click did not replace the hash record")
	}
	// Garbage is an error, not a click.
	rdb.Set(ctx, k, "no separator", 0)
	if _, err := s.VisitorClick(ctx, "shop", "v1"); err == nil {
		t.Error("corrupt record read as a click")
	}
}
