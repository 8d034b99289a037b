package redisstore

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/refgate/refgate/internal/redistest"
	"github.com/refgate/refgate/store/storetest"
)

// TestHoldersIndexIsAHint checks what the index of holders may hold that
// the customers do not: a member whose customer Redis dropped (its TTL) or
// that a stop between the customer's write and the index's left behind is
// not listed, and the read removes it; an erasure removes its members
// without a read; the set's TTL follows the latest expiry added.
func TestHoldersIndexIsAHint(t *testing.T) {
	srv := redistest.Start(t)
	s := open(t, srv)
	ctx := context.Background()
	rdb := srv.Client()
	t0 := time.Now().UTC()
	day := 24 * time.Hour
	storetest.Associate(t, s, "p", "gone", "alice", t0, t0.Add(20*day))
	storetest.Associate(t, s, "p", "kept", "alice", t0.Add(time.Second), t0.Add(10*day))
	key := holdersKey("p", "alice")
	if n := rdb.ZCard(ctx, key).Val(); n != 2 {
		t.Fatalf("%d members, want 2", n)
	}
	if ttl := rdb.PTTL(ctx, key).Val(); ttl < 20*day || ttl > 20*day+customerGrace {
		t.Errorf("TTL %v, want the latest expiry plus %v", ttl, customerGrace)
	}
	rdb.Del(ctx, customerKey("gone"))
	rdb.ZAdd(ctx, key, redis.Z{Member: "00000000000000000001|left-behind"})
	hs, next, err := s.Holders(ctx, "p", "alice", t0.Add(time.Minute), "", 10)
	if err != nil || next != "" || len(hs) != 1 || hs[0].Customer != "kept" {
		t.Fatalf("holders %+v %q %v, want kept alone", hs, next, err)
	}
	if m := rdb.ZRange(ctx, key, 0, -1).Val(); len(m) != 1 {
		t.Errorf("stale members stay: %v", m)
	}
	if _, err := s.EraseCustomer(ctx, "kept", "erased:x"); err != nil {
		t.Fatal(err)
	}
	if n := rdb.Exists(ctx, key).Val(); n != 0 {
		t.Errorf("the erased customer's index is left: %v", rdb.ZRange(ctx, key, 0, -1).Val())
	}
}
