package store

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/refgate/refgate/attribution"
)

// Instrument wraps s so that every call is timed in
// refgate_store_duration_seconds{op} and every failure counted in
// refgate_store_errors_total{op}. ErrNotFound and ErrExists are answers,
// not failures. op is the method name in snake case: a fixed set.
func Instrument(s Store, reg prometheus.Registerer) Store {
	f := promauto.With(reg)
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
	for _, op := range []string{"put_program", "program", "put_promoter", "promoter", "create_link", "link",
		"delete_link", "link_stats", "record_clicks", "visitor_click", "ping",
		"customer", "update_customer", "decisions", "claim_order", "order_owner", "claim_click", "release_click", "erase_customer"} {
		ops[op] = opMetrics{errs.WithLabelValues(op), dur.WithLabelValues(op)}
	}
	return &instrumented{s: s, ops: ops}
}

type opMetrics struct {
	errs prometheus.Counter
	dur  prometheus.Observer
}

type instrumented struct {
	s   Store
	ops map[string]opMetrics
}

func (i *instrumented) observe(op string, start time.Time, err error) {
	m := i.ops[op]
	m.dur.Observe(time.Since(start).Seconds())
	if err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrExists) {
		m.errs.Inc()
	}
}

func (i *instrumented) PutProgram(ctx context.Context, p *attribution.Program) (err error) {
	defer func(t time.Time) { i.observe("put_program", t, err) }(time.Now())
	return i.s.PutProgram(ctx, p)
}

func (i *instrumented) Program(ctx context.Context, id string) (p *attribution.Program, err error) {
	defer func(t time.Time) { i.observe("program", t, err) }(time.Now())
	return i.s.Program(ctx, id)
}

func (i *instrumented) PutPromoter(ctx context.Context, p *attribution.Promoter) (err error) {
	defer func(t time.Time) { i.observe("put_promoter", t, err) }(time.Now())
	return i.s.PutPromoter(ctx, p)
}

func (i *instrumented) Promoter(ctx context.Context, id string) (p *attribution.Promoter, err error) {
	defer func(t time.Time) { i.observe("promoter", t, err) }(time.Now())
	return i.s.Promoter(ctx, id)
}

func (i *instrumented) CreateLink(ctx context.Context, l *attribution.Link) (err error) {
	defer func(t time.Time) { i.observe("create_link", t, err) }(time.Now())
	return i.s.CreateLink(ctx, l)
}

func (i *instrumented) Link(ctx context.Context, code string) (l *attribution.Link, err error) {
	defer func(t time.Time) { i.observe("link", t, err) }(time.Now())
	return i.s.Link(ctx, code)
}

func (i *instrumented) DeleteLink(ctx context.Context, code string) (err error) {
	defer func(t time.Time) { i.observe("delete_link", t, err) }(time.Now())
	return i.s.DeleteLink(ctx, code)
}

func (i *instrumented) LinkStats(ctx context.Context, code string) (m map[attribution.Outcome]int64, err error) {
	defer func(t time.Time) { i.observe("link_stats", t, err) }(time.Now())
	return i.s.LinkStats(ctx, code)
}

func (i *instrumented) RecordClicks(ctx context.Context, batch string, clicks []attribution.Click) (err error) {
	defer func(t time.Time) { i.observe("record_clicks", t, err) }(time.Now())
	return i.s.RecordClicks(ctx, batch, clicks)
}

func (i *instrumented) VisitorClick(ctx context.Context, program, visitor string) (c *attribution.Click, err error) {
	defer func(t time.Time) { i.observe("visitor_click", t, err) }(time.Now())
	return i.s.VisitorClick(ctx, program, visitor)
}

func (i *instrumented) Customer(ctx context.Context, id string) (c *attribution.Customer, err error) {
	defer func(t time.Time) { i.observe("customer", t, err) }(time.Now())
	return i.s.Customer(ctx, id)
}

func (i *instrumented) UpdateCustomer(ctx context.Context, id, order string, fn UpdateFunc) (err error) {
	defer func(t time.Time) { i.observe("update_customer", t, err) }(time.Now())
	return i.s.UpdateCustomer(ctx, id, order, fn)
}

func (i *instrumented) Decisions(ctx context.Context, program, customer string) (d []attribution.Decision, err error) {
	defer func(t time.Time) { i.observe("decisions", t, err) }(time.Now())
	return i.s.Decisions(ctx, program, customer)
}

func (i *instrumented) ClaimOrder(ctx context.Context, order, customer string) (owner string, err error) {
	defer func(t time.Time) { i.observe("claim_order", t, err) }(time.Now())
	return i.s.ClaimOrder(ctx, order, customer)
}

func (i *instrumented) OrderOwner(ctx context.Context, order string) (customer string, err error) {
	defer func(t time.Time) { i.observe("order_owner", t, err) }(time.Now())
	return i.s.OrderOwner(ctx, order)
}

func (i *instrumented) ClaimClick(ctx context.Context, click, customer, claim string, limit int, keep time.Duration) (c ClickClaim, err error) {
	defer func(t time.Time) { i.observe("claim_click", t, err) }(time.Now())
	return i.s.ClaimClick(ctx, click, customer, claim, limit, keep)
}

func (i *instrumented) ReleaseClick(ctx context.Context, click, customer, claim string) (err error) {
	defer func(t time.Time) { i.observe("release_click", t, err) }(time.Now())
	return i.s.ReleaseClick(ctx, click, customer, claim)
}

func (i *instrumented) EraseCustomer(ctx context.Context, id, alias string) (e Erasure, err error) {
	defer func(t time.Time) { i.observe("erase_customer", t, err) }(time.Now())
	return i.s.EraseCustomer(ctx, id, alias)
}

func (i *instrumented) WatchInvalidations(ctx context.Context, fn func(Invalidation)) error {
	return i.s.WatchInvalidations(ctx, fn)
}

func (i *instrumented) Ping(ctx context.Context) (err error) {
	defer func(t time.Time) { i.observe("ping", t, err) }(time.Now())
	return i.s.Ping(ctx)
}

func (i *instrumented) Close() error { return i.s.Close() }
