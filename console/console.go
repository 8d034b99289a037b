// Package console is refgate's web console: the page, script and styles the
// API listener serves under /ui/, embedded in the binary with go:embed, so
// that the console needs no other server, no CDN and no network. It is
// static: every number it shows comes from the JSON API, which the page
// calls with the operator's or promoter's token.
//
// The package only holds the files and says how to serve them; the api
// package routes /ui/ to Lookup.
package console

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"mime"
	"path"
	"strings"
)

//go:embed assets
var embedded embed.FS

// Asset is one file of the console, ready to serve. Its fields are shared
// by every caller: read them, never modify Body.
type Asset struct {
	Name         string // as in the URL after /ui/, e.g. "app.js", "vendor/uplot-1.6.32.min.js"
	Body         []byte
	ContentType  string
	CacheControl string
	ETag         string // a strong validator: the body's SHA-256, quoted
}

// CSP is the Content-Security-Policy of every /ui response: the console's
// own files and the API on the same origin, nothing else; no inline script
// or style (uPlot sizes its elements through element.style, which a CSP
// does not govern); images also from data: and blob: URLs (the QR codes
// are data: URLs, CSV downloads blob: ones).
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; " +
	"connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Headers are the security headers of every /ui response, CSP included.
var Headers = [][2]string{
	{"Content-Security-Policy", CSP},
	{"X-Content-Type-Options", "nosniff"},
	{"Referrer-Policy", "no-referrer"},
	{"X-Frame-Options", "DENY"},
	{"Cross-Origin-Opener-Policy", "same-origin"},
}

// Cache lifetimes. The console's own files keep their names from one
// release to the next, so a browser asks again every time (a 304 when
// nothing changed); a vendored file carries its version in its name and
// never changes under it.
const (
	cacheRevalidate = "no-cache"
	cacheImmutable  = "public, max-age=31536000, immutable"
)

var assets = load()

// load reads every embedded file once, at start.
func load() map[string]*Asset {
	root, err := fs.Sub(embedded, "assets")
	if err != nil {
		panic(err)
	}
	out := map[string]*Asset{}
	err = fs.WalkDir(root, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := fs.ReadFile(root, name)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		a := &Asset{Name: name, Body: body, ContentType: contentType(name), CacheControl: cacheRevalidate,
			ETag: `"` + hex.EncodeToString(sum[:16]) + `"`}
		if strings.HasPrefix(name, "vendor/") {
			a.CacheControl = cacheImmutable
		}
		out[name] = a
		return nil
	})
	if err != nil {
		panic(err)
	}
	return out
}

// contentType names a file's media type by its extension; JavaScript
// modules (.mjs) are JavaScript, as browsers require of a module script.
func contentType(name string) string {
	switch path.Ext(name) {
	case ".html":
		return "text/html; charset=utf-8"
	case ".js", ".mjs":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case ".md", ".txt":
		return "text/plain; charset=utf-8"
	case ".svg":
		return "image/svg+xml"
	}
	if t := mime.TypeByExtension(path.Ext(name)); t != "" {
		return t
	}
	return "application/octet-stream"
}

// Lookup returns the asset served at /ui/NAME; "" is the page itself,
// index.html. ok is false for a name the console does not have.
func Lookup(name string) (a *Asset, ok bool) {
	if name == "" {
		name = "index.html"
	}
	a, ok = assets[name]
	return a, ok
}

// Names lists every asset's name, for tests.
func Names() []string {
	out := make([]string, 0, len(assets))
	for n := range assets {
		out = append(out, n)
	}
	return out
}
