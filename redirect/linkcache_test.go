package redirect

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/internal/redistest"
	"github.com/refgate/refgate/store"
	"github.com/refgate/refgate/store/embedded"
	"github.com/refgate/refgate/store/redisstore"
)

// countingSource counts link reads.
type countingSource struct {
	LinkSource
	reads atomic.Int64
}

func (c *countingSource) Link(ctx context.Context, code string) (*attribution.Link, error) {
	c.reads.Add(1)
	return c.LinkSource.Link(ctx, code)
}

// cacheEnv is a LinkCache fed by a real store's invalidation feed, with the
// store seeded with program shop, promoter alice and link shop1.
type cacheEnv struct {
	st    store.Store
	src   *countingSource
	cache *LinkCache
	got   chan store.Invalidation
}

func stores(t *testing.T) map[string]func(t *testing.T) store.Store {
	return map[string]func(t *testing.T) store.Store{
		"embedded": func(t *testing.T) store.Store {
			st, err := embedded.Open(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			return st
		},
		"redis": func(t *testing.T) store.Store {
			srv := redistest.Start(t)
			st, err := redisstore.New(redisstore.Config{URL: srv.URL()})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			return st
		},
	}
}

func newCacheEnv(t *testing.T, st store.Store) *cacheEnv {
	t.Helper()
	e := &cacheEnv{st: st, src: &countingSource{LinkSource: st}, got: make(chan store.Invalidation, 100)}
	e.cache = NewLinkCache(e.src, LinkCacheConfig{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		st.WatchInvalidations(ctx, func(inv store.Invalidation) {
			e.cache.Invalidate(inv)
			e.got <- inv
		})
	}()
	t.Cleanup(func() { cancel(); <-done })
	e.delivered(t, store.Invalidation{Kind: store.All})
	bg := context.Background()
	p := &attribution.Program{ID: "shop", CookieDays: 30, AllowedHosts: []string{"shop.example.com", ".example.org"}}
	p.Normalize()
	e.must(t, st.PutProgram(bg, p), store.Invalidation{Kind: store.Program, ID: "shop"})
	e.must(t, st.PutPromoter(bg, &attribution.Promoter{ID: "alice", Status: "active"}), store.Invalidation{Kind: store.Promoter, ID: "alice"})
	e.must(t, st.CreateLink(bg, &attribution.Link{Code: "shop1", Program: "shop", Promoter: "alice", Destination: "https://shop.example.com/x"}),
		store.Invalidation{Kind: store.Link, ID: "shop1"})
	return e
}

// must checks a write and waits until this cache has applied the
// invalidation it published, and for the background reads it started.
func (e *cacheEnv) must(t *testing.T, err error, inv store.Invalidation) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	e.delivered(t, inv)
}

func (e *cacheEnv) delivered(t *testing.T, inv store.Invalidation) {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case got := <-e.got:
			if got == inv {
				e.cache.wait()
				return
			}
		case <-timeout:
			t.Fatalf("invalidation %v not delivered", inv)
		}
	}
}

func (e *cacheEnv) lookup(t *testing.T, code string) *Target {
	t.Helper()
	tg, err := e.cache.Lookup([]byte(code))
	if err != nil {
		t.Fatal(err)
	}
	return tg
}

func eachStore(t *testing.T, f func(t *testing.T, e *cacheEnv)) {
	for name, newStore := range stores(t) {
		t.Run(name, func(t *testing.T) { f(t, newCacheEnv(t, newStore(t))) })
	}
}

// TestPromoterEditServesStale: a promoter edit evicts nothing; the next
// click is served the cached target without waiting for the store, and the
// one after it the target re-read in the background.
func TestPromoterEditServesStale(t *testing.T) {
	eachStore(t, func(t *testing.T, e *cacheEnv) {
		old := e.lookup(t, "shop1")
		n, reads := e.cache.Len(), e.src.reads.Load()
		pr := &attribution.Promoter{ID: "alice", Status: "active", Fingerprints: attribution.FingerprintSet{"ip:abc"}}
		e.must(t, e.st.PutPromoter(context.Background(), pr), store.Invalidation{Kind: store.Promoter, ID: "alice"})
		if e.cache.Len() != n || e.src.reads.Load() != reads {
			t.Fatalf("a promoter edit evicted or re-read links: %d entries (was %d), %d reads (was %d)", e.cache.Len(), n, e.src.reads.Load(), reads)
		}
		if got := e.lookup(t, "shop1"); got != old {
			t.Fatal("Stale: the next lookup did not serve the cached target")
		}
		e.cache.wait()
		got := e.lookup(t, "shop1")
		if got == old || len(got.PromoterIPs) != 1 {
			t.Fatalf("Refreshed: the lookup after the re-read got %+v", got)
		}
		if e.lookup(t, "shop1") != got {
			t.Fatal("the refreshed target is not cached")
		}
	})
}

// TestProgramEditServesStale: a program edit that keeps every host is
// served stale and re-read in the background, like a promoter's.
func TestProgramEditServesStale(t *testing.T) {
	eachStore(t, func(t *testing.T, e *cacheEnv) {
		old := e.lookup(t, "shop1")
		p := &attribution.Program{ID: "shop", CookieDays: 7, AllowedHosts: []string{"shop.example.com", ".example.org", "new.example.net"}}
		p.Normalize()
		e.must(t, e.st.PutProgram(context.Background(), p), store.Invalidation{Kind: store.Program, ID: "shop"})
		if got := e.lookup(t, "shop1"); got != old {
			t.Fatal("Stale: the next lookup did not serve the cached target")
		}
		e.cache.wait()
		if got := e.lookup(t, "shop1"); got.maxAge != 7*86400 {
			t.Fatalf("Refreshed: max age %d after the re-read", got.maxAge)
		}
	})
}

// TestHostRemovalRechecks: a program that stops allowing a host its cached
// links were built with makes them re-read before they are used.
func TestHostRemovalRechecks(t *testing.T) {
	eachStore(t, func(t *testing.T, e *cacheEnv) {
		e.lookup(t, "shop1")
		p := &attribution.Program{ID: "shop", CookieDays: 30, AllowedHosts: []string{".example.org"}}
		p.Normalize()
		e.must(t, e.st.PutProgram(context.Background(), p), store.Invalidation{Kind: store.Program, ID: "shop"})
		reads := e.src.reads.Load()
		if got := e.lookup(t, "shop1"); got != nil {
			t.Fatalf("a link to a host its program no longer allows was served: %+v", got)
		}
		if e.src.reads.Load() != reads+1 {
			t.Fatalf("%d reads, want the lookup to read the link once", e.src.reads.Load()-reads)
		}
	})
}

// TestDeletionStopsAtOnce: once a link's deletion is delivered, the next
// lookup re-reads it and answers unknown.
func TestDeletionStopsAtOnce(t *testing.T) {
	eachStore(t, func(t *testing.T, e *cacheEnv) {
		e.lookup(t, "shop1")
		e.must(t, e.st.DeleteLink(context.Background(), "shop1"), store.Invalidation{Kind: store.Link, ID: "shop1"})
		if got := e.lookup(t, "shop1"); got != nil {
			t.Fatalf("a deleted link was served: %+v", got)
		}
	})
}

// TestUnrelatedChangeKeepsFresh: changes to another program or promoter do
// not touch a link's entry.
func TestUnrelatedChangeKeepsFresh(t *testing.T) {
	eachStore(t, func(t *testing.T, e *cacheEnv) {
		old := e.lookup(t, "shop1")
		bg := context.Background()
		p := &attribution.Program{ID: "other", CookieDays: 30, AllowedHosts: []string{"other.example.com"}}
		p.Normalize()
		e.must(t, e.st.PutProgram(bg, p), store.Invalidation{Kind: store.Program, ID: "other"})
		e.must(t, e.st.PutPromoter(bg, &attribution.Promoter{ID: "bob", Status: "active"}), store.Invalidation{Kind: store.Promoter, ID: "bob"})
		reads := e.src.reads.Load()
		if got := e.lookup(t, "shop1"); got != old || e.src.reads.Load() != reads {
			t.Fatal("an unrelated change made the link stale")
		}
	})
}

// TestReconnectRechecks: Kind All (changes may have been missed) re-reads
// every entry before it is used, a negative one too.
func TestReconnectRechecks(t *testing.T) {
	e := newCacheEnv(t, stores(t)["embedded"](t))
	e.lookup(t, "shop1")
	if e.lookup(t, "nope99") != nil {
		t.Fatal("unknown code resolved")
	}
	reads := e.src.reads.Load()
	e.cache.Invalidate(store.Invalidation{Kind: store.All})
	e.lookup(t, "shop1")
	e.lookup(t, "nope99")
	if got := e.src.reads.Load() - reads; got != 2 {
		t.Fatalf("%d reads after a reconnect, want 2", got)
	}
}
