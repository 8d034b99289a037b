package loadtest

import (
	"context"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/valyala/fasthttp"
)

// The ceiling's answer: what refgate answers a visitor's click, minus all
// the work. One cookie of a realistic size, the same headers.
var (
	ceilingLocation = []byte("https://shop.example.com/landing")
	ceilingCookie   = []byte("rg_load=1.k1.AQAAAGxvYWQAAABsb2FkLXAwAAAAZVpRd0xMTVFfYUdDUEJEAAAAAAAAAAAAAAAAAAAAAAAAAA.f3wzG5o0dX9Y8JQzZ2mVqA; Path=/; Max-Age=2592000; HttpOnly; SameSite=Lax")
)

// NewCeiling returns the baseline server: fasthttp configured as refgate's
// edge is, answering every request with a fixed 302, one Set-Cookie and
// no body. No real server answering a click can be faster on the same
// machine, so refgate's figures are reported as ratios to it.
func NewCeiling() *fasthttp.Server {
	return &fasthttp.Server{
		Handler: func(ctx *fasthttp.RequestCtx) {
			if string(ctx.Path()) == "/healthz" {
				ctx.SetBodyString("ok")
				return
			}
			ctx.SetStatusCode(fasthttp.StatusFound)
			h := &ctx.Response.Header
			h.SetBytesV("Location", ceilingLocation)
			h.Set("Cache-Control", "no-store")
			h.Set("Referrer-Policy", "strict-origin-when-cross-origin")
			h.Set("X-Robots-Tag", "noindex")
			h.SetBytesV("Set-Cookie", ceilingCookie)
		},
		NoDefaultServerHeader: true,
		NoDefaultContentType:  true,
		ReadBufferSize:        16 << 10,
		ReadTimeout:           5 * time.Second,
		WriteTimeout:          5 * time.Second,
		IdleTimeout:           60 * time.Second,
	}
}

// KeyWriter makes the ceiling a store baseline: every click answered also
// queues one SET of a record-sized value (and, with events, one XADD of an
// event-sized entry to a capped stream), and a background loop writes the
// queue to Redis as one pipeline every millisecond (or every 256 clicks),
// fire and forget. With one SET it is the least a redirector that records
// its clicks in Redis can do; with the XADD as well, the least one that
// also writes docs/design.md's click event per click to a Redis Stream
// can do, which is refgate's work per click in Redis apart from its link
// counters.
type KeyWriter struct {
	rdb     redis.UniversalClient
	events  bool
	pending atomic.Int64 // clicks not yet written
	kick    chan struct{}
	done    chan struct{}
	exited  chan struct{}
	errors  atomic.Int64
}

// keyWriterValue is the size of refgate's visitor record, keyWriterEvent of
// its click event (CloudEvents JSON with a browser's user agent).
var (
	keyWriterValue = strings.Repeat("v", 300)
	keyWriterEvent = strings.Repeat("e", 580)
)

// keyWriterStream is the stream of the events, capped as refgate's is by
// default (events.DefaultStreamMaxLen).
const (
	keyWriterStream = "refgate-load:events"
	keyWriterMaxLen = 800_000
)

// NewKeyWriter starts the writer; Close stops it after a last write. With
// events, every click also adds a stream entry.
func NewKeyWriter(rdb redis.UniversalClient, events bool) *KeyWriter {
	w := &KeyWriter{rdb: rdb, events: events, kick: make(chan struct{}, 1), done: make(chan struct{}), exited: make(chan struct{})}
	go w.run()
	return w
}

// Add queues one answered click's writes.
func (w *KeyWriter) Add() {
	if w.pending.Add(1) == 256 {
		select {
		case w.kick <- struct{}{}:
		default:
		}
	}
}

// Errors is the number of failed pipelines.
func (w *KeyWriter) Errors() int64 { return w.errors.Load() }

func (w *KeyWriter) run() {
	defer close(w.exited)
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	var written uint64 // keys are numbered from 1 in the order written
	var key []byte
	for {
		stop := false
		select {
		case <-t.C:
		case <-w.kick:
		case <-w.done:
			stop = true
		}
		if n := w.pending.Swap(0); n > 0 {
			pipe := w.rdb.Pipeline()
			for range n {
				written++
				key = strconv.AppendUint(append(key[:0], "refgate-load:click:"...), written, 10)
				pipe.Set(context.Background(), string(key), keyWriterValue, 10*time.Minute)
				if w.events {
					pipe.XAdd(context.Background(), &redis.XAddArgs{Stream: keyWriterStream,
						MaxLen: keyWriterMaxLen, Approx: true, Values: []any{"event", keyWriterEvent}})
				}
			}
			if _, err := pipe.Exec(context.Background()); err != nil {
				w.errors.Add(1)
			}
		}
		if stop {
			return
		}
	}
}

// Close writes what is queued and stops.
func (w *KeyWriter) Close() {
	close(w.done)
	<-w.exited
}

// NewCeilingWithKeys is the ceiling that also queues each answered click's
// writes on w.
func NewCeilingWithKeys(w *KeyWriter) *fasthttp.Server {
	srv := NewCeiling()
	answer := srv.Handler
	srv.Handler = func(ctx *fasthttp.RequestCtx) {
		answer(ctx)
		if ctx.Response.StatusCode() == fasthttp.StatusFound {
			w.Add()
		}
	}
	return srv
}
