package redirect

import (
	"context"
	"net"
	"path/filepath"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/cookie"
	"github.com/refgate/refgate/events"
)

// discard is a ClickWriter that drops batches: the benchmark measures the
// click path, not the store.
type discard struct{}

func (discard) RecordClicks(context.Context, string, []attribution.Click) error { return nil }

// benchEdge is a handler with a warm link cache over the embedded store, a
// real signer and a real Batcher over an in-memory writer.
func benchEdge(tb testing.TB) (*Handler, func()) {
	tb.Helper()
	e := newEdge(tb, nil)
	b := NewBatcher(discard{}, BatcherConfig{QueueSize: 1 << 20})
	e.h.cfg.Queue = b
	if _, err := e.cache.Lookup([]byte("shop1")); err != nil {
		tb.Fatal(err)
	}
	return e.h, func() { b.Close(context.Background()) }
}

// withEvents gives h a real event pipeline writing JSON Lines files (with an
// fsync per batch) in a temporary directory. cfg adjusts the pipeline.
func withEvents(tb testing.TB, h *Handler, cfg events.Config) func() {
	tb.Helper()
	dir := tb.TempDir()
	sink, err := events.OpenJSONLines(filepath.Join(dir, "events"), 64<<20, 2)
	if err != nil {
		tb.Fatal(err)
	}
	cfg.Sink, cfg.SpoolDir = sink, filepath.Join(dir, "spool")
	p, err := events.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	h.cfg.Events = p
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
// lookup, bot filter, token signing, two cookies, queueing the record), with
// a handler that only writes a fixed 302 and one cookie, in the same run.
func BenchmarkClick(b *testing.B) {
	h, stop := benchEdge(b)
	defer stop()
	b.Run("Fixed302", func(b *testing.B) { runHandler(b, fixed302, clickRequest(false)) })
	b.Run("NewVisitor", func(b *testing.B) { runHandler(b, h.ServeFastHTTP, clickRequest(false)) })
	b.Run("ReturningVisitor", func(b *testing.B) { runHandler(b, h.ServeFastHTTP, clickRequest(true)) })
	// The same clicks with events on: each click also queues its event,
	// and the pipeline encodes and writes them to files in the background
	// on the same cores.
	stopEvents := withEvents(b, h, events.Config{QueueSize: 1 << 20})
	defer stopEvents()
	b.Run("NewVisitorEvents", func(b *testing.B) { runHandler(b, h.ServeFastHTTP, clickRequest(false)) })
	b.Run("ReturningVisitorEvents", func(b *testing.B) { runHandler(b, h.ServeFastHTTP, clickRequest(true)) })
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
