// Package ratelimit limits how often one client address may do something:
// a token bucket per address, in a table of bounded size. An IPv4 address
// is its own key; an IPv6 address counts as its /64, the smallest block a
// host or a subscriber line is usually given (one machine can pick any of
// 2^64 addresses in it). The API throttles failed authentications with it;
// it is cheap enough for the edge to ask once per click.
package ratelimit

import (
	"encoding/binary"
	"math"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultMaxAddrs is the table's size when Config.MaxAddrs is 0: about
// 3 MiB of entries and index when full.
const DefaultMaxAddrs = 65536

// Config is a Limiter's policy. The zero value allows everything.
type Config struct {
	// Rate is how many events per second one address may have,
	// sustained. Zero or less: no limit (Allow is always true).
	Rate float64
	// Burst is how many events one address may have at once, the size of
	// its bucket [1].
	Burst int
	// MaxAddrs bounds the addresses the table holds [DefaultMaxAddrs].
	// When it is full, a new address takes the place of the one seen least
	// recently (Evictions counts those whose bucket was not yet full again).
	MaxAddrs int
	// Now is the clock [time.Now]. If it goes back, an address waits at
	// most one interval, not as long as it went back.
	Now func() time.Time
}

// Limiter keeps one token bucket per address key (see Key). It is safe for
// concurrent use. Allow and Take do not allocate for an address already in
// the table.
type Limiter struct {
	now       func() time.Time
	base      time.Time
	interval  int64 // nanoseconds per token
	tolerance int64 // nanoseconds of credit a full bucket holds beyond one token
	off       bool
	shift     uint // shards are picked by the top bits of a hash
	shards    []shard
	evictions atomic.Uint64
}

// shard is one lock's worth of the table: a map from key to slot and the
// slots in a doubly linked list, most recently used first, so that the
// least recently used one is at hand when the shard is full.
type shard struct {
	mu         sync.Mutex
	index      map[netip.Addr]int32
	slots      []slot
	head, tail int32 // -1 when empty
	max        int
	_          [64]byte // keep shards' locks off one cache line
}

// slot is one address's bucket, kept as GCRA's theoretical arrival time:
// the bucket is full again at tat, and an event at now is allowed while
// tat-now is at most the tolerance.
type slot struct {
	key        netip.Addr
	tat        int64 // nanoseconds since Limiter.base
	prev, next int32
}

// New returns a Limiter for cfg.
func New(cfg Config) *Limiter {
	l := &Limiter{now: cfg.Now, off: !(cfg.Rate > 0)}
	if l.now == nil {
		l.now = time.Now
	}
	l.base = l.now()
	if l.off {
		return l
	}
	burst := max(cfg.Burst, 1)
	// Clamp so that burst intervals fit an int64 whatever the rate.
	iv := math.Min(1e9/cfg.Rate, float64(math.MaxInt64/4)/float64(burst))
	l.interval = max(int64(iv), 1)
	l.tolerance = int64(burst-1) * l.interval
	maxAddrs := cfg.MaxAddrs
	if maxAddrs <= 0 {
		maxAddrs = DefaultMaxAddrs
	}
	n, bits := 1, uint(0)
	if maxAddrs >= 4096 { // small tables (tests) keep the exact bound and order
		n, bits = 16, 4
	}
	l.shift = 64 - bits
	l.shards = make([]shard, n)
	for i := range l.shards {
		s := &l.shards[i]
		s.max = maxAddrs / n
		s.index = make(map[netip.Addr]int32)
		s.head, s.tail = -1, -1
	}
	return l
}

// Key is the address a limit applies to: a without zone, an IPv4-mapped
// IPv6 address as IPv4, an IPv6 address as the first address of its /64.
func Key(a netip.Addr) netip.Addr {
	a = a.Unmap().WithZone("")
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a
}

// Allow reports whether addr may have one more event now, and if so
// counts it. An invalid addr is always allowed: it has no key to limit.
func (l *Limiter) Allow(addr netip.Addr) bool {
	ok, _ := l.Take(addr)
	return ok
}

// Take is Allow that also says, when the answer is no, how long until addr
// may have its next event.
func (l *Limiter) Take(addr netip.Addr) (ok bool, retryAfter time.Duration) {
	if l.off || !addr.IsValid() {
		return true, 0
	}
	key := Key(addr)
	now := int64(l.now().Sub(l.base))
	s := l.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	i, found := s.index[key]
	if !found {
		i = l.add(s, key, now)
	} else if i != s.head {
		s.unlink(i)
		s.pushFront(i)
	}
	e := &s.slots[i]
	// tat is at most one interval past a full bucket's credit unless the
	// clock went back (a test clock set to the past): then the wait is
	// capped at one interval rather than however far it went back.
	tat := min(max(e.tat, now), now+l.tolerance+l.interval)
	e.tat = min(e.tat, tat)
	if wait := tat - l.tolerance - now; wait > 0 {
		return false, time.Duration(wait)
	}
	e.tat = tat + l.interval
	return true, 0
}

// Len is the number of addresses in the table.
func (l *Limiter) Len() int {
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		n += len(s.index)
		s.mu.Unlock()
	}
	return n
}

// Evictions counts addresses dropped from a full table before their
// bucket was full again: each of them gets a full bucket on its next event.
// A steady count means the table is too small for the addresses it sees.
func (l *Limiter) Evictions() uint64 { return l.evictions.Load() }

func (l *Limiter) shard(key netip.Addr) *shard {
	if len(l.shards) == 1 {
		return &l.shards[0]
	}
	b := key.As16()
	h := binary.LittleEndian.Uint64(b[:8]) ^ binary.LittleEndian.Uint64(b[8:])*0x9e3779b97f4a7c15
	h *= 0xbf58476d1ce4e5b9
	return &l.shards[h>>l.shift]
}

// add gives key a slot with a full bucket at the head of the list: a new
// one while the shard has room, else the least recently used one's.
func (l *Limiter) add(s *shard, key netip.Addr, now int64) int32 {
	var i int32
	if len(s.slots) < s.max {
		i = int32(len(s.slots))
		s.slots = append(s.slots, slot{})
	} else {
		i = s.tail
		old := &s.slots[i]
		if old.tat > now {
			l.evictions.Add(1)
		}
		delete(s.index, old.key)
		s.unlink(i)
	}
	s.slots[i] = slot{key: key, tat: now, prev: -1, next: -1}
	s.index[key] = i
	s.pushFront(i)
	return i
}

func (s *shard) unlink(i int32) {
	e := &s.slots[i]
	if e.prev >= 0 {
		s.slots[e.prev].next = e.next
	} else {
		s.head = e.next
	}
	if e.next >= 0 {
		s.slots[e.next].prev = e.prev
	} else {
		s.tail = e.prev
	}
	e.prev, e.next = -1, -1
}

func (s *shard) pushFront(i int32) {
	e := &s.slots[i]
	e.prev, e.next = -1, s.head
	if s.head >= 0 {
		s.slots[s.head].prev = i
	}
	s.head = i
	if s.tail < 0 {
		s.tail = i
	}
}
