package events

import "net/netip"

// Anonymize returns ip with its host part cleared: IPv4 to its /24, IPv6 to
// its /48, the prefixes commonly accepted as no longer identifying a
// subscriber. An IPv4-mapped IPv6 address is treated as IPv4. keepFull
// returns ip as it is (--keep-full-ip). An invalid ip is "".
func Anonymize(ip netip.Addr, keepFull bool) string {
	if !ip.IsValid() {
		return ""
	}
	ip = ip.Unmap()
	if keepFull {
		return ip.String()
	}
	bits := 48
	if ip.Is4() {
		bits = 24
	}
	p, err := ip.Prefix(bits)
	if err != nil {
		return ""
	}
	return p.Addr().String()
}
