package redirect

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/refgate/refgate/attribution"
)

// ClickWriter is where batches of click records go. store.Store satisfies
// it: it counts a batch written again under the same id once.
type ClickWriter interface {
	RecordClicks(ctx context.Context, batch string, clicks []attribution.Click) error
}

var _ ClickQueue = (*Batcher)(nil)

// BatcherConfig tunes a Batcher. Zero values take the defaults in brackets.
type BatcherConfig struct {
	QueueSize     int           // click records held in memory [65536]
	BatchSize     int           // records per store write [512]
	FlushInterval time.Duration // longest a record waits for a full batch [50ms]
	WriteTimeout  time.Duration // one write attempt's budget [2s]
	Logger        *slog.Logger
	Metrics       *Metrics
}

// Batcher carries click records from the click path to the store. Enqueue
// appends to an in-memory buffer under a mutex and never blocks or wakes
// anyone, except once per full batch; one goroutine takes the whole buffer on
// a tick or when a batch is full and writes it in batches. A failed batch is
// retried with backoff until it is written; Close writes everything pending.
// Each batch gets an id when it is formed and keeps it on every retry, so the
// store counts a batch whose first write did land (a lost reply) only once.
//
// Why not a channel: a channel of ~200-byte records wakes the receiver on
// nearly every send and copies each record into a large ring that falls out
// of the CPU cache; BenchmarkClick measured both.
type Batcher struct {
	w   ClickWriter
	cfg BatcherConfig

	mu   sync.Mutex
	buf  []attribution.Click // pending, not yet taken by the writer
	kick chan struct{}       // cap 1: a batch is full

	pending  atomic.Int64 // accepted and not yet written or dropped
	lost     atomic.Int64 // given up at Close's deadline
	stopping atomic.Bool
	stop     chan struct{}
	done     chan struct{}
	once     sync.Once
	// abort ends every write, also one in flight, once Close's context is
	// done: no attempt outlives Close's deadline.
	abort       context.Context
	abortCancel context.CancelFunc
}

// NewBatcher starts a batcher writing to w. Close stops it.
func NewBatcher(w ClickWriter, cfg BatcherConfig) *Batcher {
	if cfg.QueueSize == 0 {
		cfg.QueueSize = 65536
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = 512
	}
	if cfg.FlushInterval == 0 {
		cfg.FlushInterval = 50 * time.Millisecond
	}
	if cfg.WriteTimeout == 0 {
		cfg.WriteTimeout = 2 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(prometheus.NewRegistry())
	}
	b := &Batcher{w: w, cfg: cfg, kick: make(chan struct{}, 1),
		stop: make(chan struct{}), done: make(chan struct{})}
	b.abort, b.abortCancel = context.WithCancel(context.Background())
	cfg.Metrics.queueDepthFn = func() float64 { return float64(b.Len()) }
	go b.run()
	return b
}

// Enqueue queues c. It returns false, and counts a drop, when QueueSize
// records are already pending or the batcher is closing: the click path
// never waits.
func (b *Batcher) Enqueue(c attribution.Click) bool {
	if b.stopping.Load() {
		b.cfg.Metrics.dropped.Inc()
		return false
	}
	if b.pending.Add(1) > int64(b.cfg.QueueSize) {
		b.pending.Add(-1)
		b.cfg.Metrics.dropped.Inc()
		return false
	}
	b.mu.Lock()
	b.buf = append(b.buf, c)
	n := len(b.buf)
	b.mu.Unlock()
	if n == b.cfg.BatchSize {
		select {
		case b.kick <- struct{}{}:
		default:
		}
	}
	return true
}

// Len returns the number of records accepted and not yet written: queued,
// or in a batch being written or retried.
func (b *Batcher) Len() int { return int(b.pending.Load()) }

func (b *Batcher) run() {
	defer close(b.done)
	tick := time.NewTicker(b.cfg.FlushInterval)
	defer tick.Stop()
	var spare []attribution.Click
	for {
		select {
		case <-tick.C:
		case <-b.kick:
		case <-b.stop:
			// Enqueue refuses from now on; take until nothing is left, to
			// catch an Enqueue that was already past its check.
			for recs := b.take(nil); len(recs) > 0; recs = b.take(nil) {
				b.writeAll(recs)
			}
			return
		}
		spare = b.writeAll(b.take(spare))
	}
}

// take swaps the pending buffer for spare (emptied) and returns it.
func (b *Batcher) take(spare []attribution.Click) []attribution.Click {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := b.buf
	b.buf = spare[:0]
	return out
}

// writeAll writes recs in batches of BatchSize and returns recs emptied for
// reuse.
func (b *Batcher) writeAll(recs []attribution.Click) []attribution.Click {
	for i := 0; i < len(recs); i += b.cfg.BatchSize {
		b.flush(recs[i:min(i+b.cfg.BatchSize, len(recs))])
	}
	clear(recs) // drop string references until the buffer is refilled
	return recs[:0]
}

// flush writes batch under a new id, retrying with the same id and backoff
// until it succeeds or, once closing, until Close's deadline.
func (b *Batcher) flush(batch []attribution.Click) {
	b.cfg.Metrics.batchSize.Observe(float64(len(batch)))
	id := newBatchID()
	backoff := 50 * time.Millisecond
	for {
		err := b.abort.Err()
		if err == nil {
			ctx, cancel := context.WithTimeout(b.abort, b.cfg.WriteTimeout)
			err = b.w.RecordClicks(ctx, id, batch)
			cancel()
			if err == nil {
				b.pending.Add(-int64(len(batch)))
				return
			}
			b.cfg.Metrics.flushErrors.Inc()
			b.cfg.Logger.Warn("cannot write click records; will retry", "batch", id, "records", len(batch), "err", err)
		}
		if b.abort.Err() == nil {
			select {
			case <-time.After(backoff):
				backoff = min(2*backoff, 2*time.Second)
				continue
			case <-b.abort.Done():
			}
		}
		b.cfg.Metrics.dropped.Add(float64(len(batch)))
		b.pending.Add(-int64(len(batch)))
		b.lost.Add(int64(len(batch)))
		b.cfg.Logger.Error("shutdown deadline passed; click records lost", "batch", id, "records", len(batch), "err", err)
		return
	}
}

// newBatchID returns 96 random bits, URL-safe base64: unique across every
// instance sharing a store without coordination, and short, since a Redis
// store keeps it in one key per link of the batch.
func newBatchID() string {
	var b [12]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// Close stops accepting records and waits until everything pending has been
// written, or until ctx is done (then what is left is counted as dropped and
// logged, and the error says how many). Either way it returns only once the
// writer goroutine has stopped. It is safe to call twice.
func (b *Batcher) Close(ctx context.Context) error {
	b.once.Do(func() {
		context.AfterFunc(ctx, b.abortCancel)
		b.stopping.Store(true)
		close(b.stop)
	})
	// The writer stops trying once ctx is done, so this wait is bounded by
	// ctx too; Close returns only once the goroutine it started is gone.
	<-b.done
	b.abortCancel()
	if n := b.lost.Load(); n > 0 {
		return errors.Join(fmt.Errorf("click queue not drained: %d records lost", n), ctx.Err())
	}
	return nil
}
