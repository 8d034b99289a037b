package events

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/refgate/refgate/attribution"
)

// GeoFunc fills g with what is known of ip and reports whether anything is.
type GeoFunc func(ip netip.Addr, g *Geo) bool

// Config tunes a Pipeline. Zero values take the defaults in brackets.
type Config struct {
	Sink          Sink          // required
	SpoolDir      string        // required
	SpoolMaxBytes int64         // [1 GiB]
	QueueSize     int           // events held in memory [65536]
	BatchSize     int           // events per sink write [512]
	FlushInterval time.Duration // longest an event waits for a full batch [50ms]
	WriteTimeout  time.Duration // one sink write's budget [1s]
	RetryMin      time.Duration // first wait before trying a failed sink again [250ms]
	RetryMax      time.Duration // longest wait between tries [5s]
	Source        string        // the CloudEvents source ["refgate"]
	Geo           GeoFunc       // nil: no geo fields
	KeepFullIP    bool
	Logger        *slog.Logger
	Registerer    prometheus.Registerer // nil: a private registry
}

// Pipeline carries events from the click path and the API to the sink:
// Click and Emit append to an in-memory buffer and never block; one
// goroutine takes the buffer every FlushInterval (or when a batch is full),
// encodes it and writes it to the sink. A batch the sink does not take goes
// to the spool, and while the spool holds anything new batches join it
// there, so replay keeps the order events were made in. The spool is
// replayed when the sink answers again.
type Pipeline struct {
	cfg   Config
	spool *Spool
	m     *metrics

	mu   sync.Mutex
	buf  *buffer // being filled by Click and Emit
	kick chan struct{}

	closed  atomic.Bool
	stop    chan struct{}
	done    chan struct{}
	stopCtx atomic.Pointer[context.Context]

	// Owned by the worker goroutine.
	spare   *buffer
	recs    []Record
	es      encodeState
	healthy atomic.Bool
	retryAt time.Time
	backoff time.Duration
	logged  time.Time
}

// buffer is one generation of queued events. Clicks are kept as values,
// their user agent and referer copied into arena, so enqueueing a click
// allocates nothing once the buffer has grown.
type buffer struct {
	items []item
	arena []byte
}

type item struct {
	ev    *Event // a decision event; nil for a click
	click attribution.Click
	ip    netip.Addr
	ua    span
	ref   span
}

type span struct{ off, n uint32 }

// Longest user agent and referer kept; a longer one is cut.
const (
	maxUserAgent = 512
	maxReferer   = 1024
)

// New opens the spool (replaying what a previous run left) and starts the
// pipeline. Close stops it.
func New(cfg Config) (*Pipeline, error) {
	if cfg.SpoolMaxBytes == 0 {
		cfg.SpoolMaxBytes = 1 << 30
	}
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
		cfg.WriteTimeout = time.Second
	}
	if cfg.RetryMin == 0 {
		cfg.RetryMin = 250 * time.Millisecond
	}
	if cfg.RetryMax == 0 {
		cfg.RetryMax = 5 * time.Second
	}
	if cfg.Source == "" {
		cfg.Source = "refgate"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	sp, err := OpenSpool(cfg.SpoolDir, cfg.SpoolMaxBytes)
	if err != nil {
		return nil, err
	}
	p := &Pipeline{cfg: cfg, spool: sp, buf: new(buffer), spare: new(buffer),
		kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	p.m = newMetrics(cfg.Registerer, p)
	p.healthy.Store(true)
	if b := sp.Bytes(); b > 0 {
		cfg.Logger.Info("replaying the event spool a previous run left", "bytes", b)
	}
	go p.run()
	return p, nil
}

// Click queues the event of one click. ip is the client IP as seen (it is
// looked up in GeoIP, then anonymised, off the click path); userAgent and
// referer are copied. It returns false when the event was dropped because
// the queue is full.
func (p *Pipeline) Click(c attribution.Click, ip netip.Addr, userAgent, referer []byte) bool {
	if len(userAgent) > maxUserAgent {
		userAgent = userAgent[:maxUserAgent]
	}
	if len(referer) > maxReferer {
		referer = referer[:maxReferer]
	}
	p.mu.Lock()
	b := p.buf
	if len(b.items) >= p.cfg.QueueSize || p.closed.Load() {
		p.mu.Unlock()
		p.dropped("queue_full", 1)
		return false
	}
	it := item{click: c, ip: ip}
	it.ua = span{uint32(len(b.arena)), uint32(len(userAgent))}
	b.arena = append(b.arena, userAgent...)
	it.ref = span{uint32(len(b.arena)), uint32(len(referer))}
	b.arena = append(b.arena, referer...)
	b.items = append(b.items, it)
	n := len(b.items)
	p.mu.Unlock()
	if n == p.cfg.BatchSize {
		p.wake()
	}
	return true
}

// Emit queues a decision event. Its ID, Source, SpecVersion and
// DataContentType are filled in on the way out. It returns false when the
// event was dropped because the queue is full.
func (p *Pipeline) Emit(e *Event) bool {
	p.mu.Lock()
	if len(p.buf.items) >= p.cfg.QueueSize || p.closed.Load() {
		p.mu.Unlock()
		p.dropped("queue_full", 1)
		return false
	}
	p.buf.items = append(p.buf.items, item{ev: e})
	n := len(p.buf.items)
	p.mu.Unlock()
	if n == p.cfg.BatchSize {
		p.wake()
	}
	return true
}

func (p *Pipeline) wake() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// Depth is how many events wait in memory.
func (p *Pipeline) Depth() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.buf.items)
}

// SpoolBytes is how much the spool holds.
func (p *Pipeline) SpoolBytes() int64 { return p.spool.Bytes() }

// Status is the sink's state for /readyz: "ok"; "replaying" while the sink
// answers and the spool is being replayed; "degraded" while the sink fails
// and events are spooled.
func (p *Pipeline) Status() string {
	switch {
	case !p.healthy.Load():
		return "degraded"
	case !p.spool.Empty():
		return "replaying"
	}
	return "ok"
}

// SinkName names the sink.
func (p *Pipeline) SinkName() string { return p.cfg.Sink.Name() }

// Close stops accepting events, then delivers what is queued and replays the
// spool to the sink, for as long as ctx allows and the sink answers. What
// is not delivered stays in the spool for the next start. The sink is
// closed.
func (p *Pipeline) Close(ctx context.Context) error {
	if p.closed.Swap(true) {
		<-p.done
		return nil
	}
	p.stopCtx.Store(&ctx)
	close(p.stop)
	<-p.done
	err := p.spool.Close()
	if serr := p.cfg.Sink.Close(); err == nil {
		err = serr
	}
	if b := p.spool.Bytes(); b > 0 {
		p.cfg.Logger.Warn("events left in the spool for the next start", "bytes", b)
	}
	return err
}

func (p *Pipeline) run() {
	defer close(p.done)
	t := time.NewTicker(p.cfg.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			ctx := *p.stopCtx.Load()
			p.flush(ctx)
			for !p.spool.Empty() && ctx.Err() == nil && p.replay(ctx, true) {
			}
			return
		case <-t.C:
		case <-p.kick:
		}
		p.flush(context.Background())
		if !p.spool.Empty() {
			p.replay(context.Background(), false)
		}
	}
}

// flush takes the buffer, encodes it and delivers it.
func (p *Pipeline) flush(ctx context.Context) {
	p.mu.Lock()
	b := p.buf
	p.buf, p.spare = p.spare, nil
	p.mu.Unlock()
	defer func() {
		clear(b.items) // drop references to decision events
		b.items, b.arena = b.items[:0], b.arena[:0]
		p.spare = b
	}()
	for i := 0; i < len(b.items); i += p.cfg.BatchSize {
		p.recs = p.recs[:0]
		p.es.reset() // the previous chunk's records are delivered or spooled
		for _, it := range b.items[i:min(i+p.cfg.BatchSize, len(b.items))] {
			rec, err := p.encode(b, &it)
			if err != nil {
				p.dropped("encode", 1)
				p.cfg.Logger.Error("cannot encode event", "err", err)
				continue
			}
			p.recs = append(p.recs, rec)
		}
		p.deliver(ctx, p.recs)
	}
}

func (p *Pipeline) encode(b *buffer, it *item) (Record, error) {
	e := it.ev
	if e == nil {
		e = p.clickEvent(b, it)
	}
	e.SpecVersion, e.Source, e.DataContentType = SpecVersion, p.cfg.Source, "application/json"
	if e.ID == "" {
		e.ID = NewID()
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	e.Time = e.Time.UTC()
	js, err := p.es.json(e)
	return Record{ID: e.ID, Subject: e.Subject, JSON: js}, err
}

// clickEvent fills the worker's reusable click event from it. The event,
// and the strings it points to in b's arena and the encode state, are only
// valid until it is encoded.
func (p *Pipeline) clickEvent(b *buffer, it *item) *Event {
	c := &it.click
	e := &p.es.click
	*e = Event{Type: TypeClick, Subject: p.es.concat("link/", c.Link), Time: c.At}
	d := &e.Data
	*d = Data{Program: c.Program, Promoter: c.Promoter, Link: c.Link, ClickID: c.ID, Visitor: c.Visitor,
		Outcome: string(c.Outcome), Model: string(c.Model),
		UserAgent: b.view(it.ua), Referer: b.view(it.ref)}
	switch c.Outcome {
	case attribution.OutcomeBot:
		d.Bot = true
	case attribution.OutcomeSuspect:
		d.Suspect = true
	case attribution.OutcomeSelfClick:
		d.SelfClick = true
	}
	if !c.ExpiresAt.IsZero() {
		p.es.expires = c.ExpiresAt.UTC()
		d.ExpiresAt = &p.es.expires
	}
	if p.cfg.Geo != nil && it.ip.IsValid() {
		p.es.geo = Geo{}
		if p.cfg.Geo(it.ip.Unmap(), &p.es.geo) { // before anonymising: the full IP locates best
			d.Geo = &p.es.geo
		}
	}
	d.IP = Anonymize(it.ip, p.cfg.KeepFullIP)
	return e
}

// deliver writes recs to the sink, or to the spool when the sink failed
// lately or the spool already holds events.
func (p *Pipeline) deliver(ctx context.Context, recs []Record) {
	if len(recs) == 0 {
		return
	}
	if p.spool.Empty() && (p.healthy.Load() || !time.Now().Before(p.retryAt)) {
		failed, err := p.write(ctx, recs)
		if err == nil {
			return
		}
		recs = failed
	}
	p.toSpool(recs)
}

// write tries the sink once and keeps the sink's health up to date.
func (p *Pipeline) write(ctx context.Context, recs []Record) ([]Record, error) {
	wctx, cancel := context.WithTimeout(ctx, p.cfg.WriteTimeout)
	defer cancel()
	start := time.Now()
	failed, err := p.cfg.Sink.Write(wctx, recs)
	p.m.writeDuration.Observe(time.Since(start).Seconds())
	if err == nil {
		p.m.delivered.Add(float64(len(recs)))
		p.setHealthy(true, nil)
		return nil, nil
	}
	if failed == nil {
		failed = recs
	}
	p.m.delivered.Add(float64(len(recs) - len(failed)))
	p.m.writeErrors.Inc()
	p.setHealthy(false, err)
	return failed, err
}

func (p *Pipeline) setHealthy(ok bool, err error) {
	was := p.healthy.Swap(ok)
	if ok {
		p.backoff = 0
		if !was {
			p.cfg.Logger.Info("event sink answers again", "sink", p.cfg.Sink.Name(), "spool_bytes", p.spool.Bytes())
		}
		return
	}
	p.backoff = min(max(p.backoff*2, p.cfg.RetryMin), p.cfg.RetryMax)
	p.retryAt = time.Now().Add(p.backoff)
	if was || time.Since(p.logged) > 10*time.Second {
		p.logged = time.Now()
		p.cfg.Logger.Warn("event sink failing; spooling events to disk", "sink", p.cfg.Sink.Name(),
			"err", err, "retry_in", p.backoff)
	}
}

func (p *Pipeline) toSpool(recs []Record) {
	n, err := p.spool.Append(recs)
	p.m.spooled.Add(float64(n))
	if err != nil {
		reason := "spool_error"
		if errors.Is(err, ErrFull) {
			reason = "spool_full"
		}
		p.dropped(reason, len(recs)-n)
		p.cfg.Logger.Error("events dropped: cannot spool them", "count", len(recs)-n, "err", err)
	}
}

// replay sends spooled events to the sink, oldest first, until the spool is
// empty, the sink fails, or (unless draining) a short time slice is used up,
// so that new events keep being taken from the queue. It reports whether it
// made progress.
func (p *Pipeline) replay(ctx context.Context, draining bool) bool {
	if !p.healthy.Load() && time.Now().Before(p.retryAt) {
		if !draining {
			return false
		}
		select { // draining: wait for the next try, within ctx
		case <-time.After(time.Until(p.retryAt)):
		case <-ctx.Done():
			return false
		}
	}
	deadline := time.Now().Add(p.cfg.FlushInterval)
	for !p.spool.Empty() {
		recs, pos, err := p.spool.Peek(p.cfg.BatchSize)
		if err != nil {
			p.cfg.Logger.Error("cannot read the event spool", "err", err)
			return false
		}
		if len(recs) > 0 {
			p.m.retried.Add(float64(len(recs)))
			if _, err := p.write(ctx, recs); err != nil {
				// Nothing is consumed: the records that did land are
				// sent again, with the same ids, next time.
				return false
			}
		}
		p.spool.Advance(pos)
		if !draining && time.Now().After(deadline) {
			break
		}
	}
	return true
}

func (p *Pipeline) dropped(reason string, n int) {
	if n <= 0 {
		return
	}
	p.m.dropped.WithLabelValues(reason).Add(float64(n))
}
