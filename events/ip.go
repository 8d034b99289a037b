package events

import "net/netip"

// Anonymize returns ip with its host part cleared: IPv4 to its /24, IPv6 to
// its /48, the prefixes commonly accepted as no longer identifying a
// subscriber. An IPv4-mapped IPv6 address is treated as IPv4. keepFull
// returns ip as it is (--keep-full-ip). An invalid ip is "".
func Anonymize(ip netip.Addr, keepFull bool) string {
	a := anonymized(ip, keepFull)
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// anonymized is Anonymize's address; the zero Addr for an invalid ip.
func anonymized(ip netip.Addr, keepFull bool) netip.Addr {
	if !ip.IsValid() {
		return netip.Addr{}
	}
	ip = ip.Unmap()
	if keepFull {
		return ip
	}
	bits := 48
	if ip.Is4() {
		bits = 24
	}
	p, err := ip.Prefix(bits)
	if err != nil {
		return netip.Addr{}
	}
	return p.Addr()
}
