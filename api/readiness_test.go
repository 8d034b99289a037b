package api

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/refgate/refgate/internal/redistest"
	"github.com/refgate/refgate/store"
	"github.com/refgate/refgate/store/redisstore"
)

// TestReadyzStoreRefusesWrites fills a real redis-server (maxmemory 2mb,
// noeviction) until it refuses writes: binds and conversions answer 503,
// every refusal is counted by reason, and /readyz stays 200 (the store
// answers; reads and cached clicks work) but says the store is degraded,
// with Redis's words. Once memory is freed, the next write is taken and
// /readyz says ok again.
func TestReadyzStoreRefusesWrites(t *testing.T) {
	srv := redistest.Start(t, "--maxmemory", "2mb", "--maxmemory-policy", "noeviction")
	rs, err := redisstore.New(redisstore.Config{URL: srv.URL()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rs.Close() })
	reg := prometheus.NewRegistry()
	st := store.Instrument(rs, reg)
	e := newEnvWith(t, Config{Store: st, Gatherer: reg, StoreWrites: st})
	e.seed()
	ready := func() (int, map[string]any) {
		t.Helper()
		r := e.call("GET", "/readyz", "", "")
		w, _ := r.body["store_writes"].(map[string]any)
		return r.status, w
	}
	if s, w := ready(); s != 200 || w["status"] != "ok" {
		t.Fatalf("readyz before: %d %v", s, w)
	}

	// Fill Redis with someone else's data until it refuses a write.
	admin := srv.Client()
	ctx := context.Background()
	junk := strings.Repeat("x", 64<<10)
	n := 0
	for ; ; n++ {
		err := admin.Set(ctx, fmt.Sprint("junk:", n), junk, 0).Err()
		if err != nil && strings.HasPrefix(err.Error(), "OOM") {
			break
		}
		if err != nil || n > 1000 {
			t.Fatalf("filling redis: %d keys, %v", n, err)
		}
	}
	// Redis gives back the failed SET's query buffer in its cron, which
	// can bring it under maxmemory again: set the limit well below what it
	// uses, so that every write is refused until the test makes room.
	used, err := admin.Info(ctx, "memory").Result()
	if err != nil {
		t.Fatal(err)
	}
	var usedBytes int64
	for _, l := range strings.Split(used, "\r\n") {
		if v, ok := strings.CutPrefix(l, "used_memory:"); ok {
			fmt.Sscan(v, &usedBytes)
		}
	}
	if err := admin.ConfigSet(ctx, "maxmemory", fmt.Sprint(usedBytes-256<<10)).Err(); err != nil || usedBytes == 0 {
		t.Fatalf("used memory %d: lowering maxmemory: %v", usedBytes, err)
	}

	if r := e.call("POST", "/v1/bind", sfTok, `{"program":"shop","customer":"c1","event":"register"}`); r.status != 503 || r.errCode() != "unavailable" {
		t.Errorf("bind with Redis full: %d %s", r.status, r.raw)
	}
	if r := e.convert("o1", "c1", 10000, ""); r.status != 503 {
		t.Errorf("conversion with Redis full: %d %s", r.status, r.raw)
	}
	if r := e.call("GET", "/v1/admin/programs/shop", adminTok, ""); r.status != 200 {
		t.Errorf("a read with Redis full: %d %s", r.status, r.raw)
	}
	r := e.call("GET", "/readyz", "", "")
	w, _ := r.body["store_writes"].(map[string]any)
	if r.status != 200 || r.body["status"] != "degraded" || r.body["store"] != "degraded" || w["status"] != "degraded" || w["reason"] != "oom" ||
		!strings.HasPrefix(fmt.Sprint(w["error"]), "OOM command not allowed when used memory > 'maxmemory'") || w["refused"] != 2.0 || w["since"] == nil {
		t.Errorf("readyz with Redis full: %d %s", r.status, r.raw)
	}
	if n := writeErrors(t, reg, "oom"); n != 2 {
		t.Errorf("refgate_store_write_errors_total{reason=oom} = %v, want 2", n)
	}
	t.Logf("Redis full after %d keys of 64 KiB; /readyz: %s", n, strings.TrimSpace(r.raw))

	// Room again: the next write is taken, and readiness says so.
	for i := range n {
		admin.Del(ctx, fmt.Sprint("junk:", i))
	}
	if err := admin.ConfigSet(ctx, "maxmemory", "2mb").Err(); err != nil {
		t.Fatal(err)
	}
	if r := e.call("POST", "/v1/bind", sfTok, `{"program":"shop","customer":"c1","event":"register"}`); r.status != 200 {
		t.Errorf("bind once Redis has room: %d %s", r.status, r.raw)
	}
	if s, w := ready(); s != 200 || w["status"] != "ok" || len(w) != 1 {
		t.Errorf("readyz once a write was taken: %d %v", s, w)
	}
}

// writeErrors is refgate_store_write_errors_total{reason}.
func writeErrors(t *testing.T, reg *prometheus.Registry, reason string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if mf.GetName() == "refgate_store_write_errors_total" && m.GetLabel()[0].GetValue() == reason {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no refgate_store_write_errors_total{reason=%q}", reason)
	return 0
}
