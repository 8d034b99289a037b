package loadtest

import (
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
)

// Target is one base URL the generator talks to (the edge or the API).
type Target struct {
	Base string // "http://127.0.0.1:8080", no trailing slash
	Host string // the Host header
	// Client serves one-off calls (setup, verification). A run's workers
	// each keep their own connection instead (see Worker.Send).
	Client *fasthttp.HostClient
	addr   string // host:port to dial
	tls    bool
}

// NewTarget checks base and makes a Client with up to conns connections,
// for one-off calls and the verification's concurrent reads (a run's
// workers do not use it).
// Unless allowRemote, every address base names must be a loopback address:
// a load generator pointed at someone else's server by mistake is an
// attack.
func NewTarget(base string, conns int, allowRemote bool) (*Target, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, fmt.Errorf("bad target %q: %w", base, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return nil, fmt.Errorf("bad target %q: want http(s)://host:port", base)
	}
	if err := CheckLoopback(u.Hostname(), allowRemote); err != nil {
		return nil, err
	}
	addr := u.Host
	if u.Port() == "" {
		port := "80"
		if u.Scheme == "https" {
			port = "443"
		}
		addr = net.JoinHostPort(u.Hostname(), port)
	}
	c := &fasthttp.HostClient{
		Addr: addr, IsTLS: u.Scheme == "https", Name: "refgate-load",
		MaxConns: conns, MaxIdleConnDuration: 30 * time.Second,
		ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second,
		// The generator sends exactly what the scenario set.
		DisableHeaderNamesNormalizing: true, DisablePathNormalizing: true,
	}
	return &Target{Base: strings.TrimSuffix(u.Scheme+"://"+u.Host, "/"), Host: u.Host, Client: c,
		addr: addr, tls: u.Scheme == "https"}, nil
}

// CheckLoopback returns an error unless host (a name or an IP) resolves
// only to loopback addresses, or allowRemote is set.
func CheckLoopback(host string, allowRemote bool) error {
	if allowRemote {
		return nil
	}
	if host == "" {
		return fmt.Errorf("no target host")
	}
	var ips []net.IP
	if ip := net.ParseIP(strings.Trim(host, "[]")); ip != nil {
		ips = []net.IP{ip}
	} else {
		addrs, err := net.LookupIP(host)
		if err != nil {
			return fmt.Errorf("cannot resolve target %q: %w", host, err)
		}
		ips = addrs
	}
	for _, ip := range ips {
		if !ip.IsLoopback() {
			return fmt.Errorf("refusing to load %s (%s is not a loopback address): pass --allow-remote to load a server you run elsewhere", host, ip)
		}
	}
	return nil
}
