package redisstore

import (
	"context"
	"math/rand/v2"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/internal/redistest"
)

// benchBatch is a batcher-sized batch: 512 clicks over 64 links, four in
// five attributed to a visitor (a quarter of those first-click), the rest
// bots.
func benchBatch() []attribution.Click {
	at := time.Now().UTC().Truncate(time.Millisecond)
	clicks := make([]attribution.Click, 512)
	for i := range clicks {
		c := attribution.Click{ID: "clk" + strconv.Itoa(i), Program: "shop", Promoter: "alice",
			Link: "link" + strconv.Itoa(i%64), At: at, ExpiresAt: at.Add(30 * 24 * time.Hour),
			Model: attribution.LastClick, Outcome: attribution.OutcomeAttributed}
		switch {
		case i%5 == 4:
			c.Outcome = attribution.OutcomeBot
		default:
			c.Visitor = "v" + strconv.Itoa(i)
			if i%4 == 0 {
				c.Model = attribution.FirstClick
			}
		}
		clicks[i] = c
	}
	return clicks
}

// redisCPU returns the server's CPU time so far (INFO cpu).
func redisCPU(tb testing.TB, srv *redistest.Server) time.Duration {
	tb.Helper()
	info, err := srv.Client().Info(context.Background(), "cpu").Result()
	if err != nil {
		tb.Fatal(err)
	}
	var total float64
	for line := range strings.SplitSeq(info, "\r\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && (k == "used_cpu_sys" || k == "used_cpu_user") {
			f, _ := strconv.ParseFloat(v, 64)
			total += f
		}
	}
	return time.Duration(total * float64(time.Second))
}

// selfCPU returns this process's CPU time so far.
func selfCPU(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkRecordClicks writes one 512-click batch per op to a real
// redis-server and reports, besides the wall time, the CPU time per click
// of the server (the cost every refgate instance sharing that Redis adds)
// and of this process (what refgate spends on the batch).
func BenchmarkRecordClicks(b *testing.B) { benchRecordClicks(b, [][]attribution.Click{benchBatch()}) }

// benchRecordClicks writes batches in turn, one per op, each under a new
// batch id.
func benchRecordClicks(b *testing.B, batches [][]attribution.Click) {
	srv := redistest.Start(b)
	s, err := New(Config{URL: srv.URL()})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	b.ReportAllocs()
	cpu0, self0 := redisCPU(b, srv), selfCPU(b)
	n, clicks := 0, 0
	for b.Loop() {
		batch := batches[n%len(batches)]
		if err := s.RecordClicks(ctx, "bench-"+strconv.Itoa(n), batch); err != nil {
			b.Fatal(err)
		}
		n, clicks = n+1, clicks+len(batch)
	}
	b.StopTimer()
	b.ReportMetric(float64(redisCPU(b, srv)-cpu0)/float64(clicks), "redis-ns/click")
	b.ReportMetric(float64(selfCPU(b)-self0)/float64(clicks), "client-ns/click")
}

// loadBatches are n batches like the load generator's (refgate-load run's
// defaults): 512 attributed clicks each over 128 links of 8 promoters,
// three in ten from new visitors, the rest from 10,000 returning ones.
func loadBatches(n int) [][]attribution.Click {
	r := rand.New(rand.NewPCG(1, 2))
	at := time.Now().UTC().Truncate(time.Millisecond)
	out := make([][]attribution.Click, n)
	id := 0
	for b := range out {
		cs := make([]attribution.Click, 512)
		for i := range cs {
			l, v := r.IntN(128), "v"+strconv.Itoa(r.IntN(10000))
			if r.Float64() < 0.3 {
				v = "new" + strconv.Itoa(id)
			}
			id++
			cs[i] = attribution.Click{ID: "clk" + strconv.Itoa(id), Program: "shop", Promoter: "p" + strconv.Itoa(l%8),
				Link: "link" + strconv.Itoa(l), Visitor: v, At: at, ExpiresAt: at.Add(30 * 24 * time.Hour),
				Model: attribution.LastClick, Outcome: attribution.OutcomeAttributed}
		}
		out[b] = cs
	}
	return out
}

// BenchmarkRecordClicksLoad is BenchmarkRecordClicks with loadBatches: a
// batch's report delta has about 140 buckets and 500 visitors, and
// batches sent back to back make every fold one of maxDeltas.
func BenchmarkRecordClicksLoad(b *testing.B) { benchRecordClicks(b, loadBatches(64)) }
