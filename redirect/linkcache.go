package redirect

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"

	"github.com/refgate/refgate/attribution"
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
	Logger      *slog.Logger
	Metrics     *Metrics
}

// LinkCache is the edge's local copy of links. A hit costs a map lookup under
// a read lock, no store round trip. Misses go to the store once per code at a
// time (singleflight). Invalidations from the store mark entries stale; a
// generation counter makes sure a load that raced with an invalidation is
// cached stale, never as fresh. When the store fails, an expired or stale
// entry is served rather than failing the click.
type LinkCache struct {
	src LinkSource
	cfg LinkCacheConfig

	mu         sync.RWMutex
	entries    map[string]cacheEntry
	gen        uint64
	refreshing map[string]bool // codes being re-read in the background

	group    singleflight.Group
	logEvery sampler
}

type cacheEntry struct {
	t  *Target // nil: the code is known not to exist
	at time.Time
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
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(prometheus.NewRegistry())
	}
	return &LinkCache{src: src, cfg: cfg, entries: make(map[string]cacheEntry), refreshing: make(map[string]bool)}
}

// Lookup resolves code. It returns (nil, nil) for an unknown or deleted code
// and an error only when the store cannot answer and nothing is cached.
//
// A click never waits on the store for a link it has cached: an entry past
// its TTL is served as it is while one goroutine re-reads it. Only an entry
// an invalidation marked (the link, its program or its promoter changed) is
// re-read before it is used, so that a deleted link or a host the program
// no longer allows stops at once; if the store cannot answer then, the
// entry is served as it was and re-read in the background from then on.
func (c *LinkCache) Lookup(code []byte) (*Target, error) {
	c.mu.RLock()
	e, ok := c.entries[string(code)] // no allocation: the compiler keys the map with the bytes
	c.mu.RUnlock()
	now := time.Now()
	if ok {
		if e.t == nil && now.Sub(e.at) < c.cfg.NegativeTTL {
			c.hit(c.cfg.Metrics.cacheNegHit)
			return nil, nil
		}
		if e.t != nil && now.Sub(e.at) < c.cfg.TTL {
			c.hit(c.cfg.Metrics.cacheHit)
			return e.t, nil
		}
		if e.t != nil && !e.at.IsZero() {
			c.hit(c.cfg.Metrics.cacheStale)
			c.refresh(string(code))
			return e.t, nil
		}
	}
	c.hit(c.cfg.Metrics.cacheMiss)
	// Slow path: one store read per code at a time.
	v, err, _ := c.group.Do(string(code), func() (any, error) { return c.load(string(code)) })
	if err != nil {
		if ok && e.t != nil {
			c.hit(c.cfg.Metrics.cacheStale)
			c.retryLater(string(code))
			return e.t, nil
		}
		return nil, err
	}
	t, _ := v.(*Target)
	return t, nil
}

// refreshRetry is how long a cached entry whose re-read failed is served
// before the next try.
const refreshRetry = time.Second

// refresh re-reads code in the background, once at a time per code.
func (c *LinkCache) refresh(code string) {
	c.mu.Lock()
	if c.refreshing[code] {
		c.mu.Unlock()
		return
	}
	c.refreshing[code] = true
	c.mu.Unlock()
	go func() {
		_, err, _ := c.group.Do(code, func() (any, error) { return c.load(code) })
		c.mu.Lock()
		delete(c.refreshing, code)
		c.mu.Unlock()
		if err != nil {
			c.retryLater(code)
			if c.logEvery.allow() {
				c.cfg.Logger.Warn("cannot re-read a cached link; serving it as cached", "code", code, "err", err)
			}
		}
	}()
}

// retryLater makes a cached entry fresh for refreshRetry, so that clicks are
// served from it without each trying the store, unless an invalidation
// marked it meanwhile.
func (c *LinkCache) retryLater(code string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[code]; ok && e.t != nil {
		e.at = time.Now().Add(refreshRetry - c.cfg.TTL)
		c.entries[code] = e
	}
}

func (c *LinkCache) hit(m prometheus.Counter) { m.Inc() }

func (c *LinkCache) load(code string) (*Target, error) {
	c.mu.RLock()
	gen := c.gen
	c.mu.RUnlock()
	t, err := c.resolve(code)
	if err != nil {
		return nil, err
	}
	e := cacheEntry{t: t, at: time.Now()}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen {
		// Something was invalidated while we read, perhaps this link, so what
		// we read may predate the change. An unknown code is not kept (the
		// invalidation may be its creation); a link is kept marked stale: the
		// next click re-reads it, and if the store fails by then it is served
		// rather than answered 503 (invalidations published by a setup can
		// reach an instance just as its first click reads the link).
		if t == nil {
			return nil, nil
		}
		e.at = time.Time{}
	}
	if len(c.entries) >= c.cfg.MaxEntries {
		for k := range c.entries { // map order is random: evict one at random
			delete(c.entries, k)
			break
		}
	}
	c.entries[code] = e
	return t, nil
}

// resolve reads a link with its program and promoter. A link whose program is
// gone or whose destination the program no longer allows resolves to nil:
// never redirect to a host the program does not allow.
func (c *LinkCache) resolve(code string) (*Target, error) {
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.LoadTimeout)
	defer cancel()
	l, err := c.src.Link(ctx, code)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cannot resolve link %q: %w", code, err)
	}
	p, err := c.src.Program(ctx, l.Program)
	if errors.Is(err, store.ErrNotFound) {
		c.cfg.Logger.Warn("link points at a missing program", "code", code, "program", l.Program)
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cannot resolve program %q of link %q: %w", l.Program, code, err)
	}
	pr, err := c.src.Promoter(ctx, l.Promoter)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("cannot resolve promoter %q of link %q: %w", l.Promoter, code, err)
	}
	t, err := NewTarget(l, p, pr)
	if err != nil {
		c.cfg.Logger.Warn("link no longer resolves", "code", code, "err", err)
		return nil, nil
	}
	return t, nil
}

// Invalidate marks what inv names stale. It is the callback for
// store.Store.WatchInvalidations and never blocks for long.
//
// Entries are marked stale rather than dropped: each is re-read on its next
// use, and served as it was if the store cannot answer then. Dropping them
// would turn a store outage into 503s for every link touched recently, and
// an invalidation is delivered asynchronously, so one published when a link
// was created can arrive after a click has already cached that link. An
// unknown-code entry is dropped, since the invalidation may be the code being
// created.
func (c *LinkCache) Invalidate(inv store.Invalidation) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	if inv.Kind == store.Link {
		if e, ok := c.entries[inv.ID]; ok && e.t != nil {
			e.at = time.Time{}
			c.entries[inv.ID] = e
		} else {
			delete(c.entries, inv.ID)
		}
		return
	}
	for k, e := range c.entries {
		if e.t == nil {
			delete(c.entries, k)
			continue
		}
		var match bool
		switch inv.Kind {
		case store.Program:
			match = e.t.Link.Program == inv.ID
		case store.Promoter:
			match = e.t.Link.Promoter == inv.ID
		default:
			match = true // changes may have been missed (a reconnect)
		}
		if match {
			e.at = time.Time{}
			c.entries[k] = e
		}
	}
}

// Len returns the number of cached entries, negative ones included.
func (c *LinkCache) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.entries)
}
