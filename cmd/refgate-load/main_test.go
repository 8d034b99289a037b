package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/refgate/refgate/internal/buildtest"
	"github.com/refgate/refgate/internal/redistest"
	"github.com/refgate/refgate/loadtest"
)

func runCmd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func ceiling(t *testing.T) (base, fixture string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := loadtest.NewCeiling()
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Shutdown() })
	fx := loadtest.Fixture{Program: "load", Destination: "https://shop.example.com/landing",
		Links: []loadtest.Link{{Code: "a1", Promoter: "p0"}, {Code: "a2", Promoter: "p1"}}}
	b, _ := json.Marshal(fx)
	fixture = filepath.Join(t.TempDir(), "fx.json")
	os.WriteFile(fixture, b, 0o644)
	return "http://" + ln.Addr().String(), fixture
}

// The ceiling's event baseline needs the Redis it writes to.
func TestCeilingEventsNeedRedis(t *testing.T) {
	code, _, errs := runCmd(t, "ceiling", "--listen", "127.0.0.1:0", "--redis-events")
	if code != exitUsage || !strings.Contains(errs, "--redis-events needs --redis-url") {
		t.Errorf("exit %d\n%s", code, errs)
	}
}

func TestSLOExitCode(t *testing.T) {
	base, fx := ceiling(t)
	args := []string{"run", "--target", base, "--fixture", fx, "--rate", "300", "--duration", "1s", "--warmup", "200ms",
		"--new", "0.3", "--bots", "0", "--prefetches", "0", "--unknown", "0"}
	html := filepath.Join(t.TempDir(), "r.html")
	code, out, errs := runCmd(t, append(args, "--slo", "p99=10s,errors=0%", "--html", html)...)
	if code != exitOK || !strings.Contains(out, "slo        p99") || !strings.Contains(out, " met") {
		t.Errorf("met SLO: exit %d\n%s%s", code, out, errs)
	}
	if b, err := os.ReadFile(html); err != nil || !bytes.Contains(b, []byte("<svg")) {
		t.Errorf("HTML report: %v", err)
	}
	code, out, errs = runCmd(t, append(args, "--slo", "p99=1us")...)
	if code != exitSLO || !strings.Contains(out, "MISSED") {
		t.Errorf("missed SLO: exit %d\n%s%s", code, out, errs)
	}
	code, _, errs = runCmd(t, append(args, "--slo", "p99=soon")...)
	if code != exitUsage {
		t.Errorf("bad SLO: exit %d %s", code, errs)
	}
	// ramp reports the highest rate that met the SLO.
	code, out, errs = runCmd(t, "ramp", "--target", base, "--fixture", fx, "--from", "200", "--factor", "2", "--max", "800",
		"--duration", "1s", "--warmup", "200ms", "--new", "0.3", "--bots", "0", "--prefetches", "0", "--unknown", "0", "--slo", "p99=10s")
	if code != exitOK || !strings.Contains(out, "highest rate that met the SLO: 800 req/s") {
		t.Errorf("ramp: exit %d\n%s%s", code, out, errs)
	}
}

func TestLoopbackGuard(t *testing.T) {
	_, fx := ceiling(t)
	code, _, errs := runCmd(t, "run", "--target", "http://192.0.2.7:8080", "--fixture", fx, "--duration", "1s")
	if code != exitUsage || !strings.Contains(errs, "--allow-remote") {
		t.Errorf("remote target: exit %d %s", code, errs)
	}
	code, _, errs = runCmd(t, "run", "--api", "http://192.0.2.7:8081", "--admin-token", "x", "--duration", "1s")
	if code != exitUsage || !strings.Contains(errs, "--allow-remote") {
		t.Errorf("remote API: exit %d %s", code, errs)
	}
}

func freeAddrT(t *testing.T) string {
	a, err := freeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// startRefgate runs the real server binary with extra flags.
func startRefgate(t *testing.T, extra ...string) (edge, api string) {
	t.Helper()
	bin := buildtest.Binary(t, "github.com/refgate/refgate/cmd/refgate")
	edge, api = freeAddrT(t), freeAddrT(t)
	args := append([]string{"serve", "--listen", edge, "--api-listen", api, "--data-dir", filepath.Join(t.TempDir(), "data"),
		"--admin-token", "test-admin-token-0123456", "--storefront-token", "test-storefront-token-01",
		"--attribution-rate", "0"}, extra...) // the generator clicks from one address
	var logs bytes.Buffer // written by one goroutine; read once it has exited
	srv, err := startPinned(-1, &logs, bin, args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		srv.stop()
		if t.Failed() {
			t.Logf("refgate log:\n%s", logs.String())
		}
	})
	if err := srv.waitOK("http://"+api+"/readyz", 20*time.Second); err != nil {
		t.Fatal(err)
	}
	return "http://" + edge, "http://" + api
}

// TestFunnel runs the funnel scenario against the real server on each
// store and expects no invariant violation.
func TestFunnel(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the server")
	}
	for _, store := range []string{"embedded", "redis"} {
		t.Run(store, func(t *testing.T) {
			var extra []string
			if store == "redis" {
				extra = []string{"--redis-url", redistest.Start(t).URL()}
			}
			edge, api := startRefgate(t, extra...)
			code, out, errs := runCmd(t, "run", "--scenario", "funnel", "--target", edge, "--api", api,
				"--admin-token", "test-admin-token-0123456", "--storefront-token", "test-storefront-token-01",
				"--rate", "300", "--duration", "4s", "--warmup", "500ms", "--customers", "150", "--slo", "errors=0%,violations=0")
			t.Logf("%s", out)
			if code != exitOK || !strings.Contains(out, ": 0 violations") {
				t.Errorf("funnel on %s: exit %d\n%s", store, code, errs)
			}
			for _, op := range []string{"click ", "bind_register", "bind_login", "conversion"} {
				if !strings.Contains(out, op) {
					t.Errorf("no %q requests in the run", op)
				}
			}
		})
	}
}

// TestMain lets the test binary stand in for refgate-load when bench
// starts itself (os.Executable) as the ceiling, and removes the refgate
// binary the tests built.
func TestMain(m *testing.M) {
	if os.Getenv("REFGATE_LOAD_TEST_AS_MAIN") == "1" {
		os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
	}
	code := m.Run()
	buildtest.Cleanup()
	os.Exit(code)
}

// TestBench runs a short bench over every server, unpinned, and checks
// its table and JSON: the store's CPU is sampled where there is a Redis,
// and --serve-flag reaches refgate's command line.
func TestBench(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the server")
	}
	bin, redisBin := buildtest.Binary(t, "github.com/refgate/refgate/cmd/refgate"), redistest.Binary(t)
	t.Setenv("REFGATE_LOAD_TEST_AS_MAIN", "1")
	args := []string{"bench", "--refgate", bin, "--redis-server", redisBin, "--server-cpu", "-1", "--load-cpu", "-1",
		"--duration", "500ms", "--warmup", "200ms", "--workers", "8"}

	out := filepath.Join(t.TempDir(), "bench.json")
	code, text, errs := runCmd(t, append(args, "--serve-flag=--events=false", "--json", out)...)
	if code != exitOK {
		t.Fatalf("bench: exit %d\n%s%s", code, text, errs)
	}
	t.Logf("%s", text)
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var rows []benchRow
	if err := json.Unmarshal(b, &rows); err != nil {
		t.Fatal(err)
	}
	want := []struct {
		name  string
		store bool
	}{{"ceiling", false}, {"ceiling+SET", true}, {"ceiling+SET+XADD", true}, {"refgate embedded", false}, {"refgate redis", true}}
	if len(rows) != len(want) {
		t.Fatalf("%d rows, want %d:\n%s", len(rows), len(want), text)
	}
	for i, w := range want {
		r := rows[i]
		if r.Name != w.name || r.Max == nil || r.Half == nil {
			t.Fatalf("row %d: %+v, want %s", i, r, w.name)
		}
		if r.Max.Stats.Requests == 0 || r.Max.Stats.Failed != 0 || r.Half.Stats.Failed != 0 {
			t.Errorf("%s: %d requests, %d and %d failed (%v %v)", r.Name, r.Max.Stats.Requests,
				r.Max.Stats.Failed, r.Half.Stats.Failed, r.Max.Stats.Errors, r.Half.Stats.Errors)
		}
		if r.Max.Usage == nil || r.Max.Usage.CPUPerRequest <= 0 {
			t.Errorf("%s: no server CPU per click: %+v", r.Name, r.Max.Usage)
		}
		if got := r.Max.Store != nil && r.Max.Store.CPUPerRequest > 0; got != w.store {
			t.Errorf("%s: store usage %+v, want one: %v", r.Name, r.Max.Store, w.store)
		}
	}
	if !strings.Contains(text, "Redis µs/click") || !strings.Contains(text, "refgate redis: ") {
		t.Errorf("no store column or no ratio to the baseline with events:\n%s", text)
	}

	// A flag refgate refuses stops the bench at once, with refgate's reason.
	start := time.Now()
	code, _, errs = runCmd(t, append(args, "--stores", "embedded", "--serve-flag=--no-such-flag")...)
	if code != exitUsage || !strings.Contains(errs, "no-such-flag") || time.Since(start) > 15*time.Second {
		t.Errorf("bad serve flag: exit %d after %s\n%s", code, time.Since(start), errs)
	}
}
