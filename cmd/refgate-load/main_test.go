package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

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

var (
	buildOnce  sync.Once
	refgateBin string
	buildErr   error
)

// buildRefgate builds the server binary once for the tests that run it.
func buildRefgate(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "refgate-load-test")
		if err != nil {
			buildErr = err
			return
		}
		refgateBin = filepath.Join(dir, "refgate")
		out, err := exec.Command("go", "build", "-o", refgateBin, "github.com/refgate/refgate/cmd/refgate").CombinedOutput()
		if err != nil {
			buildErr = err
			refgateBin = string(out)
		}
	})
	if buildErr != nil {
		t.Fatalf("go build: %v\n%s", buildErr, refgateBin)
	}
	return refgateBin
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
	bin := buildRefgate(t)
	edge, api = freeAddrT(t), freeAddrT(t)
	args := append([]string{"serve", "--listen", edge, "--api-listen", api, "--data-dir", filepath.Join(t.TempDir(), "data"),
		"--admin-token", "test-admin-token-0123456", "--storefront-token", "test-storefront-token-01"}, extra...)
	cmd := exec.Command(bin, args...)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stop(cmd)
		if t.Failed() {
			t.Logf("refgate log:\n%s", logs.String())
		}
	})
	if err := waitOK("http://"+api+"/readyz", 20*time.Second); err != nil {
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
