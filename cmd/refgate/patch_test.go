package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/internal/redistest"
)

// TestCrossInstancePause runs two instances on one Redis (and on a Redis
// Cluster): a link paused through one stops setting cookies on the other
// within 1 s, and clicks it then answers are counted inactive; resumed, it
// attributes again within 1 s.
func TestCrossInstancePause(t *testing.T) {
	t.Run("Single", func(t *testing.T) {
		srv := redistest.Start(t)
		crossInstancePause(t, func(c *Config) { c.RedisURL = srv.URL() })
	})
	t.Run("Cluster", func(t *testing.T) {
		cl := redistest.StartCluster(t, 3, 0)
		crossInstancePause(t, func(c *Config) { c.RedisAddrs = strings.Join(cl.Addrs(), ","); c.RedisCluster = true })
	})
}

func crossInstancePause(t *testing.T, redis func(*Config)) {
	a, _ := MustRunMain(t, t.TempDir(), redis)
	b, _ := MustRunMain(t, t.TempDir(), redis)
	setup(t, a, "pause01")
	cookied := func(m *Main) bool {
		t.Helper()
		resp := click(t, m.EdgeAddr(), "pause01")
		if resp.StatusCode != 302 || resp.Header.Get("Location") != "https://shop.example.com/" {
			t.Fatalf("click on %s: %d to %q", m.EdgeAddr(), resp.StatusCode, resp.Header.Get("Location"))
		}
		for _, c := range resp.Cookies() {
			if c.Name == "rg_shop" {
				return true
			}
		}
		return false
	}
	for _, m := range []*Main{a, b} {
		if !cookied(m) {
			t.Fatalf("an active link's click on %s set no attribution cookie", m.EdgeAddr())
		}
	}
	// b now holds the link in its cache.
	until := func(what string, want bool) {
		t.Helper()
		start := time.Now()
		for cookied(b) != want {
			if time.Since(start) > time.Second {
				t.Fatalf("the other instance did not honour %s within 1s", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
		t.Logf("%s reached the other instance in %v", what, time.Since(start))
	}
	if s, body := callAPI(t, a, "PATCH", "/v1/admin/links/pause01", `{"status":"paused"}`); s != 200 || body["status"] != "paused" {
		t.Fatalf("pause: %d %v", s, body)
	}
	until("the pause", false)
	if s, body := callAPI(t, a, "PATCH", "/v1/admin/links/pause01", `{"status":"active"}`); s != 200 || body["status"] != "active" {
		t.Fatalf("resume: %d %v", s, body)
	}
	until("the resumption", true)
	// The inactive clicks reached the shared store as such.
	deadline := time.Now().Add(3 * time.Second)
	for {
		stats, err := a.Store.LinkStats(context.Background(), "pause01")
		if err == nil && stats[attribution.OutcomeInactive] >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats %v %v, want inactive clicks", stats, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
