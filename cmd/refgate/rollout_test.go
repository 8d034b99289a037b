package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/internal/redistest"
)

// lb is a tiny load balancer like the one in front of the edge: round robin
// over the backends whose /healthz answers 200, checked every 20 ms.
type lb struct {
	mu       sync.Mutex
	backends map[string]bool // address → healthy
	next     int
	client   *http.Client
	stop     chan struct{}
}

func newLB(t *testing.T) (*lb, string) {
	l := &lb{backends: map[string]bool{}, stop: make(chan struct{}),
		client: &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	srv := &http.Server{Handler: l}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	go l.check()
	t.Cleanup(func() { close(l.stop); srv.Close() })
	return l, ln.Addr().String()
}

func (l *lb) add(addr string) {
	l.mu.Lock()
	l.backends[addr] = false
	l.mu.Unlock()
}

func (l *lb) remove(addr string) {
	l.mu.Lock()
	delete(l.backends, addr)
	l.mu.Unlock()
}

func (l *lb) healthy() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for a, ok := range l.backends {
		if ok {
			out = append(out, a)
		}
	}
	return out
}

func (l *lb) check() {
	for {
		select {
		case <-l.stop:
			return
		case <-time.After(20 * time.Millisecond):
		}
		l.mu.Lock()
		addrs := make([]string, 0, len(l.backends))
		for a := range l.backends {
			addrs = append(addrs, a)
		}
		l.mu.Unlock()
		for _, a := range addrs {
			resp, err := l.client.Get("http://" + a + "/healthz")
			ok := err == nil && resp.StatusCode == 200
			if err == nil {
				resp.Body.Close()
			}
			l.mu.Lock()
			if _, still := l.backends[a]; still {
				l.backends[a] = ok
			}
			l.mu.Unlock()
		}
	}
}

func (l *lb) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hs := l.healthy()
	if len(hs) == 0 {
		http.Error(w, "no healthy backend", http.StatusBadGateway)
		return
	}
	l.mu.Lock()
	l.next++
	a := hs[l.next%len(hs)]
	l.mu.Unlock()
	req, _ := http.NewRequest(r.Method, "http://"+a+r.URL.RequestURI(), nil)
	req.Header = r.Header.Clone()
	resp, err := l.client.Do(req)
	if err != nil {
		http.Error(w, "backend "+a+": "+err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	io.Copy(w, resp.Body)
}

func (l *lb) waitHealthy(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for len(l.healthy()) != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d healthy backends, want %d", len(l.healthy()), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRollingRestart restarts both instances in turn behind the load
// balancer while clicks flow: readiness goes 503 first (the balancer stops
// sending), then the listener closes, then the click queue is written. No
// request fails and every click answered is in the store.
func TestRollingRestart(t *testing.T) {
	srv := redistest.Start(t)
	withRedis := func(c *Config) { c.RedisURL = srv.URL(); c.ShutdownDelay = 300 * time.Millisecond }
	a, _ := MustRunMain(t, t.TempDir(), withRedis)
	b, _ := MustRunMain(t, t.TempDir(), withRedis)
	setup(t, a, "roll001")
	balancer, addr := newLB(t)
	balancer.add(a.EdgeAddr())
	balancer.add(b.EdgeAddr())
	balancer.waitHealthy(t, 2)

	var ok, failed atomic.Int64
	var failures sync.Map
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest("GET", "http://"+addr+"/r/roll001", nil)
				req.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64; rv:130.0) Gecko/20100101 Firefox/130.0")
				resp, err := noRedirect.Do(req)
				if err != nil {
					failed.Add(1)
					failures.Store(err.Error(), true)
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 302 {
					failed.Add(1)
					failures.Store(fmt.Sprint(resp.StatusCode, " ", strings.TrimSpace(string(body))), true)
					continue
				}
				ok.Add(1)
			}
		}()
	}
	restart := func(m *Main) *Main {
		time.Sleep(300 * time.Millisecond)
		old := m.EdgeAddr()
		if err := m.Close(); err != nil { // drains: 503 for 300 ms, then closes
			t.Errorf("close: %v", err)
		}
		balancer.remove(old)
		n, _ := MustRunMain(t, t.TempDir(), withRedis)
		balancer.add(n.EdgeAddr())
		balancer.waitHealthy(t, 2)
		return n
	}
	a2 := restart(a)
	restart(b)
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	failures.Range(func(k, _ any) bool { t.Logf("failure: %v", k); return true })
	if failed.Load() != 0 || ok.Load() < 50 {
		t.Fatalf("%d clicks answered, %d failed during the rolling restart", ok.Load(), failed.Load())
	}
	t.Logf("%d clicks answered, 0 failed during two restarts", ok.Load())
	deadline := time.Now().Add(3 * time.Second)
	for {
		stats, err := a2.Store.LinkStats(context.Background(), "roll001")
		if err == nil && stats[attribution.OutcomeAttributed] == ok.Load() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("store holds %v clicks, %d were answered", stats, ok.Load())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestClusterFailover runs two instances on a Redis Cluster of 3 masters and
// 3 replicas, kills one master's process, and checks that clicks are still
// answered throughout and that decisions stay consistent after the replica
// takes over.
func TestClusterFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 6-node cluster")
	}
	cl := redistest.StartCluster(t, 3, 1)
	withCluster := func(c *Config) { c.RedisAddrs = strings.Join(cl.Addrs(), ","); c.RedisCluster = true }
	a, _ := MustRunMain(t, t.TempDir(), withCluster)
	b, _ := MustRunMain(t, t.TempDir(), withCluster)
	setup(t, a, "fail001")
	// One click's token binds every customer of this test.
	if s, body := callAPI(t, a, "PUT", "/v1/admin/programs/shop", `{"cookie_days":7,"allowed_hosts":["shop.example.com"],"binds_per_click":100}`); s != 200 {
		t.Fatalf("program: %d %v", s, body)
	}
	tok := ""
	for _, m := range []*Main{a, b} {
		resp := click(t, m.EdgeAddr(), "fail001")
		for _, c := range resp.Cookies() {
			if c.Name == "rg_shop" {
				tok = c.Value
			}
		}
	}
	bind := func(m *Main, customer string) map[string]any {
		t.Helper()
		s, body := callAPI(t, m, "POST", "/v1/bind", `{"program":"shop","customer":"`+customer+`","event":"register","token":"`+tok+`"}`)
		if s != 200 {
			t.Fatalf("bind %s: %d %v", customer, s, body)
		}
		return body
	}
	for i := 0; i < 20; i++ { // customers on every shard
		if r := bind(a, fmt.Sprint("before-", i)); r["associated"] != true {
			t.Fatalf("bind: %v", r)
		}
	}
	cl.WaitReplicated(10 * time.Second) // a master killed before its replica caught up loses its last writes

	var victim *redistest.Server
	for _, n := range cl.Nodes {
		if role, _ := n.Client().Do(context.Background(), "ROLE").Slice(); len(role) > 0 && role[0] == "master" {
			victim = n
			break
		}
	}
	victim.Kill()
	killed := time.Now()

	// Clicks are answered from the local link cache while the cluster
	// fails over.
	clicks := 0
	for time.Since(killed) < 3*time.Second {
		for _, m := range []*Main{a, b} {
			if resp := click(t, m.EdgeAddr(), "fail001"); resp.StatusCode != 302 {
				t.Fatalf("click during failover: %d", resp.StatusCode)
			}
			clicks++
		}
		time.Sleep(20 * time.Millisecond)
	}
	cl.WaitHealthy(20 * time.Second)
	t.Logf("%d clicks answered during the failover; cluster healthy %v after the kill", clicks, time.Since(killed).Round(time.Millisecond))

	// After the failover: every customer bound before is still held by the
	// same promoter (read through the other instance), and new decisions
	// work on every shard.
	deadline := time.Now().Add(15 * time.Second)
	for i := 0; i < 20; i++ {
		for {
			s, body := callAPI(t, b, "GET", fmt.Sprintf("/v1/attribution?program=shop&customer=before-%d", i), "")
			if s == 200 {
				if body["attributed"] != true || body["promoter"] != "alice" {
					t.Fatalf("before-%d after failover: %v", i, body)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("attribution still %d after the failover: %v", s, body)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	// 20 concurrent copies of one bind request through both instances: the
	// same request, so one decision creates the association and the other
	// copies get its answer (as a storefront's retries would).
	var created atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := []*Main{a, b}[i%2]
			s, body := callAPI(t, m, "POST", "/v1/bind", `{"program":"shop","customer":"after","event":"register","token":"`+tok+`"}`)
			if s != 200 {
				t.Errorf("bind after failover: %d %v", s, body)
			}
		}()
	}
	wg.Wait()
	ds, err := b.Store.Decisions(context.Background(), "shop", "after")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range ds {
		if d.Outcome == attribution.DecisionCreated {
			created.Add(1)
		}
	}
	if len(ds) != 1 || created.Load() != 1 {
		t.Errorf("after failover: %d decisions, %d created; want 1 and 1", len(ds), created.Load())
	}
	if s, body := callAPI(t, b, "POST", "/v1/conversions", `{"program":"shop","order":"o-after","customer":"before-3","amount":10000,"currency":"CNY","product":"cvm","prepaid":true}`); s != 200 || body["promoter"] != "alice" {
		t.Errorf("conversion after failover: %d %v", s, body)
	}
}
