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
	"github.com/refgate/refgate/store"
	"github.com/refgate/refgate/store/redisstore"
	"github.com/refgate/refgate/store/storetest"
)

// withoutLedger is a store whose ledger writes do nothing: the conversion
// path as it was before the ledger, for comparison.
type withoutLedger struct{ store.Store }

func (withoutLedger) MarkLedger(context.Context, string, string, time.Time) error   { return nil }
func (withoutLedger) UnmarkLedger(context.Context, string, string, time.Time) error { return nil }
func (w withoutLedger) ClaimOrderAndMark(ctx context.Context, order, customer, _, _ string, _ time.Time) (string, error) {
	return w.Store.ClaimOrder(ctx, order, customer)
}
func (withoutLedger) PostEntry(_ context.Context, e *attribution.Entry, _ string) (*attribution.Entry, bool, error) {
	c := *e
	return &c, true, nil
}

// BenchmarkConversionLedgerRedis measures attributed conversions through
// the service on a real redis-server, 8 callers at a time as
// BenchmarkStorefrontRedis does, without the ledger's writes (the same
// store with MarkLedger, PostEntry and UnmarkLedger doing nothing, and
// ClaimOrderAndMark only claiming) and with
// them, in the same run; WithLedger reports its throughput as a ratio of
// WithoutLedger's over all of WithoutLedger's runs in the process (the
// ledger must keep ≥ 0.8). Each customer is bound before the timer starts.
// Run (with SettleRedis, as make bench-go does):
//
//	go test ./api -run '^$' -bench 'ConversionLedgerRedis|SettleRedis' -benchtime 3s -count 3
func BenchmarkConversionLedgerRedis(b *testing.B) {
	srv := redistest.Start(b)
	st, err := redisstore.New(redisstore.Config{URL: srv.URL(), PoolSize: 128})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	if err := st.PutPromoter(ctx, &attribution.Promoter{ID: "alice", Status: "active"}); err != nil {
		b.Fatal(err)
	}
	var runs atomic.Int64
	// WithoutLedger's conversions and time over all its runs so far (with
	// -count, each sub-benchmark runs that many times in turn).
	var withoutN int
	var withoutTime time.Duration
	bench := func(b *testing.B, s store.Store) time.Duration {
		sv := newService(b, s)
		sv.tokenFor(b, "alice") // creates alice's link
		now := sv.Now()
		r := runs.Add(1) // customers and orders of their own every run
		// Bind b.N customers, untimed, on 8 callers.
		var next atomic.Int64
		var wg sync.WaitGroup
		var bindErr atomic.Value
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for n := next.Add(1); n <= int64(b.N); n = next.Add(1) {
					tok, err := sv.Signer.AppendToken(nil, &cookie.Token{Program: "shop", Promoter: "alice", Link: "l-alice",
						Click: fmt.Sprint("k", r, "-", n), Issued: now, Expires: now.Add(24 * time.Hour)})
					if err == nil {
						var a *BindAnswer
						a, err = sv.Bind(ctx, BindInput{Program: "shop", Customer: fmt.Sprint("c", r, "-", n), Event: "register", Token: string(tok)})
						if err == nil && !a.Associated {
							err = fmt.Errorf("not associated: %+v", a)
						}
					}
					if err != nil {
						bindErr.Store(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		if err, _ := bindErr.Load().(error); err != nil {
			b.Fatal(err)
		}
		var seq atomic.Int64
		lat := newLatencies()
		b.SetParallelism(4) // × GOMAXPROCS callers
		b.ResetTimer()
		start := time.Now()
		b.RunParallel(func(pb *testing.PB) {
			h := hdrhistogram.New(1, 10_000_000, 3)
			for pb.Next() {
				n := seq.Add(1)
				t0 := time.Now()
				a, err := sv.Convert(ctx, ConversionInput{Program: "shop", Order: fmt.Sprint("o", r, "-", n), Customer: fmt.Sprint("c", r, "-", n),
					Amount: 10000, Currency: "CNY", Product: "cvm", Prepaid: true})
				if err == nil && (!a.Eligible || a.Commission <= 0) {
					err = fmt.Errorf("not attributed: %+v", a)
				}
				if err != nil {
					b.Error(err)
					return
				}
				h.RecordValue(time.Since(t0).Microseconds())
			}
			lat.merge(h)
		})
		elapsed := time.Since(start)
		b.StopTimer()
		lat.report(b, elapsed)
		return elapsed
	}
	b.Run("WithoutLedger", func(b *testing.B) {
		withoutTime += bench(b, withoutLedger{st})
		withoutN += b.N
	})
	b.Run("WithLedger", func(b *testing.B) {
		with := float64(b.N) / bench(b, st).Seconds()
		if withoutN > 0 {
			b.ReportMetric(with/(float64(withoutN)/withoutTime.Seconds()), "ratio")
		}
	})
}

// BenchmarkSettleRedis measures one settlement run (Service.Settle) over
// 100,000 due entries of 1,000 promoters on a real redis-server. Writing
// the entries (PostEntry, 64 at a time) is not timed; each iteration
// settles a program of its own, so a time-based -benchtime (one run takes
// about 1.5 s on 2 cores) runs it once or twice. Run:
//
//	go test ./api -run '^$' -bench SettleRedis -benchtime 1x
func BenchmarkSettleRedis(b *testing.B) {
	const promoters, perPromoter = 1000, 100
	srv := redistest.Start(b)
	st, err := redisstore.New(redisstore.Config{URL: srv.URL(), PoolSize: 128})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	sv := newService(b, st)
	var took time.Duration
	for i := range b.N {
		b.StopTimer()
		program := fmt.Sprint("settle", i)
		if err := st.PutProgram(ctx, storetest.Program(program)); err != nil {
			b.Fatal(err)
		}
		at := sv.Now().Add(-40 * 24 * time.Hour)
		var next atomic.Int64
		var wg sync.WaitGroup
		var postErr atomic.Value
		for range 64 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for n := next.Add(1) - 1; n < promoters*perPromoter; n = next.Add(1) - 1 {
					order := fmt.Sprint("o", n)
					e := &attribution.Entry{ID: attribution.AccrualID(order), Program: program, Promoter: fmt.Sprint("p", n%promoters),
						Kind: attribution.Accrual, Amount: 100 + n%900, Currency: "CNY", Order: order, Customer: fmt.Sprint("c", n),
						At: at.Add(time.Duration(n) * time.Millisecond), AvailableAt: at.Add(time.Duration(n) * time.Millisecond)}
					if _, _, err := st.PostEntry(ctx, e, ""); err != nil {
						postErr.Store(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		if err, _ := postErr.Load().(error); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		sts, err := sv.Settle(ctx, program, time.Time{})
		took += time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		n := 0
		for _, s := range sts {
			n += s.Entries
		}
		if len(sts) != promoters || n != promoters*perPromoter {
			b.Fatalf("%d statements of %d entries, want %d of %d", len(sts), n, promoters, promoters*perPromoter)
		}
	}
	b.ReportMetric(took.Seconds()/float64(b.N), "s/run")
	b.ReportMetric(float64(promoters*perPromoter*b.N)/took.Seconds(), "entries/s")
}
