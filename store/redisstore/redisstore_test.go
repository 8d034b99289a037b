package redisstore

import (
	"context"
	"testing"
	"time"

	"github.com/refgate/refgate/attribution"
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

// TestWriteFailsWithoutPublish: a write that publishes an invalidation does
// it in the same script, so when the PUBLISH is refused (an ACL without it)
// the write fails and changes nothing, instead of succeeding while other
// instances keep serving what they cached.
func TestWriteFailsWithoutPublish(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	admin := srv.Client()
	if err := admin.Do(ctx, "ACL", "SETUSER", "nopub", "on", ">pw", "~refgate:*", "&refgate:*", "+@all", "-publish").Err(); err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{URL: srv.URL(), Username: "nopub", Password: "pw"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	full := open(t, srv)

	if err := s.PutProgram(ctx, storetest.Program("shop")); err == nil {
		t.Error("PutProgram succeeded without its PUBLISH")
	}
	if _, err := full.Program(ctx, "shop"); err != store.ErrNotFound {
		t.Errorf("a PutProgram that failed wrote the program: %v", err)
	}
	if err := s.PutPromoter(ctx, &attribution.Promoter{ID: "alice", Status: "active"}); err == nil {
		t.Error("PutPromoter succeeded without its PUBLISH")
	}
	l := &attribution.Link{Code: "shop1", Program: "shop", Promoter: "alice", Destination: "https://shop.example.com/"}
	if err := s.CreateLink(ctx, l); err == nil {
		t.Error("CreateLink succeeded without its PUBLISH")
	}
	if _, err := full.Link(ctx, "shop1"); err != store.ErrNotFound {
		t.Errorf("a CreateLink that failed wrote the link: %v", err)
	}
	if err := full.CreateLink(ctx, l); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteLink(ctx, "shop1"); err == nil || err == store.ErrNotFound {
		t.Errorf("DeleteLink without its PUBLISH: %v, want a failure", err)
	}
	if _, err := full.Link(ctx, "shop1"); err != nil {
		t.Errorf("a DeleteLink that failed deleted the link: %v", err)
	}
	if err := full.DeleteLink(ctx, "shop1"); err != nil {
		t.Errorf("the delete tried again: %v", err)
	}
}
