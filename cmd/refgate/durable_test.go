//go:build !race

// The fault tests of the durable path run the real binary (built without
// the race detector) under load for minutes; the test process's own race
// instrumentation would only slow the clients and the checks, so they run
// in the test command's second, uninstrumented pass.

package main

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/events"
	"github.com/refgate/refgate/internal/redistest"
	"github.com/refgate/refgate/store"
	"github.com/refgate/refgate/store/embedded"
	"github.com/refgate/refgate/store/redisstore"
)

// rateClicker clicks a link as new visitors (no cookies) at a steady rate
// from several workers, and logs the click and visitor id of every 302 it
// received, with the time it came.
type rateClicker struct {
	mu      sync.Mutex
	got     []gotClick
	sent    atomic.Int64
	clients []*http.Client
	stop    chan struct{}
	wg      sync.WaitGroup
}

type gotClick struct {
	click, visitor string
	at             time.Time
}

func startRateClicker(t *testing.T, addr, code string, rate int) *rateClicker {
	const workers = 16
	c := &rateClicker{stop: make(chan struct{})}
	every := time.Duration(workers) * time.Second / time.Duration(rate)
	for w := range workers {
		client := &http.Client{Timeout: 2 * time.Second,
			Transport:     &http.Transport{MaxIdleConnsPerHost: 1},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		c.clients = append(c.clients, client)
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			time.Sleep(time.Duration(w) * every / workers) // spread the workers' ticks
			tick := time.NewTicker(every)
			defer tick.Stop()
			for {
				select {
				case <-c.stop:
					return
				case <-tick.C:
				}
				req := browserClick(addr, code)
				c.sent.Add(1)
				resp, err := client.Do(req)
				if err != nil {
					continue // refgate is down: not a click anyone got
				}
				resp.Body.Close()
				if resp.StatusCode != 302 {
					continue
				}
				g := gotClick{click: clickID(t, resp), at: time.Now()}
				for _, ck := range resp.Cookies() {
					if ck.Name == "rg_vid" {
						g.visitor = ck.Value
					}
				}
				c.mu.Lock()
				c.got = append(c.got, g)
				c.mu.Unlock()
			}
		}()
	}
	return c
}

// finish stops the clicks and closes the clients' connections (a
// connection left open would hold the server's shutdown).
func (c *rateClicker) finish() []gotClick {
	close(c.stop)
	c.wg.Wait()
	for _, cl := range c.clients {
		cl.CloseIdleConnections()
	}
	return c.got
}

// checkClicks compares the clicks the client got with what the store and
// the events hold: it returns the clicks missing from either (lost), and
// fails on any duplicate effect: a click event under two ids, or a link
// counter that differs from the number of distinct clicks recorded.
func checkClicks(t *testing.T, st store.Store, code string, got []gotClick, evs []events.Event) (lost []gotClick) {
	t.Helper()
	ctx := context.Background()
	byClick := map[string]string{}
	for _, e := range evs {
		if e.Type != events.TypeClick || e.Data.Link != code {
			continue
		}
		if id, ok := byClick[e.Data.ClickID]; ok && id != e.ID {
			t.Errorf("click %s has two events, %s and %s", e.Data.ClickID, id, e.ID)
		}
		byClick[e.Data.ClickID] = e.ID
	}
	for _, g := range got {
		if _, ok := byClick[g.click]; !ok {
			lost = append(lost, g)
			continue
		}
		c, err := st.VisitorClick(ctx, "shop", g.visitor)
		if err != nil {
			t.Fatal(err)
		}
		if c == nil || c.ID != g.click {
			t.Errorf("click %s has its event but visitor %s has record %+v", g.click, g.visitor, c)
			lost = append(lost, g)
		}
	}
	stats, err := st.LinkStats(ctx, code)
	if err != nil {
		t.Fatal(err)
	}
	if n := stats[attribution.OutcomeAttributed]; n != int64(len(byClick)) {
		t.Errorf("link %s counts %d clicks; %d distinct clicks have an event", code, n, len(byClick))
	}
	return lost
}

// TestKill9Clicks: clicks flow at 2,000 a second while the real binary is
// killed with SIGKILL ten times and started again at once on the same data.
// A click answered 302 may be lost only if it was not yet in the log (about
// a millisecond's worth): at most 10 per kill. Nothing is counted twice.
func TestKill9Clicks(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary; about 30 s")
	}
	t.Run("Embedded", func(t *testing.T) {
		data := t.TempDir()
		kill9Clicks(t, data, nil, func() store.Store {
			st, err := embedded.Open(data)
			if err != nil {
				t.Fatal(err)
			}
			return st
		}, func() []events.Event { return fileEvents(t, data) })
	})
	t.Run("Redis", func(t *testing.T) {
		srv := redistest.Start(t)
		kill9Clicks(t, t.TempDir(), []string{"--redis-url", srv.URL()}, func() store.Store {
			st, err := redisstore.New(redisstore.Config{URL: srv.URL()})
			if err != nil {
				t.Fatal(err)
			}
			return st
		}, func() []events.Event { return streamEvents(t, srv.Client(), []string{events.StreamKey}) })
	})
}

func kill9Clicks(t *testing.T, data string, args []string, open func() store.Store, evs func() []events.Event) {
	k := newKillable(t, append([]string{"--data-dir", data}, args...))
	setup(t, remoteAPI(k.api), "dura0001")
	c := startRateClicker(t, k.edge, "dura0001", 2000)
	for range 10 {
		time.Sleep(time.Second)
		k.kill()
	}
	kills, signals := k.deaths, k.signalled
	time.Sleep(time.Second)
	got := c.finish()
	k.stop()
	st := open()
	defer st.Close()
	lost := checkClicks(t, st, "dura0001", got, evs())
	// Each lost click is charged to the first kill after it was answered
	// (a 302 that arrives after a process was gone came from the next).
	// What a kill may lose is what was still in memory: clicks answered in
	// its last moments, a millisecond's worth, more when the disk held the
	// writer's write(2) up for a while. So the bound is on how far from a
	// kill a lost click was answered, not on how many there were. (A 302
	// the killed process sent can reach the client just after the test saw
	// it gone: the distance is to the nearest kill, before or after.)
	const inMemory = 100 * time.Millisecond
	perKill := make([]int, len(kills)+1)
	var farthest time.Duration
	for _, g := range lost {
		i := sort.Search(len(kills), func(i int) bool { return kills[i].After(g.at) })
		perKill[i]++
		if len(kills) == 0 {
			continue
		}
		// The distance to a kill is to the span from its signal to its
		// reaping: the kernel's teardown of a killed process can take a
		// while on a busy machine, and a 302 sent before the signal can
		// arrive within it.
		d := time.Duration(math.MaxInt64)
		for i, k := range kills {
			switch s := signals[i]; {
			case g.at.Before(s):
				d = min(d, s.Sub(g.at))
			case g.at.After(k):
				d = min(d, g.at.Sub(k))
			default:
				d = 0
			}
		}
		farthest = max(farthest, d)
		if d > inMemory {
			t.Errorf("a click answered %s away from the nearest kill was lost: only clicks of a kill's last %s may still be in memory", d.Round(time.Millisecond), inMemory)
		}
	}
	t.Logf("the lost click farthest from a kill was answered %s from it", farthest.Round(time.Millisecond))
	t.Logf("%d requests, %d clicks answered 302, %d kills (reaping a killed process took at most %s, a restart at most %s): lost per kill %v, nothing counted twice",
		c.sent.Load(), len(got), k.kills, k.waitFor.Round(time.Millisecond), k.restartFor.Round(time.Millisecond), perKill[:len(kills)])
	if perKill[len(kills)] > 0 {
		t.Errorf("%d clicks lost after the last kill, with a clean stop", perKill[len(kills)])
	}
}

// TestRedisOutage60s: clicks flow at 2,000 a second while Redis is dead
// for 60 s; refgate is stopped (SIGTERM) with Redis still dead and must
// exit within --shutdown-timeout, then Redis and refgate start again. Not
// one click is lost: every click has its event in the stream, its visitor
// record, and binding its visitor id attributes the customer.
func TestRedisOutage60s(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary; about 90 s")
	}
	srv := redistest.Start(t, "--appendonly", "yes", "--appendfsync", "always")
	k := newKillable(t, []string{"--data-dir", t.TempDir(), "--redis-url", srv.URL()})
	setup(t, remoteAPI(k.api), "dura0001")
	c := startRateClicker(t, k.edge, "dura0001", 2000)
	time.Sleep(2 * time.Second)
	c.mu.Lock()
	before := len(c.got)
	c.mu.Unlock()
	srv.Kill()
	down := time.Now()
	time.Sleep(60 * time.Second)
	got := c.finish()

	start := time.Now()
	k.mu.Lock()
	k.cmd.Process.Signal(syscall.SIGTERM)
	err := k.cmd.Wait()
	k.mu.Unlock()
	took := time.Since(start)
	if err != nil {
		t.Errorf("exit after SIGTERM with Redis dead: %v\n%s", err, k.logs.String())
	}
	if took > 5*time.Second {
		t.Errorf("SIGTERM with Redis dead took %s, --shutdown-timeout is 5s", took)
	}
	if !strings.Contains(k.logs.String(), "records left in the log for the next start") {
		t.Errorf("what is left in the log is not logged:\n%s", k.logs.String())
	}

	srv.Restart()
	restarted := time.Now()
	k.start()
	// The log drains once Redis answers.
	deadline := time.Now().Add(60 * time.Second)
	for {
		s, body := callAPI(t, remoteAPI(k.api), "GET", "/readyz", "")
		lg, _ := body["log"].(map[string]any)
		if s == 200 && lg != nil && lg["bytes"] == 0.0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the log did not drain: %d %v\n%s", s, body, k.logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	drained := time.Since(restarted)
	during := 0
	for _, g := range got {
		if g.at.After(down) {
			during++
		}
	}
	st, err := redisstore.New(redisstore.Config{URL: srv.URL()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if lost := checkClicks(t, st, "dura0001", got, streamEvents(t, srv.Client(), []string{events.StreamKey})); len(lost) > 0 {
		t.Fatalf("%d of %d clicks lost, e.g. %+v", len(lost), len(got), lost[0])
	}

	checked := time.Now()
	// Every visitor of the outage binds to the click it made.
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Int64
	var mu sync.Mutex
	var first string
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(got) {
					return
				}
				g := got[i]
				s, b := send(t, k.api, sfTok, "/v1/bind", fmt.Sprintf(`{"program":"shop","customer":"out-%d","event":"register","visitor":%q}`, i, g.visitor))
				if s != 200 || b["associated"] != true || b["promoter"] != "alice" {
					if failed.Add(1) == 1 {
						mu.Lock()
						first = fmt.Sprintf("%s: %d %v", g.visitor, s, b)
						mu.Unlock()
					}
				}
			}
		}()
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d of %d binds by visitor id failed, e.g. %s", n, len(got), first)
	}
	storefront.CloseIdleConnections()
	k.stop()
	t.Logf("%d clicks answered before the outage, %d during 60 s with Redis dead; SIGTERM then took %s; after the restart the log drained in %s and all %d have their event and visitor record (checked in %s), and all bind by visitor id (in %s)",
		before, during, took.Round(time.Millisecond), drained.Round(time.Millisecond), len(got),
		checked.Sub(restarted.Add(drained)).Round(time.Millisecond), time.Since(checked).Round(time.Millisecond))
}
