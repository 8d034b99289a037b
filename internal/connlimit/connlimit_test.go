package connlimit

import (
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// serve accepts on l and holds every connection open until the client
// closes it.
func serve(l *Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			io.Copy(io.Discard, c)
			c.Close()
		}()
	}
}

// dial connects from the loopback address from and reports whether the
// server kept the connection (a closed one reads EOF at once).
func dial(t *testing.T, addr, from string) (net.Conn, bool) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	_, err = c.Read(make([]byte, 1))
	ne, ok := err.(net.Error)
	return c, ok && ne.Timeout()
}

func newListener(t *testing.T, cfg Config) (*Listener, *prometheus.Registry) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	cfg.Registerer, cfg.Name = reg, "edge"
	l := New(ln, cfg)
	t.Cleanup(func() { l.Close() })
	go serve(l)
	return l, reg
}

func TestCaps(t *testing.T) {
	l, _ := newListener(t, Config{MaxConns: 5, MaxPerAddr: 2,
		Exempt: []netip.Prefix{netip.MustParsePrefix("127.0.0.9/32")}})
	addr := l.Addr().String()

	if _, ok := dial(t, addr, "127.0.0.2"); !ok {
		t.Fatal("first connection closed")
	}
	a2, ok := dial(t, addr, "127.0.0.2")
	if !ok {
		t.Fatal("second connection closed")
	}
	if _, ok := dial(t, addr, "127.0.0.2"); ok {
		t.Fatal("third connection of one address kept")
	}
	// Another address has its own count; an exempt one has none.
	if _, ok := dial(t, addr, "127.0.0.3"); !ok {
		t.Fatal("other address closed")
	}
	for i := range 2 {
		if _, ok := dial(t, addr, "127.0.0.9"); !ok {
			t.Fatalf("exempt connection %d closed", i)
		}
	}
	// Five open: the total cap holds for everyone, exempt or not.
	if _, ok := dial(t, addr, "127.0.0.9"); ok {
		t.Fatal("connection over the total kept")
	}
	if got := testutil.ToFloat64(l.rejPerAddr); got != 1 {
		t.Errorf("per-address rejections %v", got)
	}
	if got := testutil.ToFloat64(l.rejTotal); got != 1 {
		t.Errorf("total rejections %v", got)
	}
	if got := testutil.ToFloat64(l.open); got != 5 {
		t.Errorf("open %v", got)
	}

	// A closed connection gives its place back.
	a2.Close()
	deadline := time.Now().Add(2 * time.Second)
	for testutil.ToFloat64(l.open) != 4 {
		if time.Now().After(deadline) {
			t.Fatal("place not given back")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, ok := dial(t, addr, "127.0.0.2"); !ok {
		t.Fatal("connection after a close refused")
	}
}

// TestCloseUnused: a shutdown closes the connections that never sent a
// byte (a client's spare ones) and keeps those that did.
func TestCloseUnused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := New(ln, Config{})
	defer l.Close()
	go serve(l)
	addr := ln.Addr().String()
	spare, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer spare.Close()
	used, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer used.Close()
	if _, err := used.Write([]byte("GET / HTTP/1.1\r\n")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // both accepted, one byte read
	if n := l.CloseUnused(time.Hour); n != 0 {
		t.Errorf("closed %d connections accepted within the hour", n)
	}
	if n := l.CloseUnused(0); n != 1 {
		t.Errorf("closed %d unused connections, want 1", n)
	}
	spare.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := spare.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("the spare connection: %v, want it closed (EOF)", err)
	}
	used.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if _, err := used.Read(make([]byte, 1)); err == io.EOF {
		t.Error("the connection that sent a request was closed")
	}
}

// BenchmarkRead: what the connection wrapper adds to a Read once the
// connection has sent its first byte (one atomic load), against the bare
// connection, over loopback TCP.
func BenchmarkRead(b *testing.B) {
	for _, wrapped := range []bool{false, true} {
		name := "Bare"
		if wrapped {
			name = "Wrapped"
		}
		b.Run(name, func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			var l net.Listener = ln
			if wrapped {
				l = New(ln, Config{MaxConns: 10, MaxPerAddr: 10})
			}
			defer l.Close()
			go func() {
				c, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					return
				}
				defer c.Close()
				buf := make([]byte, 64)
				for {
					if _, err := c.Write(buf); err != nil {
						return
					}
				}
			}()
			c, err := l.Accept()
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			buf := make([]byte, 64)
			b.ResetTimer()
			for range b.N {
				if _, err := io.ReadFull(c, buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
