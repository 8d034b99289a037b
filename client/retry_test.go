package client_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/refgate/refgate/client"
	"github.com/refgate/refgate/internal/apitest"
)

// fast retries quickly, so that tests of what is retried do not wait.
var fast = client.Retry{Attempts: 3, Base: time.Millisecond, Max: 10 * time.Millisecond}

// closedPort returns the URL of a loopback port nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	return "http://" + ln.Addr().String()
}

// recorder is a server answering the n-th request (from 1) with answer(n),
// keeping every request's method, path and body.
type recorder struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []string // "METHOD PATH BODY"
}

func record(t *testing.T, answer func(n int, w http.ResponseWriter)) *recorder {
	rec := &recorder{}
	rec.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		rec.mu.Lock()
		rec.reqs = append(rec.reqs, r.Method+" "+r.URL.RequestURI()+" "+string(b))
		n := len(rec.reqs)
		rec.mu.Unlock()
		answer(n, w)
	}))
	t.Cleanup(rec.Close)
	return rec
}

func (rec *recorder) requests() []string {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]string(nil), rec.reqs...)
}

// status answers a status with refgate's error body.
func status(w http.ResponseWriter, code int) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	io.WriteString(w, `{"error":{"code":"x","message":"status `+http.StatusText(code)+`"}}`)
}

// TestClientRefused: refgate not listening is unavailable, with no answer,
// an error naming the request, refgate's address and the attempts, and the
// refusal wrapped. Every call returns a nil answer.
func TestClientRefused(t *testing.T) {
	closed := closedPort(t)
	rg := client.New(closed, apitest.StorefrontToken)
	ctx := context.Background()
	start := time.Now()
	ans, err := rg.Convert(ctx, client.Conversion{Program: "shop", Order: "o1", Customer: "c1", Amount: 1})
	if ans != nil || !client.IsUnavailable(err) || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("a closed port must be unavailable with a nil answer and the refusal wrapped: %+v %v", ans, err)
	}
	if err != nil && (!strings.Contains(err.Error(), "POST /v1/conversions") || !strings.Contains(err.Error(), closed) ||
		!strings.Contains(err.Error(), "3 attempts")) {
		t.Errorf("the error must name the request, refgate's address and the attempts: %v", err)
	}
	if d := time.Since(start); d < 150*time.Millisecond || d > 2*time.Second {
		t.Errorf("3 attempts with the default backoff (about 100 ms, then 200 ms) took %v", d)
	}

	rg = client.New(closed, apitest.StorefrontToken).WithRetry(fast)
	f := func(name string, call func() (any, error)) {
		t.Helper()
		ans, err := call()
		if !client.IsUnavailable(err) || !strings.Contains(err.Error(), closed) {
			t.Errorf("%s: want unavailable naming %s, got %v", name, closed, err)
		}
		if ans != nil {
			t.Errorf("%s: the answer must be nil with an error, got %#v", name, ans)
		}
	}
	// The typed nils of the answers are what a caller would dereference.
	f("Bind", func() (any, error) {
		a, err := rg.Bind(ctx, client.BindRequest{Program: "shop", Customer: "c1", Event: client.Register})
		return nilIf(a == nil, a), err
	})
	f("PutCustomer", func() (any, error) {
		a, err := rg.PutCustomer(ctx, "c1", client.CustomerInfo{})
		return nilIf(a == nil, a), err
	})
	f("Attribution", func() (any, error) { a, err := rg.Attribution(ctx, "shop", "c1"); return nilIf(a == nil, a), err })
	f("TokenAttribution", func() (any, error) { a, err := rg.TokenAttribution(ctx, "shop", "t"); return nilIf(a == nil, a), err })
	f("Explain", func() (any, error) { a, err := rg.Explain(ctx, "shop", "c1"); return nilIf(a == nil, a), err })
	f("Refund", func() (any, error) { a, err := rg.Refund(ctx, "o1", "rf-1", 1); return nilIf(a == nil, a), err })
	f("DeleteCustomer", func() (any, error) { return nil, rg.DeleteCustomer(ctx, "c1") })

	if _, err := client.New("http://refgate.invalid", "t").WithRetry(fast).Attribution(ctx, "shop", "c1"); !client.IsUnavailable(err) {
		t.Errorf("a failed DNS lookup must be unavailable: %v", err)
	}
}

func nilIf(isNil bool, v any) any {
	if isNil {
		return nil
	}
	return v
}

// stalled listens and accepts connections but never answers; it counts
// them.
func stalled(t *testing.T) (string, *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int32
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return "http://" + ln.Addr().String(), &n
}

// TestClientStalled: a server that accepts and never answers ends each
// attempt at the HTTP client's timeout, and the call at the context's
// deadline, unavailable either way.
func TestClientStalled(t *testing.T) {
	addr, accepted := stalled(t)
	rg := client.New(addr, apitest.StorefrontToken).WithHTTPClient(&http.Client{Timeout: 100 * time.Millisecond})
	start := time.Now()
	ans, err := rg.Refund(context.Background(), "o1", "rf-1", 1)
	if ans != nil || !client.IsUnavailable(err) || !strings.Contains(err.Error(), addr) {
		t.Errorf("a stalled server must be unavailable with a nil answer: %+v %v", ans, err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("3 attempts of 100 ms took %v", d)
	}
	if n := accepted.Load(); n != 3 {
		t.Errorf("%d connections, want one per attempt (3)", n)
	}

	// The caller's deadline bounds the whole call, retries included.
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	start = time.Now()
	_, err = client.New(addr, apitest.StorefrontToken).Convert(ctx, client.Conversion{Program: "shop", Order: "o1", Customer: "c1", Amount: 1})
	if !client.IsUnavailable(err) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a deadline must be unavailable (retry later with the same order id): %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("a call with a 150 ms deadline took %v", d)
	}
}

// cutting answers every request with the start of a 200 and then closes
// the connection (reset when reset is set).
func cutting(t *testing.T, reset bool) (string, *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var n atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			go func() {
				defer c.Close()
				http.ReadRequest(bufio.NewReader(c))
				if reset {
					c.(*net.TCPConn).SetLinger(0) // close sends RST
					return
				}
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"order\":")
			}()
		}
	}()
	return "http://" + ln.Addr().String(), &n
}

// TestClientCut: a connection reset, or cut in the middle of the answer, is
// unavailable and retried.
func TestClientCut(t *testing.T) {
	for _, reset := range []bool{false, true} {
		addr, n := cutting(t, reset)
		ans, err := client.New(addr, apitest.StorefrontToken).WithRetry(fast).
			Convert(context.Background(), client.Conversion{Program: "shop", Order: "o1", Customer: "c1", Amount: 1})
		if ans != nil || !client.IsUnavailable(err) || !strings.Contains(err.Error(), addr) {
			t.Errorf("reset %v: a cut connection must be unavailable with a nil answer, naming refgate: %+v %v", reset, ans, err)
		}
		if reset && !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("the reset must be wrapped: %v", err)
		}
		if got := n.Load(); got != 3 {
			t.Errorf("reset %v: %d requests, want 3", reset, got)
		}
	}
}

// TestClientRetries: 503 twice and then an answer is a success, after 3
// requests with the same path and body.
func TestClientRetries(t *testing.T) {
	f := func(name string, call func(rg *client.Client) error) {
		t.Helper()
		srv := record(t, func(n int, w http.ResponseWriter) {
			if n <= 2 {
				status(w, http.StatusServiceUnavailable)
				return
			}
			io.WriteString(w, `{"order":"o1","refund":"rf-1"}`)
		})
		if err := call(client.New(srv.URL, apitest.StorefrontToken)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		reqs := srv.requests()
		if len(reqs) != 3 || reqs[0] != reqs[1] || reqs[1] != reqs[2] {
			t.Errorf("%s: want 3 identical requests, got %q", name, reqs)
		}
	}
	f("Convert", func(rg *client.Client) error {
		ans, err := rg.Convert(context.Background(), client.Conversion{Program: "shop", Order: "o1", Customer: "c1", Amount: 10000, Prepaid: true})
		if err == nil && ans.Order != "o1" {
			t.Errorf("answer: %+v", ans)
		}
		return err
	})
	f("Refund", func(rg *client.Client) error {
		ans, err := rg.Refund(context.Background(), "o1", "rf-1", 2500)
		if err == nil && ans.Refund != "rf-1" {
			t.Errorf("answer: %+v", ans)
		}
		return err
	})
	f("Attribution", func(rg *client.Client) error {
		_, err := rg.Attribution(context.Background(), "shop", "c1")
		return err
	})

	// Retries used up: the last 503, unavailable.
	srv := record(t, func(n int, w http.ResponseWriter) { status(w, http.StatusBadGateway) })
	_, err := client.New(srv.URL, apitest.StorefrontToken).WithRetry(fast).Convert(context.Background(), client.Conversion{Order: "o1"})
	var e *client.Error
	if !asError(err, &e) || e.Status != 502 || !client.IsUnavailable(err) || len(srv.requests()) != 3 {
		t.Errorf("after 3 502s: %v, %d requests", err, len(srv.requests()))
	}
	// Retries off.
	srv = record(t, func(n int, w http.ResponseWriter) { status(w, http.StatusServiceUnavailable) })
	_, err = client.New(srv.URL, apitest.StorefrontToken).WithRetry(client.Retry{Attempts: 1}).Convert(context.Background(), client.Conversion{Order: "o1"})
	if !client.IsUnavailable(err) || len(srv.requests()) != 1 {
		t.Errorf("Attempts 1: %v, %d requests", err, len(srv.requests()))
	}
}

// TestClientRetryAfter: a 503 or 429 with a Retry-After is retried after
// that wait, when it is within the cap; a longer one ends the retries and
// is in the error. A 429 without one is not retried.
func TestClientRetryAfter(t *testing.T) {
	f := func(name string, code int, header string, wantReqs int, wantWait time.Duration, ok bool) {
		t.Helper()
		srv := record(t, func(n int, w http.ResponseWriter) {
			if n == 1 {
				if header != "" {
					w.Header().Set("Retry-After", header)
				}
				status(w, code)
				return
			}
			io.WriteString(w, `{"order":"o1"}`)
		})
		start := time.Now()
		ans, err := client.New(srv.URL, apitest.StorefrontToken).Convert(context.Background(), client.Conversion{Order: "o1"})
		d := time.Since(start)
		if got := len(srv.requests()); got != wantReqs {
			t.Errorf("%s: %d requests, want %d", name, got, wantReqs)
		}
		if (err == nil) != ok || (ans == nil) == ok {
			t.Errorf("%s: %+v %v", name, ans, err)
		}
		if d < wantWait || d > wantWait+time.Second {
			t.Errorf("%s: took %v, want %v and a little", name, d, wantWait)
		}
		var e *client.Error
		if !ok && asError(err, &e) && header == "60" && e.RetryAfter != time.Minute {
			t.Errorf("%s: RetryAfter %v", name, e.RetryAfter)
		}
	}
	f("503RetryAfter1", http.StatusServiceUnavailable, "1", 2, time.Second, true)
	f("429RetryAfter1", http.StatusTooManyRequests, "1", 2, time.Second, true)
	f("503RetryAfterOverCap", http.StatusServiceUnavailable, "60", 1, 0, false)
	f("429NoRetryAfter", http.StatusTooManyRequests, "", 1, 0, false)
}

// TestClientNoRetry4xx: refgate's refusals are answers, not failures: sent
// once.
func TestClientNoRetry4xx(t *testing.T) {
	for _, code := range []int{400, 401, 404, 409, 413, 422, 500} {
		srv := record(t, func(n int, w http.ResponseWriter) { status(w, code) })
		_, err := client.New(srv.URL, apitest.StorefrontToken).WithRetry(fast).Convert(context.Background(), client.Conversion{Order: "o1"})
		var e *client.Error
		if !asError(err, &e) || e.Status != code || client.IsUnavailable(err) {
			t.Errorf("%d: %v", code, err)
		}
		if n := len(srv.requests()); n != 1 {
			t.Errorf("%d: %d requests, want 1", code, n)
		}
	}
}

// TestClientRetryContext: the context ends the retries at once: when it is
// cancelled, and when its deadline comes before the next attempt would.
func TestClientRetryContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := record(t, func(n int, w http.ResponseWriter) {
		cancel() // the shopper went away while refgate answered 503
		status(w, http.StatusServiceUnavailable)
	})
	slow := client.Retry{Attempts: 5, Base: time.Second, Max: time.Second}
	start := time.Now()
	_, err := client.New(srv.URL, apitest.StorefrontToken).WithRetry(slow).Convert(ctx, client.Conversion{Order: "o1"})
	if !client.IsUnavailable(err) || len(srv.requests()) != 1 || time.Since(start) > 400*time.Millisecond {
		t.Errorf("cancelled: %v, %d requests in %v", err, len(srv.requests()), time.Since(start))
	}

	srv = record(t, func(n int, w http.ResponseWriter) { status(w, http.StatusServiceUnavailable) })
	ctx, cancel2 := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel2()
	start = time.Now()
	_, err = client.New(srv.URL, apitest.StorefrontToken).WithRetry(slow).Convert(ctx, client.Conversion{Order: "o1"})
	if !client.IsUnavailable(err) || len(srv.requests()) != 1 || time.Since(start) > 150*time.Millisecond {
		t.Errorf("a deadline before the next attempt must end the call at once: %v, %d requests in %v",
			err, len(srv.requests()), time.Since(start))
	}
}

// TestClientBindRetry: a bind has no id, so it is retried only when it did
// not reach refgate.
func TestClientBindRetry(t *testing.T) {
	ctx := context.Background()
	bind := client.BindRequest{Program: "shop", Customer: "c1", Event: client.Register}
	srv := record(t, func(n int, w http.ResponseWriter) { status(w, http.StatusServiceUnavailable) })
	if _, err := client.New(srv.URL, apitest.StorefrontToken).WithRetry(fast).Bind(ctx, bind); !client.IsUnavailable(err) || len(srv.requests()) != 1 {
		t.Errorf("a 503 bind: %v, %d requests, want 1", err, len(srv.requests()))
	}
	addr, n := cutting(t, false)
	if _, err := client.New(addr, apitest.StorefrontToken).WithRetry(fast).Bind(ctx, bind); !client.IsUnavailable(err) || n.Load() != 1 {
		t.Errorf("a bind cut after it was sent: %v, %d requests, want 1", err, n.Load())
	}

	// The first dial is refused (a closed port), the next reaches refgate.
	srv = record(t, func(n int, w http.ResponseWriter) { io.WriteString(w, `{"associated":false,"reason":"no_click"}`) })
	refused := strings.TrimPrefix(closedPort(t), "http://")
	var dials atomic.Int32
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		if dials.Add(1) == 1 {
			addr = refused
		}
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}
	defer tr.CloseIdleConnections()
	ans, err := client.New(srv.URL, apitest.StorefrontToken).WithRetry(fast).WithHTTPClient(&http.Client{Transport: tr}).Bind(ctx, bind)
	if err != nil || ans.Reason != "no_click" || dials.Load() != 2 || len(srv.requests()) != 1 {
		t.Errorf("a refused bind must be retried: %+v %v, %d dials, %d requests", ans, err, dials.Load(), len(srv.requests()))
	}
}

// TestClientRetryAppliedOnce: against the real API, a conversion and a
// refund whose answers are lost after refgate applied them are retried and
// get the original decisions; each is applied once.
func TestClientRetryAppliedOnce(t *testing.T) {
	api := apitest.Serve(t)
	target, _ := url.Parse(api.URL)
	rp := httputil.NewSingleHostReverseProxy(target)
	var mu sync.Mutex
	seen := map[string]int{} // requests by path
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.URL.Path]++
		first := seen[r.URL.Path] == 1 && r.Method == "POST" && strings.HasPrefix(r.URL.Path, "/v1/conversions")
		mu.Unlock()
		if !first {
			rp.ServeHTTP(w, r)
			return
		}
		// Forward it, let refgate apply it, and lose the answer.
		rw := &discard{header: http.Header{}}
		rp.ServeHTTP(rw, r)
		if rw.code != http.StatusOK {
			t.Errorf("refgate answered %d %s", rw.code, rw.body.String())
		}
		c, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			c.Close()
		}
	}))
	defer front.Close()

	rg := client.New(front.URL, apitest.StorefrontToken).WithRetry(fast)
	ctx := context.Background()
	bindAlice(t, api, rg, "c1")
	conv, err := rg.Convert(ctx, client.Conversion{Program: "shop", Order: "o1", Customer: "c1", Amount: 10000, Currency: "CNY", Product: "cvm", Prepaid: true})
	if err != nil || !conv.Eligible || conv.Commission != 3000 {
		t.Fatalf("convert through a lost answer: %+v %v", conv, err)
	}
	ref, err := rg.Refund(ctx, "o1", "rf-1", 5000)
	if err != nil || ref.Refunded != 5000 || ref.Commission != 1500 {
		t.Fatalf("refund through a lost answer: %+v %v", ref, err)
	}
	mu.Lock()
	if seen["/v1/conversions"] != 2 || seen["/v1/conversions/o1/refunds"] != 2 {
		t.Errorf("want each sent twice: %v", seen)
	}
	mu.Unlock()
	ds, err := rg.Explain(ctx, "shop", "c1")
	if err != nil {
		t.Fatal(err)
	}
	var events []string
	for _, d := range ds {
		events = append(events, d.Event)
	}
	if strings.Join(events, ",") != "refund,conversion,register" {
		t.Errorf("want one decision of each, newest first: %q", events)
	}
}

// discard is a ResponseWriter that keeps the status and body.
type discard struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (d *discard) Header() http.Header { return d.header }
func (d *discard) WriteHeader(code int) {
	if d.code == 0 {
		d.code = code
	}
}
func (d *discard) Write(b []byte) (int, error) {
	d.WriteHeader(http.StatusOK)
	return d.body.Write(b)
}
