package redisstore

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/refgate/refgate/internal/redistest"
)

func TestMemory(t *testing.T) {
	ctx := context.Background()
	t.Run("Single", func(t *testing.T) {
		srv := redistest.Start(t, "--maxmemory", "3mb", "--maxmemory-policy", "allkeys-lru")
		s := open(t, srv)
		nodes, err := s.Memory(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(nodes) != 1 || nodes[0].Addr != srv.Addr || nodes[0].MaxMemory != 3<<20 || nodes[0].Policy != "allkeys-lru" || nodes[0].Used <= 0 {
			t.Fatalf("Memory = %+v, want one node %s with 3 MB, allkeys-lru and some use", nodes, srv.Addr)
		}
		if addr, err := s.NodeFor(ctx, "refgate:events"); err != nil || addr != srv.Addr {
			t.Fatalf("NodeFor = %q, %v", addr, err)
		}
		g := NewMemoryGauges(s, prometheus.NewRegistry())
		if err := g.Poll(ctx); err != nil {
			t.Fatal(err)
		}
		if max, used := testutil.ToFloat64(g.max.WithLabelValues(srv.Addr)), testutil.ToFloat64(g.used.WithLabelValues(srv.Addr)); max != 3<<20 || used <= 0 {
			t.Errorf("gauges: maxmemory %v, used %v", max, used)
		}
	})
	t.Run("Cluster", func(t *testing.T) {
		if testing.Short() {
			t.Skip("starts a cluster")
		}
		cl := redistest.StartCluster(t, 3, 0)
		s, err := New(Config{Addrs: cl.Addrs(), Cluster: true})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		nodes, err := s.Memory(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var addrs []string
		for _, n := range nodes {
			if n.MaxMemory != 0 || n.Policy != "noeviction" {
				t.Errorf("node %+v: want redis-server's defaults, 0 and noeviction", n)
			}
			addrs = append(addrs, n.Addr)
		}
		slices.Sort(addrs)
		want := slices.Sorted(slices.Values(cl.Addrs()))
		if !slices.Equal(addrs, want) {
			t.Fatalf("Memory read %v, want every master %v", addrs, want)
		}
		for _, k := range []string{"refgate:events:{0}", "refgate:events:{1}", "refgate:events:{2}"} {
			if addr, err := s.NodeFor(ctx, k); err != nil || !slices.Contains(want, addr) {
				t.Errorf("NodeFor(%s) = %q, %v", k, addr, err)
			}
		}
	})
}

func TestMemoryWarnings(t *testing.T) {
	const gb = 1 << 30
	f := func(n NodeMemory, reserved int64, want ...string) {
		t.Helper()
		got := MemoryWarnings(n, reserved)
		if len(got) != len(want) {
			t.Fatalf("MemoryWarnings(%+v, %d) = %q, want %d warnings about %q", n, reserved, got, len(want), want)
		}
		for i, w := range want {
			if !strings.Contains(got[i], w) {
				t.Errorf("warning %d %q, want it to say %q", i, got[i], w)
			}
		}
	}
	shipped := NodeMemory{MaxMemory: 2 * gb, Policy: "noeviction", Used: 100 << 20}
	f(shipped, 584_000_000)
	f(shipped, 0)
	f(NodeMemory{Policy: "noeviction"}, 584_000_000, "no maxmemory")
	f(NodeMemory{MaxMemory: 2 * gb, Policy: "allkeys-lru"}, 0, "allkeys-lru: when full it evicts any key")
	f(NodeMemory{MaxMemory: 2 * gb, Policy: "volatile-ttl"}, 0, "visitor records and click claims")
	f(shipped, 7_300_000_000, "take up to 6962 MiB at their cap, over a third of its maxmemory (2048 MiB)")
	f(shipped, -1, "uncapped")
	f(NodeMemory{MaxMemory: 64 << 20, Policy: "noeviction", Used: 60 << 20}, 0, "uses 60 MiB of its maxmemory 64 MiB")
	f(NodeMemory{Policy: "allkeys-random"}, -1, "no maxmemory", "allkeys-random", "uncapped")
}
