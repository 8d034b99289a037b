//go:build !race

package ratelimit

import (
	"net/netip"
	"testing"
)

// TestAllowAllocations: asking about an address already in the table
// allocates nothing, allowed or not, IPv4 or IPv6.
func TestAllowAllocations(t *testing.T) {
	l := New(Config{Rate: 10, Burst: 5})
	for _, s := range []string{"198.51.100.1", "2001:db8::1"} {
		a := netip.MustParseAddr(s)
		l.Allow(a)
		if n := testing.AllocsPerRun(1000, func() { l.Allow(a) }); n != 0 {
			t.Errorf("%s: %.1f allocations per Allow", s, n)
		}
		if n := testing.AllocsPerRun(1000, func() { l.Take(a) }); n != 0 {
			t.Errorf("%s: %.1f allocations per Take", s, n)
		}
	}
}
