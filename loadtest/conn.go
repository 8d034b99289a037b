package loadtest

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"syscall"
	"time"
)

// workerConn is one worker's keep-alive connection to one target.
type workerConn struct {
	t    *Target
	c    net.Conn
	br   *bufio.Reader
	bw   *bufio.Writer
	used bool // c has carried an answer: a failure may be a stale keep-alive
}

// Send sends w.Req to t on the worker's own keep-alive connection, reads
// the answer into w.Resp and says what happened.
//
// A worker waits for each answer before it sends again, so it needs one
// connection per target and no pool. Going around fasthttp.HostClient
// (its connection pool, two deadlines, pooled buffers and a URL parse per
// request) takes about a fifth off the generator's CPU per request, and on
// one machine the generator's CPU is taken from the server it measures.
// fasthttp still writes the request and parses the answer.
func (w *Worker) Send(t *Target, op string) Outcome {
	if err := w.roundTrip(t); err != nil {
		return Outcome{Op: op, Err: errKind(err)}
	}
	return Outcome{Op: op, Status: w.Resp.StatusCode()}
}

func (w *Worker) roundTrip(t *Target) error {
	if len(w.Req.Header.Host()) == 0 {
		w.Req.Header.SetHost(t.Host)
	}
	cn := w.conn(t)
	reused := cn.used
	err := cn.roundTrip(w)
	if err != nil && reused && retryable(err) && (w.Req.Header.IsGet() || w.Req.Header.IsHead()) {
		// The server may close an idle keep-alive connection just as
		// it is reused; like any client, send a safe request again on
		// a new connection.
		w.Resp.Reset()
		err = cn.roundTrip(w)
	}
	return err
}

// conn returns the worker's connection state for t.
func (w *Worker) conn(t *Target) *workerConn {
	for _, cn := range w.conns {
		if cn.t == t {
			return cn
		}
	}
	cn := &workerConn{t: t}
	w.conns = append(w.conns, cn)
	return cn
}

func (cn *workerConn) roundTrip(w *Worker) error {
	if cn.c == nil {
		if err := cn.dial(w.Timeout); err != nil {
			return err
		}
	}
	// One deadline covers writing the request and reading the answer.
	err := cn.c.SetDeadline(time.Now().Add(w.Timeout))
	if err == nil {
		err = w.Req.Write(cn.bw)
	}
	if err == nil {
		err = cn.bw.Flush()
	}
	if err == nil {
		w.Resp.SkipBody = w.Req.Header.IsHead()
		err = w.Resp.Read(cn.br)
	}
	if err != nil || w.Resp.ConnectionClose() || w.Req.ConnectionClose() {
		cn.close()
		return err
	}
	cn.used = true
	return nil
}

func (cn *workerConn) dial(timeout time.Duration) error {
	c, err := net.DialTimeout("tcp", cn.t.addr, timeout)
	if err != nil {
		return err
	}
	if cn.t.tls {
		host, _, _ := net.SplitHostPort(cn.t.addr)
		tc := tls.Client(c, &tls.Config{ServerName: host})
		tc.SetDeadline(time.Now().Add(timeout))
		if err := tc.Handshake(); err != nil {
			c.Close()
			return err
		}
		c = tc
	}
	cn.c = c
	if cn.br == nil {
		cn.br, cn.bw = bufio.NewReaderSize(c, 4096), bufio.NewWriterSize(c, 4096)
	} else {
		cn.br.Reset(c)
		cn.bw.Reset(c)
	}
	return nil
}

func (cn *workerConn) close() {
	if cn.c != nil {
		cn.c.Close()
		cn.c, cn.used = nil, false
	}
}

// closeConns closes the worker's connections at the end of a run.
func (w *Worker) closeConns() {
	for _, cn := range w.conns {
		cn.close()
	}
}

// retryable reports whether err looks like a keep-alive connection the
// server had already closed.
func retryable(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
