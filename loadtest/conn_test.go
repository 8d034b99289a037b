package loadtest

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/refgate/refgate/internal/redistest"
)

// rawServer answers each connection with answer(n, req), n counting the
// connections from 1; a nil answer closes the connection unanswered.
func rawServer(t *testing.T, answer func(n int64, req *http.Request) []byte) (*Target, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var conns atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n := conns.Add(1)
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					b := answer(n, req)
					if b == nil {
						return
					}
					if _, err := c.Write(b); err != nil {
						return
					}
				}
			}()
		}
	}()
	tg, err := NewTarget("http://"+ln.Addr().String(), 1, false)
	if err != nil {
		t.Fatal(err)
	}
	return tg, &conns
}

func newTestWorker() *Worker {
	return &Worker{Req: fasthttp.AcquireRequest(), Resp: fasthttp.AcquireResponse(), Timeout: time.Second}
}

func get(w *Worker, tg *Target, path string) Outcome {
	w.Req.Reset()
	w.Resp.Reset()
	w.Req.SetRequestURI(path)
	return w.Send(tg, "get")
}

const ok204 = "HTTP/1.1 204 No Content\r\n\r\n"

// onePerConn answers the first request of each connection and closes the
// connection on the next, without saying so beforehand; it counts POSTs.
func onePerConn(posts *atomic.Int64) func(int64, *http.Request) []byte {
	var mu sync.Mutex
	served := map[int64]bool{}
	return func(n int64, req *http.Request) []byte {
		if req.Method == "POST" && posts != nil {
			posts.Add(1)
		}
		mu.Lock()
		defer mu.Unlock()
		if served[n] {
			return nil
		}
		served[n] = true
		return []byte(ok204)
	}
}

func TestWorkerKeepsOneConnection(t *testing.T) {
	var line atomic.Value
	tg, conns := rawServer(t, func(_ int64, req *http.Request) []byte {
		line.Store(req.Method + " " + req.RequestURI + " " + req.Host)
		return []byte(ok204)
	})
	w := newTestWorker()
	defer w.closeConns()
	for range 5 {
		if out := get(w, tg, "/r/abc?x=1"); out.Err != "" || out.Status != 204 {
			t.Fatalf("got %+v", out)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections for 5 requests, want 1", n)
	}
	if got, want := line.Load(), "GET /r/abc?x=1 "+tg.Host; got != want {
		t.Errorf("request line %q, want %q", got, want)
	}
}

func TestWorkerReconnects(t *testing.T) {
	t.Run("connection close", func(t *testing.T) {
		tg, conns := rawServer(t, func(int64, *http.Request) []byte {
			return []byte("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
		})
		w := newTestWorker()
		defer w.closeConns()
		for range 3 {
			if out := get(w, tg, "/"); out.Err != "" || out.Status != 200 || string(w.Resp.Body()) != "ok" {
				t.Fatalf("got %+v %q", out, w.Resp.Body())
			}
		}
		if n := conns.Load(); n != 3 {
			t.Errorf("%d connections, want 3 (one per answer that closes)", n)
		}
	})
	t.Run("stale keep-alive", func(t *testing.T) {
		// The server closes each connection after one answer without
		// saying so: the next GET fails on the old connection and is
		// sent again on a new one.
		tg, conns := rawServer(t, onePerConn(nil))
		w := newTestWorker()
		defer w.closeConns()
		for i := range 3 {
			if out := get(w, tg, "/"); out.Err != "" || out.Status != 204 {
				t.Fatalf("request %d: got %+v", i, out)
			}
		}
		if n := conns.Load(); n != 3 {
			t.Errorf("%d connections, want 3", n)
		}
	})
	t.Run("post is not sent twice", func(t *testing.T) {
		var posts atomic.Int64
		tg, _ := rawServer(t, onePerConn(&posts))
		w := newTestWorker()
		defer w.closeConns()
		get(w, tg, "/")
		w.Req.Reset()
		w.Resp.Reset()
		w.Req.Header.SetMethod("POST")
		w.Req.SetRequestURI("/v1/conversions")
		w.Req.SetBodyString("{}")
		if out := w.Send(tg, "post"); out.Err != "connection" {
			t.Errorf("POST on a closed keep-alive: got %+v, want a connection error", out)
		}
		if n := posts.Load(); n != 1 {
			t.Errorf("the server saw %d POSTs, want 1", n)
		}
	})
}

func TestWorkerErrorKinds(t *testing.T) {
	cases := []struct {
		name   string
		answer []byte
		want   string
	}{
		{"garbage", []byte("SSH-2.0-OpenSSH\r\n\r\n"), "bad_response"},
		{"closed", nil, "connection"},
		{"silent", []byte{}, "timeout"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tg, _ := rawServer(t, func(int64, *http.Request) []byte {
				if tc.answer != nil && len(tc.answer) == 0 {
					time.Sleep(2 * time.Second) // longer than the worker's timeout
				}
				return tc.answer
			})
			w := newTestWorker()
			w.Timeout = 200 * time.Millisecond
			defer w.closeConns()
			if out := get(w, tg, "/"); out.Err != tc.want {
				t.Errorf("got %+v, want error %q", out, tc.want)
			}
		})
	}
	// Nothing listening.
	tg, err := NewTarget("http://127.0.0.1:1", 1, false)
	if err != nil {
		t.Fatal(err)
	}
	w := newTestWorker()
	if out := get(w, tg, "/"); out.Err != "connection" {
		t.Errorf("no server: got %+v, want a connection error", out)
	}
}

// The store baseline writes exactly one key per answered click, and with
// events one stream entry per answered click as well.
func TestCeilingWithKeys(t *testing.T) {
	for _, events := range []bool{false, true} {
		t.Run(fmt.Sprintf("events=%v", events), func(t *testing.T) {
			rs := redistest.Start(t)
			rdb := rs.Client()
			kw := NewKeyWriter(rdb, events)
			tg, err := NewTarget(serve(t, NewCeilingWithKeys(kw)), 4, false)
			if err != nil {
				t.Fatal(err)
			}
			w := newTestWorker()
			defer w.closeConns()
			const clicks = 1000
			for range clicks {
				if out := get(w, tg, "/r/c0001"); out.Status != 302 {
					t.Fatalf("got %+v", out)
				}
			}
			get(w, tg, "/healthz") // not a click
			kw.Close()
			ctx := context.Background()
			keys, err := rdb.Keys(ctx, "refgate-load:click:*").Result()
			if err != nil {
				t.Fatal(err)
			}
			if len(keys) != clicks || kw.Errors() != 0 {
				t.Errorf("%d keys and %d failed pipelines for %d clicks, want %d and 0", len(keys), kw.Errors(), clicks, clicks)
			}
			if ttl := rdb.TTL(ctx, keys[0]).Val(); ttl <= 0 || ttl > 10*time.Minute {
				t.Errorf("TTL %s, want at most 10m", ttl)
			}
			want := int64(0)
			if events {
				want = clicks
			}
			if n := rdb.XLen(ctx, keyWriterStream).Val(); n != want {
				t.Errorf("%d stream entries, want %d", n, want)
			}
		})
	}
}
