package api

import (
	"context"
	"errors"
	"time"

	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/internal/gencache"
	"github.com/refgate/refgate/store"
)

// entityCache keeps programs, promoters and links for the storefront
// routes, which read them on every bind and conversion. It is the same
// mechanism as the edge's link cache (gencache), except that every change
// is re-read before use, never served stale: a suspended promoter must not
// earn another bind. Entries live at most ttl; the store's invalidation
// feed (Server.Invalidate) marks one in O(1) when an admin changes it on any
// instance, so a suspension takes effect within milliseconds, and within ttl
// even if a message is lost.
type entityCache struct {
	ttl       time.Duration
	programs  *gencache.Cache[*attribution.Program]
	promoters *gencache.Cache[*attribution.Promoter]
	links     *gencache.Cache[*attribution.Link]
}

// maxEntities bounds each of the three maps; past it, one entry is evicted
// at random per new one.
const maxEntities = 100_000

func newEntityCache(ttl time.Duration) *entityCache {
	return &entityCache{ttl: ttl, programs: gencache.New[*attribution.Program](maxEntities),
		promoters: gencache.New[*attribution.Promoter](maxEntities), links: gencache.New[*attribution.Link](maxEntities)}
}

// fresh returns the value cached for id if it may be used as it is.
func fresh[T any](c *entityCache, m *gencache.Cache[*T], id string) (*T, bool) {
	e, st := m.Get([]byte(id))
	if e == nil || st != gencache.Fresh || time.Since(e.At) >= c.ttl {
		return nil, false
	}
	return e.V, true
}

// cachedGet returns m[id] if fresh, else loads it and caches the answer
// (also "not found"); an answer read while an invalidation came in is
// cached to be read again on next use.
func cachedGet[T any](c *entityCache, m *gencache.Cache[*T], id string, load func() (*T, error)) (*T, error) {
	if v, ok := fresh(c, m, id); ok {
		return v, nil
	}
	start := m.Begin()
	v, err := load()
	if errors.Is(err, store.ErrNotFound) {
		v, err = nil, nil
	}
	if err != nil {
		return nil, err
	}
	m.Put(id, v, time.Now(), start)
	return v, nil
}

func (c *entityCache) program(ctx context.Context, st store.Store, id string) (*attribution.Program, error) {
	return cachedGet(c, c.programs, id, func() (*attribution.Program, error) { return st.Program(ctx, id) })
}

func (c *entityCache) promoter(ctx context.Context, st store.Store, id string) (*attribution.Promoter, error) {
	return cachedGet(c, c.promoters, id, func() (*attribution.Promoter, error) { return st.Promoter(ctx, id) })
}

// link returns a link, nil if it is unknown or deleted.
func (c *entityCache) link(ctx context.Context, st store.Store, code string) (*attribution.Link, error) {
	return cachedGet(c, c.links, code, func() (*attribution.Link, error) { return st.Link(ctx, code) })
}

// cachedPromoter returns a fresh cached promoter without calling the store
// (nil, false if it has none): store.UpdateCustomer callbacks may use it.
func (c *entityCache) cachedPromoter(id string) (*attribution.Promoter, bool) {
	return fresh(c, c.promoters, id)
}

// invalidate applies inv in O(1): what it names is re-read on next use.
func (c *entityCache) invalidate(inv store.Invalidation) {
	switch inv.Kind {
	case store.Program:
		c.programs.Invalidate(inv.ID)
	case store.Promoter:
		c.promoters.Invalidate(inv.ID)
	case store.Link:
		c.links.Invalidate(inv.ID)
	default:
		c.programs.InvalidateAll()
		c.promoters.InvalidateAll()
		c.links.InvalidateAll()
	}
}
