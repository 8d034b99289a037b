package deploy

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/events"
	"github.com/refgate/refgate/internal/redistest"
	"github.com/refgate/refgate/store"
	"github.com/refgate/refgate/store/redisstore"
	"github.com/refgate/refgate/store/storetest"
)

// TestRedisConfigAndACL starts redis-server with deploy/redis/redis.conf and
// the example ACL file, and runs the store conformance suite as the refgate
// user: the command list in the ACL is exactly enough.
func TestRedisConfigAndACL(t *testing.T) {
	dir := deployCopy(t)
	srv := redistest.StartConfig(t, filepath.Join(dir, "redis/redis.conf"), "default", "CHANGE-ME-ADMIN-PASSWORD",
		"--aclfile", filepath.Join(dir, "redis/users.acl"))
	admin := srv.Client()
	ctx := context.Background()
	for k, want := range map[string]string{"appendonly": "yes", "appendfsync": "everysec", "maxmemory-policy": "noeviction", "protected-mode": "yes"} {
		if got := admin.ConfigGet(ctx, k).Val()[k]; got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	storetest.Run(t, func(t *testing.T) store.Store {
		if err := admin.FlushAll(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		s, err := redisstore.New(redisstore.Config{URL: srv.URL(), Username: "refgate", Password: "CHANGE-ME-REFGATE-PASSWORD"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
	s, _ := redisstore.New(redisstore.Config{URL: srv.URL(), Username: "refgate", Password: "CHANGE-ME-REFGATE-PASSWORD"})
	defer s.Close()
	rdb := s.Client()
	// A customer's keys expire (PEXPIRE) until it pays, then are kept
	// (PERSIST): the conformance suite's updates say no time, so neither.
	for _, paid := range []bool{false, true} {
		err := s.UpdateCustomer(ctx, "acl-c", "", func(c *attribution.Customer, _ *attribution.Order) (*store.CustomerUpdate, error) {
			c.Paid = paid
			return &store.CustomerUpdate{Customer: c, Now: time.Now(),
				Decisions: []attribution.Decision{{Program: "p", At: time.Now(), Event: "login"}}}, nil
		})
		if err != nil {
			t.Fatalf("customer update (paid %v) as the refgate user: %v", paid, err)
		}
	}
	// The event stream: refgate writes it, and `refgate events tail` (plain
	// and as a consumer group) reads it, as the same user.
	sink := events.NewRedisStream(rdb, []string{events.StreamKey}, 1000)
	if _, err := sink.Write(ctx, []events.Record{{ID: "e1", Subject: "link/x", JSON: []byte(`{"id":"e1","type":"refgate.click"}`)}}); err != nil {
		t.Fatalf("XADD as the refgate user: %v", err)
	}
	for _, o := range []events.TailOptions{{From: "start"}, {From: "start", Group: "ops"}} {
		n := 0
		if err := events.TailRedis(ctx, rdb, []string{events.StreamKey}, o, func([]byte) error { n++; return nil }); err != nil || n != 1 {
			t.Fatalf("tail %+v as the refgate user: %d events, %v", o, n, err)
		}
	}
	// The consumer groups' lag: XINFO STREAM, XINFO GROUPS and XRANGE.
	mon := events.NewStreamMonitor(events.StreamMonitorConfig{Client: rdb, Keys: sink.Keys(), MaxLen: sink.MaxLen()})
	if err := mon.Poll(ctx); err != nil {
		t.Errorf("XINFO of the event stream as the refgate user: %v", err)
	}
	// The memory check at start reads INFO memory, as the same user.
	if nodes, err := s.Memory(ctx); err != nil || len(nodes) != 1 || nodes[0].MaxMemory != 2<<30 || nodes[0].Policy != "noeviction" {
		t.Errorf("INFO memory as the refgate user: %+v, %v", nodes, err)
	} else if w := redisstore.MemoryWarnings(nodes[0], events.DefaultStreamMaxLen*events.StreamEntryBytes); len(w) > 0 {
		t.Errorf("the shipped redis.conf with the default stream cap warns: %q", w)
	}
	// And nothing more: the refgate user cannot touch other keys or run
	// administrative commands.
	if err := rdb.Set(ctx, "other:key", "x", 0).Err(); err == nil {
		t.Error("the refgate user wrote outside refgate:*")
	}
	if err := rdb.FlushAll(ctx).Err(); err == nil {
		t.Error("the refgate user may FLUSHALL")
	}
	if err := rdb.ConfigSet(ctx, "maxmemory-policy", "allkeys-lru").Err(); err == nil {
		t.Error("the refgate user may CONFIG SET")
	}
}
