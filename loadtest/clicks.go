package loadtest

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"sync/atomic"

	"github.com/valyala/fasthttp"
)

// ClickOptions shape the clicks scenario. Zero values take the defaults.
type ClickOptions struct {
	// Visitors is the size of the pool of returning visitors, whose
	// cookie jars are kept between clicks. Default 10000.
	Visitors int
	// Shares of the clicks, each 0..1: from new visitors (no cookie),
	// from crawlers, prefetches, of unknown codes. The rest are returning
	// visitors clicking again, usually another promoter's link. All zero
	// means the default mix 0.3, 0.05, 0.02, 0.01.
	New, Bots, Prefetches, Unknown float64
	// ZipfS is the Zipf exponent of link popularity (> 1; default 1.1).
	ZipfS float64
}

func (o *ClickOptions) defaults() {
	if o.Visitors <= 0 {
		o.Visitors = 10000
	}
	if o.New == 0 && o.Bots == 0 && o.Prefetches == 0 && o.Unknown == 0 {
		o.New, o.Bots, o.Prefetches, o.Unknown = 0.3, 0.05, 0.02, 0.01
	}
	if o.ZipfS <= 1 {
		o.ZipfS = 1.1
	}
}

// Clicks is the clicks scenario: Zipf-distributed links of several
// promoters, clicked by new visitors and by returning ones who send the
// cookies they were given, with a share of crawlers, prefetches and
// unknown codes. Every answer is checked: 302 to the link's destination
// with the attribution cookie for a visitor, 302 without any cookie for a
// crawler or a prefetch, 404 without a cookie for an unknown code.
type Clicks struct {
	o       ClickOptions
	edge    *Target
	fx      *Fixture
	uris    [][]byte // per link, the click path (the worker adds the Host)
	unknown [][]byte
	dest    []byte
	cookie  []byte // "rg_{program}"
	jars    []atomic.Pointer[[]byte]
}

// NewClicks returns the clicks scenario on the edge for fx's links.
func NewClicks(edge *Target, fx *Fixture, o ClickOptions) (*Clicks, error) {
	o.defaults()
	uris, err := fx.clickPaths()
	if err != nil {
		return nil, err
	}
	if s := o.New + o.Bots + o.Prefetches + o.Unknown; s > 1 {
		return nil, fmt.Errorf("click shares add up to %.2f, more than 1", s)
	}
	c := &Clicks{o: o, edge: edge, fx: fx, uris: uris, dest: []byte(fx.Destination), cookie: []byte("rg_" + fx.Program),
		jars: make([]atomic.Pointer[[]byte], o.Visitors)}
	for i := range 64 {
		c.unknown = append(c.unknown, fmt.Appendf(nil, "/r/zzUnknown%03d", i))
	}
	return c, nil
}

// Name is "clicks".
func (c *Clicks) Name() string { return "clicks" }

const (
	browserUA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"
	crawlerUA = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
)

// linkPicker returns the worker's Zipf-distributed choice among n links,
// made on its first use (a worker runs one scenario).
func linkPicker(w *Worker, s float64, n int) *rand.Zipf {
	z, _ := w.Data.(*rand.Zipf)
	if z == nil {
		z = rand.NewZipf(w.Rand, s, 1, uint64(n-1))
		w.Data = z
	}
	return z
}

// Do sends one click.
func (c *Clicks) Do(w *Worker) Outcome {
	zipf := linkPicker(w, c.o.ZipfS, len(c.uris))
	req := w.Req
	req.Header.SetUserAgent(browserUA)
	req.Header.Set("Sec-Fetch-Mode", "navigate")
	req.Header.Set("Sec-Fetch-Dest", "document")
	x := w.Rand.Float64()
	switch {
	case x < c.o.Unknown:
		req.SetRequestURIBytes(c.unknown[w.Rand.IntN(len(c.unknown))])
		out := w.Send(c.edge, "click_unknown")
		if out.Err == "" && out.Status != fasthttp.StatusNotFound {
			out.Err = "unexpected_status"
		} else if out.Err == "" && hasSetCookie(w.Resp) {
			out.Err = "cookie_on_unknown"
		}
		return out
	case x < c.o.Unknown+c.o.Bots+c.o.Prefetches:
		req.SetRequestURIBytes(c.uris[zipf.Uint64()])
		op := "click_bot"
		if x < c.o.Unknown+c.o.Bots {
			req.Header.SetUserAgent(crawlerUA)
			req.Header.Del("Sec-Fetch-Mode")
			req.Header.Del("Sec-Fetch-Dest")
		} else {
			op = "click_prefetch"
			req.Header.Set("Sec-Purpose", "prefetch")
		}
		out := w.Send(c.edge, op)
		if out.Err == "" && out.Status != fasthttp.StatusFound {
			out.Err = "unexpected_status"
		} else if out.Err == "" && hasSetCookie(w.Resp) {
			out.Err = "cookie_on_bot"
		}
		return out
	}
	// A visitor: new, or one of the pool with its cookies.
	slot := w.Rand.IntN(len(c.jars))
	op := "click_new"
	if x >= c.o.Unknown+c.o.Bots+c.o.Prefetches+c.o.New {
		if jar := c.jars[slot].Load(); jar != nil {
			req.Header.SetBytesV("Cookie", *jar)
			op = "click_returning"
		}
	}
	req.SetRequestURIBytes(c.uris[zipf.Uint64()])
	out := w.Send(c.edge, op)
	if out.Err != "" {
		return out
	}
	if out.Status != fasthttp.StatusFound {
		out.Err = "unexpected_status"
		return out
	}
	if !bytes.HasPrefix(w.Resp.Header.Peek("Location"), c.dest) {
		out.Err = "bad_location"
		return out
	}
	jar, ok := c.merge(c.jars[slot].Load(), w.Resp)
	if !ok {
		out.Err = "no_cookie"
		return out
	}
	c.jars[slot].Store(jar)
	return out
}

func hasSetCookie(r *fasthttp.Response) bool {
	for range r.Header.Cookies() {
		return true
	}
	return false
}

// merge returns the visitor's Cookie header after resp: the visitor id it
// had or was given, and the attribution cookie it was given. ok is false
// when resp set no attribution cookie.
func (c *Clicks) merge(old *[]byte, resp *fasthttp.Response) (*[]byte, bool) {
	vid, tok := refgateCookies(resp, c.cookie)
	if tok == nil {
		return nil, false
	}
	if vid == nil && old != nil { // kept from before: refgate sets it only once
		for part := range bytes.SplitSeq(*old, []byte("; ")) {
			if bytes.HasPrefix(part, []byte("rg_vid=")) {
				vid = part
			}
		}
	}
	jar := make([]byte, 0, len(vid)+len(tok)+2)
	if vid != nil {
		jar = append(append(jar, vid...), "; "...)
	}
	jar = append(jar, tok...)
	return &jar, true
}

// refgateCookies returns the "name=value" parts of the visitor cookie and
// of the attribution cookie called name that resp sets, nil when absent.
// They point into resp.
func refgateCookies(resp *fasthttp.Response, name []byte) (vid, tok []byte) {
	for k, v := range resp.Header.Cookies() {
		nv, _, _ := bytes.Cut(v, []byte(";"))
		switch {
		case bytes.Equal(k, []byte("rg_vid")):
			vid = nv
		case bytes.Equal(k, name):
			tok = nv
		}
	}
	return vid, tok
}
