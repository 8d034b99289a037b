//go:build !race

package redirect

import (
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/refgate/refgate/events"
)

// maxClickAllocs is the click path's allocation budget: the visitor id and
// the click id become strings in the click record that outlives the request.
// Everything else (token, cookies, headers, the record's copy into the
// queue) reuses buffers.
const maxClickAllocs = 2

const raceEnabled = false // see race_test.go

func TestClickAllocations(t *testing.T) {
	// Queueing the click adds nothing: the pipeline keeps clicks as values
	// and copies the user agent into a reused arena. (Its writer is held
	// off here, since AllocsPerRun counts every goroutine's allocations.)
	h, stop := benchEdge(t, events.Config{WriteInterval: time.Hour, SyncInterval: time.Hour, FlushInterval: time.Hour})
	defer stop()
	check(t, h)
}

func check(t *testing.T, h *Handler) {
	for _, returning := range []bool{false, true} {
		req := clickRequest(returning)
		var ctx fasthttp.RequestCtx
		ctx.Init(req, remote, nil)
		serve := func() {
			ctx.Response.Reset()
			h.ServeFastHTTP(&ctx)
		}
		serve() // warm the cache, pools and buffers
		if n := testing.AllocsPerRun(1000, serve); n > maxClickAllocs {
			t.Errorf("returning=%v: %.1f allocations per click, budget %d", returning, n, maxClickAllocs)
		} else {
			t.Logf("returning=%v: %.1f allocations per click", returning, n)
		}
		if ctx.Response.StatusCode() != 302 {
			t.Fatalf("status %d", ctx.Response.StatusCode())
		}
	}
}
