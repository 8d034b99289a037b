package api

import (
	"context"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/store"
)

// Reports (docs/design.md "Reports"): counts per UTC day of every program,
// promoter and link. The stores count clicks (with each click batch) and
// commission (with each ledger entry they create); the service counts
// binds, conversions, cash and refunds here, after a decision it has just
// made. A replayed request made no decision and counts nothing; a count
// whose reply was lost is sent again under the decision's id and counted
// once (store.CountReport). A count that fails, or a process that stops
// between storing a decision and counting it, leaves the decision
// uncounted: reports may run short by those, never long.

// ReportQuery is a report request as the caller gives it: the program, at
// most one of a promoter and a link, the first and last day (YYYY-MM-DD,
// UTC, both included) and the interval, "day" (or "") or "month".
type ReportQuery struct {
	Program, Promoter, Link string
	From, To                string
	Interval                string
}

// ReportAnswer is a report's response body.
type ReportAnswer struct {
	Series []ReportPoint `json:"series"`
}

// ReportPoint is one day or month of a report. Every outcome, bind
// outcome and conversion key is there, 0 when quiet.
type ReportPoint struct {
	Date        string           `json:"date"`
	Clicks      map[string]int64 `json:"clicks"`
	Visitors    int64            `json:"visitors"`
	Binds       map[string]int64 `json:"binds"`
	Conversions map[string]int64 `json:"conversions"`
	Cash        int64            `json:"cash"`
	Commission  int64            `json:"commission"`
	Refunded    int64            `json:"refunded"`
}

// Report reads a program's series, or one promoter's or one link's of it,
// by day or by month (a month sums only its days from From to To; its
// visitors are the distinct visitors of those days together). A bad
// query is an EInvalid error, an unknown program ENotFound.
func (sv *Service) Report(ctx context.Context, in ReportQuery) (*ReportAnswer, error) {
	q, err := parseReportQuery(in)
	if err != nil {
		return nil, err
	}
	p, err := sv.entities().program(ctx, sv.Store, in.Program)
	if err != nil {
		return nil, err
	}
	if p == nil {
		return nil, attribution.Errorf(attribution.ENotFound, "no program %s", in.Program)
	}
	periods, err := sv.Store.Report(ctx, q)
	if err != nil {
		return nil, err
	}
	out := &ReportAnswer{Series: make([]ReportPoint, len(periods))}
	for i, p := range periods {
		out.Series[i] = reportPoint(p)
	}
	return out, nil
}

func parseReportQuery(in ReportQuery) (store.ReportQuery, error) {
	bad := func(format string, args ...any) (store.ReportQuery, error) {
		return store.ReportQuery{}, attribution.Errorf(attribution.EInvalid, format, args...)
	}
	q := store.ReportQuery{Program: in.Program, Promoter: in.Promoter, Link: in.Link}
	switch {
	case !attribution.ValidProgramID(in.Program):
		return bad("program is required: a program id")
	case in.Promoter != "" && in.Link != "":
		return bad("give a promoter or a link, not both")
	case in.Promoter != "" && !attribution.ValidID(in.Promoter):
		return bad("promoter %q is not a promoter id", in.Promoter)
	case in.Link != "" && !attribution.ValidCode(in.Link):
		return bad("link %q is not a link code", in.Link)
	}
	switch in.Interval {
	case "", "day":
	case "month":
		q.Month = true
	default:
		return bad(`interval must be "day" or "month"`)
	}
	var err error
	for _, d := range []struct {
		name, v string
		t       *time.Time
	}{{"from", in.From, &q.From}, {"to", in.To, &q.To}} {
		if *d.t, err = time.Parse(time.DateOnly, d.v); err != nil {
			return bad("%s must be a day such as 2026-12-01", d.name)
		}
	}
	if q.From.After(q.To) {
		return bad("from %s is after to %s", in.From, in.To)
	}
	if n := int(q.To.Sub(q.From)/(24*time.Hour)) + 1; n > store.MaxReportDays {
		return bad("from %s to %s is %d days; a report reads at most %d", in.From, in.To, n, store.MaxReportDays)
	}
	return q, nil
}

func reportPoint(p store.ReportPeriod) ReportPoint {
	c := p.Counts
	out := ReportPoint{Date: p.Date, Visitors: p.Visitors, Clicks: map[string]int64{}, Binds: map[string]int64{},
		Conversions: map[string]int64{}, Cash: c[store.FieldCash], Commission: c[store.FieldCommission],
		Refunded: c[store.FieldRefunded]}
	for _, o := range attribution.RecordedOutcomes {
		out.Clicks[string(o)] = c[store.ClickField(o)]
	}
	for _, o := range store.BindOutcomes {
		out.Binds[o] = c[store.BindField(o)]
	}
	for _, k := range store.ConversionKeys {
		out.Conversions[k] = c[store.ConversionField(k)]
	}
	return out
}

// countDecision adds what a decision just made counts in the reports of
// its day: for program, and for promoter and link when they are not
// empty. The decision's id names the count, so a store client's retry
// adds it once. A failure is logged: the decision stands, and failing the
// request would not count it either (the request sent again is a replay).
func (sv *Service) countDecision(ctx context.Context, decision, program, promoter, link string, at time.Time, counts store.ReportCounts) {
	err := sv.Store.CountReport(ctx, "d:"+decision, program, promoter, link, at, counts)
	if err != nil && sv.Logger != nil {
		sv.Logger.Error("decision not counted in the reports", "decision", decision, "program", program, "err", err)
	}
}

// countBind counts a bind just decided for the promoter and link of the
// click it presented (none: the program only).
func (sv *Service) countBind(ctx context.Context, program string, ref *attribution.ClickRef, d *attribution.Decision) {
	promoter, link := "", ""
	if ref != nil {
		promoter, link = ref.Promoter, ref.Link
	}
	sv.countDecision(ctx, d.ID, program, promoter, link, d.At, store.ReportCounts{store.BindField(d.Outcome): 1})
}

// countConversion counts an order just decided, and its cash, for the
// promoter and link holding the customer (none: the program only).
func (sv *Service) countConversion(ctx context.Context, o *attribution.Order) {
	key := attribution.DecisionAttributed
	if !o.Eligible {
		key = o.Reason
	}
	counts := store.ReportCounts{store.ConversionField(key): 1}
	if o.Amount > 0 {
		counts[store.FieldCash] = o.Amount
	}
	id := o.ID
	if n := len(o.Decisions); n > 0 {
		id = o.Decisions[n-1].ID
	}
	sv.countDecision(ctx, id, o.Program, o.Promoter, o.Link, o.At, counts)
}

// countRefund counts a refund just decided.
func (sv *Service) countRefund(ctx context.Context, o *attribution.Order, r *attribution.RefundRecord) {
	sv.countDecision(ctx, r.Decision, o.Program, o.Promoter, o.Link, r.At, store.ReportCounts{store.FieldRefunded: r.Amount})
}

// reportColumns are the CSV columns of a report.
var reportColumns = func() []string {
	cols := []string{"date"}
	for _, o := range attribution.RecordedOutcomes {
		cols = append(cols, "clicks_"+string(o))
	}
	cols = append(cols, "visitors")
	for _, o := range store.BindOutcomes {
		cols = append(cols, "binds_"+o)
	}
	for _, k := range store.ConversionKeys {
		cols = append(cols, "conversions_"+k)
	}
	return append(cols, "cash", "commission", "refunded")
}()

func reportCSV(a *ReportAnswer) [][]string {
	rows := make([][]string, 0, len(a.Series)+1)
	rows = append(rows, reportColumns)
	n := func(v int64) string { return strconv.FormatInt(v, 10) }
	for _, p := range a.Series {
		r := []string{p.Date}
		for _, o := range attribution.RecordedOutcomes {
			r = append(r, n(p.Clicks[string(o)]))
		}
		r = append(r, n(p.Visitors))
		for _, o := range store.BindOutcomes {
			r = append(r, n(p.Binds[o]))
		}
		for _, k := range store.ConversionKeys {
			r = append(r, n(p.Conversions[k]))
		}
		rows = append(rows, append(r, n(p.Cash), n(p.Commission), n(p.Refunded)))
	}
	return rows
}

// reportQuery reads a report's query parameters.
func reportQuery(ctx *fasthttp.RequestCtx) ReportQuery {
	a := ctx.QueryArgs()
	return ReportQuery{Program: string(a.Peek("program")), Promoter: string(a.Peek("promoter")),
		Link: string(a.Peek("link")), From: string(a.Peek("from")), To: string(a.Peek("to")),
		Interval: string(a.Peek("interval"))}
}

// serveReport answers a report: JSON, or CSV with Accept: text/csv. The
// admin route calls it with the query as given; a route that shows one
// promoter's own data fixes q.Promoter (and clears q.Link) first.
func (s *Server) serveReport(ctx *fasthttp.RequestCtx, q ReportQuery) {
	c, cancel := s.storeCtx()
	defer cancel()
	a, err := s.svc.Report(c, q)
	if err != nil {
		s.fail(ctx, err)
		return
	}
	if wantsCSV(ctx) {
		name := "report-" + q.Program
		if q.Promoter != "" {
			name += "-" + q.Promoter
		} else if q.Link != "" {
			name += "-" + q.Link
		}
		s.replyCSV(ctx, name+"-"+q.From+"-"+q.To+".csv", reportCSV(a))
		return
	}
	s.reply(ctx, 200, a)
}

func (s *Server) getReport(ctx *fasthttp.RequestCtx) { s.serveReport(ctx, reportQuery(ctx)) }
