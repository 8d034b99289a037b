//go:build !race

// The flood test runs the real binary (built without the race detector)
// under tens of thousands of clicks; the test process's own instrumentation
// would only slow the clients, so it runs in the test command's second,
// uninstrumented pass.

package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/refgate/refgate/events"
	"github.com/refgate/refgate/internal/redistest"
	"github.com/refgate/refgate/store/redisstore"
)

// TestRedisFloodWithinMemory: a Redis with maxmemory 64mb (noeviction) and
// the stream cap scaled to it as the default is to the shipped 2 GB (about
// a quarter); a flood of cookie-less clicks, each from its own client
// address, whose visitor records and events would need more than
// maxmemory were the stream uncapped. The stream stays at its cap, Redis
// below maxmemory, no write is refused, and afterwards real visitors'
// binds and conversions answer 200.
func TestRedisFloodWithinMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary; about 20 s")
	}
	const (
		maxMemory = 64 << 20
		maxLen    = 20_000 // 14.6 MB of events
		flood     = 70_000
	)
	if need := int64(flood) * (events.StreamEntryBytes + redisstore.VisitorRecordBytes); need <= maxMemory {
		t.Fatalf("the flood needs %d MiB uncapped, not more than maxmemory: make it larger", need>>20)
	}
	srv := redistest.Start(t, "--maxmemory", fmt.Sprint(maxMemory), "--maxmemory-policy", "noeviction")
	rdb := srv.Client()
	k := newKillable(t, []string{"--data-dir", t.TempDir(), "--redis-url", srv.URL(),
		"--events-stream-maxlen", fmt.Sprint(maxLen)})
	api := remoteAPI(k.api)
	setup(t, api, "flood001")

	start := time.Now()
	if got := floodClicks(t, k.edge, "flood001", flood, 32); got != flood {
		t.Fatalf("%d of %d flood clicks answered 302", got, flood)
	}
	sent := time.Since(start)
	// Everything the flood wrote reaches Redis: the log drains.
	deadline := time.Now().Add(30 * time.Second)
	var body map[string]any
	for {
		var s int
		s, body = callAPI(t, api, "GET", "/readyz", "")
		lg, _ := body["log"].(map[string]any)
		if s == 200 && lg != nil && lg["bytes"] == 0.0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the log did not drain: %d %v\n%s", s, body, k.logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if w, _ := body["store_writes"].(map[string]any); body["status"] != "ok" || w["status"] != "ok" {
		t.Errorf("readyz after the flood: %v", body)
	}
	ctx := context.Background()
	used := usedMemory(t, rdb)
	xlen, _ := rdb.XLen(ctx, events.StreamKey).Result()
	visitors, _ := rdb.DBSize(ctx).Result()
	if used >= maxMemory {
		t.Errorf("Redis uses %d MiB of maxmemory %d MiB", used>>20, maxMemory>>20)
	}
	if xlen > maxLen*11/10 {
		t.Errorf("the stream holds %d events, cap %d", xlen, maxLen)
	}

	// Visitors who came after the flood bind and convert.
	for i := range 20 {
		tk := token(t, click(t, k.edge, "flood001"))
		c := fmt.Sprint("after-", i)
		if s, b := send(t, k.api, sfTok, "/v1/bind", `{"program":"shop","customer":"`+c+`","event":"register","token":"`+tk+`"}`); s != 200 || b["associated"] != true {
			t.Fatalf("bind after the flood: %d %v", s, b)
		}
		order := `{"program":"shop","order":"o-` + c + `","customer":"` + c + `","amount":10000,"currency":"CNY","product":"cvm","prepaid":true}`
		if s, b := send(t, k.api, sfTok, "/v1/conversions", order); s != 200 || b["eligible"] != true {
			t.Fatalf("conversion after the flood: %d %v", s, b)
		}
	}
	storefront.CloseIdleConnections()
	k.stop()
	t.Logf("%d cookie-less clicks in %s from as many addresses (uncapped they would need %d MiB): stream %d events (cap %d), %d keys, Redis at %d of %d MiB; binds and conversions after it answered 200",
		flood, sent.Round(time.Millisecond), int64(flood)*(events.StreamEntryBytes+redisstore.VisitorRecordBytes)>>20,
		xlen, maxLen, visitors, used>>20, maxMemory>>20)
}
