package events

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"log/slog"
	"math"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/internal/logsample"
	"github.com/refgate/refgate/internal/seglog"
)

// GeoFunc fills g with what is known of ip and reports whether anything is.
type GeoFunc func(ip netip.Addr, g *Geo) bool

// ClickWriter is where click records go; store.Store is one. It must count
// a batch written again under the same id once.
type ClickWriter interface {
	RecordClicks(ctx context.Context, batch string, clicks []attribution.Click) error
}

// Config tunes a Pipeline. Zero values take the defaults in brackets.
type Config struct {
	Dir   string      // the log's directory; required
	Store ClickWriter // where click records go; required
	// Sink takes every event. Nil when the log is itself the event output
	// (Files) or events are off.
	Sink Sink
	// Files makes the log the JSON Lines event files (events-NNNNNN.jsonl,
	// the embedded store's sink): its segments are kept once the store has
	// taken them, and the oldest of those deleted while there are more than
	// FileKeep files, while the files hold more than FileKeepBytes in all,
	// or while the oldest was last written more than FileMaxAge ago. A
	// bound that is 0 is off; a file the store has not taken is never
	// deleted.
	Files         bool
	FileKeep      int
	FileKeepBytes int64
	FileMaxAge    time.Duration
	// SegmentBytes is the size at which a segment is closed and the next
	// begun [MaxBytes/8, at most 16 MiB; Files: 64 MiB].
	SegmentBytes int64
	// MaxBytes bounds what the log holds that the store or the sink has
	// not taken; past it new records are dropped, counted and logged
	// [1 GiB].
	MaxBytes      int64
	QueueSize     int           // records held in memory before they are written to the log [65536]
	Window        int           // records kept in memory for delivery; further behind, a consumer reads the log [65536]
	BatchSize     int           // records per store or sink write [512]
	WriteInterval time.Duration // longest a record waits to be written to the log [1ms]
	SyncInterval  time.Duration // longest a written record waits for its fsync [1s]
	FlushInterval time.Duration // longest a record waits for a full delivery batch [50ms]
	WriteTimeout  time.Duration // one delivery attempt's budget [1s]
	RetryMin      time.Duration // first wait before a failed delivery is tried again [50ms]
	RetryMax      time.Duration // longest wait between tries [5s]
	Source        string        // the CloudEvents source ["refgate"]
	Geo           GeoFunc       // nil: no geo fields
	KeepFullIP    bool
	Logger        *slog.Logger
	Registerer    prometheus.Registerer // nil: a private registry
}

// Pipeline is the one path of everything behind a click and a decision: the
// click record for the store and the event for the sink travel together.
//
// Click and Emit append to an in-memory buffer under a mutex and never
// block. One goroutine takes the buffer every WriteInterval, encodes each
// entry as its event (a CloudEvent, JSON) and appends them to a local
// segment log in one write: a record is in the operating system about a
// millisecond after it was queued, and fsynced within SyncInterval. From
// there each consumer (the store, for click records; the sink, for every
// event) delivers in batches, retried with backoff under the same batch id
// until taken, and then moves its position in the log. A consumer keeps up
// from memory; one that fell behind (an outage) reads the log back. A
// segment is deleted once every consumer took it. On start, what a previous
// run left is delivered first: the batch that was in flight at a crash goes
// again under its id (the store counts it once; events keep their ids).
type Pipeline struct {
	cfg       Config
	log       *seglog.Log
	m         *metrics
	consumers []*consumer

	mu     sync.Mutex
	buf    *buffer // being filled by Click and Emit
	closed atomic.Bool

	// Owned by the writer goroutine.
	spare   *buffer
	es      encodeState
	spans   []span // of each record's JSON in es.js, and subject and id in subj
	subj    []byte
	chunks  chan *chunk // free ones, their memory reused (a sync.Pool would be emptied by every GC)
	dropLog logsample.Sampler

	stop  chan struct{}
	wdone chan struct{}
}

// buffer is one generation of queued entries. Clicks are kept as values,
// their user agent and referer copied into arena, so enqueueing a click
// allocates nothing once the buffer has grown.
type buffer struct {
	items []item
	arena []byte
}

type item struct {
	ev        *Event // a decision event; nil for a click
	click     attribution.Click
	ip        netip.Addr
	ua        span
	ref       span
	site      attribution.FetchSite
	activated bool
}

type span struct{ off, n uint32 }

// Longest user agent and referer kept; a longer one is cut (a referer once
// stripped of its query, fragment and user part).
const (
	maxUserAgent = 512
	maxReferer   = 1024
)

// Consumer names, also the "to" label of the delivery metrics.
const (
	ToStore = "store"
	ToSink  = "sink"
)

// New opens the log, starts delivering what a previous run left and starts
// the pipeline. Close stops it.
func New(cfg Config) (*Pipeline, error) {
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = 1 << 30
	}
	if cfg.SegmentBytes == 0 {
		cfg.SegmentBytes = min(cfg.MaxBytes/8+1, 16<<20)
		if cfg.Files {
			cfg.SegmentBytes = 64 << 20
		}
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&cfg.WriteInterval, time.Millisecond)
	def(&cfg.SyncInterval, time.Second)
	def(&cfg.FlushInterval, 50*time.Millisecond)
	def(&cfg.WriteTimeout, time.Second)
	def(&cfg.RetryMin, 50*time.Millisecond)
	def(&cfg.RetryMax, 5*time.Second)
	if cfg.QueueSize == 0 {
		cfg.QueueSize = 65536
	}
	if cfg.Window == 0 {
		cfg.Window = 65536
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = 512
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
	lc := seglog.Config{Dir: cfg.Dir, Prefix: "spool-", Suffix: ".jsonl", SegmentBytes: cfg.SegmentBytes,
		MaxBytes: cfg.MaxBytes, Readers: []seglog.Reader{{Name: ToStore, Tail: true}}}
	if cfg.Files {
		lc.Prefix, lc.Digits, lc.Retain = "events-", 6, true
		lc.Keep, lc.KeepBytes, lc.MaxAge = cfg.FileKeep, cfg.FileKeepBytes, cfg.FileMaxAge
	}
	if cfg.Sink != nil {
		lc.Readers = append(lc.Readers, seglog.Reader{Name: ToSink})
	}
	l, err := seglog.Open(lc)
	if err != nil {
		return nil, err
	}
	p := &Pipeline{cfg: cfg, log: l, buf: new(buffer), spare: new(buffer), chunks: make(chan *chunk, 64),
		stop: make(chan struct{}), wdone: make(chan struct{})}
	p.m = newMetrics(cfg.Registerer, p)
	store := &consumer{name: ToStore, clicks: true, deliver: func(ctx context.Context, id string, b *batch) error {
		return cfg.Store.RecordClicks(ctx, id, b.clicks)
	}}
	p.consumers = []*consumer{store}
	if cfg.Sink != nil {
		p.consumers = append(p.consumers, &consumer{name: ToSink, deliver: func(ctx context.Context, _ string, b *batch) error {
			_, err := cfg.Sink.Write(ctx, b.recs)
			return err
		}})
	}
	if b := l.Bytes(); b > 0 {
		cfg.Logger.Info("delivering what a previous run left in the log", "bytes", b, "dir", cfg.Dir)
	}
	for _, c := range p.consumers {
		c.start(p)
	}
	go p.write()
	return p, nil
}

// Click queues one click: its record for the store and its event. seen.IP
// is the client IP as seen (it is looked up in GeoIP, then anonymised, off
// the click path); c and what seen holds are copied, the referer without
// its query, fragment and user part (refererParts). It returns false when
// the click was dropped because the queue is full.
func (p *Pipeline) Click(c *attribution.Click, seen *attribution.Seen) bool {
	userAgent, referer := seen.UserAgent, seen.Referer
	if len(userAgent) > maxUserAgent {
		userAgent = userAgent[:maxUserAgent]
	}
	// Stripped while it is copied: the raw header is never written anywhere.
	refHead, refTail := refererParts(referer)
	p.mu.Lock()
	b := p.buf
	if len(b.items) >= p.cfg.QueueSize || p.closed.Load() {
		p.mu.Unlock()
		p.dropped("queue_full", 1)
		return false
	}
	// Filled in place, not built on the stack and copied in: an idle
	// connection's goroutine keeps the stack its deepest click needed.
	b.items = append(b.items, item{})
	it := &b.items[len(b.items)-1]
	it.click, it.ip, it.site, it.activated = *c, seen.IP, seen.FetchSite, seen.UserActivation
	it.ua = span{uint32(len(b.arena)), uint32(len(userAgent))}
	b.arena = append(b.arena, userAgent...)
	it.ref = span{uint32(len(b.arena)), uint32(len(refHead) + len(refTail))}
	b.arena = append(append(b.arena, refHead...), refTail...)
	p.mu.Unlock()
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
	p.mu.Unlock()
	return true
}

// Depth is how many entries wait in memory to be written to the log.
func (p *Pipeline) Depth() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.buf.items)
}

// LogBytes is what the log holds that the store or the sink has not taken.
func (p *Pipeline) LogBytes() int64 { return p.log.Bytes() }

// MaxBytes is the log's bound.
func (p *Pipeline) MaxBytes() int64 { return p.cfg.MaxBytes }

// Delivery is the state of one consumer of the log, for /readyz.
type Delivery struct {
	To string `json:"to"` // store or sink
	// Status is "ok"; "replaying" while it answers and catches up on what
	// it missed; "degraded" while its writes fail.
	Status   string `json:"status"`
	LagBytes int64  `json:"lag_bytes"`
}

// Deliveries returns the state of each consumer.
func (p *Pipeline) Deliveries() []Delivery {
	out := make([]Delivery, len(p.consumers))
	for i, c := range p.consumers {
		out[i] = Delivery{To: c.name, Status: c.status(p), LagBytes: p.log.Lag(c.name)}
	}
	return out
}

// SinkName names the sink: the Sink's name, or "jsonl" when the log is the
// event files, or "" with no sink.
func (p *Pipeline) SinkName() string {
	switch {
	case p.cfg.Sink != nil:
		return p.cfg.Sink.Name()
	case p.cfg.Files:
		return "jsonl"
	}
	return ""
}

// Close stops accepting entries, writes what is queued to the log, then
// makes one more delivery attempt of what the log holds, within ctx. What
// is not delivered stays in the log for the next start. The sink is closed.
func (p *Pipeline) Close(ctx context.Context) error {
	if p.closed.Swap(true) {
		<-p.wdone
		for _, c := range p.consumers {
			<-c.done
		}
		return nil
	}
	close(p.stop)
	<-p.wdone
	for _, c := range p.consumers {
		c.close(ctx)
	}
	var errs []error
	if err := p.log.Close(); err != nil {
		errs = append(errs, err)
	}
	if p.cfg.Sink != nil {
		if err := p.cfg.Sink.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if b := p.log.Bytes(); b > 0 {
		p.cfg.Logger.Warn("records left in the log for the next start", "bytes", b, "dir", p.cfg.Dir)
	}
	return errors.Join(errs...)
}

// write is the writer goroutine: it writes the buffer to the log every
// WriteInterval. Another goroutine fsyncs every SyncInterval, so that a
// slow disk never holds up the writes.
func (p *Pipeline) write() {
	defer close(p.wdone)
	synced := make(chan struct{})
	go func() {
		defer close(synced)
		t := time.NewTicker(p.cfg.SyncInterval)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-t.C:
				p.sync()
				if p.cfg.Files && p.cfg.FileMaxAge > 0 {
					p.log.Trim() // an idle log ages out too
				}
			}
		}
	}()
	tick := time.NewTicker(p.cfg.WriteInterval)
	defer tick.Stop()
	for {
		select {
		case <-p.stop:
			// Click and Emit refuse from now on; one last take catches
			// an entry that was already past its check.
			p.writeBuffer()
			<-synced
			p.sync()
			return
		case <-tick.C:
			p.writeBuffer()
		}
	}
}

func (p *Pipeline) sync() {
	start := time.Now()
	if err := p.log.Sync(); err != nil {
		p.m.logErrors.Inc()
		p.cfg.Logger.Error("cannot fsync the log", "dir", p.cfg.Dir, "err", err)
	}
	p.m.syncDuration.Observe(time.Since(start).Seconds())
}

// writeBuffer takes the buffer, encodes it, appends it to the log and hands
// what was written to the consumers.
func (p *Pipeline) writeBuffer() {
	p.mu.Lock()
	b := p.buf
	p.buf, p.spare = p.spare, nil
	p.mu.Unlock()
	defer func() {
		clear(b.items) // drop references to decision events and strings
		b.items, b.arena = b.items[:0], b.arena[:0]
		p.spare = b
	}()
	if len(b.items) == 0 {
		return
	}
	ch := p.chunk()
	ch.start = p.log.End()
	ch.recs, ch.clicks = slices.Grow(ch.recs, len(b.items)), slices.Grow(ch.clicks, len(b.items))
	p.es.reset()
	p.spans, p.subj = p.spans[:0], p.subj[:0]
	for i := range b.items {
		it := &b.items[i]
		e := it.ev
		if e == nil {
			e = p.clickEvent(b, it)
		}
		start := p.es.js.Len()
		rec, err := p.encode(e)
		if err != nil {
			p.dropped("encode", 1)
			p.cfg.Logger.Error("cannot encode event", "err", err)
			continue
		}
		if p.cfg.Sink != nil { // where the chunk's copy for the sink will find them
			p.spans = append(p.spans, span{uint32(start), uint32(len(rec.JSON))},
				span{uint32(len(p.subj)), uint32(len(rec.Subject))},
				span{uint32(len(p.subj) + len(rec.Subject)), uint32(len(rec.ID))})
			p.subj = append(append(p.subj, rec.Subject...), rec.ID...)
		}
		ch.recs = append(ch.recs, rec)
		if it.ev == nil {
			ch.clicks = append(ch.clicks, it.click)
		} else {
			ch.clicks = append(ch.clicks, attribution.Click{})
		}
	}
	n, err := 0, error(nil)
	// The encoder wrote each record followed by a newline: the log's
	// lines, ready to go in one write.
	ch.ends, n, err = p.log.AppendLines(p.es.js.Bytes(), len(ch.recs), ch.ends)
	p.m.appended.Add(float64(n))
	if err != nil {
		reason := "log_error"
		if errors.Is(err, seglog.ErrFull) {
			reason = "log_full"
		}
		p.dropped(reason, len(ch.recs)-n)
		if p.dropLog.Allow(10 * time.Second) {
			p.cfg.Logger.Error("clicks and events dropped: cannot write them to the log",
				"count", len(ch.recs)-n, "reason", reason, "log_bytes", p.log.Bytes(), "max_bytes", p.cfg.MaxBytes, "err", err)
		}
	}
	ch.recs, ch.clicks = ch.recs[:n], ch.clicks[:n]
	if p.cfg.Sink != nil {
		// The records point into the encoder's reused buffers: the sink's
		// consumer reads them until it delivers them, so the chunk gets
		// its own copy (in memory it reuses).
		js := p.es.js.Bytes()
		ch.mem = append(append(ch.mem[:0], js...), p.subj...)
		subj := ch.mem[len(js):]
		for i := range ch.recs {
			sp, ss, si := p.spans[3*i], p.spans[3*i+1], p.spans[3*i+2]
			ch.recs[i].JSON = ch.mem[sp.off : sp.off+sp.n : sp.off+sp.n]
			ch.recs[i].Subject = unsafe.String(unsafe.SliceData(subj[ss.off:]), int(ss.n))
			ch.recs[i].ID = unsafe.String(unsafe.SliceData(subj[si.off:]), int(si.n))
		}
	} else {
		clear(ch.recs) // only the store's consumer reads the chunk: it takes the clicks
	}
	if n > 0 {
		ch.refs.Add(int32(len(p.consumers)))
		for _, c := range p.consumers {
			c.offer(p, ch)
		}
	}
	p.release(ch) // the writer's own reference
}

// chunk returns an empty chunk, referenced by the writer, reusing the
// memory of one every consumer let go of.
func (p *Pipeline) chunk() *chunk {
	var ch *chunk
	select {
	case ch = <-p.chunks:
	default:
		ch = new(chunk)
	}
	ch.refs.Store(1)
	return ch
}

// release drops one reference to ch; the last makes its memory reusable.
func (p *Pipeline) release(ch *chunk) {
	if ch.refs.Add(-1) > 0 {
		return
	}
	clear(ch.recs)
	clear(ch.clicks) // drop the strings
	ch.ends, ch.recs, ch.clicks, ch.mem = ch.ends[:0], ch.recs[:0], ch.clicks[:0], ch.mem[:0]
	select {
	case p.chunks <- ch:
	default: // enough kept
	}
}

// encode fills in the envelope of e and encodes it into the worker's
// buffer; the record's JSON is valid until the next reset.
func (p *Pipeline) encode(e *Event) (Record, error) {
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
	*e = Event{ID: p.es.id(), Type: TypeClick, Subject: p.es.concat("link/", c.Link), Time: c.At}
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
	case attribution.OutcomeRateLimited:
		d.RateLimited = true
	case attribution.OutcomeGPC:
		d.GPC = true
	case attribution.OutcomeInactive:
		d.Inactive = true
	}
	p.es.site, p.es.activated = string(it.site), it.activated
	d.SecFetchSite, d.UserActivation = &p.es.site, &p.es.activated
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
	d.IP = p.es.ip(anonymized(it.ip, p.cfg.KeepFullIP))
	return e
}

func (p *Pipeline) dropped(reason string, n int) {
	if n <= 0 {
		return
	}
	p.m.dropped.WithLabelValues(reason).Add(float64(n))
}

// chunk is what one write put in the log: its records (the i-th ends at
// ends[i]) with, for clicks, the record for the store. It is read by every
// consumer and never changed.
type chunk struct {
	start  seglog.Pos
	ends   []seglog.Pos
	recs   []Record
	clicks []attribution.Click // Link == "" for a decision event
	mem    []byte              // the records' JSON and subjects, with a sink
	refs   atomic.Int32        // the writer's and each consumer's that has not let go
}

// recStart is where record i of ch starts.
func (ch *chunk) recStart(i int) seglog.Pos {
	if i == 0 {
		return ch.start
	}
	return ch.ends[i-1]
}

// batch is what a consumer delivers at once: the records in [from, to).
type batch struct {
	from, to seglog.Pos
	recs     []Record
	clicks   []attribution.Click
	arena    []byte // lines read back from the log
}

func (b *batch) reset(from seglog.Pos) {
	clear(b.recs)
	clear(b.clicks)
	*b = batch{from: from, to: from, recs: b.recs[:0], clicks: b.clicks[:0], arena: b.arena[:0]}
}

func (b *batch) add(clicksOnly bool, rec Record, c attribution.Click, end seglog.Pos) bool {
	b.to = end
	if clicksOnly {
		if c.Link == "" {
			return false
		}
		b.clicks = append(b.clicks, c)
		return true
	}
	b.recs = append(b.recs, rec)
	return true
}

func (b *batch) len() int { return max(len(b.recs), len(b.clicks)) }

// consumer delivers the log to one destination.
type consumer struct {
	name    string
	clicks  bool // takes click records only
	deliver func(ctx context.Context, id string, b *batch) error

	mu     sync.Mutex
	mem    []*chunk // what the writer handed over, oldest first
	held   []*chunk // passed, let go of once the batch is delivered
	memIdx int      // records of mem[0] already delivered or passed
	memN   int      // records in mem from memIdx on

	next     seglog.Pos // everything before it is taken; written under mu (behind reads it), read by the consumer without
	b        batch      // being delivered while inflight
	id       string     // b's batch id
	inflight bool
	stopped  bool
	up       atomic.Bool
	backoff  time.Duration
	warned   logsample.Sampler
	kick     chan struct{}
	stop     chan struct{}
	done     chan struct{}
	drain    atomic.Pointer[context.Context]
}

func (c *consumer) start(p *Pipeline) {
	c.kick = make(chan struct{}, 1)
	c.stop = make(chan struct{})
	c.done = make(chan struct{})
	c.up.Store(true)
	c.m(p).up.Set(1)
	go c.run(p)
}

func (c *consumer) m(p *Pipeline) *consumerMetrics { return p.m.consumers[c.name] }

// offer hands a chunk written to the log to the consumer, unless its
// window is full: then the consumer reads it back from the log.
func (c *consumer) offer(p *Pipeline, ch *chunk) {
	c.mu.Lock()
	if c.memN+len(ch.recs) > p.cfg.Window {
		c.mu.Unlock()
		p.release(ch)
		return
	}
	c.mem = append(c.mem, ch)
	c.memN += len(ch.recs)
	full := c.memN >= p.cfg.BatchSize
	c.mu.Unlock()
	if full {
		select {
		case c.kick <- struct{}{}:
		default:
		}
	}
}

func (c *consumer) status(p *Pipeline) string {
	switch {
	case !c.up.Load():
		return "degraded"
	case p.log.Lag(c.name) > 0 && c.behind():
		return "replaying"
	}
	return "ok"
}

// behind reports whether the consumer reads the log rather than memory.
func (c *consumer) behind() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.mem) == 0 || c.mem[0].recStart(c.memIdx) != c.next
}

func (c *consumer) run(p *Pipeline) {
	defer close(c.done)
	st := p.log.State(c.name)
	c.mu.Lock()
	c.next = st.Pos
	c.mu.Unlock()
	if pend := st.Pending; pend != nil {
		// The batch in flight when the previous run stopped: the same
		// records again under the same id.
		c.b.reset(pend.From)
		if _, err := p.log.Read(pend.From, pend.To, math.MaxInt, c.decoder()); err != nil {
			p.m.logErrors.Inc()
			p.cfg.Logger.Error("cannot read the log", "to", c.name, "err", err)
		}
		c.b.to, c.id, c.inflight = pend.To, pend.ID, true
		c.deliverAll(p, true)
	}
	tick := time.NewTicker(p.cfg.FlushInterval)
	defer tick.Stop()
	for !c.stopped {
		select {
		case <-c.stop:
			c.stopped = true
		case <-tick.C:
		case <-c.kick:
		}
		// Once stopped, one more attempt at everything the log holds;
		// what is not delivered stays for the next start.
		c.deliverAll(p, !c.stopped)
	}
}

// deliverAll delivers batches until nothing is left or, unless retry is
// set or until the consumer is stopped, an attempt fails. A batch that
// failed stays in flight, under its id, for the next call.
func (c *consumer) deliverAll(p *Pipeline, retry bool) {
	for {
		if !c.inflight {
			if !c.fill(p) {
				return
			}
			c.id, c.inflight = newBatchID(), true
		}
		if !c.send(p, retry) {
			return
		}
	}
}

// fill forms the next batch from c.next on, from memory when the
// consumer keeps up, from the log otherwise. It reports whether the batch
// covers anything.
func (c *consumer) fill(p *Pipeline) bool {
	c.b.reset(c.next)
	max := p.cfg.BatchSize
	c.mu.Lock()
	for len(c.mem) > 0 && c.b.len() < max {
		ch := c.mem[0]
		at := ch.recStart(c.memIdx)
		if c.next.Less(at) && c.b.to == c.next {
			break // a gap before the window: read from the log
		}
		if at.Less(c.b.to) { // already read from the log
			c.memIdx++
			c.memN--
		} else if at == c.b.to {
			c.b.add(c.clicks, ch.recs[c.memIdx], ch.clicks[c.memIdx], ch.ends[c.memIdx])
			c.memIdx++
			c.memN--
		} else {
			break
		}
		if c.memIdx == len(ch.recs) {
			// The batch may point into it until it is delivered.
			c.held = append(c.held, ch)
			c.mem[0] = nil
			c.mem, c.memIdx = c.mem[1:], 0
		}
	}
	limit := seglog.Pos{Seq: math.MaxInt}
	if len(c.mem) > 0 {
		limit = c.mem[0].recStart(c.memIdx)
	}
	c.mu.Unlock()
	if c.b.to != c.next || !c.next.Less(limit) {
		return c.b.to != c.next
	}
	// Behind the window (an outage, a restart): read the log, as far as
	// the window, in one batch.
	limit = min2(limit, p.log.End())
	n := c.b.len()
	if _, err := p.log.Read(c.next, limit, max, c.decoder()); err != nil {
		p.m.logErrors.Inc()
		p.cfg.Logger.Error("cannot read the log", "to", c.name, "err", err)
		return false
	}
	c.m(p).replayed.Add(float64(c.b.len() - n))
	return c.b.to != c.next
}

func min2(a, b seglog.Pos) seglog.Pos {
	if b.Less(a) {
		return b
	}
	return a
}

// decoder returns the Read callback adding a line of the log to c.b. A
// sink's record keeps its line, copied into the batch's arena.
func (c *consumer) decoder() func(line []byte, end seglog.Pos) bool {
	return func(line []byte, end seglog.Pos) bool {
		c.b.to = end
		rec, click, err := decodeLine(line)
		if err != nil || rec.ID == "" {
			return false // a torn line
		}
		if !c.clicks {
			at := len(c.b.arena)
			c.b.arena = append(c.b.arena, line...)
			rec.JSON = c.b.arena[at:len(c.b.arena):len(c.b.arena)]
			rec.Subject = strings.Clone(rec.Subject)
		}
		return c.b.add(c.clicks, rec, click, end)
	}
}

// send delivers c.b under c.id, retrying with backoff while retry is set
// and the consumer is not stopped, then commits the position. It reports
// whether the batch was taken.
func (c *consumer) send(p *Pipeline, retry bool) bool {
	m, id := c.m(p), c.id
	if c.b.len() == 0 { // nothing this consumer takes: move on
		c.commit(p)
		return true
	}
	if err := p.log.Begin(c.name, seglog.Pending{From: c.b.from, To: c.b.to, ID: id}); err != nil {
		p.m.logErrors.Inc()
		p.cfg.Logger.Error("cannot write the log's cursor file", "err", err)
	}
	m.batchSize.Observe(float64(c.b.len()))
	for {
		ctx, cancel := c.attemptCtx(p)
		start := time.Now()
		err := c.deliver(ctx, id, &c.b)
		cancel()
		m.duration.Observe(time.Since(start).Seconds())
		if err == nil {
			m.delivered.Add(float64(c.b.len()))
			if !c.up.Swap(true) {
				m.up.Set(1)
				p.cfg.Logger.Info("delivering again", "to", c.name, "lag_bytes", p.log.Lag(c.name))
			}
			c.backoff = 0
			c.commit(p)
			return true
		}
		m.errors.Inc()
		if c.up.Swap(false) || c.warned.Allow(10*time.Second) {
			m.up.Set(0)
			p.cfg.Logger.Warn("delivery failing; records wait in the log", "to", c.name,
				"batch", id, "records", c.b.len(), "lag_bytes", p.log.Lag(c.name), "err", err)
		}
		c.backoff = min(max(2*c.backoff, p.cfg.RetryMin), p.cfg.RetryMax)
		if !retry {
			return false
		}
		select {
		case <-time.After(c.backoff):
		case <-c.stop:
			c.stopped, retry = true, false // one more attempt, then stop
		}
	}
}

// attemptCtx bounds one delivery attempt: WriteTimeout, and once the
// pipeline is closing, Close's context too.
func (c *consumer) attemptCtx(p *Pipeline) (context.Context, context.CancelFunc) {
	parent := context.Background()
	if d := c.drain.Load(); d != nil {
		parent = *d
	}
	return context.WithTimeout(parent, p.cfg.WriteTimeout)
}

func (c *consumer) commit(p *Pipeline) {
	if err := p.log.Commit(c.name, c.b.to); err != nil {
		p.m.logErrors.Inc()
		p.cfg.Logger.Error("cannot write the log's cursor file", "err", err)
	}
	c.mu.Lock() // behind reads next from other goroutines
	c.next = c.b.to
	c.mu.Unlock()
	c.inflight = false
	for i, ch := range c.held {
		p.release(ch)
		c.held[i] = nil
	}
	c.held = c.held[:0]
}

// close stops the consumer after one more delivery attempt within ctx and
// waits for it.
func (c *consumer) close(ctx context.Context) {
	c.drain.Store(&ctx)
	close(c.stop)
	<-c.done
}

// newBatchID returns 96 random bits, URL-safe base64: unique across every
// instance sharing a store without coordination, and short, since a Redis
// store keeps it in one key per link of the batch.
func newBatchID() string {
	var b [12]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// LogDir is the log's directory under the data dir: the event files on
// the embedded store, the spool on Redis.
func LogDir(dataDir string, files bool) string {
	if files {
		return filepath.Join(dataDir, FileDir)
	}
	return filepath.Join(dataDir, "spool")
}
