package ratelimit

import (
	"net/netip"
	"sync"
	"testing"
	"time"
)

// fakeClock is a clock the test moves.
type fakeClock struct{ t time.Time }

func (c *fakeClock) Now() time.Time          { return c.t }
func (c *fakeClock) Advance(d time.Duration) { c.t = c.t.Add(d) }

func newLimiter(rate float64, burst, maxAddrs int) (*Limiter, *fakeClock) {
	c := &fakeClock{t: time.Date(2026, 11, 5, 12, 0, 0, 0, time.UTC)}
	return New(Config{Rate: rate, Burst: burst, MaxAddrs: maxAddrs, Now: c.Now}), c
}

var a1, a2 = netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("198.51.100.2")

func TestBurstThenRate(t *testing.T) {
	l, c := newLimiter(1.0/6, 10, 0) // 10 a minute, burst 10
	for i := range 10 {
		if !l.Allow(a1) {
			t.Fatalf("event %d of the burst refused", i+1)
		}
	}
	ok, wait := l.Take(a1)
	if ok || wait != 6*time.Second {
		t.Fatalf("past the burst: ok=%v retry after %v, want refused for 6s", ok, wait)
	}
	if !l.Allow(a2) {
		t.Error("another address has its own bucket")
	}
	c.Advance(5 * time.Second)
	if ok, wait := l.Take(a1); ok || wait != time.Second {
		t.Errorf("5s later: ok=%v retry after %v, want refused for 1s", ok, wait)
	}
	c.Advance(time.Second)
	if !l.Allow(a1) {
		t.Error("6s later one more is allowed")
	}
	if l.Allow(a1) {
		t.Error("and only one")
	}
	c.Advance(time.Hour)
	for i := range 10 {
		if !l.Allow(a1) {
			t.Fatalf("after an hour idle, event %d of a full burst refused", i+1)
		}
	}
	if l.Allow(a1) {
		t.Error("the bucket holds no more than the burst")
	}
}

func TestBurstDefault(t *testing.T) {
	l, c := newLimiter(2, 0, 0)
	if !l.Allow(a1) || l.Allow(a1) {
		t.Error("burst 0 means a bucket of one")
	}
	c.Advance(500 * time.Millisecond)
	if !l.Allow(a1) {
		t.Error("2 per second: one every 500ms")
	}
}

func TestNoLimit(t *testing.T) {
	for _, rate := range []float64{0, -1} {
		l := New(Config{Rate: rate})
		for range 1000 {
			if ok, wait := l.Take(a1); !ok || wait != 0 {
				t.Fatalf("rate %v limits", rate)
			}
		}
		if l.Len() != 0 {
			t.Errorf("rate %v keeps %d addresses", rate, l.Len())
		}
	}
	var zero Config
	if !New(zero).Allow(a1) {
		t.Error("the zero Config limits")
	}
}

func TestInvalidAddrAllowed(t *testing.T) {
	l, _ := newLimiter(1, 1, 0)
	for range 5 {
		if !l.Allow(netip.Addr{}) {
			t.Fatal("an invalid address is limited")
		}
	}
	if l.Len() != 0 {
		t.Errorf("an invalid address took a slot")
	}
}

func TestKey(t *testing.T) {
	f := func(in, want string) {
		t.Helper()
		if got := Key(netip.MustParseAddr(in)); got != netip.MustParseAddr(want) {
			t.Errorf("Key(%s) = %s, want %s", in, got, want)
		}
	}
	f("203.0.113.9", "203.0.113.9")
	f("::ffff:203.0.113.9", "203.0.113.9")
	f("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::")
	f("2001:db8:1:2::1", "2001:db8:1:2::")
	f("fe80::1%eth0", "fe80::")
	f("::1", "::")
}

func TestIPv6SharesItsSlash64(t *testing.T) {
	l, _ := newLimiter(1, 2, 0)
	if !l.Allow(netip.MustParseAddr("2001:db8:1:2::1")) || !l.Allow(netip.MustParseAddr("2001:db8:1:2:ffff::9")) {
		t.Fatal("burst of two refused")
	}
	if l.Allow(netip.MustParseAddr("2001:db8:1:2:1234::")) {
		t.Error("a third address of the same /64 is the same client")
	}
	if !l.Allow(netip.MustParseAddr("2001:db8:1:3::1")) {
		t.Error("the next /64 is another client")
	}
	if !l.Allow(netip.MustParseAddr("198.51.100.7")) || !l.Allow(netip.MustParseAddr("198.51.100.8")) {
		t.Error("IPv4 addresses are each their own")
	}
	if !l.Allow(netip.MustParseAddr("::ffff:198.51.100.7")) || l.Allow(netip.MustParseAddr("198.51.100.7")) {
		t.Error("an IPv4-mapped address is its IPv4 address")
	}
}

// TestBoundedTable: a full table drops the address seen least recently,
// and counts an eviction only when that address still had spent tokens.
func TestBoundedTable(t *testing.T) {
	l, c := newLimiter(1, 1, 3)
	addr := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}) }
	for i := range 3 {
		l.Allow(addr(i)) // each spends its only token
	}
	if l.Len() != 3 {
		t.Fatalf("len %d", l.Len())
	}
	l.Allow(addr(0)) // refused, and now the most recently seen
	if !l.Allow(addr(3)) {
		t.Fatal("a new address refused")
	}
	if l.Len() != 3 || l.Evictions() != 1 {
		t.Errorf("len %d evictions %d, want 3 and 1", l.Len(), l.Evictions())
	}
	if l.Allow(addr(0)) {
		t.Error("address 0 was seen recently and must still be limited")
	}
	if !l.Allow(addr(1)) {
		t.Error("address 1 was the least recently seen: dropped, so it starts again with a full bucket")
	}
	c.Advance(time.Minute) // every bucket full again
	for i := 10; i < 13; i++ {
		l.Allow(addr(i))
	}
	if l.Len() != 3 || l.Evictions() != 2 {
		t.Errorf("len %d evictions %d: dropping a full bucket loses nothing and is no eviction", l.Len(), l.Evictions())
	}
}

// TestShardedTableBound: the default table (sharded) stays within its
// bound under many addresses.
func TestShardedTableBound(t *testing.T) {
	l, _ := newLimiter(1, 1, 8192)
	for i := range 50000 {
		l.Allow(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}))
	}
	if n := l.Len(); n > 8192 || n < 8000 {
		t.Errorf("len %d, want at most 8192 and near it", n)
	}
	if l.Evictions() == 0 {
		t.Error("no evictions counted")
	}
}

func TestConcurrent(t *testing.T) {
	l := New(Config{Rate: 1e-3, Burst: 100, MaxAddrs: 1 << 14})
	var wg sync.WaitGroup
	allowed := make([]int, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				if l.Allow(a1) {
					allowed[g]++
				}
				l.Allow(netip.AddrFrom4([4]byte{10, byte(g), byte(i >> 8), byte(i)}))
			}
		}()
	}
	wg.Wait()
	total := 0
	for _, n := range allowed {
		total += n
	}
	if total != 100 {
		t.Errorf("%d events of one address allowed, want the burst of 100", total)
	}
}

// TestClockBack: a clock set back (a test clock) does not hold an address
// off for as long as it went back.
func TestClockBack(t *testing.T) {
	l, c := newLimiter(1, 2, 0)
	l.Allow(a1)
	l.Allow(a1)
	c.Advance(-30 * 24 * time.Hour)
	if ok, wait := l.Take(a1); ok || wait != time.Second {
		t.Errorf("after the clock went back 30 days: ok=%v, retry after %v, want refused for 1s", ok, wait)
	}
	c.Advance(time.Second)
	if !l.Allow(a1) {
		t.Error("a second later one is allowed again")
	}
}

// BenchmarkAllow: the limiter's cost per click, over 10,000 client
// addresses at once, as the edge asks it (the default policy: 5 a second,
// bursts of 20).
func BenchmarkAllow(b *testing.B) {
	l := New(Config{Rate: 5, Burst: 20})
	addrs := make([]netip.Addr, 10000)
	for i := range addrs {
		addrs[i] = netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			l.Allow(addrs[i%len(addrs)])
			i += 7
		}
	})
}
