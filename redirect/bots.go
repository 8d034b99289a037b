package redirect

import (
	"bytes"
	"sync"

	"github.com/valyala/fasthttp"

	"github.com/refgate/refgate/attribution"
)

var (
	hdrPurpose      = []byte("Purpose")
	hdrSecPurpose   = []byte("Sec-Purpose")
	hdrXPurpose     = []byte("X-Purpose")
	hdrXMoz         = []byte("X-Moz")
	hdrSecFetchMode = []byte("Sec-Fetch-Mode")
	hdrSecFetchDest = []byte("Sec-Fetch-Dest")
	hdrSecFetchSite = []byte("Sec-Fetch-Site")
	hdrSecFetchUser = []byte("Sec-Fetch-User")
	hdrSecGPC       = []byte("Sec-Gpc") // as fasthttp normalises Sec-GPC
	strPrefetch     = []byte("prefetch")
	strPreview      = []byte("preview")
	strNavigate     = []byte("navigate")
	strDocument     = []byte("document")
	strUserActive   = []byte("?1")
	strOne          = []byte("1")
)

// fetchSites are the Sec-Fetch-Site values the spec defines.
var fetchSites = [...]attribution.FetchSite{attribution.FetchSiteCrossSite, attribution.FetchSiteSameSite,
	attribution.FetchSiteSameOrigin, attribution.FetchSiteNone}

func fetchSite(v []byte) attribution.FetchSite {
	for _, s := range fetchSites {
		if string(v) == string(s) {
			return s
		}
	}
	return attribution.FetchSiteOther
}

// request is what classify reads off a request's headers besides its
// verdict.
type request struct {
	navigate bool // Sec-Fetch-Mode: navigate
	gpc      bool // Sec-GPC: 1
}

// classify returns OutcomeBot for crawlers, link-preview fetchers, HEAD
// requests and prefetches; OutcomeSuspect for requests a browser marks as not
// being a top-level navigation (an <img>, <iframe>, script or fetch: the tools
// of cookie stuffing); and "" for a click that may set a cookie.
//
// It reads the headers in one pass rather than one lookup per header: each
// fasthttp lookup copies and normalises its key and scans every header.
// fasthttp has already normalised the request's header names.
func (b *botFilter) classify(req *fasthttp.Request, seen *attribution.Seen, r *request) attribution.Outcome {
	h := &req.Header
	if h.IsHead() {
		return attribution.OutcomeBot
	}
	var prefetch, notNavigation bool
	for k, v := range h.All() {
		switch {
		case bytes.Equal(k, hdrPurpose), bytes.Equal(k, hdrSecPurpose), bytes.Equal(k, hdrXMoz):
			prefetch = prefetch || bytes.Contains(v, strPrefetch)
		case bytes.Equal(k, hdrXPurpose):
			prefetch = prefetch || bytes.Contains(v, strPreview)
		case bytes.Equal(k, hdrSecFetchMode):
			r.navigate = bytes.Equal(v, strNavigate)
			notNavigation = notNavigation || len(v) > 0 && !r.navigate
		case bytes.Equal(k, hdrSecFetchSite):
			seen.FetchSite = fetchSite(v)
		case bytes.Equal(k, hdrSecFetchUser):
			seen.UserActivation = bytes.Equal(v, strUserActive)
		case bytes.Equal(k, hdrSecGPC):
			r.gpc = bytes.Equal(v, strOne)
		case bytes.Equal(k, hdrSecFetchDest):
			notNavigation = notNavigation || len(v) > 0 && !bytes.Equal(v, strDocument)
		}
	}
	if prefetch || b.isCrawler(h.UserAgent()) {
		return attribution.OutcomeBot
	}
	if notNavigation {
		return attribution.OutcomeSuspect
	}
	return ""
}

// botFilter puts a bounded cache of verdicts in front of a BotList. Real
// traffic repeats a few thousand User-Agent strings; a hit costs one map
// lookup and no allocation, a miss a few microseconds of matching and one
// copy of the string into the cache.
type botFilter struct {
	list  *BotList
	mu    sync.RWMutex
	cache map[string]bool
	max   int
}

func newBotFilter(list *BotList, max int) *botFilter {
	return &botFilter{list: list, cache: make(map[string]bool), max: max}
}

func (b *botFilter) isCrawler(ua []byte) bool {
	if len(ua) == 0 {
		return true // every browser sends one; scripts often do not
	}
	if len(ua) > 512 {
		return b.list.Match(ua) // too odd to be worth caching
	}
	b.mu.RLock()
	v, ok := b.cache[string(ua)]
	b.mu.RUnlock()
	if ok {
		return v
	}
	v = b.list.Match(ua)
	b.mu.Lock()
	if len(b.cache) >= b.max {
		// Start over rather than track recency: the common strings come
		// back within a few requests.
		clear(b.cache)
	}
	b.cache[string(ua)] = v
	b.mu.Unlock()
	return v
}
