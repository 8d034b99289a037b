package redirect

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/refgate/refgate/attribution"
)

// ClickWriter is where batches of click records go. store.Store satisfies
// it.
type ClickWriter interface {
	RecordClicks(ctx context.Context, clicks []attribution.Click) error
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

// Batcher carries click records from the click path to the store: Enqueue
// never blocks, one goroutine writes batches when one is full or on a tick,
// a failed batch is retried with backoff until it is written, and Close
// writes everything still queued.
type Batcher struct {
	w   ClickWriter
	cfg BatcherConfig
	ch  chan attribution.Click

	pending  atomic.Int64 // accepted and not yet written or dropped
	stopping atomic.Bool
	stop     chan struct{}
	done     chan struct{}
	once     sync.Once
	closeCtx atomic.Pointer[context.Context]
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
	b := &Batcher{w: w, cfg: cfg, ch: make(chan attribution.Click, cfg.QueueSize),
		stop: make(chan struct{}), done: make(chan struct{})}
	cfg.Metrics.queueDepthFn = func() float64 { return float64(b.Len()) }
	go b.run()
	return b
}

// Enqueue queues a copy of c. It returns false, and counts a drop, when the
// queue is full or the batcher is closing: the click path never waits.
func (b *Batcher) Enqueue(c *attribution.Click) bool {
	if b.stopping.Load() {
		b.cfg.Metrics.dropped.Inc()
		return false
	}
	b.pending.Add(1) // before the send, so a fast flush cannot go below zero
	select {
	case b.ch <- *c:
		return true
	default:
		b.pending.Add(-1)
		b.cfg.Metrics.dropped.Inc()
		return false
	}
}

// Len returns the number of records accepted and not yet written: queued,
// or in the batch being assembled or retried.
func (b *Batcher) Len() int { return int(b.pending.Load()) }

func (b *Batcher) run() {
	defer close(b.done)
	batch := make([]attribution.Click, 0, b.cfg.BatchSize)
	tick := time.NewTicker(b.cfg.FlushInterval)
	defer tick.Stop()
	for {
		select {
		case c := <-b.ch:
			batch = append(batch, c)
			if len(batch) >= b.cfg.BatchSize {
				batch = b.flush(batch)
			}
		case <-tick.C:
			if len(batch) > 0 {
				batch = b.flush(batch)
			}
		case <-b.stop:
			// Drain: everything enqueued before Close is written.
			for {
				select {
				case c := <-b.ch:
					batch = append(batch, c)
					if len(batch) >= b.cfg.BatchSize {
						batch = b.flush(batch)
					}
					continue
				default:
				}
				break
			}
			if len(batch) > 0 {
				b.flush(batch)
			}
			return
		}
	}
}

// flush writes batch, retrying with backoff until it succeeds or, once
// closing, until Close's deadline. It returns the emptied batch for reuse.
func (b *Batcher) flush(batch []attribution.Click) []attribution.Click {
	b.cfg.Metrics.batchSize.Observe(float64(len(batch)))
	backoff := 50 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(context.Background(), b.cfg.WriteTimeout)
		err := b.w.RecordClicks(ctx, batch)
		cancel()
		if err == nil {
			b.pending.Add(-int64(len(batch)))
			return batch[:0]
		}
		b.cfg.Metrics.flushErrors.Inc()
		b.cfg.Logger.Warn("cannot write click records; will retry", "records", len(batch), "err", err)
		var deadline <-chan struct{}
		if p := b.closeCtx.Load(); p != nil {
			deadline = (*p).Done()
		}
		select {
		case <-time.After(backoff):
		case <-deadline:
			b.cfg.Metrics.dropped.Add(float64(len(batch)))
			b.pending.Add(-int64(len(batch)))
			b.cfg.Logger.Error("shutdown deadline passed; click records lost", "records", len(batch), "err", err)
			return batch[:0]
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// Close stops accepting records and waits until everything queued has been
// written, or until ctx is done (then what is left is counted as dropped and
// logged). It is safe to call twice.
func (b *Batcher) Close(ctx context.Context) error {
	b.once.Do(func() {
		b.closeCtx.Store(&ctx)
		b.stopping.Store(true)
		close(b.stop)
	})
	select {
	case <-b.done:
		return nil
	case <-ctx.Done():
		return errors.Join(errors.New("click queue not drained"), ctx.Err())
	}
}
