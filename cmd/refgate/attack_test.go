//go:build !race

package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The attacks here run against the real binary, with loopback peers treated
// as clients (--trusted-proxies names an address nobody connects from), as
// a hostile internet would reach the edge. They are timing- and
// memory-sensitive, hence !race.

// attackArgs run the embedded store in a fresh directory, make loopback
// peers ordinary clients, and put back the shipped --attribution-rate that
// the other tests turn off.
func attackArgs(t *testing.T, more ...string) []string {
	return append([]string{"--data-dir", t.TempDir(), "--trusted-proxies", "192.0.2.1/32", "--attribution-rate", "5"}, more...)
}

// rss is process pid's anonymous resident memory (RssAnon): what
// connections cost. File-backed pages, such as the embedded store's
// memory-mapped file, which grows with the clicks' records and reports
// and which the kernel can drop, are left out.
func rss(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "RssAnon:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no RssAnon")
	return 0
}

// openClick connects from the loopback address from, sends one click on
// code and reads its answer, leaving the connection open. served is false
// when the server closed the connection instead of answering.
func openClick(t *testing.T, edge, from, code string) (c net.Conn, served bool) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", edge)
	if err != nil {
		t.Fatalf("dial from %s: %v", from, err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "GET /r/%s HTTP/1.1\r\nHost: go.example.com\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:130.0) Gecko/20100101 Firefox/130.0\r\n\r\n", code)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return c, false
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	c.SetDeadline(time.Time{})
	if resp.StatusCode != 302 {
		t.Fatalf("click from %s: %d", from, resp.StatusCode)
	}
	return c, true
}

// raiseFileLimit lets the test hold n connections; the binary inherits it.
func raiseFileLimit(t *testing.T, n uint64) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Max < n {
		t.Fatalf("this test holds %d connections; the hard limit on open files is %d (raise it: ulimit -Hn)", n, lim.Max)
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
}

// TestAttackIdleConnections holds 10,000 idle keep-alive connections,
// one click each, from 50 addresses, and measures what they cost the
// server: as shipped (most of those clicks are past --attribution-rate),
// and with every click attributed, the deepest path (--attribution-rate
// 0; the goroutine of each connection keeps the stack its click needed).
// Then one address opens more than its cap.
func TestAttackIdleConnections(t *testing.T) {
	raiseFileLimit(t, 12000)
	t.Run("shipped", func(t *testing.T) { idleFlood(t, 100<<20) })
	t.Run("all-attributed", func(t *testing.T) { idleFlood(t, 120<<20, "--attribution-rate", "0") })
}

func idleFlood(t *testing.T, most int64, args ...string) {
	const conns, addrs = 10000, 50
	// Room for the flood and the one address after it.
	k := newKillable(t, attackArgs(t, append(args, "--edge-max-conns", "10400")...))
	setup(t, remoteAPI(k.api), "flood01")
	pid := k.cmd.Process.Pid

	// Warm up: the link cache, the pools, the log's buffers.
	for i := range 2000 {
		c, _ := openClick(t, k.edge, fmt.Sprintf("127.0.3.%d", 1+i%200), "flood01")
		c.Close()
	}
	time.Sleep(500 * time.Millisecond)
	before := rss(t, pid)

	held := make([]net.Conn, 0, conns+300)
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for i := range conns {
		c, served := openClick(t, k.edge, fmt.Sprintf("127.0.1.%d", 1+i%addrs), "flood01")
		if !served {
			t.Fatalf("connection %d closed under the caps", i)
		}
		held = append(held, c)
	}
	time.Sleep(time.Second)
	after := rss(t, pid)
	open := metricValue(t, k.api, `refgate_connections{listener="edge"}`)
	t.Logf("RSS %d MiB with no idle connection, %d MiB with %d (%.1f KiB each); goroutine stacks %.1f MiB, heap %.1f MiB",
		before>>20, after>>20, conns, float64(after-before)/conns/1024,
		metricValue(t, k.api, "go_memstats_stack_inuse_bytes")/(1<<20), metricValue(t, k.api, "go_memstats_heap_inuse_bytes")/(1<<20))
	if open < conns {
		t.Errorf("server counts %v open connections, want %d", open, conns)
	}
	if after-before > most {
		t.Errorf("%d idle connections cost %d MiB, want < %d MiB", conns, (after-before)>>20, most>>20)
	}

	// One address past its cap: the ones over it are closed on accept.
	var served, closed int
	for range 300 {
		c, ok := openClick(t, k.edge, "127.0.2.1", "flood01")
		held = append(held, c)
		if ok {
			served++
		} else {
			closed++
		}
	}
	if served != 256 || closed != 44 {
		t.Errorf("one address, 300 connections: %d served, %d closed; want 256 and 44", served, closed)
	}
	if got := metricValue(t, k.api, `refgate_connections_rejected_total{listener="edge",reason="per_address"}`); got != 44 {
		t.Errorf("per-address rejections %v, want 44", got)
	}
}

// TestAttackTotalCapSlowRead fills the total cap, then shows that
// idle, slow-reading and never-reading connections are all let go within
// the idle and write timeouts, and the edge serves again.
func TestAttackTotalCapSlowRead(t *testing.T) {
	raiseFileLimit(t, 2000)
	k := newKillable(t, attackArgs(t, "--edge-max-conns", "300", "--edge-idle-timeout", "1s"))
	setup(t, remoteAPI(k.api), "cap001")

	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	var closed int
	for i := range 350 {
		c, ok := openClick(t, k.edge, fmt.Sprintf("127.0.4.%d", 1+i%50), "cap001")
		held = append(held, c)
		if !ok {
			closed++
		}
	}
	if closed != 50 {
		t.Errorf("350 connections under a cap of 300: %d closed, want 50", closed)
	}

	// Slow readers: a tiny receive window, many pipelined clicks, nothing
	// read. Their answers fill the socket, the writes block, and the write
	// timeout lets them go.
	waitOpen(t, k.api, 0, 5*time.Second) // the idle ones above time out first
	for i := range 20 {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(fmt.Sprintf("127.0.5.%d", i+1))},
			Control: func(_, _ string, rc syscall.RawConn) error {
				return rc.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 1024) })
			}}
		c, err := d.Dial("tcp", k.edge)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
		req := "GET /r/cap001 HTTP/1.1\r\nHost: go.example.com\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:130.0) Gecko/20100101 Firefox/130.0\r\n\r\n"
		go c.Write([]byte(strings.Repeat(req, 5000)))
	}
	time.Sleep(200 * time.Millisecond)
	if n := metricValue(t, k.api, `refgate_connections{listener="edge"}`); n != 20 {
		t.Errorf("%v slow readers open, want 20", n)
	}
	waitOpen(t, k.api, 0, 12*time.Second) // write timeout 5s, then idle
	if c, ok := openClick(t, k.edge, "127.0.6.1", "cap001"); !ok {
		t.Error("edge does not serve after the slow readers")
	} else {
		c.Close()
	}
}

// waitOpen waits until the edge has n connections open.
func waitOpen(t *testing.T, api string, n float64, within time.Duration) {
	t.Helper()
	start := time.Now()
	for {
		got := metricValue(t, api, `refgate_connections{listener="edge"}`)
		if got == n {
			t.Logf("%v connections open after %v", n, time.Since(start).Round(100*time.Millisecond))
			return
		}
		if time.Since(start) > within {
			t.Fatalf("%v connections open after %v, want %v", got, within, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestAttackAttributionLimits runs the click rules against the real binary:
// one address past --attribution-rate while another is not held back,
// navigations without user activation, and Sec-GPC; each outcome is in the
// link's stats and the metrics.
func TestAttackAttributionLimits(t *testing.T) {
	k := newKillable(t, attackArgs(t))
	api := remoteAPI(k.api)
	setup(t, api, "lim001")
	if s, b := callAPI(t, api, "PUT", "/v1/admin/programs/private", `{"cookie_days":7,"allowed_hosts":["shop.example.com"],"honor_gpc":true}`); s != 200 || b["require_user_activation"] != true || b["honor_gpc"] != true {
		t.Fatalf("program: %d %v", s, b)
	}
	if s, b := callAPI(t, api, "POST", "/v1/admin/links", `{"program":"private","promoter":"alice","destination":"https://shop.example.com/","code":"gpc001"}`); s != 201 {
		t.Fatalf("link: %d %v", s, b)
	}
	clickFrom := func(from, code string, headers ...string) (cookie bool) {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		client := &http.Client{Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true},
			CheckRedirect: noRedirect.CheckRedirect, Timeout: 5 * time.Second}
		req := browserClick(k.edge, code)
		for i := 0; i+1 < len(headers); i += 2 {
			req.Header.Set(headers[i], headers[i+1])
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 302 || resp.Header.Get("Location") != "https://shop.example.com/" {
			t.Fatalf("click from %s: %d %q", from, resp.StatusCode, resp.Header.Get("Location"))
		}
		for _, c := range resp.Cookies() {
			if strings.HasPrefix(c.Name, "rg_") && c.Name != "rg_vid" {
				return true
			}
		}
		return false
	}

	// A flood from one address: the burst (20), then about 5 a second.
	start := time.Now()
	var got int
	for range 100 {
		if clickFrom("127.0.7.1", "lim001") {
			got++
		}
	}
	elapsed := time.Since(start).Seconds()
	if most := 20 + int(5*elapsed) + 1; got < 20 || got > most {
		t.Errorf("one address, 100 clicks in %.1fs: %d attributed, want 20..%d", elapsed, got, most)
	}
	for i := range 5 {
		if !clickFrom("127.0.7.2", "lim001") {
			t.Errorf("click %d of a second address was limited", i)
		}
	}

	// Fetch metadata: a gesture attributes, an automatic navigation does
	// not; a same-site one does.
	from := "127.0.7.3"
	if !clickFrom(from, "lim001", "Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "navigate", "Sec-Fetch-Dest", "document", "Sec-Fetch-User", "?1") {
		t.Error("a tapped link from another site got no cookie")
	}
	if clickFrom(from, "lim001", "Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "navigate", "Sec-Fetch-Dest", "document") {
		t.Error("a navigation no gesture started got a cookie")
	}
	if clickFrom(from, "lim001", "Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "no-cors", "Sec-Fetch-Dest", "image") {
		t.Error("an <img> got a cookie")
	}
	// Sec-GPC: honoured where the program says so.
	if clickFrom(from, "gpc001", "Sec-GPC", "1") {
		t.Error("Sec-GPC: 1 got a cookie from a program that honours it")
	}
	if !clickFrom(from, "lim001", "Sec-GPC", "1") {
		t.Error("Sec-GPC: 1 lost the cookie of a program that does not honour it")
	}

	want := map[string]float64{"attributed": float64(got + 5 + 2), "rate_limited": float64(100 - got), "suspect": 2}
	linkClicks(t, api, "lim001", func(c map[string]any) bool {
		for o, n := range want {
			if count(c, o) != n {
				return false
			}
		}
		return true
	})
	linkClicks(t, api, "gpc001", func(c map[string]any) bool { return count(c, "gpc") == 1 })
	for o, n := range map[string]float64{"rate_limited": float64(100 - got), "gpc": 1, "suspect": 2} {
		if v := metricValue(t, k.api, `refgate_clicks_total{outcome="`+o+`"}`); v != n {
			t.Errorf("refgate_clicks_total{outcome=%q} = %v, want %v", o, v, n)
		}
	}
}

// TestAttackTokenBruteForce: the real binary answers a run of wrong API
// tokens from one address with 429 and Retry-After once past
// --auth-failure-limit (10 a minute), logs the address, and still serves
// the right token from it.
func TestAttackTokenBruteForce(t *testing.T) {
	k := newKillable(t, attackArgs(t))
	var codes []int
	for i := range 15 {
		req, _ := http.NewRequest("GET", "http://"+k.api+"/v1/admin/programs/shop", nil)
		req.Header.Set("Authorization", fmt.Sprintf("Bearer guess-%02d-0123456789abcdef", i))
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		codes = append(codes, resp.StatusCode)
		if resp.StatusCode == 429 && resp.Header.Get("Retry-After") == "" {
			t.Error("429 without Retry-After")
		}
	}
	for i, c := range codes {
		if want := map[bool]int{true: 401, false: 429}[i < 10]; c != want {
			t.Fatalf("wrong tokens answered %v, want 10 × 401 then 429", codes)
		}
	}
	if s, _ := callAPI(t, remoteAPI(k.api), "GET", "/v1/admin/programs/none", ""); s != 404 {
		t.Errorf("the right token from the same address: %d, want 404 (served)", s)
	}
	if got := metricValue(t, k.api, "refgate_api_auth_throttled_total"); got != 5 {
		t.Errorf("refgate_api_auth_throttled_total %v, want 5", got)
	}
	if logs := k.logs.String(); !strings.Contains(logs, "127.0.0.1") {
		t.Errorf("no failed-authentication line with the client address in the logs:\n%s", logs)
	}
}
