package redirect

import (
	"bytes"
	"net/netip"
)

// ClientIP returns the address of the client behind peer: peer itself unless
// peer is a trusted proxy, in which case X-Forwarded-For (xff, the header
// values in order) is walked from the right, past every trusted proxy, to
// the first address that is not one. An unreadable entry stops the walk at
// the hop that wrote it: a client can put anything at the left of the list,
// so only what trusted proxies appended counts.
func ClientIP(peer netip.Addr, xff [][]byte, trusted []netip.Prefix) netip.Addr {
	peer = peer.Unmap()
	if !isTrusted(peer, trusted) {
		return peer
	}
	client := peer
	for i := len(xff) - 1; i >= 0; i-- {
		list := xff[i]
		for len(list) > 0 {
			var entry []byte
			if j := bytes.LastIndexByte(list, ','); j >= 0 {
				entry, list = list[j+1:], list[:j]
			} else {
				entry, list = list, nil
			}
			entry = bytes.TrimSpace(entry)
			if len(entry) == 0 {
				continue
			}
			a, ok := parseForwarded(entry)
			if !ok {
				return client
			}
			client = a
			if !isTrusted(a, trusted) {
				return a
			}
		}
	}
	return client
}

// parseForwarded reads "1.2.3.4", "1.2.3.4:5678", "2001:db8::1" or
// "[2001:db8::1]:443".
func parseForwarded(b []byte) (netip.Addr, bool) {
	s := string(b) // no allocation when it does not escape (Go 1.22+)
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap().WithZone(""), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().WithZone(""), true
	}
	return netip.Addr{}, false
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ParsePrefixes reads a comma-separated list of CIDR prefixes or single
// addresses, the --trusted-proxies syntax.
func ParsePrefixes(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range bytes.Split([]byte(s), []byte(",")) {
		f = bytes.TrimSpace(f)
		if len(f) == 0 {
			continue
		}
		if p, err := netip.ParsePrefix(string(f)); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(string(f))
		if err != nil {
			return nil, err
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}
