package redirect

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/refgate/refgate/attribution"
)

// flakyWriter records batches and fails while failing is set, or on the
// first attempt at each batch with failFirst.
type flakyWriter struct {
	mu        sync.Mutex
	failing   bool
	failFirst bool
	calls     int
	ids       []string // batch id of every call
	got       []attribution.Click
	block     chan struct{}
}

func (w *flakyWriter) RecordClicks(ctx context.Context, batch string, clicks []attribution.Click) error {
	if w.block != nil {
		select {
		case <-w.block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.calls++
	first := !slices.Contains(w.ids, batch)
	w.ids = append(w.ids, batch)
	if w.failing || w.failFirst && first {
		return errors.New("store down")
	}
	w.got = append(w.got, clicks...)
	return nil
}

func (w *flakyWriter) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.got)
}

func clicks(n int) []attribution.Click {
	out := make([]attribution.Click, n)
	for i := range out {
		out[i] = attribution.Click{ID: fmt.Sprint(i), Link: "l", Outcome: attribution.OutcomeAttributed}
	}
	return out
}

func TestBatcherDrainsOnClose(t *testing.T) {
	w := &flakyWriter{}
	b := NewBatcher(w, BatcherConfig{BatchSize: 100, FlushInterval: time.Hour})
	for _, c := range clicks(250) {
		if !b.Enqueue(c) {
			t.Fatal("enqueue refused")
		}
	}
	if err := b.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if w.count() != 250 || b.Len() != 0 {
		t.Fatalf("wrote %d of 250, %d pending", w.count(), b.Len())
	}
	if b.Enqueue(attribution.Click{}) {
		t.Error("Enqueue after Close must refuse")
	}
	if err := b.Close(context.Background()); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestBatcherFlushesOnTick(t *testing.T) {
	w := &flakyWriter{}
	b := NewBatcher(w, BatcherConfig{BatchSize: 1000, FlushInterval: 10 * time.Millisecond})
	defer b.Close(context.Background())
	c := clicks(1)[0]
	b.Enqueue(c)
	deadline := time.Now().Add(2 * time.Second)
	for w.count() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("a lone record was not flushed on the tick")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestBatcherRetriesUntilWritten(t *testing.T) {
	w := &flakyWriter{failing: true}
	m := NewMetrics(prometheus.NewRegistry())
	b := NewBatcher(w, BatcherConfig{BatchSize: 10, FlushInterval: time.Millisecond, Metrics: m})
	for _, c := range clicks(10) {
		b.Enqueue(c)
	}
	time.Sleep(200 * time.Millisecond)
	w.mu.Lock()
	w.failing = false
	calls := w.calls
	w.mu.Unlock()
	if calls < 2 {
		t.Errorf("want retries while the store fails, got %d calls", calls)
	}
	if err := b.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if w.count() != 10 || testutil.ToFloat64(m.dropped) != 0 || testutil.ToFloat64(m.flushErrors) < 1 {
		t.Errorf("wrote %d, dropped %v, errors %v", w.count(), testutil.ToFloat64(m.dropped), testutil.ToFloat64(m.flushErrors))
	}
}

// TestBatcherBatchIDs: every batch has its own id, and every retry of a
// batch the same one, which is what lets the store count it once.
func TestBatcherBatchIDs(t *testing.T) {
	w := &flakyWriter{failFirst: true}
	b := NewBatcher(w, BatcherConfig{BatchSize: 100, FlushInterval: time.Hour})
	for _, c := range clicks(250) {
		b.Enqueue(c)
	}
	// A bounded Close: a batcher that took a new id per attempt would
	// fail every attempt here and never drain.
	c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.Close(c); err != nil {
		t.Fatal(err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.ids) < 6 {
		t.Fatalf("got %d calls for 250 records in batches of 100, each failing once", len(w.ids))
	}
	// Batches are written one after another: each id must come exactly
	// twice in a row (the failed attempt and its retry), and never again.
	seen := map[string]bool{}
	for i := 0; i < len(w.ids); i += 2 {
		id := w.ids[i]
		if id == "" || i+1 == len(w.ids) || w.ids[i+1] != id || seen[id] {
			t.Fatalf("want each batch id twice in a row and only there, got %q", w.ids)
		}
		seen[id] = true
	}
	if len(w.got) != 250 {
		t.Errorf("wrote %d of 250", len(w.got))
	}
}

func TestBatcherFullQueueDropsWithoutBlocking(t *testing.T) {
	w := &flakyWriter{block: make(chan struct{})}
	m := NewMetrics(prometheus.NewRegistry())
	b := NewBatcher(w, BatcherConfig{QueueSize: 8, BatchSize: 1, FlushInterval: time.Millisecond, Metrics: m})
	accepted := 0
	start := time.Now()
	for _, c := range clicks(100) {
		if b.Enqueue(c) {
			accepted++
		}
	}
	if time.Since(start) > time.Second {
		t.Error("Enqueue blocked")
	}
	if accepted > 10 || testutil.ToFloat64(m.dropped) != float64(100-accepted) {
		t.Errorf("accepted %d, dropped %v", accepted, testutil.ToFloat64(m.dropped))
	}
	close(w.block)
	b.Close(context.Background())
	if w.count() != accepted {
		t.Errorf("wrote %d, accepted %d", w.count(), accepted)
	}
}

func TestBatcherCloseDeadline(t *testing.T) {
	w := &flakyWriter{failing: true}
	m := NewMetrics(prometheus.NewRegistry())
	b := NewBatcher(w, BatcherConfig{BatchSize: 5, FlushInterval: time.Millisecond, Metrics: m})
	for _, c := range clicks(5) {
		b.Enqueue(c)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := b.Close(ctx)
	if time.Since(start) > 2*time.Second {
		t.Errorf("Close ignored its deadline: %v", time.Since(start))
	}
	if err == nil || !strings.Contains(err.Error(), "5 records lost") {
		t.Errorf("Close says what it lost: %v", err)
	}
	if testutil.ToFloat64(m.dropped) != 5 {
		t.Errorf("records lost at the deadline must be counted: %v", testutil.ToFloat64(m.dropped))
	}
}

// hangingWriter answers only when its context ends, as a frozen Redis.
type hangingWriter struct{}

func (hangingWriter) RecordClicks(ctx context.Context, _ string, _ []attribution.Click) error {
	<-ctx.Done()
	return ctx.Err()
}

// TestBatcherCloseWaitsForItsGoroutine: with the store hanging and many
// batches pending, Close still returns by its deadline (no write attempt
// outlives it, each of them would take WriteTimeout), and only once the
// writer goroutine has stopped.
func TestBatcherCloseWaitsForItsGoroutine(t *testing.T) {
	b := NewBatcher(hangingWriter{}, BatcherConfig{BatchSize: 10, FlushInterval: time.Millisecond, WriteTimeout: 10 * time.Second})
	for _, c := range clicks(200) {
		b.Enqueue(c)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := b.Close(ctx)
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("Close took %v with a 200ms deadline", took)
	}
	select {
	case <-b.done:
	default:
		t.Error("Close returned before the writer goroutine stopped")
	}
	if err == nil || !strings.Contains(err.Error(), "200 records lost") || b.Len() != 0 {
		t.Errorf("all 200 are accounted for as lost: %v, %d pending", err, b.Len())
	}
}
