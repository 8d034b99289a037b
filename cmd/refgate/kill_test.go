package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/refgate/refgate/internal/buildtest"
	"github.com/refgate/refgate/internal/redistest"
	"github.com/refgate/refgate/store"
	"github.com/refgate/refgate/store/embedded"
	"github.com/refgate/refgate/store/redisstore"
)

// TestKill9MoneyExactlyOnce: storefronts bind, convert and refund while the
// real binary is killed with SIGKILL at random moments and started again
// on the same data; every request is retried, unchanged, until it is
// answered. Afterwards every bind, order and refund was applied exactly
// once: one decision of each in the log, the commission and the cap use as
// if nothing had happened, and every retry answered as the first attempt.
func TestKill9MoneyExactlyOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	t.Run("Embedded", func(t *testing.T) {
		data := t.TempDir()
		kill9(t, []string{"--data-dir", data}, func() store.Store {
			st, err := embedded.Open(data)
			if err != nil {
				t.Fatal(err)
			}
			return st
		})
	})
	t.Run("Redis", func(t *testing.T) {
		srv := redistest.Start(t)
		kill9(t, []string{"--data-dir", t.TempDir(), "--redis-url", srv.URL()}, func() store.Store {
			st, err := redisstore.New(redisstore.Config{URL: srv.URL()})
			if err != nil {
				t.Fatal(err)
			}
			return st
		})
	})
}

// killable is the refgate binary, started again after every kill on the
// same ports and flags.
type killable struct {
	t          *testing.T
	bin        string
	args       []string
	edge, api  string
	mu         sync.Mutex
	cmd        *exec.Cmd
	logs       *syncBuffer
	kills      int
	deaths     []time.Time   // when each killed process was gone (reaped)
	signalled  []time.Time   // when each was sent SIGKILL
	restartFor time.Duration // longest a restart took
	waitFor    time.Duration // longest a killed process took to be reaped
}

func (k *killable) start() {
	k.t.Helper()
	k.logs = new(syncBuffer)
	cmd := exec.Command(k.bin, append([]string{"serve", "--listen", k.edge, "--api-listen", k.api}, k.args...)...)
	cmd.Stdout, cmd.Stderr = k.logs, k.logs
	if err := cmd.Start(); err != nil {
		k.t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		if resp, err := http.Get("http://" + k.api + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			k.t.Fatalf("server did not start:\n%s", k.logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	k.mu.Lock()
	k.cmd = cmd
	k.mu.Unlock()
}

func (k *killable) kill() {
	k.mu.Lock()
	cmd := k.cmd
	k.mu.Unlock()
	// The kill's time is when the signal is sent, not when Wait returns:
	// the kernel's teardown of a process with a large heap can take a
	// while, and clicks answered before the signal would look that much
	// farther from the kill.
	at := time.Now()
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if waited := time.Since(at); waited > k.waitFor {
		k.waitFor = waited
	}
	k.kills++
	k.signalled = append(k.signalled, at)
	k.deaths = append(k.deaths, time.Now())
	start := time.Now()
	k.start()
	k.restartFor = max(k.restartFor, time.Since(start))
}

func (k *killable) stop() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.cmd.Process.Signal(syscall.SIGTERM)
	if err := k.cmd.Wait(); err != nil {
		k.t.Errorf("exit after SIGTERM: %v\n%s", err, k.logs.String())
	}
}

// send posts body until refgate answers with a status other than 503,
// through kills and restarts, and returns the answer.
// storefront is the storefronts' own client: its idle connections are
// closed before the final SIGTERM, which is not what this test is about.
var storefront = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

func send(t *testing.T, api, token, path, body string) (int, map[string]any) {
	for attempt := 0; ; attempt++ {
		req, _ := http.NewRequest("POST", "http://"+api+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := storefront.Do(req)
		if err == nil {
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 503 {
				var out map[string]any
				json.Unmarshal(raw, &out)
				return resp.StatusCode, out
			}
		}
		if attempt > 2000 {
			t.Fatalf("%s %s: no answer after %d attempts: %v", path, body, attempt, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// newKillable builds the binary and starts it with the test tokens and
// keys, a --shutdown-timeout of 5s, and args (which may override them) on
// two free ports; the test's end kills it.
func newKillable(t *testing.T, args []string) *killable {
	probe, _ := MustRunMain(t, t.TempDir(), nil)
	k := &killable{t: t, bin: buildtest.Binary(t, "github.com/refgate/refgate/cmd/refgate"),
		args: append([]string{"--admin-token", adminTok, "--storefront-token", sfTok, "--cookie-keys", keys,
			"--fingerprint-key", "fingerprint-key-0123456789", "--cookie-secure=false", "--shutdown-timeout", "5s",
			"--attribution-rate", "0"}, args...), // tests click from one address
		edge: probe.EdgeAddr(), api: probe.APIAddr()}
	probe.Close()
	k.start()
	t.Cleanup(func() {
		k.mu.Lock()
		k.cmd.Process.Kill()
		k.mu.Unlock()
	})
	return k
}

func kill9(t *testing.T, args []string, open func() store.Store) {
	k := newKillable(t, append(args, "--shutdown-timeout", "3s"))
	api := remoteAPI(k.api)
	if s, b := callAPI(t, api, "PUT", "/v1/admin/programs/shop", `{"cookie_days":7,"allowed_hosts":["shop.example.com"],"rates":{"protected":0.3,"standard":0.25}}`); s != 200 {
		t.Fatalf("program: %d %v", s, b)
	}
	if s, b := callAPI(t, api, "PUT", "/v1/admin/promoters/alice", `{"status":"active"}`); s != 200 {
		t.Fatalf("promoter: %d %v", s, b)
	}
	if s, b := callAPI(t, api, "POST", "/v1/admin/links", `{"program":"shop","promoter":"alice","destination":"https://shop.example.com/","code":"kill001"}`); s != 201 {
		t.Fatalf("link: %d %v", s, b)
	}
	const most = 1500 // customers at most; the work stops after the kills
	toks := make([]string, most)
	for i := range toks {
		toks[i] = token(t, click(t, k.edge, "kill001"))
	}

	// The storefronts: four workers, each customer's bind, order and two
	// refunds in turn, every request sent until it is answered.
	var next, customers atomic.Int64
	var enough atomic.Bool // killed often enough: finish the customers begun
	var wg sync.WaitGroup
	var mu sync.Mutex
	problems := []string{}
	fail := func(format string, a ...any) {
		mu.Lock()
		problems = append(problems, fmt.Sprintf(format, a...))
		mu.Unlock()
	}
	done := make(chan struct{})
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= most || enough.Load() {
					return
				}
				customers.Add(1)
				c := fmt.Sprint("cust-", i)
				s, b := send(t, k.api, sfTok, "/v1/bind", `{"program":"shop","customer":"`+c+`","event":"register","token":"`+toks[i]+`"}`)
				if s != 200 || b["associated"] != true || b["promoter"] != "alice" {
					fail("bind %s: %d %v", c, s, b)
					continue
				}
				order := `{"program":"shop","order":"o-` + c + `","customer":"` + c + `","amount":10000,"currency":"CNY","product":"cvm","prepaid":true}`
				for n := 0; n < 2; n++ { // and once more, as a storefront unsure of the first answer would
					if s, b := send(t, k.api, sfTok, "/v1/conversions", order); s != 200 || b["eligible"] != true || b["commission"] != 3000.0 {
						fail("conversion %s: %d %v", c, s, b)
					}
				}
				for _, r := range []struct {
					id                   string
					amount               int
					refunded, commission float64
				}{{"r1", 1000, 1000, 2700}, {"r2", 2000, 3000, 2100}} {
					body := fmt.Sprintf(`{"refund":%q,"amount":%d}`, r.id, r.amount)
					if s, b := send(t, k.api, sfTok, "/v1/conversions/o-"+c+"/refunds", body); s != 200 || b["refunded"] != r.refunded || b["commission"] != r.commission {
						fail("refund %s of %s: %d %v, want refunded %v commission %v", r.id, c, s, b, r.refunded, r.commission)
					}
				}
			}
		}()
	}
	go func() { wg.Wait(); close(done) }()
	// The killer: SIGKILL at random moments while the work goes on.
	for running := true; running && k.kills < 8; {
		select {
		case <-done:
			running = false
		case <-time.After(time.Duration(20+rand.IntN(150)) * time.Millisecond):
			k.kill()
		}
	}
	enough.Store(true)
	<-done
	storefront.CloseIdleConnections()
	k.stop()
	if k.kills < 3 {
		t.Errorf("the work was done after %d kills; the test needs more work to kill it under", k.kills)
	}
	for _, p := range problems {
		t.Error(p)
	}

	// What the store holds: each request applied once.
	st := open()
	defer st.Close()
	ctx := context.Background()
	for i := 0; i < int(customers.Load()); i++ {
		c := fmt.Sprint("cust-", i)
		cu, err := st.Customer(ctx, c)
		if err != nil {
			t.Fatalf("%s: %v", c, err)
		}
		if used := cu.Programs["shop"].CapUsed; used != 2100 {
			t.Errorf("%s: commission counted against the cap %d, want 2100 (3000 less 900 refunded)", c, used)
		}
		ds, err := st.Decisions(ctx, "shop", c)
		if err != nil {
			t.Fatal(err)
		}
		count := map[string]int{}
		ids := map[string]bool{}
		for _, d := range ds {
			count[d.Event+"/"+d.Outcome]++
			if ids[d.ID] {
				t.Errorf("%s: decision id %s twice", c, d.ID)
			}
			ids[d.ID] = true
		}
		want := map[string]int{"register/created": 1, "conversion/attributed": 1, "refund/refunded": 2}
		if fmt.Sprint(count) != fmt.Sprint(want) {
			t.Errorf("%s: decisions %v, want %v", c, count, want)
		}
	}
	t.Logf("%d customers, %d kills (a restart took at most %s): every bind, order and refund applied once",
		customers.Load(), k.kills, k.restartFor.Round(time.Millisecond))
}
