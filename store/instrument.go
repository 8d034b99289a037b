package store

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/refgate/refgate/attribution"
)

// Instrument wraps s so that every call is timed in
// refgate_store_duration_seconds{op} and every failure counted in
// refgate_store_errors_total{op}. ErrNotFound, ErrExists, ErrEntryConflict,
// ErrPaidConflict and ErrBadCursor are answers, not failures. op is the
// method name in snake case: a fixed set. A write the store refuses (a
// RefusedError) is also counted in refgate_store_write_errors_total{reason},
// and WriteHealth reports the store's writes refused until one is taken
// again.
func Instrument(s Store, reg prometheus.Registerer) *Instrumented {
	f := promauto.With(reg)
	refused := f.NewCounterVec(prometheus.CounterOpts{
		Name: "refgate_store_write_errors_total",
		Help: "Store writes refused while the store answers, by reason: oom (Redis out of memory under noeviction), readonly (a replica), misconf (a failed save stops writes), noreplicas, noperm (the ACL).",
	}, []string{"reason"})
	byReason := map[string]prometheus.Counter{}
	for _, r := range RefusalReasons {
		byReason[r] = refused.WithLabelValues(r)
	}
	errs := f.NewCounterVec(prometheus.CounterOpts{
		Name: "refgate_store_errors_total",
		Help: "Store calls that failed, by operation.",
	}, []string{"op"})
	dur := f.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "refgate_store_duration_seconds",
		Help:    "Store call latency, by operation.",
		Buckets: []float64{50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 50e-3, 250e-3, 1},
	}, []string{"op"})
	ops := map[string]opMetrics{}
	for _, op := range []string{"put_program", "program", "put_promoter", "promoter", "update_promoter", "create_link", "link",
		"delete_link", "update_link", "programs", "promoters", "links", "link_stats", "record_clicks", "visitor_click", "ping",
		"customer", "update_customer", "holders", "decisions", "claim_order", "order_owner", "claim_click", "release_click", "erase_customer",
		"mark_ledger", "ledger_marks", "unmark_ledger", "post_entry", "entry", "entries", "ledger_promoters", "settle",
		"statement", "statements", "statement_entries", "mark_paid", "balance", "count_report", "report"} {
		ops[op] = opMetrics{errs.WithLabelValues(op), dur.WithLabelValues(op), writes[op], clears[op]}
	}
	up := f.NewGauge(prometheus.GaugeOpts{
		Name: "refgate_store_up",
		Help: "1 when the store answered its latest ping (every 2 s while serving), 0 when it did not.",
	})
	return &Instrumented{s: s, ops: ops, refused: byReason, up: up}
}

// writes are the operations that write; clears those whose success means
// the store took a write (a click claim already held, or a release, which
// Redis allows even when full, does not). PostEntry and Settle clear only
// when they wrote (an entry created, a statement made): an entry found, or
// nothing due, takes no write; neither does MarkPaid of a paid statement,
// nor UnmarkLedger, which Redis allows when full.
var (
	writes = map[string]bool{"put_program": true, "put_promoter": true, "update_promoter": true, "create_link": true, "delete_link": true, "update_link": true,
		"record_clicks": true, "update_customer": true, "claim_order": true, "claim_click": true, "release_click": true, "erase_customer": true,
		"mark_ledger": true, "unmark_ledger": true, "post_entry": true, "settle": true, "mark_paid": true, "count_report": true}
	clears = map[string]bool{"put_program": true, "put_promoter": true, "update_promoter": true, "create_link": true, "delete_link": true, "update_link": true,
		"record_clicks": true, "update_customer": true, "claim_order": true, "erase_customer": true, "mark_ledger": true, "count_report": true}
)

// answers are errors that answer the call rather than fail it.
var answers = []error{ErrNotFound, ErrExists, ErrEntryConflict, ErrPaidConflict, ErrBadCursor}

type opMetrics struct {
	errs          prometheus.Counter
	dur           prometheus.Observer
	write, clears bool
}

// Instrumented is a Store with metrics; see Instrument.
type Instrumented struct {
	s       Store
	ops     map[string]opMetrics
	refused map[string]prometheus.Counter

	refusing atomic.Bool // health.Refused, read without the lock on every write
	mu       sync.Mutex
	health   WriteHealth

	up prometheus.Gauge // refgate_store_up, kept by Watch
}

var _ Store = (*Instrumented)(nil)

// WriteHealth is whether the store takes writes, as the latest writes it
// answered say.
type WriteHealth struct {
	Refused  bool
	Reason   string    // of the latest refusal, one of RefusalReasons
	Message  string    // the store's words
	Since    time.Time // the first refusal since a write was last taken
	Refusals int64     // writes refused since then
}

// WriteHealth reports the store's writes refused from the first write it
// refuses (a RefusedError) until one is taken again.
func (i *Instrumented) WriteHealth() WriteHealth {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.health
}

// Watch pings the store every interval, each ping bounded by timeout,
// until ctx ends, and keeps refgate_store_up current. It calls answered
// once, after the first ping the store answers; nil for none. It returns
// when ctx ends.
func (i *Instrumented) Watch(ctx context.Context, interval, timeout time.Duration, answered func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		c, cancel := context.WithTimeout(ctx, timeout)
		err := i.Ping(c)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			i.up.Set(1)
			if answered != nil {
				answered()
				answered = nil
			}
		} else {
			i.up.Set(0)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (i *Instrumented) observe(op string, start time.Time, err error) {
	i.observeWrite(op, start, err, false)
}

// observeWrite is observe for a call that says whether it took a write
// (wrote): that clears a refusal too.
func (i *Instrumented) observeWrite(op string, start time.Time, err error, wrote bool) {
	m := i.ops[op]
	m.dur.Observe(time.Since(start).Seconds())
	if err != nil && !slices.ContainsFunc(answers, func(a error) bool { return errors.Is(err, a) }) {
		m.errs.Inc()
	}
	var re *RefusedError
	switch {
	case !m.write:
	case err == nil && (m.clears || wrote):
		if i.refusing.Load() {
			i.mu.Lock()
			i.health = WriteHealth{}
			i.refusing.Store(false)
			i.mu.Unlock()
		}
	case errors.As(err, &re):
		if c := i.refused[re.Reason]; c != nil {
			c.Inc()
		}
		i.mu.Lock()
		if !i.health.Refused {
			i.health = WriteHealth{Refused: true, Since: time.Now()}
		}
		i.health.Reason, i.health.Message = re.Reason, re.Message
		i.health.Refusals++
		i.refusing.Store(true)
		i.mu.Unlock()
	}
}

func (i *Instrumented) PutProgram(ctx context.Context, p *attribution.Program) (err error) {
	defer func(t time.Time) { i.observe("put_program", t, err) }(time.Now())
	return i.s.PutProgram(ctx, p)
}

func (i *Instrumented) Program(ctx context.Context, id string) (p *attribution.Program, err error) {
	defer func(t time.Time) { i.observe("program", t, err) }(time.Now())
	return i.s.Program(ctx, id)
}

func (i *Instrumented) UpdatePromoter(ctx context.Context, id string, fn func(*attribution.Promoter) (*attribution.Promoter, error)) (err error) {
	defer func(t time.Time) { i.observe("update_promoter", t, err) }(time.Now())
	return i.s.UpdatePromoter(ctx, id, fn)
}

func (i *Instrumented) PutPromoter(ctx context.Context, p *attribution.Promoter) (err error) {
	defer func(t time.Time) { i.observe("put_promoter", t, err) }(time.Now())
	return i.s.PutPromoter(ctx, p)
}

func (i *Instrumented) Promoter(ctx context.Context, id string) (p *attribution.Promoter, err error) {
	defer func(t time.Time) { i.observe("promoter", t, err) }(time.Now())
	return i.s.Promoter(ctx, id)
}

func (i *Instrumented) CreateLink(ctx context.Context, l *attribution.Link) (err error) {
	defer func(t time.Time) { i.observe("create_link", t, err) }(time.Now())
	return i.s.CreateLink(ctx, l)
}

func (i *Instrumented) Link(ctx context.Context, code string) (l *attribution.Link, err error) {
	defer func(t time.Time) { i.observe("link", t, err) }(time.Now())
	return i.s.Link(ctx, code)
}

func (i *Instrumented) DeleteLink(ctx context.Context, code string) (err error) {
	defer func(t time.Time) { i.observe("delete_link", t, err) }(time.Now())
	return i.s.DeleteLink(ctx, code)
}

func (i *Instrumented) UpdateLink(ctx context.Context, code string, fn func(l *attribution.Link) error) (l *attribution.Link, err error) {
	defer func(t time.Time) { i.observe("update_link", t, err) }(time.Now())
	return i.s.UpdateLink(ctx, code, fn)
}

func (i *Instrumented) Programs(ctx context.Context, cursor string, limit int) (ps []attribution.Program, next string, err error) {
	defer func(t time.Time) { i.observe("programs", t, err) }(time.Now())
	return i.s.Programs(ctx, cursor, limit)
}

func (i *Instrumented) Promoters(ctx context.Context, cursor string, limit int) (ps []attribution.Promoter, next string, err error) {
	defer func(t time.Time) { i.observe("promoters", t, err) }(time.Now())
	return i.s.Promoters(ctx, cursor, limit)
}

func (i *Instrumented) Links(ctx context.Context, q LinkQuery) (ls []attribution.Link, next string, err error) {
	defer func(t time.Time) { i.observe("links", t, err) }(time.Now())
	return i.s.Links(ctx, q)
}

func (i *Instrumented) LinkStats(ctx context.Context, code string) (m map[attribution.Outcome]int64, err error) {
	defer func(t time.Time) { i.observe("link_stats", t, err) }(time.Now())
	return i.s.LinkStats(ctx, code)
}

func (i *Instrumented) RecordClicks(ctx context.Context, batch string, clicks []attribution.Click) (err error) {
	defer func(t time.Time) { i.observe("record_clicks", t, err) }(time.Now())
	return i.s.RecordClicks(ctx, batch, clicks)
}

func (i *Instrumented) VisitorClick(ctx context.Context, program, visitor string) (c *attribution.Click, err error) {
	defer func(t time.Time) { i.observe("visitor_click", t, err) }(time.Now())
	return i.s.VisitorClick(ctx, program, visitor)
}

func (i *Instrumented) Customer(ctx context.Context, id string) (c *attribution.Customer, err error) {
	defer func(t time.Time) { i.observe("customer", t, err) }(time.Now())
	return i.s.Customer(ctx, id)
}

func (i *Instrumented) UpdateCustomer(ctx context.Context, id, order string, fn UpdateFunc) (err error) {
	defer func(t time.Time) { i.observe("update_customer", t, err) }(time.Now())
	return i.s.UpdateCustomer(ctx, id, order, fn)
}

func (i *Instrumented) Decisions(ctx context.Context, program, customer string) (d []attribution.Decision, err error) {
	defer func(t time.Time) { i.observe("decisions", t, err) }(time.Now())
	return i.s.Decisions(ctx, program, customer)
}

func (i *Instrumented) ClaimOrder(ctx context.Context, order, customer string) (owner string, err error) {
	defer func(t time.Time) { i.observe("claim_order", t, err) }(time.Now())
	return i.s.ClaimOrder(ctx, order, customer)
}

func (i *Instrumented) ClaimOrderAndMark(ctx context.Context, order, customer, program, mark string, at time.Time) (owner string, err error) {
	defer func(t time.Time) { i.observe("claim_order", t, err) }(time.Now())
	return i.s.ClaimOrderAndMark(ctx, order, customer, program, mark, at)
}

func (i *Instrumented) OrderOwner(ctx context.Context, order string) (customer string, err error) {
	defer func(t time.Time) { i.observe("order_owner", t, err) }(time.Now())
	return i.s.OrderOwner(ctx, order)
}

func (i *Instrumented) ClaimClick(ctx context.Context, click, customer, claim string, limit int, keep time.Duration) (c ClickClaim, err error) {
	defer func(t time.Time) { i.observe("claim_click", t, err) }(time.Now())
	return i.s.ClaimClick(ctx, click, customer, claim, limit, keep)
}

func (i *Instrumented) ReleaseClick(ctx context.Context, click, customer, claim string) (err error) {
	defer func(t time.Time) { i.observe("release_click", t, err) }(time.Now())
	return i.s.ReleaseClick(ctx, click, customer, claim)
}

func (i *Instrumented) EraseCustomer(ctx context.Context, id, alias string) (e Erasure, err error) {
	defer func(t time.Time) { i.observe("erase_customer", t, err) }(time.Now())
	return i.s.EraseCustomer(ctx, id, alias)
}

func (i *Instrumented) MarkLedger(ctx context.Context, program, mark string, at time.Time) (err error) {
	defer func(t time.Time) { i.observe("mark_ledger", t, err) }(time.Now())
	return i.s.MarkLedger(ctx, program, mark, at)
}

func (i *Instrumented) LedgerMarks(ctx context.Context, program string, before time.Time, n int) (m []string, err error) {
	defer func(t time.Time) { i.observe("ledger_marks", t, err) }(time.Now())
	return i.s.LedgerMarks(ctx, program, before, n)
}

func (i *Instrumented) UnmarkLedger(ctx context.Context, program, mark string, before time.Time) (err error) {
	defer func(t time.Time) { i.observe("unmark_ledger", t, err) }(time.Now())
	return i.s.UnmarkLedger(ctx, program, mark, before)
}

func (i *Instrumented) PostEntry(ctx context.Context, e *attribution.Entry, mark string) (stored *attribution.Entry, created bool, err error) {
	defer func(t time.Time) { i.observeWrite("post_entry", t, err, created) }(time.Now())
	return i.s.PostEntry(ctx, e, mark)
}

func (i *Instrumented) Entry(ctx context.Context, program, id string) (e *attribution.Entry, err error) {
	defer func(t time.Time) { i.observe("entry", t, err) }(time.Now())
	return i.s.Entry(ctx, program, id)
}

func (i *Instrumented) Entries(ctx context.Context, program, promoter string, q EntryQuery) (es []attribution.Entry, next string, err error) {
	defer func(t time.Time) { i.observe("entries", t, err) }(time.Now())
	return i.s.Entries(ctx, program, promoter, q)
}

func (i *Instrumented) LedgerPromoters(ctx context.Context, program string) (ps []string, err error) {
	defer func(t time.Time) { i.observe("ledger_promoters", t, err) }(time.Now())
	return i.s.LedgerPromoters(ctx, program)
}

func (i *Instrumented) Settle(ctx context.Context, program, promoter string, through time.Time, minPayout int64, now time.Time) (ss []attribution.Statement, err error) {
	defer func(t time.Time) { i.observeWrite("settle", t, err, len(ss) > 0) }(time.Now())
	return i.s.Settle(ctx, program, promoter, through, minPayout, now)
}

func (i *Instrumented) Statement(ctx context.Context, id string) (s *attribution.Statement, err error) {
	defer func(t time.Time) { i.observe("statement", t, err) }(time.Now())
	return i.s.Statement(ctx, id)
}

func (i *Instrumented) Statements(ctx context.Context, program, promoter, cursor string, limit int) (ss []attribution.Statement, next string, err error) {
	defer func(t time.Time) { i.observe("statements", t, err) }(time.Now())
	return i.s.Statements(ctx, program, promoter, cursor, limit)
}

func (i *Instrumented) StatementEntries(ctx context.Context, id string) (es []attribution.Entry, err error) {
	defer func(t time.Time) { i.observe("statement_entries", t, err) }(time.Now())
	return i.s.StatementEntries(ctx, id)
}

func (i *Instrumented) MarkPaid(ctx context.Context, id, reference string, at time.Time) (s *attribution.Statement, err error) {
	defer func(t time.Time) { i.observe("mark_paid", t, err) }(time.Now())
	return i.s.MarkPaid(ctx, id, reference, at)
}

func (i *Instrumented) Balance(ctx context.Context, program, promoter string, now time.Time) (b map[string]attribution.Balance, err error) {
	defer func(t time.Time) { i.observe("balance", t, err) }(time.Now())
	return i.s.Balance(ctx, program, promoter, now)
}

func (i *Instrumented) Holders(ctx context.Context, program, promoter string, now time.Time, cursor string, limit int) (hs []Holder, next string, err error) {
	defer func(t time.Time) { i.observe("holders", t, err) }(time.Now())
	return i.s.Holders(ctx, program, promoter, now, cursor, limit)
}

func (i *Instrumented) WatchInvalidations(ctx context.Context, fn func(Invalidation)) error {
	return i.s.WatchInvalidations(ctx, fn)
}

func (i *Instrumented) Ping(ctx context.Context) (err error) {
	defer func(t time.Time) { i.observe("ping", t, err) }(time.Now())
	return i.s.Ping(ctx)
}

func (i *Instrumented) Close() error { return i.s.Close() }

func (i *Instrumented) CountReport(ctx context.Context, id, program, promoter, link string, at time.Time, counts ReportCounts) (err error) {
	defer func(t time.Time) { i.observe("count_report", t, err) }(time.Now())
	return i.s.CountReport(ctx, id, program, promoter, link, at, counts)
}

func (i *Instrumented) Report(ctx context.Context, q ReportQuery) (out []ReportPeriod, err error) {
	defer func(t time.Time) { i.observe("report", t, err) }(time.Now())
	return i.s.Report(ctx, q)
}
