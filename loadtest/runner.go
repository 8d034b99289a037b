package loadtest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// Options shape one run.
type Options struct {
	// Rate is the intended requests per second (open model). Zero runs
	// closed-loop instead: every worker sends its next request as soon as
	// the previous one is answered, which measures the most the server
	// takes; latency is then service time, not latency at a rate.
	Rate float64
	// Duration is the measured period; Warmup runs before it at the same
	// rate and is not recorded.
	Duration, Warmup time.Duration
	// Workers bounds the requests in flight (and so the connections).
	// Default 256. When all are busy, intended send times keep coming and
	// the wait counts in the latency.
	Workers int
	// Timeout bounds one request. Default 5 s.
	Timeout time.Duration
	// Usage, when set, is sampled over the measured period (the server's
	// CPU time and memory).
	Usage *Process
	// Store, when set, is a store process the server writes to (a
	// redis-server on this machine), sampled the same way.
	Store *Process
}

func (o *Options) defaults() {
	if o.Workers <= 0 {
		o.Workers = 256
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
}

// Scenario makes the requests of a run. Do is called by many workers at
// once and must be safe for that.
type Scenario interface {
	Name() string
	// Do sends one request using w's reusable request and response and
	// says what happened.
	Do(w *Worker) Outcome
}

// Outcome is one request's result: the operation, the HTTP status (0 if
// none came back) and, for a failure, its kind.
type Outcome struct {
	Op     string
	Status int
	Err    string
}

// Worker is one sender. Its Req and Resp are reset before each Do and must
// not be kept after Do returns.
type Worker struct {
	ID      int
	Rand    *rand.Rand
	Req     *fasthttp.Request
	Resp    *fasthttp.Response
	Timeout time.Duration
	// Data is the scenario's own per-worker state.
	Data any

	conns []*workerConn
}

func errKind(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, fasthttp.ErrTimeout), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.As(err, &ne), retryable(err):
		return "connection"
	default: // the answer was not HTTP fasthttp could read
		return "bad_response"
	}
}

// Result is one run's report.
type Result struct {
	Scenario string   `json:"scenario"`
	Target   string   `json:"target,omitempty"`
	Rate     float64  `json:"rate"`     // intended, per second; 0 = closed loop
	Achieved float64  `json:"achieved"` // responses per second in the measured period
	Duration Duration `json:"duration"`
	Warmup   Duration `json:"warmup"`
	Workers  int      `json:"workers"`
	Stats    *Stats   `json:"stats"`
	// Usage is the server's CPU and memory over the measured period, when
	// its process was given.
	Usage *Usage `json:"server,omitempty"`
	// Store is the store process's CPU and memory, when it was given; its
	// CPU per request counts the same answered requests as Usage's.
	Store        *Usage        `json:"store,omitempty"`
	Verification *Verification `json:"verification,omitempty"`
	SLO          []SLOCheck    `json:"slo,omitempty"`
	Started      time.Time     `json:"started"`
}

// Run sends sc's requests following o until the duration is over or ctx
// ends, then waits for the requests in flight (at most Timeout).
//
// Open model: request i is intended at start + i/Rate whatever happened to
// the ones before it. A pacer hands intended times to the workers through
// a buffered channel; when every worker is busy, the times wait there and
// the wait is part of the latency. A time that cannot even be queued (the
// buffer holds 10 s of them) is counted as "not_sent", never silently
// skipped.
func Run(ctx context.Context, o Options, sc Scenario) (*Result, error) {
	o.defaults()
	if o.Duration <= 0 {
		return nil, errors.New("loadtest: duration must be positive")
	}
	if o.Rate < 0 {
		return nil, errors.New("loadtest: rate must not be negative")
	}
	start := time.Now().Add(10 * time.Millisecond)
	measured := start.Add(o.Warmup)
	end := measured.Add(o.Duration)
	rec := NewRecorder(measured)
	res := &Result{Scenario: sc.Name(), Rate: o.Rate, Duration: Duration(o.Duration), Warmup: Duration(o.Warmup),
		Workers: o.Workers, Started: measured}

	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	usage, store := sampleUsage(ctx, o.Usage, measured, end), sampleUsage(ctx, o.Store, measured, end)

	var ticks chan time.Time
	var tm *timer
	if o.Rate > 0 {
		n := int(o.Rate * 10)
		ticks = make(chan time.Time, min(max(n, 1024), 1<<20))
		var err error
		if tm, err = newTimer(); err != nil {
			return nil, err
		}
		defer tm.close()
	}
	// After the last intended time, requests still waiting get until
	// end+Timeout to be sent; then they count as not sent.
	giveUp := end.Add(o.Timeout)
	var wg sync.WaitGroup
	for i := range o.Workers {
		wg.Add(1)
		w := &Worker{ID: i, Rand: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(i))),
			Req: fasthttp.AcquireRequest(), Resp: fasthttp.AcquireResponse(), Timeout: o.Timeout}
		go func() {
			defer wg.Done()
			defer fasthttp.ReleaseRequest(w.Req)
			defer fasthttp.ReleaseResponse(w.Resp)
			defer w.closeConns()
			if ticks == nil {
				closedLoop(ctx, w, sc, rec, start, end)
				return
			}
			for t := range ticks {
				if ctx.Err() != nil || time.Now().After(giveUp) {
					rec.Record(w.ID, "", t, t, t, 0, "not_sent")
					continue
				}
				w.send(sc, rec, t)
			}
		}()
	}
	var paceErr error
	if ticks != nil {
		if paceErr = pace(ctx, tm, ticks, rec, start, end, o.Rate); paceErr != nil {
			cancel()
		}
		close(ticks)
	}
	wg.Wait()
	if paceErr != nil {
		return nil, fmt.Errorf("loadtest: pacing: %w", paceErr)
	}
	res.Stats = rec.Snapshot()
	done := res.Stats.Requests - res.Stats.Errors["not_sent"]
	res.Achieved = float64(done) / o.Duration.Seconds()
	res.Usage, res.Store = usage.result(done), store.result(done)
	return res, parent.Err()
}

// preciseFrom is the shortest wait for which pace uses its timer rather
// than time.Sleep. When requests are due more often, the generator is
// rarely idle between them and Go's timers fire on time (a send lag p50 of
// 17-70 µs at 8k-20k req/s against the ceiling); the timer's wake-up per
// request would only cost CPU (about 9 µs per request at 20k req/s, and a
// later send). At lower rates the generator idles and time.Sleep is up to
// a millisecond late (see timer).
const preciseFrom = 200 * time.Microsecond

// pace queues the intended send times from start to end at rate per
// second. It sleeps until the next time is due and then queues every time
// that is due, so the average rate is exact whatever the timer resolution.
func pace(ctx context.Context, tm *timer, ticks chan<- time.Time, rec *Recorder, start, end time.Time, rate float64) error {
	interval := float64(time.Second) / rate
	total := int64(float64(end.Sub(start)) / interval)
	now := time.Now()
	for i := int64(0); i < total; i++ {
		t := start.Add(time.Duration(float64(i) * interval))
		if t.After(now) {
			switch d := time.Until(t); {
			case d >= preciseFrom:
				if err := tm.sleep(d); err != nil {
					return err
				}
			case d > 0:
				time.Sleep(d)
			}
			if ctx.Err() != nil {
				return nil
			}
			now = time.Now()
		}
		select {
		case ticks <- t:
		default:
			rec.Record(0, "", t, t, t, 0, "not_sent")
		}
	}
	return nil
}

// closedLoop sends back to back from start to end.
func closedLoop(ctx context.Context, w *Worker, sc Scenario, rec *Recorder, start, end time.Time) {
	time.Sleep(time.Until(start))
	for ctx.Err() == nil {
		t := time.Now()
		if !t.Before(end) {
			return
		}
		w.send(sc, rec, t)
	}
}

// send makes one request of sc, intended at t, and records it.
func (w *Worker) send(sc Scenario, rec *Recorder, t time.Time) {
	sent := time.Now()
	w.Req.Reset()
	w.Resp.Reset()
	out := sc.Do(w)
	rec.Record(w.ID, out.Op, t, sent, time.Now(), out.Status, out.Err)
}
