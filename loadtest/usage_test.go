package loadtest

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"
)

// TestUsage samples this test process as both the server and the store
// (it is both: the ceiling runs in it) and checks that the run reports
// both, per answered request, in the summary and in JSON.
func TestUsage(t *testing.T) {
	self := &Process{PID: os.Getpid()}
	cpu0, err := self.CPU()
	if err != nil {
		t.Fatal(err)
	}
	if rss, err := self.RSS(); err != nil || rss < 1<<20 {
		t.Fatalf("RSS %d, %v", rss, err)
	}
	sc := clicksOn(t, serve(t, NewCeiling()))
	res, err := Run(context.Background(), Options{Rate: 2000, Duration: time.Second, Warmup: 200 * time.Millisecond,
		Usage: self, Store: &Process{PID: os.Getpid()}}, sc)
	if err != nil {
		t.Fatal(err)
	}
	for name, u := range map[string]*Usage{"server": res.Usage, "store": res.Store} {
		if u == nil {
			t.Fatalf("no %s usage", name)
		}
		if u.PID != os.Getpid() || u.CPU <= 0 || u.MaxRSS <= 0 {
			t.Errorf("%s usage %+v", name, u)
		}
		if want := float64(u.CPU) / float64(time.Microsecond) / float64(res.Stats.Requests); u.CPUPerRequest != want {
			t.Errorf("%s: %.2f µs per request, want %.2f", name, u.CPUPerRequest, want)
		}
	}
	if cpu1, _ := self.CPU(); time.Duration(res.Usage.CPU) > cpu1-cpu0 {
		t.Errorf("measured %s of CPU, more than the %s the process used", res.Usage.CPU, cpu1-cpu0)
	}
	var sum strings.Builder
	WriteText(&sum, res)
	if s := sum.String(); !strings.Contains(s, "  server     pid ") || !strings.Contains(s, "  store      pid ") {
		t.Errorf("summary:\n%s", s)
	}
	b, _ := json.Marshal(res)
	var back struct {
		Server, Store *Usage
	}
	if err := json.Unmarshal(b, &back); err != nil || back.Server == nil || back.Store == nil {
		t.Errorf("JSON %s: %v", b, err)
	}

	// A process that is gone leaves the usage out rather than failing the run.
	res, err = Run(context.Background(), Options{Rate: 100, Duration: 200 * time.Millisecond, Store: &Process{PID: 1 << 30}}, sc)
	if err != nil || res.Store != nil {
		t.Errorf("gone process: %+v, %v", res.Store, err)
	}
}
