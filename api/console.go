package api

import (
	"bytes"
	"strings"

	"github.com/valyala/fasthttp"

	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/console"
)

// The console (package console) is, besides the health checks, the one
// part of the API served without a token: static files, which hold no
// data. The page asks for the token and sends it, in the Authorization
// header, with every call it makes.

// isConsolePath reports whether path is the console's, so that every
// answer under it, a 404 or a 405 too, carries console.Headers.
func isConsolePath(path string) bool {
	return path == "/ui" || strings.HasPrefix(path, "/ui/")
}

func consoleHeaders(ctx *fasthttp.RequestCtx) {
	for _, h := range console.Headers {
		ctx.Response.Header.Set(h[0], h[1])
	}
}

// consoleIndex serves the page at /ui/ (the route /ui, as /debug/pprof is
// served with and without its slash), and sends /ui to /ui/: the page's
// files are named relative to it.
func (s *Server) consoleIndex(ctx *fasthttp.RequestCtx) {
	if string(ctx.Path()) == "/ui" {
		ctx.Response.Header.Set("Location", "/ui/")
		ctx.Response.Header.Set("Cache-Control", "no-cache")
		ctx.SetStatusCode(fasthttp.StatusMovedPermanently)
		return
	}
	s.consoleAsset(ctx, "")
}

// consoleAsset serves one embedded file, with a 304 for a request whose
// If-None-Match names its ETag.
func (s *Server) consoleAsset(ctx *fasthttp.RequestCtx, name string) {
	a, ok := console.Lookup(name)
	if !ok {
		s.fail(ctx, attribution.Errorf(attribution.ENotFound, "the console has no file %s", name))
		return
	}
	ctx.Response.Header.Set("Cache-Control", a.CacheControl)
	ctx.Response.Header.Set("ETag", a.ETag)
	if inm := ctx.Request.Header.Peek("If-None-Match"); len(inm) > 0 && etagMatch(inm, a.ETag) {
		ctx.SetStatusCode(fasthttp.StatusNotModified)
		return
	}
	ctx.SetContentType(a.ContentType)
	// The body is shared and never written: no copy per request.
	ctx.Response.SetBodyRaw(a.Body)
}

// etagMatch reports whether an If-None-Match header names etag, or is *.
func etagMatch(header []byte, etag string) bool {
	for _, t := range bytes.Split(header, []byte(",")) {
		t = bytes.TrimSpace(t)
		t = bytes.TrimPrefix(t, []byte("W/"))
		if string(t) == etag || string(t) == "*" {
			return true
		}
	}
	return false
}
