package loadtest

import (
	"sort"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Histogram bounds: latencies are recorded in microseconds from 1 µs to
// 60 s with 3 significant digits (overall) or 2 (per-second windows, which
// only feed the latency-over-time plot).
const (
	histMin = 1
	histMax = 60_000_000
)

// shards spreads recording over several locks; a worker always records
// into the same shard.
const shards = 16

// Recorder collects latencies and outcomes from many workers. Only requests
// whose intended send time is at or after Start are recorded (the warm-up
// before it is excluded).
type Recorder struct {
	Start time.Time
	sh    [shards]shard
}

type shard struct {
	mu      sync.Mutex
	all     *hdrhistogram.Histogram
	service *hdrhistogram.Histogram // from the actual send to the response
	lag     *hdrhistogram.Histogram // from the intended to the actual send
	seconds map[int64]*window
	status  map[string]map[int]int64 // op → status → count
	errs    map[string]int64         // transport errors by kind
	n       int64
	_       [64]byte
}

type window struct {
	h     *hdrhistogram.Histogram
	n     int64
	fails int64
}

// NewRecorder returns a recorder that ignores requests intended before start.
func NewRecorder(start time.Time) *Recorder {
	r := &Recorder{Start: start}
	for i := range r.sh {
		s := &r.sh[i]
		s.all = hdrhistogram.New(histMin, histMax, 3)
		s.service = hdrhistogram.New(histMin, histMax, 3)
		s.lag = hdrhistogram.New(histMin, histMax, 3)
		s.seconds = map[int64]*window{}
		s.status = map[string]map[int]int64{}
		s.errs = map[string]int64{}
	}
	return r
}

// Record notes one finished request of operation op, intended at
// intended, sent at sent and finished at done, that got HTTP status (0 when
// errKind is set). errKind names a failure ("timeout", "connection",
// "not_sent", or a scenario's check such as "unexpected_status"). It
// reports whether the request was in the measured period.
//
// The latency is done - intended. It splits into the send lag, sent -
// intended (no worker was free, or the generator's own CPU was late), and
// the service time, done - sent (what the server and the network took).
// The latency is the figure that counts; the split says where it went.
func (r *Recorder) Record(worker int, op string, intended, sent, done time.Time, status int, errKind string) bool {
	if intended.Before(r.Start) {
		return false
	}
	us := clampUs(done.Sub(intended))
	sentOK := errKind != "not_sent"
	var lag, service int64
	if sentOK {
		lag, service = clampUs(sent.Sub(intended)), clampUs(done.Sub(sent))
	}
	sec := int64(intended.Sub(r.Start) / time.Second)
	s := &r.sh[worker%shards]
	s.mu.Lock()
	s.n++
	if sentOK {
		s.all.RecordValue(us)
		s.service.RecordValue(service)
		s.lag.RecordValue(lag)
	}
	w := s.seconds[sec]
	if w == nil {
		w = &window{h: hdrhistogram.New(histMin, histMax, 2)}
		s.seconds[sec] = w
	}
	w.n++
	if sentOK {
		w.h.RecordValue(us)
	}
	if errKind != "" {
		s.errs[errKind]++
		w.fails++
	}
	if status != 0 {
		m := s.status[op]
		if m == nil {
			m = map[int]int64{}
			s.status[op] = m
		}
		m[status]++
	}
	s.mu.Unlock()
	return true
}

// clampUs returns d in whole microseconds within the histograms' bounds.
func clampUs(d time.Duration) int64 {
	return min(max(d.Microseconds(), histMin), histMax)
}

// Snapshot merges the shards into one Stats; the recorder can go on.
func (r *Recorder) Snapshot() *Stats {
	all := hdrhistogram.New(histMin, histMax, 3)
	service := hdrhistogram.New(histMin, histMax, 3)
	lag := hdrhistogram.New(histMin, histMax, 3)
	secs := map[int64]*window{}
	st := &Stats{Status: map[string]map[int]int64{}, Errors: map[string]int64{}}
	for i := range r.sh {
		s := &r.sh[i]
		s.mu.Lock()
		all.Merge(s.all)
		service.Merge(s.service)
		lag.Merge(s.lag)
		st.Requests += s.n
		for sec, w := range s.seconds {
			m := secs[sec]
			if m == nil {
				m = &window{h: hdrhistogram.New(histMin, histMax, 2)}
				secs[sec] = m
			}
			m.h.Merge(w.h)
			m.n += w.n
			m.fails += w.fails
		}
		for op, m := range s.status {
			if st.Status[op] == nil {
				st.Status[op] = map[int]int64{}
			}
			for code, n := range m {
				st.Status[op][code] += n
			}
		}
		for k, n := range s.errs {
			st.Errors[k] += n
		}
		s.mu.Unlock()
	}
	st.Latency = summarize(all)
	st.Service, st.SendLag = summarize(service), summarize(lag)
	st.hist = all
	keys := make([]int64, 0, len(secs))
	for k := range secs {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	for _, k := range keys {
		w := secs[k]
		st.Seconds = append(st.Seconds, Second{At: k, Requests: w.n, Errors: w.fails,
			P50: us(w.h.ValueAtQuantile(50)), P99: us(w.h.ValueAtQuantile(99)), Max: us(w.h.Max())})
	}
	for _, e := range st.Errors {
		st.Failed += e
	}
	return st
}

// Stats is what a run measured.
type Stats struct {
	Requests int64                    `json:"requests"` // in the measured period, sent or not
	Failed   int64                    `json:"failed"`   // of those, errors of any kind
	Status   map[string]map[int]int64 `json:"status"`   // op → HTTP status → count
	Errors   map[string]int64         `json:"errors"`   // kind → count
	Latency  Latency                  `json:"latency"`  // intended send time → response
	Service  Latency                  `json:"service"`  // actual send → response
	SendLag  Latency                  `json:"send_lag"` // intended → actual send
	Seconds  []Second                 `json:"seconds"`  // latency over time
	hist     *hdrhistogram.Histogram
}

// Latency holds percentiles of a duration: in Stats.Latency, from the
// intended send time to the end of the response.
type Latency struct {
	P50   Duration `json:"p50"`
	P90   Duration `json:"p90"`
	P99   Duration `json:"p99"`
	P999  Duration `json:"p99_9"`
	Max   Duration `json:"max"`
	Mean  Duration `json:"mean"`
	Count int64    `json:"count"`
}

// Second is one second of the run (counted by intended send time).
type Second struct {
	At       int64    `json:"at"` // seconds since the start of the measured period
	Requests int64    `json:"requests"`
	Errors   int64    `json:"errors"`
	P50      Duration `json:"p50"`
	P99      Duration `json:"p99"`
	Max      Duration `json:"max"`
}

// Percentile returns the latency at quantile q (0..100).
func (s *Stats) Percentile(q float64) time.Duration {
	if s.hist == nil {
		return 0
	}
	return time.Duration(s.hist.ValueAtQuantile(q)) * time.Microsecond
}

// Distribution returns (quantile, latency) pairs for the percentile plot,
// from p0 to p99.999 on a log scale of 1/(1-q).
func (s *Stats) Distribution() []Point {
	if s.hist == nil || s.hist.TotalCount() == 0 {
		return nil
	}
	var out []Point
	for _, q := range []float64{0, 10, 20, 30, 40, 50, 60, 70, 75, 80, 85, 90, 92.5, 95, 96.25, 97.5, 98.125, 98.75, 99,
		99.25, 99.5, 99.625, 99.75, 99.8, 99.875, 99.9, 99.95, 99.99, 99.999, 100} {
		out = append(out, Point{Q: q, Latency: Duration(time.Duration(s.hist.ValueAtQuantile(q)) * time.Microsecond)})
	}
	return out
}

// Point is one point of the percentile distribution.
type Point struct {
	Q       float64  `json:"q"`
	Latency Duration `json:"latency"`
}

func summarize(h *hdrhistogram.Histogram) Latency {
	return Latency{P50: us(h.ValueAtQuantile(50)), P90: us(h.ValueAtQuantile(90)), P99: us(h.ValueAtQuantile(99)),
		P999: us(h.ValueAtQuantile(99.9)), Max: us(h.Max()), Mean: Duration(time.Duration(h.Mean() * float64(time.Microsecond))),
		Count: h.TotalCount()}
}

func us(v int64) Duration { return Duration(time.Duration(v) * time.Microsecond) }

// Duration is a time.Duration that reads and writes JSON as a string
// ("1.5ms").
type Duration time.Duration

// MarshalText writes d as time.Duration's String.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText parses a time.Duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	*d = Duration(v)
	return err
}

func (d Duration) String() string { return time.Duration(d).String() }
