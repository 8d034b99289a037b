package redirect

import (
	"net/netip"
	"strings"
	"testing"
)

// FuzzClientIP: any X-Forwarded-For must give a valid address, and the
// header of an untrusted peer is never believed.
func FuzzClientIP(f *testing.F) {
	trusted, _ := ParsePrefixes("127.0.0.0/8,10.0.0.0/8,::1/128")
	f.Add("127.0.0.1", "1.2.3.4, 10.0.0.1")
	f.Add("10.1.1.1", "[::1]:80,garbage,,")
	f.Add("198.51.100.1", "1.2.3.4")
	f.Fuzz(func(t *testing.T, peer, xff string) {
		p, err := netip.ParseAddr(peer)
		if err != nil {
			return
		}
		got := ClientIP(p, [][]byte{[]byte(xff)}, trusted)
		if !got.IsValid() {
			t.Fatalf("invalid address from %s %q", peer, xff)
		}
		if !isTrusted(p.Unmap(), trusted) && got != p.Unmap() {
			t.Fatalf("untrusted peer %s: got %s from %q", peer, got, xff)
		}
		if got != p.Unmap() && isTrusted(got, trusted) && !strings.Contains(xff, ",") && !strings.Contains(xff, got.String()) {
			t.Fatalf("trusted %s returned but not in %q", got, xff)
		}
	})
}
