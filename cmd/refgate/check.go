package main

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"strings"
)

// checkValues refuses values the flag types accept but serve cannot use:
// the edge and the API on one address, and numbers that mean nothing
// where 0 is no documented "off". Validate runs it, so serve and validate
// both refuse them.
func (c *Config) checkValues() []error {
	var errs []error
	if c.RedisPoolSize < 1 {
		errs = append(errs, fmt.Errorf("--redis-pool-size must be at least 1, got %d", c.RedisPoolSize))
	}
	if c.RedisTimeout <= 0 {
		// go-redis would read 0 as its 3 s default and -1 as no timeout.
		errs = append(errs, fmt.Errorf("--redis-timeout must be positive, got %v", c.RedisTimeout))
	}
	if math.IsNaN(c.AttributionRate) || math.IsInf(c.AttributionRate, 0) {
		errs = append(errs, fmt.Errorf("--attribution-rate must be a number of clicks per second (0 = no limit), got %v", c.AttributionRate))
	}
	for _, l := range []struct{ flag, addr string }{{"--listen", c.Listen}, {"--api-listen", c.APIListen}} {
		if _, _, err := listenAddr(l.addr); err != nil {
			errs = append(errs, fmt.Errorf("%s %q: %v", l.flag, l.addr, err))
		}
	}
	if sameListenAddr(c.Listen, c.APIListen) {
		errs = append(errs, fmt.Errorf("--listen %q and --api-listen %q are the same address: the edge and the API need one each", c.Listen, c.APIListen))
	}
	return errs
}

// listenAddr splits a listen address into its host ("" for every
// interface) and port. An address net.SplitHostPort cannot split is no
// error here: Check reports it, and serve's net.Listen would.
func listenAddr(addr string) (host string, port int, err error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", -1, nil
	}
	port, err = net.LookupPort("tcp", p)
	if err != nil {
		return "", -1, errors.New("the port must be a number 0..65535")
	}
	return host, port, nil
}

// sameListenAddr reports whether listening on a and on b would collide:
// the same port (not 0, which picks a free one) and the same host, or
// every interface on either (Go listens on "", 0.0.0.0 and :: as one
// dual-stack socket). Hosts are compared as IP addresses where they are
// ones, localhost as 127.0.0.1, and names as written.
func sameListenAddr(a, b string) bool {
	ha, pa, errA := listenAddr(a)
	hb, pb, errB := listenAddr(b)
	if errA != nil || errB != nil || pa <= 0 || pa != pb {
		return false
	}
	ha, hb = normalHost(ha), normalHost(hb)
	return ha == "" || hb == "" || ha == hb
}

// normalHost is a listen host in one spelling: "" for every interface.
func normalHost(h string) string {
	if strings.EqualFold(h, "localhost") {
		return "127.0.0.1"
	}
	ip, err := netip.ParseAddr(h)
	if err != nil {
		return strings.ToLower(h)
	}
	ip = ip.Unmap()
	if ip.IsUnspecified() {
		return ""
	}
	return ip.String()
}
