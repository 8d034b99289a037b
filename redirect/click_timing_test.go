package redirect

import (
	"context"
	"net"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/cookie"
	"github.com/refgate/refgate/events"
	"github.com/refgate/refgate/store"
)

// discard is a ClickWriter that drops batches: the benchmark measures the
// click path, not the store.
type discard struct{}

func (discard) RecordClicks(context.Context, string, []attribution.Click) error { return nil }

// benchEdge is a handler with a warm link cache over the embedded store, a
// real signer and the real pipeline, writing its log as JSON Lines event
// files in a temporary directory (as on the embedded store) and its click
// records to a store that drops them. cfg adjusts the pipeline.
func benchEdge(tb testing.TB, cfg events.Config) (*Handler, func()) {
	tb.Helper()
	e := newEdge(tb, nil)
	stop := withLog(tb, e.h, cfg)
	if _, err := e.cache.Lookup([]byte("shop1")); err != nil {
		tb.Fatal(err)
	}
	return e.h, stop
}

// withLog gives h a real pipeline; cfg adjusts it.
func withLog(tb testing.TB, h *Handler, cfg events.Config) func() {
	tb.Helper()
	cfg.Dir, cfg.Files, cfg.Store = filepath.Join(tb.TempDir(), "events"), true, discard{}
	cfg.FileKeep = 2
	if cfg.QueueSize == 0 { // as large as the benchmarks' bursts: no drops, no read-backs
		cfg.QueueSize, cfg.Window = 1<<20, 1<<20
	}
	p, err := events.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	h.cfg.Log = p
	return func() { p.Close(context.Background()) }
}

var remote = &net.TCPAddr{IP: net.IPv4(198, 51, 100, 20), Port: 40000}

func clickRequest(returning bool) *fasthttp.Request {
	var r fasthttp.Request
	r.SetRequestURI("/r/shop1")
	r.Header.SetHost("go.example.com")
	r.Header.Set("User-Agent", browserUA)
	r.Header.Set("Sec-Fetch-Mode", "navigate")
	r.Header.Set("Sec-Fetch-Dest", "document")
	r.Header.Set("Referer", "https://blog.example/post/42?session=5f3a9c#comments")
	if returning {
		r.Header.SetCookie("rg_vid", string(cookie.AppendVisitorID(nil)))
	}
	return &r
}

// fixed302 is the baseline: the least a redirector can do.
func fixed302(ctx *fasthttp.RequestCtx) {
	ctx.SetStatusCode(fasthttp.StatusFound)
	ctx.Response.Header.SetBytesKV(hdrLocation, []byte("https://shop.example.com/landing?utm=x"))
	ctx.Response.Header.SetBytesKV(hdrSetCookie, []byte("rg_vid=AAAAAAAAAAAAAAAAAAAAAA; Path=/; Max-Age=31536000; HttpOnly; SameSite=Lax"))
}

func runHandler(b *testing.B, h fasthttp.RequestHandler, req *fasthttp.Request) {
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var ctx fasthttp.RequestCtx
		ctx.Init(req, remote, nil)
		for pb.Next() {
			ctx.Response.Reset()
			h(&ctx)
			if ctx.Response.StatusCode() != fasthttp.StatusFound {
				b.Fatalf("status %d", ctx.Response.StatusCode())
			}
		}
	})
}

// BenchmarkClick compares the click handler, doing all of its work (cache
// lookup, bot filter, token signing, two cookies, queueing the click), with
// a handler that only writes a fixed 302 and one cookie, in the same run.
// The pipeline encodes each click's event, writes it to its log every
// millisecond and fsyncs every second, in the background on the same
// cores.
func BenchmarkClick(b *testing.B) {
	h, stop := benchEdge(b, events.Config{})
	defer stop()
	b.Run("Fixed302", func(b *testing.B) { runHandler(b, fixed302, clickRequest(false)) })
	b.Run("NewVisitor", func(b *testing.B) { runHandler(b, h.ServeFastHTTP, clickRequest(false)) })
	b.Run("ReturningVisitor", func(b *testing.B) { runHandler(b, h.ServeFastHTTP, clickRequest(true)) })
}

func BenchmarkSign(b *testing.B) {
	s, _ := cookie.NewSigner([]cookie.Key{{ID: "k1", Secret: []byte("0123456789abcdef0123")}})
	tok := cookie.Token{Program: "shop", Promoter: "alice", Link: "shop1", Click: "AZqS7k0AAAB3n1Kc2q9l8A", Visitor: "vQ1x2v3b4n5m6k7j8h9g0f"}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var buf []byte
		for pb.Next() {
			buf, _ = s.AppendToken(buf[:0], &tok)
		}
	})
}

// fillCache caches n synthetic links besides shop1, spread over the edge's
// three programs and 10,000 promoters, as if each had been clicked once.
func fillCache(tb testing.TB, c *LinkCache, n int) {
	tb.Helper()
	t, err := c.Lookup([]byte("shop1"))
	if err != nil || t == nil {
		tb.Fatal("shop1 does not resolve", err)
	}
	c.sawHosts(t.Program)
	programs := []string{"shop", "lessons", "xdomain"}
	start := c.cache.Begin()
	now := time.Now()
	for i := range n {
		p := c.cache.Group(store.Invalidation{Kind: store.Program, ID: programs[i%len(programs)]}.String())
		m := c.cache.Group(store.Invalidation{Kind: store.Promoter, ID: "p" + strconv.Itoa(i%10000)}.String())
		c.cache.Put("k"+strconv.Itoa(i), t, now, start, p, m)
	}
}

// BenchmarkInvalidate is the cost of one invalidation with a million links
// cached: what each admin change costs every instance, and how long it can
// hold up the clicks. Program checks its hosts in the background (the
// program is read once per change, not per link).
func BenchmarkInvalidate(b *testing.B) {
	e := newEdge(b, nil)
	fillCache(b, e.cache, 1<<20-1)
	f := func(name string, inv func(i int) store.Invalidation) {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				e.cache.Invalidate(inv(i))
				i++
			}
			b.StopTimer()
			e.cache.wait()
		})
	}
	f("Promoter", func(i int) store.Invalidation {
		return store.Invalidation{Kind: store.Promoter, ID: "p" + strconv.Itoa(i%10000)}
	})
	f("Program", func(int) store.Invalidation { return store.Invalidation{Kind: store.Program, ID: "shop"} })
	f("Link", func(i int) store.Invalidation {
		return store.Invalidation{Kind: store.Link, ID: "k" + strconv.Itoa(i%(1<<20-1))}
	})
	f("All", func(int) store.Invalidation { return store.Invalidation{Kind: store.All} })
	if e.cache.Len() != 1<<20 {
		b.Fatalf("%d entries: invalidations evicted", e.cache.Len())
	}
}

// BenchmarkClickDuringInvalidations clicks a link with a million links
// cached, first with no invalidations, then while another goroutine applies
// a stream of promoter and program changes (about 10,000 a second; one in a
// hundred of them the clicked link's own promoter and one in a hundred its
// program, each of which makes it stale and re-read in the background): the
// two figures should match.
func BenchmarkClickDuringInvalidations(b *testing.B) {
	e := newEdge(b, nil)
	defer withLog(b, e.h, events.Config{})()
	fillCache(b, e.cache, 1<<20-1)
	b.Run("Quiet", func(b *testing.B) { runHandler(b, e.h.ServeFastHTTP, clickRequest(true)) })
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(100 * time.Microsecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			switch {
			case i%100 == 0:
				e.cache.Invalidate(store.Invalidation{Kind: store.Promoter, ID: "alice"})
			case i%100 == 50:
				e.cache.Invalidate(store.Invalidation{Kind: store.Program, ID: "shop"})
			case i%10 == 0:
				e.cache.Invalidate(store.Invalidation{Kind: store.Program, ID: "lessons"})
			default:
				e.cache.Invalidate(store.Invalidation{Kind: store.Promoter, ID: "p" + strconv.Itoa(i%10000)})
			}
		}
	}()
	b.Run("Invalidations", func(b *testing.B) { runHandler(b, e.h.ServeFastHTTP, clickRequest(true)) })
	close(stop)
	<-done
	e.cache.wait()
}
