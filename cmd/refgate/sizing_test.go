package main

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/refgate/refgate/events"
	"github.com/refgate/refgate/internal/redistest"
	"github.com/refgate/refgate/store/redisstore"
)

// floodClicks sends n clicks on code as new visitors (no cookies), each
// from its own client address behind the local proxy, as a browser coming
// from a blog post would, from workers goroutines. It returns how many were
// answered 302.
func floodClicks(t *testing.T, addr, code string, n, workers int) int {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second,
		Transport:     &http.Transport{MaxIdleConnsPerHost: workers},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	defer client.CloseIdleConnections()
	var next, ok atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				req := browserClick(addr, code)
				req.Header.Set("X-Forwarded-For", fmt.Sprintf("198.%d.%d.%d", 18+i>>16&1, i>>8&255, i&255))
				req.Header.Set("Referer", "https://blog.example.net/2026/05/best-cloud-servers-for-small-teams?utm_source=feed")
				resp, err := client.Do(req)
				if err != nil {
					continue
				}
				resp.Body.Close()
				if resp.StatusCode == 302 {
					ok.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return int(ok.Load())
}

// memoryUsage is MEMORY USAGE key SAMPLES 0: every element counted.
func memoryUsage(t *testing.T, rdb *redis.Client, key string) int64 {
	t.Helper()
	n, err := rdb.MemoryUsage(context.Background(), key, 0).Result()
	if err != nil {
		t.Fatalf("MEMORY USAGE %s: %v", key, err)
	}
	return n
}

// usedMemory is INFO memory's used_memory.
func usedMemory(t *testing.T, rdb *redis.Client) int64 {
	t.Helper()
	info, err := rdb.Info(context.Background(), "memory").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	t.Fatal("no used_memory in INFO memory")
	return 0
}

// TestRedisBytesPerClick measures what a click costs Redis: real clicks,
// as browsers without cookies send them, through the real server to a
// real redis-server, then MEMORY USAGE of the event stream per entry and of
// the visitor records per record, and used_memory's growth per click (the
// two, the expiry of each record, the hash tables' slots, the link's
// counters). The figures are
// the README's sizing table and the constants the start-up memory check
// uses (events.StreamEntryBytes, redisstore.VisitorRecordBytes); the test
// fails when they drift by more than a fifth, so that both stay true when
// an event or a record grows.
func TestRedisBytesPerClick(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	m, _ := MustRunMain(t, t.TempDir(), func(c *Config) { c.RedisURL = srv.URL() })
	setup(t, m, "size0001")
	time.Sleep(100 * time.Millisecond) // the setup's own events
	before := usedMemory(t, rdb)
	base, _ := rdb.XLen(context.Background(), events.StreamKey).Result()

	const n = 4000
	got := floodClicks(t, m.EdgeAddr(), "size0001", n, 8)
	if got != n {
		t.Fatalf("%d of %d clicks answered 302", got, n)
	}
	deadline := time.Now().Add(30 * time.Second)
	var visitors []string
	for {
		xlen, _ := rdb.XLen(context.Background(), events.StreamKey).Result()
		visitors, _ = rdb.Keys(context.Background(), "refgate:visitor:*").Result()
		if xlen-base == n && len(visitors) == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30 s the stream has %d new entries and there are %d visitor records, want %d", xlen-base, len(visitors), n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	after := usedMemory(t, rdb)

	xlen, _ := rdb.XLen(context.Background(), events.StreamKey).Result()
	perEntry := float64(memoryUsage(t, rdb, events.StreamKey)) / float64(xlen)
	var recordBytes int64
	for _, k := range visitors {
		recordBytes += memoryUsage(t, rdb, k)
	}
	perRecord := float64(recordBytes) / float64(len(visitors))
	perClick := float64(after-before) / n
	msgs, _ := rdb.XRevRangeN(context.Background(), events.StreamKey, "+", "-", 1).Result()
	event, _ := msgs[0].Values["event"].(string)
	t.Logf("%d cookie-less clicks: stream %.0f B per entry (MEMORY USAGE %s SAMPLES 0 / XLEN %d; the event's JSON is %d B), "+
		"visitor record %.0f B (MEMORY USAGE of %d records), used_memory +%.0f B per click",
		n, perEntry, events.StreamKey, xlen, len(event), perRecord, len(visitors), perClick)

	near := func(what string, got float64, want int) {
		t.Helper()
		if got < float64(want)*0.8 || got > float64(want)*1.2 {
			t.Errorf("%s measured %.0f B, the constant says %d B: update it and the README's sizing table", what, got, want)
		}
	}
	near("a stream entry (events.StreamEntryBytes)", perEntry, events.StreamEntryBytes)
	near("a visitor record with its expiry (redisstore.VisitorRecordBytes)", perClick-perEntry, redisstore.VisitorRecordBytes)
}

// TestRedisMemoryWarnings: at start, refgate reads Redis's maxmemory and
// policy (INFO memory) and warns when they put the attribution state at
// risk; with settings that fit it says nothing.
func TestRedisMemoryWarnings(t *testing.T) {
	f := func(name string, redisArgs []string, maxLen int64, want ...string) {
		t.Run(name, func(t *testing.T) {
			srv := redistest.Start(t, redisArgs...)
			_, logs := MustRunMain(t, t.TempDir(), func(c *Config) { c.RedisURL = srv.URL(); c.EventsStreamMaxLen = maxLen })
			var warns []string
			for _, line := range strings.Split(logs.String(), "\n") {
				if strings.Contains(line, "level=WARN") && strings.Contains(line, "maxmemory=") {
					warns = append(warns, line)
				}
			}
			if len(warns) != len(want) {
				t.Fatalf("%d memory warnings, want %d (%q):\n%s", len(warns), len(want), want, strings.Join(warns, "\n"))
			}
			for i, w := range want {
				if !strings.Contains(warns[i], w) {
					t.Errorf("warning %q does not say %q", warns[i], w)
				}
			}
		})
	}
	f("Fits", []string{"--maxmemory", "64mb"}, 20_000)
	f("Unlimited", nil, 20_000, "Redis has no maxmemory")
	f("StreamTooLarge", []string{"--maxmemory", "64mb"}, events.DefaultStreamMaxLen, "take up to 557 MiB at their cap, over a third of its maxmemory (64 MiB)")
	f("Uncapped", []string{"--maxmemory", "64mb"}, 0, "the event stream is uncapped")
	f("Evicts", []string{"--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru"}, 20_000, "maxmemory-policy is allkeys-lru")
}
