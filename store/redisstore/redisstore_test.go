package redisstore

import (
	"context"
	"testing"
	"time"

	"github.com/refgate/refgate/internal/redistest"
	"github.com/refgate/refgate/store"
	"github.com/refgate/refgate/store/storetest"
)

// open returns a store on srv, closed at the end of the test.
func open(t *testing.T, srv *redistest.Server) *Store {
	t.Helper()
	s, err := New(Config{URL: srv.URL()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformanceSingle(t *testing.T) {
	srv := redistest.Start(t)
	storetest.Run(t, func(t *testing.T) store.Store {
		if err := srv.Client().FlushAll(context.Background()).Err(); err != nil {
			t.Fatal(err)
		}
		return open(t, srv)
	})
}

func TestConformanceCluster(t *testing.T) {
	cl := redistest.StartCluster(t, 3, 0)
	storetest.Run(t, func(t *testing.T) store.Store {
		if err := cl.FlushAll(context.Background()); err != nil {
			t.Fatal(err)
		}
		s, err := New(Config{Addrs: cl.Addrs(), Cluster: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

// TestFrozenRedisDoesNotStall checks the bounded timeouts: against a Redis
// stopped with SIGSTOP a call gives up in about a second, not go-redis's
// default 6 to 10.
func TestFrozenRedisDoesNotStall(t *testing.T) {
	srv := redistest.Start(t)
	s := open(t, srv)
	ctx := context.Background()
	if err := s.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	srv.Pause()
	defer srv.Resume()
	start := time.Now()
	err := s.Ping(ctx)
	if err == nil {
		t.Fatal("ping to a frozen redis succeeded")
	}
	// Generous bound: read timeout 500ms, one retry.
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("a call against a frozen redis took %v", d)
	}
	ctx2, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	start = time.Now()
	s.Ping(ctx2)
	if d := time.Since(start); d > time.Second {
		t.Errorf("the caller's 100ms deadline was not honoured: %v", d)
	}
}

func TestOptions(t *testing.T) {
	o, err := Config{URL: "redis://u:pw@h:6380/2"}.Options()
	if err != nil {
		t.Fatal(err)
	}
	if o.Addrs[0] != "h:6380" || o.DB != 2 || o.Password != "pw" || !o.ContextTimeoutEnabled || o.PoolSize != 32 || o.ReadTimeout != 500*time.Millisecond {
		t.Errorf("got %+v", o)
	}
	if _, err := (Config{}).Options(); err == nil {
		t.Error("no address accepted")
	}
}
