package main

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/refgate/refgate/events"
	"github.com/refgate/refgate/internal/redistest"
)

// TestLedger feeds the stream the way refgate does, with one event
// delivered twice under the same id (a retried write), and checks the
// ledger counts it once and everything is acknowledged.
func TestLedger(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	ctx := context.Background()
	sink := events.NewRedisStream(rdb, []string{events.StreamKey}, 0)
	var recs []events.Record
	add := func(typ, promoter string, delta int64) {
		e := events.Event{SpecVersion: "1.0", ID: events.NewID(), Type: typ, Subject: "customer/u1", Time: time.Now(),
			Data: events.Data{Program: "shop", Promoter: promoter, CommissionDelta: events.Int64(delta)}}
		b, _ := json.Marshal(e)
		recs = append(recs, events.Record{ID: e.ID, Subject: e.Subject, JSON: b})
	}
	add(events.TypeConversionAttributed, "alice", 3000)
	add(events.TypeConversionRefunded, "alice", -600)
	add(events.TypeConversionAttributed, "bob", 500)
	add(events.TypeClick, "bob", 0)
	recs = append(recs, recs[0]) // the same event again
	if _, err := sink.Write(ctx, recs); err != nil {
		t.Fatal(err)
	}
	l := NewLedger(rdb, "ledger")
	c := &Consumer{RDB: rdb, Keys: []string{events.StreamKey}, Group: "ledger", Name: "t", Handle: l.Handle}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- c.Run(runCtx) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		// One XINFO GROUPS reply holds both counts, so "all read" and
		// "none pending" are seen at the same instant.
		info, err := rdb.XInfoGroups(ctx, events.StreamKey).Result()
		if err == nil && len(info) == 1 && info[0].Pending == 0 && info[0].EntriesRead == int64(len(recs)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not all entries acknowledged: %+v %v", info, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done
	got := l.Totals()
	if got["alice"] != 2400 || got["bob"] != 500 || len(got) != 2 {
		t.Fatalf("ledger %v, want alice 2400, bob 500", got)
	}
}
