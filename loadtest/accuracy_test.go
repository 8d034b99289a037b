//go:build !race

// Timing assertions about the generator itself. They do not hold under the
// race detector (5-10x slower), so they run without it: the README's test
// command runs them after the race-enabled suite, on a quiet machine.

package loadtest

import (
	"context"
	"fmt"
	"runtime"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// TestRateAccuracy counts, on the ceiling server's side, the requests that
// arrive in each second of the measured period of a 5k req/s run. The
// median second is compared: a second in which the machine paused the
// generator is followed by one that catches up, and neither is the rate.
//
// The generator cannot keep a rate while the machine starves it (a shared
// box, other test binaries), so the measurement is taken up to three
// times and the first within bounds passes.
func TestRateAccuracy(t *testing.T) {
	for attempt := 1; ; attempt++ {
		median, ok := rateAccuracy(t)
		if ok {
			return
		}
		if attempt == 3 {
			t.Fatalf("median second had %d requests in 3 attempts, want 5000 ± 2 %%", median)
		}
	}
}

func rateAccuracy(t *testing.T) (int64, bool) {
	const rate, dur = 5000, 5 * time.Second
	var from atomic.Int64
	var buckets [int(dur / time.Second)]atomic.Int64
	ceil := NewCeiling()
	h := ceil.Handler
	ceil.Handler = func(ctx *fasthttp.RequestCtx) {
		if d := time.Now().UnixNano() - from.Load(); d >= 0 && d < int64(dur) {
			buckets[d/int64(time.Second)].Add(1)
		}
		h(ctx)
	}
	base := serve(t, ceil)
	sc := clicksOn(t, base)
	warm := time.Second
	from.Store(time.Now().Add(10*time.Millisecond + warm).UnixNano()) // Run starts 10 ms from now
	res, err := Run(context.Background(), Options{Rate: rate, Duration: dur, Warmup: warm}, sc)
	if err != nil {
		t.Fatal(err)
	}
	var counts []int64
	for i := range buckets {
		counts = append(counts, buckets[i].Load())
	}
	sorted := append([]int64(nil), counts...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	median := sorted[len(sorted)/2]
	t.Logf("server saw %v requests per second, median %d, want %d (achieved %.0f req/s, p99 %s)", counts, median, rate, res.Achieved, res.Stats.Latency.P99)
	if want := int64(rate * dur.Seconds()); res.Stats.Failed != 0 || res.Stats.Requests != want {
		t.Errorf("generator: %d requests (want %d), %d failed (%v)", res.Stats.Requests, want, res.Stats.Failed, res.Stats.Errors)
	}
	return median, median >= rate*98/100 && median <= rate*102/100
}

// TestKnownDelays checks the histogram against a server that takes 20 ms,
// and that a 600 ms stall is charged to every request intended during it
// (an open model: no coordinated omission).
//
// The lower bounds are correctness: nothing a machine does can make a
// request faster than the server's sleep, or keep a stall from being
// charged. The upper bounds only hold while the machine gives the test
// its cores (a starved CI box once stretched the 20 ms sleep to a 58 ms
// median), so those are measured up to three times, like the rate.
func TestKnownDelays(t *testing.T) {
	for attempt := 1; ; attempt++ {
		slow := knownDelays(t)
		if len(slow) == 0 || t.Failed() {
			return
		}
		if attempt == 3 {
			t.Fatalf("in 3 attempts: %s", strings.Join(slow, "; "))
		}
		t.Logf("attempt %d: %s; measuring again", attempt, strings.Join(slow, "; "))
	}
}

// knownDelays runs both measurements once. Lower-bound violations fail
// the test; the returned list says which upper bounds were missed.
func knownDelays(t *testing.T) (slow []string) {
	var stallFrom, stallTo atomic.Int64
	ceil := NewCeiling()
	h := ceil.Handler
	ceil.Handler = func(ctx *fasthttp.RequestCtx) {
		time.Sleep(20 * time.Millisecond)
		if until := stallTo.Load(); time.Now().UnixNano() >= stallFrom.Load() && time.Now().UnixNano() < until {
			time.Sleep(time.Until(time.Unix(0, until)))
		}
		h(ctx)
	}
	base := serve(t, ceil)
	sc := clicksOn(t, base)

	res, err := Run(context.Background(), Options{Rate: 200, Duration: 2 * time.Second, Workers: 64}, sc)
	if err != nil {
		t.Fatal(err)
	}
	l := res.Stats.Latency
	t.Logf("20 ms server: %+v", l)
	if p0 := res.Stats.Percentile(0); p0 < 20*time.Millisecond {
		t.Errorf("fastest %s, faster than the server's 20 ms", p0)
	}
	if p := time.Duration(l.P50); p < 20*time.Millisecond {
		t.Errorf("p50 %s, faster than the server's 20 ms", p)
	} else if p > 40*time.Millisecond {
		slow = append(slow, fmt.Sprintf("p50 %s, want 20-40 ms", p))
	}

	// 600 ms stall one second into a 3 s run at 200 req/s: about 120
	// requests are intended during it, and those intended in its first
	// 400 ms (about 80, 13 % of 600) wait at least 200 ms. A generator
	// that waits for answers before sending would record only as many
	// slow requests as it has workers in flight.
	start := time.Now().Add(10 * time.Millisecond)
	stallFrom.Store(start.Add(time.Second).UnixNano())
	stallTo.Store(start.Add(1600 * time.Millisecond).UnixNano())
	res, err = Run(context.Background(), Options{Rate: 200, Duration: 3 * time.Second, Workers: 256}, sc)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("with a stall: %+v", res.Stats.Latency)
	if p := res.Stats.Percentile(88); p < 200*time.Millisecond {
		t.Errorf("p88 %s: the stall was not charged to the requests intended during it", p)
	}
	if p := time.Duration(res.Stats.Latency.Max); p < 550*time.Millisecond {
		t.Errorf("max %s, want about 600 ms", p)
	}
	if p := time.Duration(res.Stats.Latency.P50); p > 100*time.Millisecond {
		slow = append(slow, fmt.Sprintf("stall run p50 %s: requests outside the stall were slow", p))
	}

	// Too few workers: 2 workers on a 20 ms server send at most 100 req/s
	// of the 200 intended, so request i leaves at least 5i ms late. The
	// latency charges that send lag; the service time stays the server's.
	res, err = Run(context.Background(), Options{Rate: 200, Duration: time.Second, Workers: 2}, sc)
	if err != nil {
		t.Fatal(err)
	}
	s := res.Stats
	t.Logf("2 workers: latency %+v, service %+v, send lag %+v", s.Latency, s.Service, s.SendLag)
	if p := time.Duration(s.SendLag.P90); p < 500*time.Millisecond {
		t.Errorf("send lag p90 %s with 2 workers for 200 req/s of 20 ms requests, want at least 500 ms", p)
	}
	if l, g := time.Duration(s.Latency.P90), time.Duration(s.SendLag.P90); l < g {
		t.Errorf("latency p90 %s is less than the send lag p90 %s", l, g)
	}
	if p := time.Duration(s.Service.P50); p < 20*time.Millisecond {
		t.Errorf("service p50 %s, faster than the server's 20 ms", p)
	} else if p > 40*time.Millisecond {
		slow = append(slow, fmt.Sprintf("2-worker run: service p50 %s, want 20-40 ms", p))
	}
	return slow
}

// TestTimerAccuracy checks the pacer's waits: 300 µs is shorter than the
// millisecond that time.Sleep can take when the generator is idle. The
// median oversleep of 200 waits must stay under 200 µs; measured up to
// three times, like the rate.
func TestTimerAccuracy(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the precise timer is Linux's timerfd; elsewhere it is time.Sleep")
	}
	tm, err := newTimer()
	if err != nil {
		t.Fatal(err)
	}
	defer tm.close()
	const d, n = 300 * time.Microsecond, 200
	for attempt := 1; ; attempt++ {
		late := make([]time.Duration, n)
		for i := range late {
			start := time.Now()
			if err := tm.sleep(d); err != nil {
				t.Fatal(err)
			}
			late[i] = time.Since(start) - d
		}
		sort.Slice(late, func(i, j int) bool { return late[i] < late[j] })
		t.Logf("attempt %d: %s waits late by p50 %s, p90 %s, max %s", attempt, d, late[n/2], late[n*9/10], late[n-1])
		if late[n/2] < 200*time.Microsecond {
			return
		}
		if attempt == 3 {
			t.Fatalf("median oversleep %s in 3 attempts, want under 200 µs", late[n/2])
		}
	}
}
