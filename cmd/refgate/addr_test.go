package main

import "net"

// fakeAddr is a listener stand-in so the API helpers can address a server
// running in another process.
type fakeAddr string

func (a fakeAddr) Accept() (net.Conn, error) { return nil, net.ErrClosed }
func (a fakeAddr) Close() error              { return nil }
func (a fakeAddr) Addr() net.Addr            { return addr(a) }

type addr string

func (a addr) Network() string { return "tcp" }
func (a addr) String() string  { return string(a) }

func mustListen(t interface {
	Fatal(...any)
}) net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}
