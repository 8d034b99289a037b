// Package gencache is refgate's one mechanism for caching what the store
// holds and forgetting it when the store's invalidation feed says it
// changed. The edge's link cache (redirect.LinkCache) and the API's entity
// cache (api) are both built on it.
//
// Every change is a step of one counter (the sequence). An entry remembers
// the sequence at which its load started, and the groups it depends on (a
// link depends on its program and its promoter). Invalidating a group or the
// whole cache writes the current sequence into one counter, in O(1) however
// many entries depend on it; a lookup compares the entry's sequence with the
// few counters it depends on. Nothing ever walks the entries.
//
// Comparing with the sequence at which a load started, not at which it ended,
// is what makes a load that raced with a change come out stale: the change's
// step is later than the load's start.
package gencache

import (
	"sync"
	"sync/atomic"
	"time"
)

// State is what a lookup may do with an entry.
type State uint8

const (
	// Fresh: nothing the entry depends on changed since it was read.
	Fresh State = iota
	// Stale: a group it depends on changed in a way its owner said may be
	// served while the entry is read again (Group.Touch).
	Stale
	// Recheck: the entry itself, the whole cache, or a group it depends on
	// changed in a way that must be read again before the entry is used
	// (Cache.Invalidate, Cache.InvalidateAll, Group.Expire), or it was read
	// while one of those changes came in.
	Recheck
)

// Group is something many entries depend on (a program, a promoter). Its
// counters hold the sequence of its last change of each kind.
type Group struct {
	seq        *atomic.Uint64
	soft, hard atomic.Uint64
}

// Touch marks every entry depending on g Stale, in O(1).
func (g *Group) Touch() { g.soft.Store(g.seq.Add(1)) }

// Expire marks every entry depending on g for Recheck, in O(1).
func (g *Group) Expire() {
	s := g.seq.Add(1)
	g.soft.Store(s)
	g.hard.Store(s)
}

// Entry is one cached value. Its fields are read without a lock, so an
// Entry never changes once it is in the cache, except for its two flags;
// Put and Keep replace it with a new one.
type Entry[V any] struct {
	V    V         // the value; owned by the cache, read-only
	At   time.Time // when the value was read (Keep moves it)
	seq  uint64    // the sequence when its load started
	deps [2]*Group // nil for none

	recheck    atomic.Bool // Invalidate named it, or it was read while a key changed
	refreshing atomic.Bool // a background re-read is under way
}

// Cache maps keys to entries. The zero value is not usable; use New. It is
// safe for concurrent use.
type Cache[V any] struct {
	seq     atomic.Uint64 // one step per change
	all     atomic.Uint64 // the step of the last InvalidateAll
	keys    atomic.Uint64 // the step of the last Invalidate, whatever its key
	max     int
	mu      sync.RWMutex
	entries map[string]*Entry[V]

	gmu    sync.Mutex
	groups map[string]*Group
}

// New returns an empty cache holding at most max entries (0 for no bound);
// past that, Put evicts one at random.
func New[V any](max int) *Cache[V] {
	return &Cache[V]{max: max, entries: make(map[string]*Entry[V]), groups: make(map[string]*Group)}
}

// Get returns key's entry, nil if there is none, and what may be done with
// it. It takes a read lock and does not allocate (the map is keyed with the
// bytes). The entry is the cache's: read it, do not change it.
func (c *Cache[V]) Get(key []byte) (*Entry[V], State) {
	c.mu.RLock()
	e := c.entries[string(key)]
	c.mu.RUnlock()
	if e == nil {
		return nil, Fresh
	}
	return e, c.state(e)
}

func (c *Cache[V]) state(e *Entry[V]) State {
	if e.recheck.Load() || c.all.Load() > e.seq {
		return Recheck
	}
	st := Fresh
	for _, g := range e.deps {
		if g == nil {
			continue
		}
		if g.hard.Load() > e.seq {
			return Recheck
		}
		if g.soft.Load() > e.seq {
			st = Stale
		}
	}
	return st
}

// Begin returns the sequence to pass to Put for a load starting now: call it
// before reading the store.
func (c *Cache[V]) Begin() uint64 { return c.seq.Load() }

// Group returns the group named id, creating it. Groups are never dropped
// (entries keep pointers to them), so ids should come from a bounded set
// such as programs and promoters. The same id always gives the same Group.
func (c *Cache[V]) Group(id string) *Group {
	c.gmu.Lock()
	defer c.gmu.Unlock()
	g := c.groups[id]
	if g == nil {
		g = &Group{seq: &c.seq}
		c.groups[id] = g
	}
	return g
}

// Put caches v, read at at by a load that started at Begin's start, as
// depending on deps (at most two; nil ones are ignored). A load that a
// change to deps, to any key or to everything overtook is cached for
// Recheck: it may have read the value from before the change. Put returns
// the new entry.
func (c *Cache[V]) Put(key string, v V, at time.Time, start uint64, deps ...*Group) *Entry[V] {
	e := &Entry[V]{V: v, At: at, seq: start}
	copy(e.deps[:], deps)
	c.put(key, e, nil)
	return e
}

// Keep replaces old, if it is still key's entry, with a copy read at at by a
// load that started at start: after a failed re-read, the old value is
// served as if it had just been read, unless something changed since start.
func (c *Cache[V]) Keep(key string, old *Entry[V], at time.Time, start uint64) {
	e := &Entry[V]{V: old.V, At: at, seq: start, deps: old.deps}
	c.put(key, e, old)
}

func (c *Cache[V]) put(key string, e *Entry[V], old *Entry[V]) {
	if c.keys.Load() > e.seq || c.all.Load() > e.seq {
		e.recheck.Store(true)
	}
	for _, g := range e.deps {
		if g != nil && g.soft.Load() > e.seq {
			e.recheck.Store(true)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old != nil && c.entries[key] != old {
		return
	}
	if _, ok := c.entries[key]; !ok && c.max > 0 && len(c.entries) >= c.max {
		for k := range c.entries { // map order is random: evict one at random
			delete(c.entries, k)
			break
		}
	}
	c.entries[key] = e
	// An Invalidate between the check above and the store would have
	// marked the entry it found, not this one: look again under the lock.
	if c.keys.Load() > e.seq {
		e.recheck.Store(true)
	}
}

// Invalidate marks key's entry for Recheck, in O(1). Loads under way for any
// key come out Recheck too, since they cannot tell which key changed.
func (c *Cache[V]) Invalidate(key string) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	c.keys.Store(c.seq.Add(1))
	if e := c.entries[key]; e != nil {
		e.recheck.Store(true)
	}
}

// InvalidateAll marks every entry for Recheck, in O(1).
func (c *Cache[V]) InvalidateAll() { c.all.Store(c.seq.Add(1)) }

// StartRefresh reports whether the caller is the one to re-read e in the
// background: true once per entry, until EndRefresh.
func (e *Entry[V]) StartRefresh() bool { return e.refreshing.CompareAndSwap(false, true) }

// EndRefresh lets the entry be re-read again (after a re-read that did not
// replace it).
func (e *Entry[V]) EndRefresh() { e.refreshing.Store(false) }

// Len returns the number of entries.
func (c *Cache[V]) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.entries)
}
