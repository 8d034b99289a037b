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
	"sync"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/refgate/refgate/loadtest"
)

// The store baselines' names in a bench.
const (
	baselineSet   = "ceiling+SET"
	baselineEvent = "ceiling+SET+XADD"
)

// refgateRow is the name of refgate's row on store.
func refgateRow(store string) string { return "refgate " + store }

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
	var serveFlags []string
	fs.Func("serve-flag", "a flag added to refgate serve's command line, such as --events=false (repeatable)", func(v string) error {
		serveFlags = append(serveFlags, v)
		return nil
	})
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
	// measure runs the closed loop and the half-rate run against edge,
	// sampling the server pid and, when not 0, the store's.
	measure := func(name, edge string, pid, storePID int, fx *loadtest.Fixture, halfRate float64) (*benchRow, error) {
		row := &benchRow{Name: name}
		t, err := loadtest.NewTarget(edge, 1, false) // workers dial their own connections
		if err != nil {
			return nil, err
		}
		sc, err := loadtest.NewClicks(t, fx, clickOpts)
		if err != nil {
			return nil, err
		}
		o := loadtest.Options{Duration: *duration, Warmup: *warmup, Workers: *workers, Usage: &loadtest.Process{PID: pid}}
		if storePID != 0 {
			o.Store = &loadtest.Process{PID: storePID}
		}
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
	// measureCeiling starts the ceiling, with extra arguments, and measures it.
	measureCeiling := func(name string, halfRate float64, storePID int, extra ...string) (*benchRow, error) {
		addr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		ceil, err := startPinned(*serverCPU, nil, self, append([]string{"ceiling", "--listen", addr}, extra...)...)
		if err != nil {
			return nil, err
		}
		defer ceil.stop()
		if err := ceil.waitOK("http://"+addr+"/healthz", 10*time.Second); err != nil {
			return nil, err
		}
		return measure(name, "http://"+addr, ceil.pid(), storePID, fx, halfRate)
	}
	row, err := measureCeiling("ceiling", 0, 0)
	if err != nil {
		return exitUsage, fmt.Errorf("ceiling: %w", err)
	}
	rows = append(rows, row)
	halfRate := row.Max.Achieved / 2

	// The store baselines: the ceiling plus, per click, one key (the least
	// a redirector recording its clicks in Redis can do), then one key and
	// one stream entry (the least one writing docs/design.md's click event to a
	// Redis Stream as well can do), written by a background pipeline.
	if *redisBin != "" && strings.Contains(*stores, "redis") {
		for _, b := range []struct {
			name  string
			extra []string
		}{{baselineSet, nil}, {baselineEvent, []string{"--redis-events"}}} {
			rs, err := startRedis(*redisBin, *loadCPU)
			if err == nil {
				row, err = measureCeiling(b.name, halfRate, rs.pid(), append([]string{"--redis-url", "redis://" + rs.addr + "/0"}, b.extra...)...)
				rs.stop()
			}
			if err != nil {
				return exitUsage, fmt.Errorf("%s: %w", b.name, err)
			}
			rows = append(rows, row)
		}
	}

	// refgate on each store.
	for _, store := range splitList(*stores) {
		row, err := benchRefgate(ctx, store, *refgateBin, *redisBin, serveFlags, *serverCPU, *loadCPU, stderr, func(edge string, pid, storePID int, fx *loadtest.Fixture) (*benchRow, error) {
			return measure(refgateRow(store), edge, pid, storePID, fx, halfRate)
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

func benchRefgate(ctx context.Context, store, bin, redisBin string, serveFlags []string, serverCPU, loadCPU int, stderr io.Writer,
	measure func(edge string, pid, storePID int, fx *loadtest.Fixture) (*benchRow, error)) (*benchRow, error) {
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
		"--admin-token", admin, "--storefront-token", "bench-storefront-token-0123", "--log-format", "json",
		// The generator's clicks all come from one loopback address; the
		// limiter's own cost is measured in the click benchmark instead.
		"--attribution-rate", "0"}
	storePID := 0
	switch store {
	case "embedded":
	case "redis":
		rs, err := startRedis(redisBin, loadCPU)
		if err != nil {
			return nil, err
		}
		defer rs.stop()
		storePID = rs.pid()
		args = append(args, "--redis-url", "redis://"+rs.addr+"/0")
	default:
		return nil, fmt.Errorf("unknown store %q (embedded or redis)", store)
	}
	args = append(args, serveFlags...)
	srv, err := startPinned(serverCPU, nil, bin, args...)
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	if err := srv.waitOK("http://"+apiAddr+"/readyz", 20*time.Second); err != nil {
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
	return measure("http://"+edge, srv.pid(), storePID, fx)
}

// benchRedis is a redis-server a bench started, with its own data
// directory.
type benchRedis struct {
	*child
	addr, dir string
}

// startRedis starts a redis-server for a bench, on the load generator's CPU
// (it stands in for one on another host), with the persistence
// deploy/redis/redis.conf recommends, in a new data directory stop removes.
func startRedis(redisBin string, cpu int) (*benchRedis, error) {
	if redisBin == "" {
		return nil, errors.New("no --redis-server")
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "refgate-bench-redis")
	if err != nil {
		return nil, err
	}
	host, port, _ := net.SplitHostPort(addr)
	rs, err := startPinned(cpu, nil, redisBin, "--bind", host, "--port", port, "--dir", dir,
		"--save", "", "--appendonly", "yes", "--appendfsync", "everysec", "--maxmemory-policy", "noeviction")
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	r := &benchRedis{child: rs, addr: addr, dir: dir}
	err = rs.waitReady("redis-server on "+addr, 10*time.Second, func() error {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err
	})
	if err != nil {
		r.stop()
		return nil, err
	}
	return r, nil
}

// stop stops redis-server and removes its data.
func (r *benchRedis) stop() {
	r.child.stop()
	os.RemoveAll(r.dir)
}

func printBench(w io.Writer, rows []*benchRow, halfRate float64) {
	base := rows[0].Max
	at := fmt.Sprintf("at %.0f req/s:", halfRate)
	fmt.Fprintf(w, "\n%-18s %12s %9s %14s %9s %16s   %s %9s %9s %9s %9s %9s\n", "server", "max req/s", "×ceiling",
		"CPU µs/click", "×ceiling", "Redis µs/click", at, "p50", "p99", "p99.9", "lag p99", "max RSS")
	for _, r := range rows {
		cpu, cpuRatio, storeCPU, rss := "-", "-", "-", "-"
		if u := r.Max.Usage; u != nil && base.Usage != nil && base.Usage.CPUPerRequest > 0 {
			cpu = fmt.Sprintf("%.1f", u.CPUPerRequest)
			cpuRatio = fmt.Sprintf("%.2f", u.CPUPerRequest/base.Usage.CPUPerRequest)
		}
		if u := r.Max.Store; u != nil {
			storeCPU = fmt.Sprintf("%.1f", u.CPUPerRequest)
		}
		if u := r.Half.Usage; u != nil {
			rss = fmt.Sprintf("%.0fMiB", float64(u.MaxRSS)/(1<<20))
		}
		l := r.Half.Stats.Latency
		fmt.Fprintf(w, "%-18s %12.0f %9.2f %14s %9s %16s   %*s %9s %9s %9s %9s %9s\n", r.Name, r.Max.Achieved, r.Max.Achieved/base.Achieved,
			cpu, cpuRatio, storeCPU, len(at)-3, "", l.P50, l.P99, l.P999, r.Half.Stats.SendLag.P99, rss)
		if n := r.Max.Stats.Failed + r.Half.Stats.Failed; n > 0 {
			fmt.Fprintf(w, "%-18s %d failed requests: %v %v\n", "", n, r.Max.Stats.Errors, r.Half.Stats.Errors)
		}
	}
	fmt.Fprintln(w, "\nmax req/s: closed loop; CPU µs/click: the server's user+system CPU over that run per answered click;")
	fmt.Fprintln(w, "Redis µs/click: the same for the redis-server it writes to (on the load generator's CPU);")
	fmt.Fprintln(w, "lag p99: how late the requests of the half-rate run left their intended send time, part of its latency.")
	// refgate on Redis against the baseline that writes what it writes.
	var event, redis *benchRow
	for _, r := range rows {
		switch r.Name {
		case baselineEvent:
			event = r
		case refgateRow("redis"):
			redis = r
		}
	}
	if event != nil && redis != nil && event.Max.Achieved > 0 {
		fmt.Fprintf(w, "refgate redis: %.2f× the max req/s of %s, which writes the same per click to Redis and does nothing else.\n",
			redis.Max.Achieved/event.Max.Achieved, baselineEvent)
	}
}

// child is a process a bench runs: the ceiling, refgate or redis-server.
type child struct {
	cmd  *exec.Cmd
	out  *headBuffer   // the start of its output when not passed on
	done chan struct{} // closed once it has exited
	err  error         // how it exited, once done is closed
}

// startPinned starts name with args, on CPU cpu when cpu ≥ 0 and taskset
// is installed (taskset execs name: the pid stays the process's own). Its
// output goes to out, or when out is nil is kept for error messages.
func startPinned(cpu int, out io.Writer, name string, args ...string) (*child, error) {
	if cpu >= 0 {
		if ts, err := exec.LookPath("taskset"); err == nil {
			args = append([]string{"-c", strconv.Itoa(cpu), name}, args...)
			name = ts
		}
	}
	c := &child{cmd: exec.Command(name, args...), done: make(chan struct{})}
	if out == nil {
		c.out = new(headBuffer)
		out = c.out
	}
	c.cmd.Stdout, c.cmd.Stderr = out, out
	if err := c.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { c.err = c.cmd.Wait(); close(c.done) }()
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// stop sends SIGTERM and waits up to 30 s, then kills.
func (c *child) stop() {
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(30 * time.Second):
		c.cmd.Process.Kill()
		<-c.done
	}
}

// waitOK polls url until it answers 200 (see waitReady).
func (c *child) waitOK(url string, within time.Duration) error {
	return c.waitReady(url, within, func() error {
		code, _, err := fasthttp.GetTimeout(nil, url, time.Second)
		if err == nil && code != 200 {
			err = fmt.Errorf("answered %d", code)
		}
		return err
	})
}

// waitReady calls probe until it returns nil. It gives up after within, or
// as soon as the process exits (a bad flag, a port in use), saying why with
// the start of its output.
func (c *child) waitReady(what string, within time.Duration, probe func() error) error {
	deadline := time.Now().Add(within)
	for {
		err := probe()
		if err == nil {
			return nil
		}
		select {
		case <-c.done:
			msg := fmt.Sprintf("%s exited before %s answered: %v", filepath.Base(c.cmd.Path), what, c.err)
			if c.out != nil {
				if o := strings.TrimSpace(c.out.String()); o != "" {
					msg += "\n" + o
				}
			}
			return errors.New(msg)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not answer within %s: %w", what, within, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// headBuffer keeps the first 16 KiB written to it: a server's start-up
// errors, bounded however long it then runs.
type headBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (h *headBuffer) Write(p []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if room := 16<<10 - len(h.b); room > 0 {
		h.b = append(h.b, p[:min(len(p), room)]...)
	}
	return len(p), nil
}

func (h *headBuffer) String() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return string(h.b)
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
