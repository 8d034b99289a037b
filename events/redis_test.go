package events

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/refgate/refgate/internal/redistest"
)

func TestRedisStream(t *testing.T) {
	ctx := context.Background()
	t.Run("single", func(t *testing.T) {
		srv := redistest.Start(t)
		rdb := srv.Client()
		s := NewRedisStream(rdb, StreamKeys(false, 8), 100)
		for i := 0; i < 5; i++ {
			if _, err := s.Write(ctx, recs(i*100, 100)); err != nil {
				t.Fatal(err)
			}
		}
		msgs, err := rdb.XRange(ctx, StreamKey, "-", "+").Result()
		if err != nil {
			t.Fatal(err)
		}
		// MAXLEN ~ 100 trims whole macro nodes: about 100 entries stay,
		// the newest.
		if len(msgs) < 100 || len(msgs) > 300 {
			t.Fatalf("%d entries kept under MAXLEN ~ 100", len(msgs))
		}
		last := msgs[len(msgs)-1].Values["event"].(string)
		if !strings.Contains(last, `"id":"id-00499"`) {
			t.Fatalf("last entry %s", last)
		}
		if err := s.Ping(ctx); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("cluster", func(t *testing.T) {
		if testing.Short() {
			t.Skip("starts a cluster")
		}
		cl := redistest.StartCluster(t, 3, 0)
		rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs()})
		defer rdb.Close()
		keys := StreamKeys(true, 8)
		s := NewRedisStream(rdb, keys, 0)
		var all []Record
		for i := 0; i < 40; i++ {
			r := recs(i, 1)[0]
			r.Subject = fmt.Sprint("customer/c", i)
			all = append(all, r)
		}
		if _, err := s.Write(ctx, all); err != nil {
			t.Fatal(err)
		}
		total := 0
		masters := map[string]bool{}
		for _, k := range keys {
			n, err := rdb.XLen(ctx, k).Result()
			if err != nil {
				t.Fatal(err)
			}
			total += int(n)
			slot, _ := rdb.ClusterKeySlot(ctx, k).Result()
			for _, sh := range mustShards(t, rdb) {
				if slot >= sh.from && slot <= sh.to {
					masters[sh.addr] = true
				}
			}
		}
		if total != 40 {
			t.Fatalf("%d entries in all streams, want 40", total)
		}
		if len(masters) != 3 {
			t.Fatalf("the %d stream keys live on %d of 3 masters", len(keys), len(masters))
		}
		if err := s.Ping(ctx); err != nil {
			t.Fatal(err)
		}
	})
}

type shard struct {
	from, to int64
	addr     string
}

func mustShards(t *testing.T, rdb *redis.ClusterClient) []shard {
	slots, err := rdb.ClusterSlots(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	var out []shard
	for _, s := range slots {
		out = append(out, shard{int64(s.Start), int64(s.End), s.Nodes[0].Addr})
	}
	return out
}
