package redisstore

import (
	"context"
	"testing"
	"time"

	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/internal/redistest"
)

// TestVisitorRecord: a record is one "EXPIRY_MS:JSON" string with a TTL past
// its expiry; the first-click script compares that expiry; anything else at
// the key is overwritten by a click and is an error to read.
func TestVisitorRecord(t *testing.T) {
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

	if err := s.RecordClicks(ctx, "b-c1", []attribution.Click{click("c1", attribution.LastClick, at)}); err != nil {
		t.Fatal(err)
	}
	if typ := rdb.Type(ctx, k).Val(); typ != "string" || read() != "c1" {
		t.Fatalf("type %s, click %s", typ, read())
	}
	if ttl := rdb.PTTL(ctx, k).Val(); ttl < 7*24*time.Hour {
		t.Errorf("TTL %s, want past the 7-day expiry", ttl)
	}

	// A first click while an unexpired record is there keeps it ...
	if err := s.RecordClicks(ctx, "b-c2", []attribution.Click{click("c2", attribution.FirstClick, at.Add(time.Hour))}); err != nil {
		t.Fatal(err)
	}
	if read() != "c1" {
		t.Fatal("first click replaced an unexpired record")
	}
	// ... and one after its expiry replaces it.
	if err := s.RecordClicks(ctx, "b-c3", []attribution.Click{click("c3", attribution.FirstClick, at.Add(8*24*time.Hour))}); err != nil {
		t.Fatal(err)
	}
	if read() != "c3" {
		t.Fatal("an expired record was kept")
	}
	// A key of another type fails neither click model's write.
	for _, m := range []attribution.ClickModel{attribution.FirstClick, attribution.LastClick} {
		rdb.Del(ctx, k)
		rdb.LPush(ctx, k, "x")
		if err := s.RecordClicks(ctx, "b-c4-"+string(m), []attribution.Click{click("c4", m, at)}); err != nil {
			t.Fatalf("%s click over a list: %v", m, err)
		}
		if typ := rdb.Type(ctx, k).Val(); typ != "string" || read() != "c4" {
			t.Fatalf("%s click over a list: type %s, click %s", m, typ, read())
		}
	}
	// Garbage is an error, not a click.
	rdb.Set(ctx, k, "no separator", 0)
	if _, err := s.VisitorClick(ctx, "shop", "v1"); err == nil {
		t.Error("corrupt record read as a click")
	}
}
