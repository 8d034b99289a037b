// Package faultproxy is a loopback TCP proxy in front of a real Redis for
// tests that need one reply to go missing: it reads enough RESP (2 and 3) to
// pair every command a client sends with the reply Redis gives it, in order
// (go-redis pipelines several commands per write), and can be armed to hold
// back, for a while or for good, the reply to the next command that matches.
// The command itself always reaches Redis: what the client sees is a write
// whose answer was lost, the case a retry must not apply twice.
//
// Everything not armed for passes through unchanged. Not supported: CLIENT
// REPLY OFF|SKIP (commands with no reply would shift the pairing); after
// SUBSCRIBE, MONITOR and the like a connection is copied without looking.
package faultproxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"sync"
	"time"
)

// Config says where the proxy forwards to. The zero value of each limit
// takes the default in brackets.
type Config struct {
	Network  string // of Target: "tcp" [tcp] or "unix"
	Target   string // host:port, or the socket path
	MaxConns int    // client connections open at once; more are closed at accept [128]
	MaxFrame int    // largest command or reply, in bytes; a larger one closes the connection [16 MiB]
}

// Match reports whether a command, given as its arguments (the name first,
// as sent), is the one a fault is for. It runs on the proxy's goroutines
// with the proxy's lock held: it must not call the proxy, and it must not
// keep args, which are reused.
type Match func(args [][]byte) bool

// Command matches the command called name (in any case) having every one of
// contains as a substring of some argument.
func Command(name string, contains ...string) Match {
	return func(args [][]byte) bool {
		if len(args) == 0 || !bytes.EqualFold(args[0], []byte(name)) {
			return false
		}
		for _, c := range contains {
			if !slices.ContainsFunc(args[1:], func(a []byte) bool { return bytes.Contains(a, []byte(c)) }) {
				return false
			}
		}
		return true
	}
}

type action int

const (
	delay action = iota
	drop
	raw // not a fault: the connection stops being parsed
)

// Fault is one armed fault; it acts on one reply at most.
type Fault struct {
	match Match
	act   action
	d     time.Duration
	hit   chan struct{}
	cmd   [][]byte // set when taken, before the command is forwarded
	reply []byte   // set before hit is closed
}

// Hit is closed once the reply the fault is for has come back from Redis
// (so the command has run) and has been held or dropped.
func (f *Fault) Hit() <-chan struct{} { return f.hit }

// Command returns the arguments of the command the fault took; call it once
// Hit is closed. The caller may keep them.
func (f *Fault) Command() [][]byte { return f.cmd }

// Reply returns the raw RESP reply the fault held or dropped; call it once
// Hit is closed. The caller may keep it.
func (f *Fault) Reply() []byte { return f.reply }

var rawMode = &Fault{act: raw}

// Proxy is a running proxy. Its methods are safe for concurrent use.
type Proxy struct {
	cfg    Config
	ln     net.Listener
	ctx    context.Context // done once Close is called
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	faults []*Fault // armed, oldest first
	conns  map[*conn]struct{}
	closed bool
}

// Start listens on 127.0.0.1 on a free port and forwards every connection
// to c.Target. Close stops it.
func Start(c Config) (*Proxy, error) {
	if c.Target == "" {
		return nil, errors.New("faultproxy: no target")
	}
	if c.Network == "" {
		c.Network = "tcp"
	}
	if c.MaxConns <= 0 {
		c.MaxConns = 128
	}
	if c.MaxFrame <= 0 {
		c.MaxFrame = 16 << 20
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{cfg: c, ln: ln, conns: map[*conn]struct{}{}}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Delay arms a fault: the reply to the next command m matches is forwarded
// d after it arrives (or never, if the client leaves first). Replies after
// it on the same connection wait behind it, as they would behind a slow
// network.
func (p *Proxy) Delay(m Match, d time.Duration) *Fault { return p.arm(m, delay, d) }

// Drop arms a fault: the reply to the next command m matches is never
// forwarded, nor is anything after it on that connection, which is closed
// after (at once for 0), or as soon as the client leaves.
func (p *Proxy) Drop(m Match, after time.Duration) *Fault { return p.arm(m, drop, after) }

func (p *Proxy) arm(m Match, a action, d time.Duration) *Fault {
	f := &Fault{match: m, act: a, d: d, hit: make(chan struct{})}
	p.mu.Lock()
	p.faults = append(p.faults, f)
	p.mu.Unlock()
	return f
}

// take disarms and returns the first armed fault matching args.
func (p *Proxy) take(args [][]byte) *Fault {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, f := range p.faults {
		if f.match(args) {
			p.faults = slices.Delete(p.faults, i, i+1)
			f.cmd = make([][]byte, len(args))
			for j, a := range args {
				f.cmd[j] = bytes.Clone(a)
			}
			return f
		}
	}
	return nil
}

// Close stops accepting, closes every connection and waits for every
// goroutine the proxy started. A held reply is never forwarded. Safe to
// call twice.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		p.wg.Wait()
		return nil
	}
	p.closed = true
	p.cancel()
	conns := make([]*conn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	err := p.ln.Close()
	for _, c := range conns {
		c.close()
	}
	p.wg.Wait()
	return err
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		nc, err := p.ln.Accept()
		if err != nil {
			if p.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(5 * time.Millisecond) // out of file descriptors, say: do not spin
			continue
		}
		c := &conn{p: p, client: nc, closed: make(chan struct{}), noMore: make(chan struct{}), pending: make(chan *Fault, 1024)}
		p.mu.Lock()
		if p.closed || len(p.conns) >= p.cfg.MaxConns {
			p.mu.Unlock()
			nc.Close()
			continue
		}
		p.conns[c] = struct{}{}
		p.wg.Add(1)
		p.mu.Unlock()
		go c.serve()
	}
}

// conn is one client connection and its own connection to Redis.
type conn struct {
	p      *Proxy
	client net.Conn
	closed chan struct{}
	noMore chan struct{} // closed when the client sends no more commands
	// pending holds, per command forwarded and not yet answered, its
	// fault or nil; bounded, so a client pipelining without reading is
	// throttled rather than buffered without end.
	pending chan *Fault

	mu       sync.Mutex
	isClosed bool
	server   net.Conn
}

func (c *conn) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.isClosed {
		return
	}
	c.isClosed = true
	close(c.closed)
	c.client.Close()
	if c.server != nil {
		c.server.Close()
	}
}

// setServer records the connection to Redis, so that close closes it too;
// false if the client connection was closed meanwhile.
func (c *conn) setServer(s net.Conn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.isClosed {
		return false
	}
	c.server = s
	return true
}

func (c *conn) serve() {
	defer c.p.wg.Done()
	defer func() {
		c.p.mu.Lock()
		delete(c.p.conns, c)
		c.p.mu.Unlock()
	}()
	defer c.close()
	var d net.Dialer
	ctx, cancel := context.WithTimeout(c.p.ctx, time.Second)
	server, err := d.DialContext(ctx, c.p.cfg.Network, c.p.cfg.Target)
	cancel()
	if err != nil {
		return
	}
	if !c.setServer(server) {
		server.Close()
		return
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer c.close()
		c.replies(server)
	}()
	c.commands(server)
	// The client is gone (a client that timed out closes its connection),
	// but Redis still runs what it sent: read the replies still owed, up
	// to drainGrace, so that a fault armed for one of them takes it.
	close(c.noMore)
	if len(c.pending) > 0 {
		t := time.NewTimer(drainGrace)
		select {
		case <-done:
		case <-t.C:
		case <-c.p.ctx.Done():
		}
		t.Stop()
	}
	c.close()
	<-done
}

// drainGrace bounds how long replies are read after the client left.
const drainGrace = 5 * time.Second

// unparsed reports whether after the command name the connection stops
// being request and reply: subscriptions and replication streams.
func unparsed(name []byte) bool {
	for _, n := range []string{"SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "MONITOR", "SYNC", "PSYNC"} {
		if bytes.EqualFold(name, []byte(n)) {
			return true
		}
	}
	return false
}

// commands forwards the client's commands to Redis, queueing for each the
// fault armed for it, if any, before Redis can answer it.
func (c *conn) commands(server net.Conn) {
	br := bufio.NewReaderSize(c.client, 32<<10)
	bw := bufio.NewWriterSize(server, 32<<10)
	var buf []byte
	for {
		var args [][]byte
		var err error
		if buf, args, err = readCommand(br, buf[:0], c.p.cfg.MaxFrame); err != nil {
			return
		}
		var f *Fault
		if len(args) > 0 { // Redis does not answer an empty command
			f = rawMode
			if !unparsed(args[0]) {
				f = c.p.take(args)
			}
			if !c.expect(f, bw) {
				return
			}
		}
		if _, err := bw.Write(buf); err != nil {
			return
		}
		if f == rawMode {
			if bw.Flush() == nil {
				io.Copy(server, br)
			}
			return
		}
		// Flush once the client has nothing more in flight: a pipeline
		// goes to Redis in one write, as it came.
		if br.Buffered() == 0 && bw.Flush() != nil {
			return
		}
		if cap(buf) > 1<<20 {
			buf = nil // do not keep a rare large frame's memory
		}
	}
}

// expect queues the fault (or nil) of a command about to be forwarded.
func (c *conn) expect(f *Fault, bw *bufio.Writer) bool {
	select {
	case c.pending <- f:
		return true
	default:
	}
	// Full: what is buffered must reach Redis, or no reply will come to
	// make room.
	if bw.Flush() != nil {
		return false
	}
	select {
	case c.pending <- f:
		return true
	case <-c.closed:
		return false
	}
}

// replies forwards Redis's replies to the client, pairing each with the
// command it answers, in order; pushes (RESP3 >) answer no command. Once the
// client has left, replies are still read (and discarded once writing
// fails) until none is owed.
func (c *conn) replies(server net.Conn) {
	br := bufio.NewReaderSize(server, 32<<10)
	bw := bufio.NewWriterSize(c.client, 32<<10)
	gone := false
	write := func(b []byte) {
		if !gone {
			_, err := bw.Write(b)
			gone = err != nil
		}
	}
	flush := func() {
		if !gone {
			gone = bw.Flush() != nil
		}
	}
	var buf []byte
	for {
		var push bool
		var err error
		if buf, push, err = readReply(br, buf[:0], c.p.cfg.MaxFrame); err != nil {
			return
		}
		var f *Fault
		if !push {
			select {
			case f = <-c.pending:
			default: // a reply to nothing we saw: pass it on
			}
		}
		switch {
		case f == rawMode:
			write(buf)
			flush()
			if !gone {
				io.Copy(c.client, br)
			}
			return
		case f != nil:
			flush() // the replies before this one go out now; this one waits
			f.reply = bytes.Clone(buf)
			close(f.hit)
			if f.act == drop {
				c.wait(f.d)
				return
			}
			if !c.wait(f.d) {
				gone = true // the client left: no one to hold it for
			}
		}
		write(buf)
		if br.Buffered() == 0 {
			flush()
		}
		if len(c.pending) == 0 && isClosed(c.noMore) {
			return // nothing more is owed, nor will be
		}
		if cap(buf) > 1<<20 {
			buf = nil
		}
	}
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// wait waits d, or less if the connection or the proxy closes first; true
// if it waited d.
func (c *conn) wait(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.closed:
		return false
	case <-c.noMore:
		return false
	case <-c.p.ctx.Done():
		return false
	}
}
