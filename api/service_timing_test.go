package api

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/cookie"
	"github.com/refgate/refgate/internal/redistest"
	"github.com/refgate/refgate/store/redisstore"
)

// latencies collects per-goroutine HDR histograms (1 µs to 10 s, 3
// significant digits) and merges them for the report.
type latencies struct {
	mu  sync.Mutex
	all *hdrhistogram.Histogram
}

func newLatencies() *latencies { return &latencies{all: hdrhistogram.New(1, 10_000_000, 3)} }

func (l *latencies) merge(h *hdrhistogram.Histogram) {
	l.mu.Lock()
	l.all.Merge(h)
	l.mu.Unlock()
}

func (l *latencies) report(b *testing.B, elapsed time.Duration) {
	b.ReportMetric(float64(l.all.TotalCount())/elapsed.Seconds(), "ops/s")
	b.ReportMetric(float64(l.all.ValueAtQuantile(50))/1000, "p50-ms")
	b.ReportMetric(float64(l.all.ValueAtQuantile(99))/1000, "p99-ms")
}

// BenchmarkStorefrontRedis measures binds, conversions and refunds through
// the service on a real redis-server (unix socket, on the same machine), with 8
// callers at a time (4 × GOMAXPROCS on 2 cores), each on its own customers,
// as a storefront fleet would call it. More callers on 2 cores only add
// queueing to the latency. Run:
//
//	go test ./api -run '^$' -bench StorefrontRedis -benchtime 30000x -count 3
func BenchmarkStorefrontRedis(b *testing.B) {
	srv := redistest.Start(b)
	st, err := redisstore.New(redisstore.Config{URL: srv.URL(), PoolSize: 128})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	sv := newService(b, st)
	ctx := context.Background()
	if err := st.PutPromoter(ctx, &attribution.Promoter{ID: "alice", Status: "active"}); err != nil {
		b.Fatal(err)
	}
	sv.tokenFor(b, "alice") // creates alice's link
	now := sv.Now()
	var seq atomic.Int64
	run := func(b *testing.B, op func(n int64) error) {
		lat := newLatencies()
		b.SetParallelism(4) // × GOMAXPROCS callers
		start := time.Now()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			h := hdrhistogram.New(1, 10_000_000, 3)
			for pb.Next() {
				t0 := time.Now()
				if err := op(seq.Add(1)); err != nil {
					b.Error(err)
					return
				}
				h.RecordValue(time.Since(t0).Microseconds())
			}
			lat.merge(h)
		})
		lat.report(b, time.Since(start))
	}
	b.Run("Bind", func(b *testing.B) {
		run(b, func(n int64) error {
			// A click of its own per customer: a click binds one customer.
			tok, err := sv.Signer.AppendToken(nil, &cookie.Token{Program: "shop", Promoter: "alice", Link: "l-alice",
				Click: fmt.Sprint("k", n), Issued: now, Expires: now.Add(24 * time.Hour)})
			if err != nil {
				return err
			}
			a, err := sv.Bind(ctx, BindInput{Program: "shop", Customer: fmt.Sprint("b", n), Event: "register", Token: string(tok)})
			if err == nil && !a.Associated {
				err = fmt.Errorf("not associated: %+v", a)
			}
			return err
		})
	})
	var runs, converted, refundRuns atomic.Int64
	b.Run("Conversion", func(b *testing.B) {
		converted.Store(int64(b.N))
		seq.Store(0)     // the customers the binds above associated
		r := runs.Add(1) // new order ids every run: a replay of a known order is cheaper
		run(b, func(n int64) error {
			a, err := sv.Convert(ctx, ConversionInput{Program: "shop", Order: fmt.Sprint("o", r, "-", n), Customer: fmt.Sprint("b", n),
				Amount: 10000, Currency: "CNY", Product: "cvm", Prepaid: true})
			if err == nil && a.Order == "" {
				err = fmt.Errorf("no answer")
			}
			return err
		})
	})
	b.Run("Refund", func(b *testing.B) {
		seq.Store(0) // the orders of the last conversion run, in turn, 1 fen at a time
		r, orders := runs.Load(), converted.Load()
		refunds := refundRuns.Add(1)
		run(b, func(n int64) error {
			a, err := sv.Refund(ctx, fmt.Sprint("o", r, "-", (n-1)%orders+1), fmt.Sprint("r", refunds, "-", n), 1)
			if err == nil && a.Refunded == 0 {
				err = fmt.Errorf("no refund")
			}
			return err
		})
	})
}
