package loadtest

import (
	"time"

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
