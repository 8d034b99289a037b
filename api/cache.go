package api

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/store"
)

// entityCache keeps programs, promoters and links for the storefront
// routes, which read them on every bind and conversion. Entries live at most ttl; the
// store's invalidation feed (Server.Invalidate) drops them at once when an
// admin changes one on any instance, so a suspension takes effect within
// milliseconds, and within ttl even if a message is lost.
type entityCache struct {
	ttl time.Duration

	mu        sync.RWMutex
	programs  map[string]cached[*attribution.Program]
	promoters map[string]cached[*attribution.Promoter]
	links     map[string]cached[*attribution.Link]
	gen       uint64
}

type cached[T any] struct {
	v  T // nil: known not to exist
	at time.Time
}

func newEntityCache(ttl time.Duration) *entityCache {
	return &entityCache{ttl: ttl, programs: map[string]cached[*attribution.Program]{},
		promoters: map[string]cached[*attribution.Promoter]{}, links: map[string]cached[*attribution.Link]{}}
}

// cachedGet returns m[id] if fresh, else loads it and caches the answer
// (also "not found") unless an invalidation came in meanwhile.
func cachedGet[T any](c *entityCache, m map[string]cached[*T], id string, load func() (*T, error)) (*T, error) {
	c.mu.RLock()
	e, ok := m[id]
	gen := c.gen
	c.mu.RUnlock()
	if ok && time.Since(e.at) < c.ttl {
		return e.v, nil
	}
	v, err := load()
	if errors.Is(err, store.ErrNotFound) {
		v, err = nil, nil
	}
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.gen == gen {
		if len(m) > 100_000 {
			clear(m) // bounded: programs and promoters are few next to this
		}
		m[id] = cached[*T]{v: v, at: time.Now()}
	}
	c.mu.Unlock()
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
	c.mu.RLock()
	e, ok := c.promoters[id]
	c.mu.RUnlock()
	if !ok || time.Since(e.at) >= c.ttl {
		return nil, false
	}
	return e.v, true
}

func (c *entityCache) invalidate(inv store.Invalidation) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	switch inv.Kind {
	case store.Program:
		delete(c.programs, inv.ID)
	case store.Promoter:
		delete(c.promoters, inv.ID)
	case store.Link:
		delete(c.links, inv.ID)
	default:
		clear(c.programs)
		clear(c.promoters)
		clear(c.links)
	}
}
