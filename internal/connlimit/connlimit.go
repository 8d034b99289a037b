// Package connlimit caps the connections a listener keeps open: in all and
// per client address. A connection over a cap is closed as soon as it is
// accepted, before anything is read or allocated for it, so a flood of idle
// connections costs the server a counter, not memory.
package connlimit

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/refgate/refgate/internal/ratelimit"
)

// Config says what a Listener admits. The zero value admits everything.
type Config struct {
	// MaxConns caps the open connections in all; 0 = no cap.
	MaxConns int
	// MaxPerAddr caps the open connections of one client address (an IPv4
	// address, an IPv6 /64: ratelimit.Key); 0 = no cap.
	MaxPerAddr int
	// Exempt are peers not capped per address: the trusted proxies, which
	// carry many clients' connections. They still count towards MaxConns.
	Exempt []netip.Prefix
	// Registerer takes the metrics; nil for none.
	Registerer prometheus.Registerer
	// Name labels the metrics ("edge").
	Name string
}

// Listener is a net.Listener that closes connections over its caps.
type Listener struct {
	net.Listener
	cfg Config

	mu    sync.Mutex
	total int
	per   map[netip.Addr]int
	fresh map[*conn]struct{} // accepted, nothing read yet

	open                 prometheus.Gauge
	rejTotal, rejPerAddr prometheus.Counter
}

// New wraps ln.
func New(ln net.Listener, cfg Config) *Listener {
	l := &Listener{Listener: ln, cfg: cfg, per: map[netip.Addr]int{}, fresh: map[*conn]struct{}{}}
	reg := cfg.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	f := promauto.With(reg)
	labels := prometheus.Labels{"listener": cfg.Name}
	l.open = f.NewGauge(prometheus.GaugeOpts{Name: "refgate_connections", ConstLabels: labels,
		Help: "Connections open on the listener."})
	f.NewGauge(prometheus.GaugeOpts{Name: "refgate_connections_max", ConstLabels: labels,
		Help: "The listener's cap on open connections (0 = none)."}).Set(float64(cfg.MaxConns))
	rej := f.NewCounterVec(prometheus.CounterOpts{Name: "refgate_connections_rejected_total", ConstLabels: labels,
		Help: "Connections closed on accept because a cap was reached: total (all connections) or per_address (one client address)."},
		[]string{"reason"})
	l.rejTotal = rej.WithLabelValues("total")
	l.rejPerAddr = rej.WithLabelValues("per_address")
	return l
}

// Accept returns the next connection within the caps; the ones over a cap
// are closed on the way.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key, capped := l.key(c)
		if lc := (&conn{Conn: c, l: l, key: key, capped: capped, accepted: time.Now()}); l.admit(lc) {
			l.open.Inc()
			return lc, nil
		}
		c.Close()
	}
}

// key is the address the per-address cap counts c under, and whether the
// cap applies to it at all.
func (l *Listener) key(c net.Conn) (netip.Addr, bool) {
	if l.cfg.MaxPerAddr <= 0 {
		return netip.Addr{}, false
	}
	ap, err := netip.ParseAddrPort(c.RemoteAddr().String())
	if err != nil {
		return netip.Addr{}, false // not TCP: nothing to key on
	}
	a := ap.Addr().Unmap()
	for _, p := range l.cfg.Exempt {
		if p.Contains(a) {
			return netip.Addr{}, false
		}
	}
	return ratelimit.Key(a), true
}

func (l *Listener) admit(c *conn) bool {
	key, capped := c.key, c.capped
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cfg.MaxConns > 0 && l.total >= l.cfg.MaxConns {
		l.rejTotal.Inc()
		return false
	}
	if capped {
		if l.per[key] >= l.cfg.MaxPerAddr {
			l.rejPerAddr.Inc()
			return false
		}
		l.per[key]++
	}
	l.total++
	l.fresh[c] = struct{}{}
	return true
}

func (l *Listener) release(c *conn) {
	key, capped := c.key, c.capped
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.fresh, c)
	l.total--
	if capped {
		if n := l.per[key] - 1; n > 0 {
			l.per[key] = n
		} else {
			delete(l.per, key)
		}
	}
	l.open.Dec()
}

// CloseUnused closes the connections accepted longer than idle ago that
// have not sent a byte, and returns how many. A server shutting down calls
// it: such a connection is a client's spare one (HTTP clients and load
// balancers open connections ahead of requests), and fasthttp would wait for
// its first request until its read timeout.
func (l *Listener) CloseUnused(idle time.Duration) int {
	cutoff := time.Now().Add(-idle)
	var unused []*conn
	l.mu.Lock()
	for c := range l.fresh {
		if c.accepted.Before(cutoff) {
			unused = append(unused, c)
		}
	}
	l.mu.Unlock()
	for _, c := range unused {
		c.Close()
	}
	return len(unused)
}

// conn gives its place back once, on the first Close.
type conn struct {
	net.Conn
	l        *Listener
	key      netip.Addr
	capped   bool
	accepted time.Time
	used     atomic.Bool // read a byte
	once     sync.Once
}

func (c *conn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && !c.used.Load() {
		c.used.Store(true)
		c.l.mu.Lock()
		delete(c.l.fresh, c)
		c.l.mu.Unlock()
	}
	return n, err
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c) })
	return err
}
