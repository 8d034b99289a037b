package redirect

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"

	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/internal/gencache"
	"github.com/refgate/refgate/internal/logsample"
	"github.com/refgate/refgate/store"
)

// Target is everything the click path needs about one link, resolved once
// and shared read-only by every click on it.
type Target struct {
	Link        attribution.Link
	Program     *attribution.Program
	PromoterIPs attribution.FingerprintSet // the promoter's "ip:" fingerprints

	cookieName []byte // "rg_" + program
	maxAge     int    // seconds
	// inactiveFrom is when the link stops attributing, in Unix ns:
	// math.MinInt64 for a paused link, math.MaxInt64 for one that never
	// expires, so that the click path's check is one comparison with its
	// clock.
	inactiveFrom int64
	// expiredURL is where an inactive link sends clicks, normalised; ""
	// for its destination (also when the program no longer allows the
	// expired URL's host: the edge never redirects to a host the program
	// does not allow).
	expiredURL string
}

// Inactive reports whether the link is paused or expired at now (Unix ns).
func (t *Target) Inactive(now int64) bool { return now >= t.inactiveFrom }

// unixNano is t in Unix ns, clamped to int64's range (UnixNano is
// undefined outside 1678 to 2262).
func unixNano(t time.Time) int64 {
	switch {
	case t.Before(time.Unix(0, math.MinInt64)):
		return math.MinInt64
	case t.After(time.Unix(0, math.MaxInt64)):
		return math.MaxInt64
	}
	return t.UnixNano()
}

// NewTarget checks the link's destination against the program as it is now
// (allowed hosts may have changed since the link was made) and precomputes
// what each click reuses.
func NewTarget(l *attribution.Link, p *attribution.Program, pr *attribution.Promoter) (*Target, error) {
	u, host, err := attribution.ParseDestination(l.Destination)
	if err != nil {
		return nil, err
	}
	if !p.AllowsHost(host) {
		return nil, fmt.Errorf("destination host %q is no longer allowed by program %q", host, p.ID)
	}
	t := &Target{Link: *l, Program: p, cookieName: []byte("rg_" + p.ID), maxAge: p.CookieDays * 86400}
	t.Link.Destination = u.String()
	t.inactiveFrom = math.MaxInt64
	switch {
	case l.Status == attribution.LinkPaused:
		t.inactiveFrom = math.MinInt64
	case l.ExpiresAt != nil:
		t.inactiveFrom = unixNano(*l.ExpiresAt)
	}
	if l.ExpiredURL != "" {
		if u, host, err := attribution.ParseDestination(l.ExpiredURL); err == nil && p.AllowsHost(host) {
			t.expiredURL = u.String()
		}
	}
	if pr != nil {
		for _, f := range pr.Fingerprints {
			if len(f) > 3 && f[:3] == attribution.FPIP+":" {
				t.PromoterIPs = append(t.PromoterIPs, f)
			}
		}
	}
	return t, nil
}

// LinkSource is what the cache reads on a miss. store.Store satisfies it.
type LinkSource interface {
	Link(ctx context.Context, code string) (*attribution.Link, error)
	Program(ctx context.Context, id string) (*attribution.Program, error)
	Promoter(ctx context.Context, id string) (*attribution.Promoter, error)
}

var _ Links = (*LinkCache)(nil)

// LinkCacheConfig tunes a LinkCache. Zero values take the defaults in
// brackets.
type LinkCacheConfig struct {
	TTL         time.Duration // a hit older than this is re-read [60s]
	NegativeTTL time.Duration // how long an unknown code stays known unknown [5s]
	MaxEntries  int           // [1<<20]
	LoadTimeout time.Duration // one miss's store budget [1s]
	MaxRefresh  int           // background re-reads under way at once [64]
	Logger      *slog.Logger
	Metrics     *Metrics
}

// LinkCache is the edge's local copy of links, on gencache. A hit costs a map
// lookup under a read lock and a few atomic loads, no store round trip.
// Misses go to the store once per code at a time (singleflight).
//
// Each entry depends on its link's program and promoter. An invalidation
// costs O(1) whatever it names, and what it does depends on what changed:
//
//   - a link (created, changed or deleted), or anything (a reconnect): the entry is
//     re-read before it is used again, so a deleted link stops at once;
//   - a program: its links are served as cached while each is re-read in
//     the background on its next click, and the program is read once; if it
//     no longer allows a host some cached link was built with, its links are
//     re-read before they are used instead;
//   - a promoter: its links are served as cached while each is re-read in
//     the background.
//
// When the store fails, an entry that was cached is served as it was rather
// than failing the click, and tried again a second later.
type LinkCache struct {
	src   LinkSource
	cfg   LinkCacheConfig
	cache *gencache.Cache[*Target]

	group    singleflight.Group
	slots    chan struct{} // one per background re-read under way
	bg       sync.WaitGroup
	logEvery logsample.Sampler

	hmu   sync.Mutex
	hosts map[string]*hostWatch // by program id
}

// hostWatch is what LinkCache knows of one program's allowed hosts: every
// host a cached link of it was built with since the last check, so that a
// check can tell whether the program's change removed one.
type hostWatch struct {
	seen     map[string]bool
	checking bool // a check is under way
	again    bool // another change came in during it
}

// NewLinkCache returns an empty cache over src.
func NewLinkCache(src LinkSource, cfg LinkCacheConfig) *LinkCache {
	if cfg.TTL == 0 {
		cfg.TTL = 60 * time.Second
	}
	if cfg.NegativeTTL == 0 {
		cfg.NegativeTTL = 5 * time.Second
	}
	if cfg.MaxEntries == 0 {
		cfg.MaxEntries = 1 << 20
	}
	if cfg.LoadTimeout == 0 {
		cfg.LoadTimeout = time.Second
	}
	if cfg.MaxRefresh == 0 {
		cfg.MaxRefresh = 64
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(prometheus.NewRegistry())
	}
	return &LinkCache{src: src, cfg: cfg, cache: gencache.New[*Target](cfg.MaxEntries),
		slots: make(chan struct{}, cfg.MaxRefresh), hosts: make(map[string]*hostWatch)}
}

// Lookup resolves code. It returns (nil, nil) for an unknown or deleted code
// and an error only when the store cannot answer and nothing is cached.
//
// A click never waits on the store for a link it has cached, unless the link
// itself changed (a deletion), everything may have (a reconnect), or its
// program stopped allowing a host: an entry past its TTL or whose program or
// promoter changed is served as it is while one goroutine re-reads it. An
// entry that must be re-read before use is served as it was if the store
// cannot answer then, and re-read in the background from then on.
func (c *LinkCache) Lookup(code []byte) (*Target, error) {
	e, st := c.cache.Get(code) // no allocation: the map is keyed with the bytes
	if e != nil && st != gencache.Recheck {
		age := time.Since(e.At)
		switch {
		case e.V == nil:
			if st == gencache.Fresh && age < c.cfg.NegativeTTL {
				c.hit(c.cfg.Metrics.cacheNegHit)
				return nil, nil
			}
		case st == gencache.Fresh && age < c.cfg.TTL:
			c.hit(c.cfg.Metrics.cacheHit)
			return e.V, nil
		default:
			c.hit(c.cfg.Metrics.cacheStale)
			c.refresh(code, e)
			return e.V, nil
		}
	}
	c.hit(c.cfg.Metrics.cacheMiss)
	// Slow path: one store read per code at a time.
	v, err, _ := c.group.Do(string(code), func() (any, error) { return c.load(string(code)) })
	if err != nil {
		if e != nil && e.V != nil {
			c.hit(c.cfg.Metrics.cacheStale)
			c.retryLater(string(code), e, v)
			return e.V, nil
		}
		return nil, err
	}
	t, _ := v.(*Target)
	return t, nil
}

// refreshRetry is how long a cached entry whose re-read failed is served
// before the next try.
const refreshRetry = time.Second

// refresh re-reads e in the background, once at a time per entry and at most
// MaxRefresh at once: when all are busy, a later click on it tries again.
func (c *LinkCache) refresh(code []byte, e *gencache.Entry[*Target]) {
	if !e.StartRefresh() {
		return
	}
	select {
	case c.slots <- struct{}{}:
	default:
		e.EndRefresh()
		return
	}
	k := string(code) // the goroutine outlives the request's bytes
	c.bg.Add(1)
	go func() {
		defer c.bg.Done()
		defer func() { <-c.slots }()
		v, err, _ := c.group.Do(k, func() (any, error) { return c.load(k) })
		if err != nil {
			c.retryLater(k, e, v)
			e.EndRefresh()
			if c.logEvery.Allow(time.Second) {
				c.cfg.Logger.Warn("cannot re-read a cached link; serving it as cached", "code", k, "err", err)
			}
		}
	}()
}

// retryLater keeps e, whose re-read starting at start failed, fresh for
// refreshRetry, so that clicks are served from it without each trying the
// store, unless an invalidation comes in meanwhile. start is what load
// returned with its error.
func (c *LinkCache) retryLater(code string, e *gencache.Entry[*Target], start any) {
	s, ok := start.(uint64)
	if !ok {
		return
	}
	c.cache.Keep(code, e, time.Now().Add(refreshRetry-c.cfg.TTL), s)
}

func (c *LinkCache) hit(m prometheus.Counter) { m.Inc() }

// load reads code and caches the answer. On an error it returns the
// sequence the read started at, for retryLater.
func (c *LinkCache) load(code string) (any, error) {
	start := c.cache.Begin()
	t, deps, err := c.resolve(code)
	if err != nil {
		return start, err
	}
	// A load that an invalidation overtook (perhaps of this very link: the
	// read may predate the change) is cached for a re-read on its next
	// click, and served as read if the store fails by then (invalidations
	// published by a setup can reach an instance just as its first click
	// reads the link).
	c.cache.Put(code, t, time.Now(), start, deps[0], deps[1])
	return t, nil
}

// resolve reads a link with its program and promoter, and returns the groups
// the answer depends on. A link whose program is gone or whose destination
// the program no longer allows resolves to nil: never redirect to a host the
// program does not allow.
func (c *LinkCache) resolve(code string) (*Target, [2]*gencache.Group, error) {
	var deps [2]*gencache.Group
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.LoadTimeout)
	defer cancel()
	l, err := c.src.Link(ctx, code)
	if errors.Is(err, store.ErrNotFound) {
		return nil, deps, nil
	}
	if err != nil {
		return nil, deps, fmt.Errorf("cannot resolve link %q: %w", code, err)
	}
	deps[0] = c.cache.Group(store.Invalidation{Kind: store.Program, ID: l.Program}.String())
	deps[1] = c.cache.Group(store.Invalidation{Kind: store.Promoter, ID: l.Promoter}.String())
	p, err := c.src.Program(ctx, l.Program)
	if errors.Is(err, store.ErrNotFound) {
		c.cfg.Logger.Warn("link points at a missing program", "code", code, "program", l.Program)
		return nil, deps, nil
	}
	if err != nil {
		return nil, deps, fmt.Errorf("cannot resolve program %q of link %q: %w", l.Program, code, err)
	}
	pr, err := c.src.Promoter(ctx, l.Promoter)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, deps, fmt.Errorf("cannot resolve promoter %q of link %q: %w", l.Promoter, code, err)
	}
	t, err := NewTarget(l, p, pr)
	if err != nil {
		c.cfg.Logger.Warn("link no longer resolves", "code", code, "err", err)
		return nil, deps, nil
	}
	// Before the target is cached: a program check that starts after this
	// must know these hosts.
	c.sawHosts(p)
	return t, deps, nil
}

// sawHosts records that a cached target was built with p's hosts.
func (c *LinkCache) sawHosts(p *attribution.Program) {
	c.hmu.Lock()
	defer c.hmu.Unlock()
	w := c.hosts[p.ID]
	if w == nil {
		w = &hostWatch{seen: make(map[string]bool, len(p.AllowedHosts))}
		c.hosts[p.ID] = w
	}
	for _, h := range p.AllowedHosts {
		w.seen[h] = true
	}
}

// Invalidate applies inv to the cache in O(1) (see LinkCache). It is the
// callback for store.Store.WatchInvalidations and never blocks for long.
//
// Nothing is dropped: an entry to be re-read is served as it was if the
// store cannot answer then. Dropping it would turn a store outage into 503s
// for every link touched recently, and an invalidation is delivered
// asynchronously, so one published when a link was created can arrive after
// a click has already cached that link.
func (c *LinkCache) Invalidate(inv store.Invalidation) {
	switch inv.Kind {
	case store.Link:
		c.cache.Invalidate(inv.ID)
	case store.Promoter:
		c.cache.Group(inv.String()).Touch()
	case store.Program:
		g := c.cache.Group(inv.String())
		g.Touch()
		c.checkHosts(inv.ID, g)
	default: // changes may have been missed (a reconnect)
		c.cache.InvalidateAll()
	}
}

// checkHosts reads program id in the background, once at a time, and expires
// g if the program no longer allows a host some cached link was built with,
// or cannot be read: those links are re-read before they are used.
func (c *LinkCache) checkHosts(id string, g *gencache.Group) {
	c.hmu.Lock()
	w := c.hosts[id]
	if w == nil {
		// No cached target was built with this program; a load under way
		// comes out for a re-read (it was overtaken by the change).
		c.hmu.Unlock()
		return
	}
	if w.checking {
		w.again = true
		c.hmu.Unlock()
		return
	}
	w.checking = true
	c.hmu.Unlock()
	c.bg.Add(1)
	go func() {
		defer c.bg.Done()
		for {
			ctx, cancel := context.WithTimeout(context.Background(), c.cfg.LoadTimeout)
			p, err := c.src.Program(ctx, id)
			cancel()
			c.hmu.Lock()
			removed := err != nil
			if err == nil {
				allowed := make(map[string]bool, len(p.AllowedHosts))
				for _, h := range p.AllowedHosts {
					allowed[h] = true
				}
				for h := range w.seen {
					removed = removed || !allowed[h]
				}
				w.seen = allowed
			}
			again := w.again
			w.again, w.checking = false, again
			c.hmu.Unlock()
			if removed {
				g.Expire()
			}
			if !again {
				return
			}
		}
	}()
}

// wait returns when no background read is under way; for tests.
func (c *LinkCache) wait() { c.bg.Wait() }

// Len returns the number of cached entries, negative ones included.
func (c *LinkCache) Len() int { return c.cache.Len() }
