package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/refgate/refgate/loadtest"
)

// benchRow is one server's figures in a bench.
type benchRow struct {
	Name string `json:"name"`
	// Max is a closed-loop run: the most the server answered per second.
	Max *loadtest.Result `json:"max"`
	// Half is an open-model run at half the ceiling's Max rate.
	Half *loadtest.Result `json:"half"`
}

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) (int, error) {
	fs := flag.NewFlagSet("refgate-load bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	refgateBin := fs.String("refgate", "bin/refgate", "the refgate binary to measure")
	redisBin := fs.String("redis-server", "redis-server", "the redis-server binary (empty: skip the Redis store)")
	duration := fs.Duration("duration", 10*time.Second, "measured time of each run")
	warmup := fs.Duration("warmup", 3*time.Second, "warm-up before each run")
	workers := fs.Int("workers", 64, "connections of the closed-loop (maximum) runs")
	serverCPU := fs.Int("server-cpu", 0, "CPU the server under test is pinned to (taskset); -1: no pinning")
	loadCPU := fs.Int("load-cpu", 1, "CPU the load generator and Redis are pinned to; -1: no pinning")
	jsonOut := fs.String("json", "", "write every run's result as JSON to this file")
	stores := fs.String("stores", "embedded,redis", "refgate stores to measure")
	if err := parse(fs, args); err != nil {
		return exitUsage, err
	}
	self, err := os.Executable()
	if err != nil {
		return exitUsage, err
	}
	if *loadCPU >= 0 && os.Getenv("REFGATE_LOAD_PINNED") == "" {
		// Run again under taskset so that every thread of the generator
		// (and GOMAXPROCS, which follows the affinity) is on loadCPU.
		if ts, err := exec.LookPath("taskset"); err == nil {
			cmd := exec.CommandContext(ctx, ts, append([]string{"-c", strconv.Itoa(*loadCPU), self, "bench"}, args...)...)
			cmd.Env = append(os.Environ(), "REFGATE_LOAD_PINNED=1")
			cmd.Stdout, cmd.Stderr = stdout, stderr
			if err := cmd.Run(); err != nil {
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					return ee.ExitCode(), nil
				}
				return exitUsage, err
			}
			return exitOK, nil
		}
		fmt.Fprintln(stderr, "taskset not found: running unpinned")
	}
	clickOpts := loadtest.ClickOptions{New: 0.3} // visitors only: the ceiling knows no bots or unknown codes
	measure := func(name, edge string, pid int, fx *loadtest.Fixture, halfRate float64) (*benchRow, error) {
		row := &benchRow{Name: name}
		t, err := loadtest.NewTarget(edge, max(*workers, 256), false)
		if err != nil {
			return nil, err
		}
		sc, err := loadtest.NewClicks(t, fx, clickOpts)
		if err != nil {
			return nil, err
		}
		o := loadtest.Options{Duration: *duration, Warmup: *warmup, Workers: *workers, Usage: &loadtest.Process{PID: pid}}
		fmt.Fprintf(stderr, "%s: closed loop, %d connections, %s\n", name, *workers, *duration)
		if row.Max, err = loadtest.Run(ctx, o, sc); err != nil {
			return nil, err
		}
		row.Max.Target = edge
		if halfRate == 0 {
			halfRate = row.Max.Achieved / 2
		}
		o.Rate, o.Workers = halfRate, 256
		fmt.Fprintf(stderr, "%s: %.0f req/s, %s\n", name, halfRate, *duration)
		if row.Half, err = loadtest.Run(ctx, o, sc); err != nil {
			return nil, err
		}
		row.Half.Target = edge
		return row, nil
	}

	var rows []*benchRow
	fx := &loadtest.Fixture{Program: "load", Destination: "https://shop.example.com/landing"}
	for i := range 128 {
		fx.Links = append(fx.Links, loadtest.Link{Code: fmt.Sprintf("c%04d", i), Promoter: "p" + strconv.Itoa(i%8)})
	}
	// runCeiling measures the ceiling, with extra arguments.
	runCeiling := func(name string, halfRate float64, extra ...string) (*benchRow, error) {
		addr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		ceil, err := startPinned(*serverCPU, stderr, self, append([]string{"ceiling", "--listen", addr}, extra...)...)
		if err != nil {
			return nil, err
		}
		defer stop(ceil)
		if err := waitOK("http://"+addr+"/healthz", 10*time.Second); err != nil {
			return nil, err
		}
		return measure(name, "http://"+addr, ceil.Process.Pid, fx, halfRate)
	}
	row, err := runCeiling("ceiling", 0)
	if err != nil {
		return exitUsage, fmt.Errorf("ceiling: %w", err)
	}
	rows = append(rows, row)
	halfRate := row.Max.Achieved / 2

	// The store baseline: the ceiling plus one key per click written to
	// Redis by a background pipeline, the least a redirector recording its
	// clicks there can do.
	if *redisBin != "" && strings.Contains(*stores, "redis") {
		dir, err := os.MkdirTemp("", "refgate-bench")
		if err != nil {
			return exitUsage, err
		}
		raddr, stopRedis, err := startRedis(dir, *redisBin, *loadCPU)
		if err == nil {
			row, err = runCeiling("ceiling+1 SET", halfRate, "--redis-url", "redis://"+raddr+"/0")
			stopRedis()
		}
		os.RemoveAll(dir)
		if err != nil {
			return exitUsage, fmt.Errorf("ceiling with Redis: %w", err)
		}
		rows = append(rows, row)
	}

	// refgate on each store.
	for _, store := range splitList(*stores) {
		row, err := benchRefgate(ctx, store, *refgateBin, *redisBin, *serverCPU, *loadCPU, stderr, func(edge string, pid int, fx *loadtest.Fixture) (*benchRow, error) {
			return measure("refgate "+store, edge, pid, fx, halfRate)
		})
		if err != nil {
			return exitUsage, fmt.Errorf("refgate on %s: %w", store, err)
		}
		rows = append(rows, row)
	}
	printBench(stdout, rows, halfRate)
	if *jsonOut != "" {
		b, _ := json.MarshalIndent(rows, "", "  ")
		if err := os.WriteFile(*jsonOut, append(b, '\n'), 0o644); err != nil {
			return exitUsage, err
		}
	}
	return exitOK, nil
}

func benchRefgate(ctx context.Context, store, bin, redisBin string, serverCPU, loadCPU int, stderr io.Writer,
	measure func(edge string, pid int, fx *loadtest.Fixture) (*benchRow, error)) (*benchRow, error) {
	dir, err := os.MkdirTemp("", "refgate-bench")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	edge, err := freeAddr()
	if err != nil {
		return nil, err
	}
	apiAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	const admin = "bench-admin-token-0123456789"
	args := []string{"serve", "--listen", edge, "--api-listen", apiAddr, "--data-dir", filepath.Join(dir, "data"),
		"--admin-token", admin, "--storefront-token", "bench-storefront-token-0123", "--log-format", "json"}
	switch store {
	case "embedded":
	case "redis":
		raddr, stopRedis, err := startRedis(dir, redisBin, loadCPU)
		if err != nil {
			return nil, err
		}
		defer stopRedis()
		args = append(args, "--redis-url", "redis://"+raddr+"/0")
	default:
		return nil, fmt.Errorf("unknown store %q (embedded or redis)", store)
	}
	srv, err := startPinned(serverCPU, io.Discard, bin, args...)
	if err != nil {
		return nil, err
	}
	defer stop(srv)
	if err := waitOK("http://"+apiAddr+"/readyz", 20*time.Second); err != nil {
		return nil, err
	}
	api, err := loadtest.NewTarget("http://"+apiAddr, 4, false)
	if err != nil {
		return nil, err
	}
	fx, err := loadtest.Setup(api, admin, loadtest.SetupOptions{})
	if err != nil {
		return nil, err
	}
	return measure("http://"+edge, srv.Process.Pid, fx)
}

// startRedis starts a redis-server for a bench, on the load generator's CPU
// (it stands in for one on another host), with the persistence
// deploy/redis/redis.conf recommends.
func startRedis(dir, redisBin string, cpu int) (addr string, stopRedis func(), err error) {
	if redisBin == "" {
		return "", nil, errors.New("no --redis-server")
	}
	if addr, err = freeAddr(); err != nil {
		return "", nil, err
	}
	host, port, _ := net.SplitHostPort(addr)
	rs, err := startPinned(cpu, io.Discard, redisBin, "--bind", host, "--port", port, "--dir", dir,
		"--save", "", "--appendonly", "yes", "--appendfsync", "everysec", "--maxmemory-policy", "noeviction")
	if err != nil {
		return "", nil, err
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return addr, func() { stop(rs) }, nil
		}
		if time.Now().After(deadline) {
			stop(rs)
			return "", nil, fmt.Errorf("redis-server on %s: %w", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func printBench(w io.Writer, rows []*benchRow, halfRate float64) {
	base := rows[0].Max
	fmt.Fprintf(w, "\n%-18s %12s %9s %14s %9s   at %.0f req/s: %9s %9s %9s %9s\n", "server", "max req/s", "×ceiling",
		"CPU µs/click", "×ceiling", halfRate, "p50", "p99", "p99.9", "max RSS")
	for _, r := range rows {
		cpu, cpuRatio, rss := "-", "-", "-"
		if u := r.Max.Usage; u != nil && base.Usage != nil && base.Usage.CPUPerRequest > 0 {
			cpu = fmt.Sprintf("%.1f", u.CPUPerRequest)
			cpuRatio = fmt.Sprintf("%.2f", u.CPUPerRequest/base.Usage.CPUPerRequest)
		}
		if u := r.Half.Usage; u != nil {
			rss = fmt.Sprintf("%.0fMiB", float64(u.MaxRSS)/(1<<20))
		}
		l := r.Half.Stats.Latency
		fmt.Fprintf(w, "%-18s %12.0f %9.2f %14s %9s   %*s %9s %9s %9s %9s\n", r.Name, r.Max.Achieved, r.Max.Achieved/base.Achieved,
			cpu, cpuRatio, len(fmt.Sprintf("at %.0f req/s:", halfRate))-3, "", l.P50, l.P99, l.P999, rss)
		if n := r.Max.Stats.Failed + r.Half.Stats.Failed; n > 0 {
			fmt.Fprintf(w, "%-18s %d failed requests: %v %v\n", "", n, r.Max.Stats.Errors, r.Half.Stats.Errors)
		}
	}
	fmt.Fprintln(w, "\nmax req/s: closed loop; CPU µs/click: the server's user+system CPU over that run per answered click.")
}

// startPinned starts name with args, on CPU cpu when cpu ≥ 0 and taskset
// is installed.
func startPinned(cpu int, stderr io.Writer, name string, args ...string) (*exec.Cmd, error) {
	if cpu >= 0 {
		if ts, err := exec.LookPath("taskset"); err == nil {
			args = append([]string{"-c", strconv.Itoa(cpu), name}, args...)
			name = ts
		}
	}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = stderr, stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return cmd, nil
}

// stop sends SIGTERM and waits up to 30 s, then kills.
func stop(cmd *exec.Cmd) {
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-done
	}
}

func waitOK(url string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		code, _, err := fasthttp.GetTimeout(nil, url, time.Second)
		if err == nil && code == 200 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not answer 200 within %s (last: %d %v)", url, within, code, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
