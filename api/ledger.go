package api

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/valyala/fasthttp"

	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/events"
	"github.com/refgate/refgate/store"
)

// The ledger: every decision that moves money writes one entry, exactly
// once, also across retries, lost replies and a crash between any two
// writes. The customer's order record and the promoter's ledger may live on
// different Redis Cluster nodes, so they cannot be written in one step:
//
//  1. MarkLedger names the decision ("o:ORDER", "r:ORDER:REFUND") in the
//     program's ledger before the decision is stored;
//  2. the decision is stored with the customer (UpdateCustomer);
//  3. PostEntry writes the entry under an id derived from the decision
//     (attribution.AccrualID, ReversalID) and removes the mark, in one step.
//
// Every step is idempotent, and a retried request (the client retries on
// 503 and lost answers) runs all three again. A process that dies between
// steps leaves the mark: RepairLedger, run by every settlement run and
// every ledger read, finds marks older than ledgerGrace, reads the decision
// they name and writes its entry, or drops the mark of a decision never
// stored or moving no money.

// ledgerGrace is how old a mark must be before RepairLedger takes it: far
// longer than any request takes (StoreTimeout bounds each store call), so
// that it never races a request still between its steps.
const ledgerGrace = time.Minute

// repairBatch is how many marks one repair pass reads.
const repairBatch = 1000

func orderMark(order string) string          { return "o:" + order }
func refundMark(order, refund string) string { return "r:" + order + ":" + refund }

// ledgerNamespace makes ledger and statement event ids: a UUID (v5) of
// what the event is about, so an entry or statement reported again has its
// event again under the same id.
var ledgerNamespace = uuid.MustParse("5d3c9f0e-7b1a-4f4e-9a51-3c1b2b8f6a10")

func derivedID(parts ...string) string {
	return uuid.NewSHA1(ledgerNamespace, []byte(strings.Join(parts, "\x00"))).String()
}

// accrual is the entry of an attributed order, nil when it moves no money.
func accrual(p *attribution.Program, o *attribution.Order) *attribution.Entry {
	if !o.Eligible || o.Granted <= 0 {
		return nil
	}
	return &attribution.Entry{ID: attribution.AccrualID(o.ID), Program: o.Program, Promoter: o.Promoter,
		Kind: attribution.Accrual, Amount: o.Granted, Currency: o.Currency, Order: o.ID, Customer: o.Customer,
		At: o.At, AvailableAt: o.At.Add(p.Hold()), Link: o.Link}
}

// reversal is the entry of refund r of o, nil when it moved no commission.
func reversal(p *attribution.Program, o *attribution.Order, r *attribution.RefundRecord) *attribution.Entry {
	if !o.Eligible || r.Delta >= 0 {
		return nil
	}
	return &attribution.Entry{ID: attribution.ReversalID(o.ID, r.ID), Program: o.Program, Promoter: o.Promoter,
		Kind: attribution.Reversal, Amount: r.Delta, Currency: o.Currency, Order: o.ID, Customer: o.Customer,
		Refund: r.ID, At: r.At, AvailableAt: r.At.Add(p.Hold()), Link: o.Link}
}

// post writes e (nil: nothing to write) and removes mark, or removes the
// mark alone, and emits the entry's event, also for an entry written
// before: a retried decision reports its entry again, under the same id.
func (sv *Service) post(ctx context.Context, program string, e *attribution.Entry, mark string) (*attribution.Entry, bool, error) {
	if e == nil {
		return nil, false, sv.Store.UnmarkLedger(ctx, program, mark, time.Time{})
	}
	stored, created, err := sv.Store.PostEntry(ctx, e, mark)
	if err != nil {
		if errors.Is(err, store.ErrEntryConflict) && e.Kind != attribution.Adjustment && sv.Logger != nil {
			// An entry derived from a decision differs from the one
			// stored for it: a bug, not the caller's mistake.
			sv.Logger.Error("ledger entry conflicts with the one stored", "entry", e.ID, "program", program, "err", err)
		}
		return stored, false, err
	}
	if created {
		sv.LedgerMetrics.entry(stored.Kind)
	}
	sv.emit(entryEvent(stored))
	return stored, created, nil
}

func entryEvent(e *attribution.Entry) *events.Event {
	subject := "promoter/" + e.Promoter
	available := e.AvailableAt
	return &events.Event{ID: derivedID(events.TypeLedgerEntry, e.Program, e.ID), Type: events.TypeLedgerEntry,
		Subject: subject, Time: e.At,
		Data: events.Data{Program: e.Program, Promoter: e.Promoter, Customer: e.Customer, Order: e.Order,
			RefundID: e.Refund, Reason: e.Reason, Amount: events.Int64(e.Amount), Currency: e.Currency,
			Entry: e.ID, EntryKind: string(e.Kind), AvailableAt: &available}}
}

func statementEvent(typ string, st *attribution.Statement) *events.Event {
	through, n := st.Through, st.Entries
	at := st.CreatedAt
	if typ == events.TypeStatementPaid && st.PaidAt != nil {
		at = *st.PaidAt
	}
	return &events.Event{ID: derivedID(typ, st.ID), Type: typ, Subject: "promoter/" + st.Promoter, Time: at,
		Data: events.Data{Program: st.Program, Promoter: st.Promoter, Amount: events.Int64(st.Amount),
			Currency: st.Currency, Statement: st.ID, Entries: &n, Through: &through, Reference: st.Reference}}
}

// RepairLedger writes the entries of decisions whose request stopped
// between storing the decision and posting its entry (see the top of this
// file), and drops the marks of decisions never stored or moving no money.
// A mark it cannot resolve now (its customer's erasure unfinished, a store
// error) is logged and left for the next repair: one such mark must not
// stop a program's settlement runs and reads. It returns how many entries
// it wrote.
func (sv *Service) RepairLedger(ctx context.Context, program string) (int, error) {
	p, err := sv.program(ctx, program)
	if err != nil {
		return 0, err
	}
	cutoff := sv.Now().Add(-ledgerGrace)
	marks, err := sv.Store.LedgerMarks(ctx, program, cutoff, repairBatch)
	if err != nil {
		return 0, err
	}
	written := 0
	for _, m := range marks {
		e, err := sv.markedEntry(ctx, p, m)
		if err == nil && e == nil {
			// No decision stored, or one that moves no money. A retry of
			// the request may have marked it again since LedgerMarks read
			// it, and store its decision next: the mark goes only if it
			// is still older than the cutoff.
			err = sv.Store.UnmarkLedger(ctx, program, m, cutoff)
		} else if err == nil {
			var created bool
			if _, created, err = sv.post(ctx, program, e, m); created {
				written++
				sv.LedgerMetrics.repair(true)
				if sv.Logger != nil {
					sv.Logger.Warn("ledger entry repaired: its request stopped before writing it", "entry", e.ID, "program", program)
				}
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return written, err
			}
			sv.LedgerMetrics.repair(false)
			if sv.Logger != nil {
				sv.Logger.Error("ledger mark left for the next repair", "mark", m, "program", program, "err", err)
			}
		}
	}
	return written, nil
}

// markedEntry reads the decision mark names and returns its entry; nil when
// it was never stored or moves no money.
func (sv *Service) markedEntry(ctx context.Context, p *attribution.Program, mark string) (*attribution.Entry, error) {
	kind, rest, _ := strings.Cut(mark, ":")
	order, refund := rest, ""
	if kind == "r" {
		// Order ids may hold ':'; refund ids may not (ValidRefundID).
		i := strings.LastIndexByte(rest, ':')
		if i < 0 {
			return nil, nil
		}
		order, refund = rest[:i], rest[i+1:]
	} else if kind != "o" {
		return nil, nil
	}
	owner, err := sv.Store.OrderOwner(ctx, order)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var e *attribution.Entry
	err = sv.Store.UpdateCustomer(ctx, owner, order, func(_ *attribution.Customer, o *attribution.Order) (*store.CustomerUpdate, error) {
		e = nil
		switch {
		case o == nil || o.Program != p.ID:
		case kind == "o":
			e = accrual(p, o)
		default:
			if r := o.Refund(refund); r != nil {
				e = reversal(p, o, r)
			}
		}
		return nil, nil
	})
	return e, err
}

// AdjustmentInput is the body of POST /v1/admin/ledger/adjustments.
type AdjustmentInput struct {
	ID       string `json:"id"`
	Program  string `json:"program"`
	Promoter string `json:"promoter"`
	Amount   int64  `json:"amount"`
	Currency string `json:"currency"`
	Reason   string `json:"reason"`
}

// EntryAnswer is an entry with its status.
type EntryAnswer struct {
	attribution.Entry
	Status attribution.EntryStatus `json:"status"`
}

// Adjust writes an operator's adjustment, idempotent on its id: the same
// adjustment again returns the stored entry (created false), the same id
// with other values is a conflict.
func (sv *Service) Adjust(ctx context.Context, in AdjustmentInput) (*EntryAnswer, bool, error) {
	if !attribution.ValidID(in.ID) {
		return nil, false, attribution.Errorf(attribution.EInvalid, "id (yours, naming this adjustment) must be 1 to 128 characters of A-Z a-z 0-9 . _ : @ -")
	}
	if strings.TrimSpace(in.Reason) == "" {
		return nil, false, attribution.Errorf(attribution.EInvalid, "reason is required: say why the promoter's balance changes")
	}
	p, err := sv.program(ctx, in.Program)
	if err != nil {
		return nil, false, err
	}
	if _, err := sv.promoter(ctx, in.Promoter); err != nil {
		return nil, false, err
	}
	now := sv.Now()
	e := &attribution.Entry{ID: attribution.AdjustmentID(in.ID), Program: p.ID, Promoter: in.Promoter,
		Kind: attribution.Adjustment, Amount: in.Amount, Currency: in.Currency, Reason: in.Reason,
		At: now, AvailableAt: now.Add(p.Hold())}
	if err := e.Validate(); err != nil {
		return nil, false, err
	}
	stored, created, err := sv.post(ctx, p.ID, e, "")
	if errors.Is(err, store.ErrEntryConflict) {
		return nil, false, attribution.Errorf(attribution.EConflict, "adjustment %s was made with other values", in.ID)
	}
	if err != nil {
		return nil, false, err
	}
	if !created && stored.Reason != e.Reason {
		return nil, false, attribution.Errorf(attribution.EConflict, "adjustment %s was made with another reason", in.ID)
	}
	a, err := sv.entryAnswers(ctx, []attribution.Entry{*stored})
	if err != nil {
		return nil, false, err
	}
	return &a[0], created, nil
}

// entryAnswers adds each entry's status, reading the statements they are
// on.
func (sv *Service) entryAnswers(ctx context.Context, es []attribution.Entry) ([]EntryAnswer, error) {
	now := sv.Now()
	stmts := map[string]attribution.StatementStatus{}
	out := make([]EntryAnswer, len(es))
	for i, e := range es {
		var st attribution.StatementStatus
		if e.Statement != "" {
			s, ok := stmts[e.Statement]
			if !ok {
				stmt, err := sv.Store.Statement(ctx, e.Statement)
				if err != nil {
					return nil, err
				}
				s = stmt.Status
				stmts[e.Statement] = s
			}
			st = s
		}
		out[i] = EntryAnswer{Entry: e, Status: e.Status(now, st)}
	}
	return out, nil
}

// LedgerQuery is GET /v1/admin/ledger's parameters.
type LedgerQuery struct {
	Program, Promoter string
	Status            attribution.EntryStatus // "" for all
	From, To          time.Time
	Cursor            string
	Limit             int
}

// Page is a list's answer.
type Page[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"next_cursor,omitempty"`
}

// Ledger lists a promoter's entries in a program, newest first, of one
// status or all.
func (sv *Service) Ledger(ctx context.Context, q LedgerQuery) (*Page[EntryAnswer], error) {
	if _, err := sv.RepairLedger(ctx, q.Program); err != nil {
		return nil, err
	}
	if !attribution.ValidID(q.Promoter) {
		return nil, attribution.Errorf(attribution.EInvalid, "promoter is required")
	}
	switch q.Status {
	case "", attribution.EntryPending, attribution.EntryAvailable, attribution.EntrySettled, attribution.EntryPaid:
	default:
		return nil, attribution.Errorf(attribution.EInvalid, "status must be pending, available, settled or paid")
	}
	out := &Page[EntryAnswer]{Items: []EntryAnswer{}}
	cursor := q.Cursor
	for {
		es, next, err := sv.Store.Entries(ctx, q.Program, q.Promoter, store.EntryQuery{Cursor: cursor, Limit: q.Limit, From: q.From, To: q.To})
		if err != nil {
			return nil, err
		}
		as, err := sv.entryAnswers(ctx, es)
		if err != nil {
			return nil, err
		}
		for i, a := range as {
			if q.Status != "" && a.Status != q.Status {
				continue
			}
			out.Items = append(out.Items, a)
			if len(out.Items) == q.Limit {
				// The cursor of the last item taken: the next page
				// starts after it.
				if i < len(as)-1 || next != "" {
					out.NextCursor = store.PageKey(a.At, a.ID)
				}
				return out, nil
			}
		}
		if next == "" {
			return out, nil
		}
		cursor = next
	}
}

// Settle settles every due entry of program (attribution.PlanSettlement,
// per promoter and currency) into statements, after repairing the ledger.
func (sv *Service) Settle(ctx context.Context, program string, through time.Time) ([]attribution.Statement, error) {
	now := sv.Now()
	if through.IsZero() {
		through = now
	}
	if through.After(now) {
		return nil, attribution.Errorf(attribution.EInvalid, "through %s is later than now (%s): only what is due can be settled",
			through.Format(time.RFC3339), now.Format(time.RFC3339))
	}
	p, err := sv.program(ctx, program)
	if err != nil {
		return nil, err
	}
	if _, err := sv.RepairLedger(ctx, program); err != nil {
		return nil, err
	}
	promoters, err := sv.Store.LedgerPromoters(ctx, program)
	if err != nil {
		return nil, err
	}
	out := []attribution.Statement{}
	for _, a := range promoters {
		sts, err := sv.Store.Settle(ctx, program, a, through, p.MinPayout, now)
		if err != nil {
			return out, err
		}
		for i := range sts {
			sv.emit(statementEvent(events.TypeStatementCreated, &sts[i]))
		}
		out = append(out, sts...)
	}
	return out, nil
}

// MarkPaid marks a statement paid with the payment's reference.
func (sv *Service) MarkPaid(ctx context.Context, id, reference string) (*attribution.Statement, error) {
	if strings.TrimSpace(reference) == "" || len(reference) > attribution.MaxReferenceLen {
		return nil, attribution.Errorf(attribution.EInvalid, "reference (the payment's, 1 to %d bytes) is required", attribution.MaxReferenceLen)
	}
	st, err := sv.Store.MarkPaid(ctx, id, reference, sv.Now())
	if err != nil {
		switch {
		case errors.Is(err, store.ErrNotFound):
			return nil, attribution.Errorf(attribution.ENotFound, "no statement %s", id)
		case errors.Is(err, store.ErrPaidConflict):
			return nil, attribution.Errorf(attribution.EConflict, "statement %s was paid with another reference (%s)", id, st.Reference)
		}
		return nil, err
	}
	sv.emit(statementEvent(events.TypeStatementPaid, st))
	return st, nil
}

// Statement returns one statement.
func (sv *Service) Statement(ctx context.Context, id string) (*attribution.Statement, error) {
	st, err := sv.Store.Statement(ctx, id)
	return st, orNotFound(err, "no statement "+id)
}

// Statements lists a program's statements, of one promoter or all, newest
// first.
func (sv *Service) Statements(ctx context.Context, program, promoter, cursor string, limit int) (*Page[attribution.Statement], error) {
	if _, err := sv.program(ctx, program); err != nil {
		return nil, err
	}
	if promoter != "" && !attribution.ValidID(promoter) {
		return nil, attribution.Errorf(attribution.EInvalid, "promoter %q is not a promoter id", promoter)
	}
	sts, next, err := sv.Store.Statements(ctx, program, promoter, cursor, limit)
	if err != nil {
		return nil, err
	}
	if sts == nil {
		sts = []attribution.Statement{}
	}
	return &Page[attribution.Statement]{Items: sts, NextCursor: next}, nil
}

// StatementEntries lists a statement's entries, oldest first.
func (sv *Service) StatementEntries(ctx context.Context, id string) (*attribution.Statement, []EntryAnswer, error) {
	st, err := sv.Statement(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	es, err := sv.Store.StatementEntries(ctx, id)
	if err != nil {
		return nil, nil, orNotFound(err, "no statement "+id)
	}
	as, err := sv.entryAnswers(ctx, es)
	return st, as, err
}

// BalanceAnswer is a promoter's balance per currency.
type BalanceAnswer struct {
	Balances map[string]attribution.Balance `json:"balances"`
}

// Balance is what a promoter has in a program per currency and state.
func (sv *Service) Balance(ctx context.Context, program, promoter string) (*BalanceAnswer, error) {
	if _, err := sv.RepairLedger(ctx, program); err != nil {
		return nil, err
	}
	if _, err := sv.promoter(ctx, promoter); err != nil {
		return nil, err
	}
	b, err := sv.Store.Balance(ctx, program, promoter, sv.Now())
	if err != nil {
		return nil, err
	}
	if b == nil {
		b = map[string]attribution.Balance{}
	}
	return &BalanceAnswer{Balances: b}, nil
}

// The HTTP side of the ledger.

// pageParams reads ?limit= (1..store.MaxPage, default 100) and ?cursor=.
func pageParams(ctx *fasthttp.RequestCtx) (cursor string, limit int, err error) {
	q := ctx.QueryArgs()
	limit = 100
	if v := q.Peek("limit"); len(v) > 0 {
		n, err := strconv.Atoi(string(v))
		if err != nil || n < 1 || n > store.MaxPage {
			return "", 0, attribution.Errorf(attribution.EInvalid, "limit must be between 1 and %d", store.MaxPage)
		}
		limit = n
	}
	return string(q.Peek("cursor")), limit, nil
}

// timeParam reads an RFC 3339 query parameter; zero when absent.
func timeParam(ctx *fasthttp.RequestCtx, name string) (time.Time, error) {
	v := ctx.QueryArgs().Peek(name)
	if len(v) == 0 {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, string(v))
	if err != nil {
		return time.Time{}, attribution.Errorf(attribution.EInvalid, "%s must be an RFC 3339 time such as 2026-12-01T00:00:00Z", name)
	}
	return t, nil
}

func (s *Server) postAdjustment(ctx *fasthttp.RequestCtx) {
	var in AdjustmentInput
	if err := decode(ctx, &in); err != nil {
		s.fail(ctx, err)
		return
	}
	c, cancel := s.storeCtx()
	defer cancel()
	e, created, err := s.svc.Adjust(c, in)
	if err != nil {
		s.fail(ctx, err)
		return
	}
	status := 200
	if created {
		status = 201
	}
	s.reply(ctx, status, e)
}

func (s *Server) getLedger(ctx *fasthttp.RequestCtx) {
	args := ctx.QueryArgs()
	q := LedgerQuery{Program: string(args.Peek("program")), Promoter: string(args.Peek("promoter")),
		Status: attribution.EntryStatus(args.Peek("status"))}
	var err error
	if q.Cursor, q.Limit, err = pageParams(ctx); err == nil {
		if q.From, err = timeParam(ctx, "from"); err == nil {
			q.To, err = timeParam(ctx, "to")
		}
	}
	if err != nil {
		s.fail(ctx, err)
		return
	}
	c, cancel := s.storeCtx()
	defer cancel()
	page, err := s.svc.Ledger(c, q)
	if err != nil {
		s.fail(ctx, err)
		return
	}
	s.reply(ctx, 200, page)
}

// StatementsInput is the body of POST /v1/admin/statements.
type StatementsInput struct {
	Program string     `json:"program"`
	Through *time.Time `json:"through"`
}

// StatementsAnswer is POST /v1/admin/statements's answer.
type StatementsAnswer struct {
	Statements []attribution.Statement `json:"statements"`
}

func (s *Server) postStatements(ctx *fasthttp.RequestCtx) {
	var in StatementsInput
	if err := decode(ctx, &in); err != nil {
		s.fail(ctx, err)
		return
	}
	var through time.Time
	if in.Through != nil {
		through = *in.Through
	}
	// A settlement run reads and writes every due entry of the program:
	// more than one request's store budget.
	c, cancel := context.WithTimeout(context.Background(), settleTimeout)
	defer cancel()
	sts, err := s.svc.Settle(c, in.Program, through)
	if err != nil {
		s.fail(ctx, err)
		return
	}
	s.reply(ctx, 201, StatementsAnswer{Statements: sts})
}

// settleTimeout bounds one settlement run.
const settleTimeout = 5 * time.Minute

func (s *Server) getStatements(ctx *fasthttp.RequestCtx) {
	args := ctx.QueryArgs()
	s.serveStatements(ctx, string(args.Peek("program")), string(args.Peek("promoter")))
}

// serveStatements answers a page of program's statements, of promoter
// when not empty.
func (s *Server) serveStatements(ctx *fasthttp.RequestCtx, program, promoter string) {
	servePage(s, ctx, func(c context.Context, cursor string, limit int) (*Page[attribution.Statement], error) {
		return s.svc.Statements(c, program, promoter, cursor, limit)
	})
}

func (s *Server) getStatement(ctx *fasthttp.RequestCtx, id string) {
	c, cancel := s.storeCtx()
	defer cancel()
	st, err := s.svc.Statement(c, id)
	if err != nil {
		s.fail(ctx, err)
		return
	}
	s.reply(ctx, 200, st)
}

func (s *Server) getStatementEntries(ctx *fasthttp.RequestCtx, id string) {
	c, cancel := s.storeCtx()
	defer cancel()
	st, es, err := s.svc.StatementEntries(c, id)
	if err != nil {
		s.fail(ctx, err)
		return
	}
	if wantsCSV(ctx) {
		s.replyCSV(ctx, st.ID+".csv", entriesCSV(st, es))
		return
	}
	s.reply(ctx, 200, Page[EntryAnswer]{Items: es})
}

// PaidInput is the body of POST /v1/admin/statements/{id}/paid.
type PaidInput struct {
	Reference string `json:"reference"`
}

func (s *Server) postPaid(ctx *fasthttp.RequestCtx, id string) {
	var in PaidInput
	if err := decode(ctx, &in); err != nil {
		s.fail(ctx, err)
		return
	}
	c, cancel := s.storeCtx()
	defer cancel()
	st, err := s.svc.MarkPaid(c, id, in.Reference)
	if err != nil {
		s.fail(ctx, err)
		return
	}
	s.reply(ctx, 200, st)
}

func (s *Server) getBalance(ctx *fasthttp.RequestCtx, promoter string) {
	c, cancel := s.storeCtx()
	defer cancel()
	b, err := s.svc.Balance(c, string(ctx.QueryArgs().Peek("program")), promoter)
	if err != nil {
		s.fail(ctx, err)
		return
	}
	s.reply(ctx, 200, b)
}

// wantsCSV reports whether the request's Accept asks for text/csv.
func wantsCSV(ctx *fasthttp.RequestCtx) bool {
	for _, part := range strings.Split(string(ctx.Request.Header.Peek("Accept")), ",") {
		mt, _, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(mt), "text/csv") {
			return true
		}
	}
	return false
}

// entryColumns are the CSV columns of a statement's entries: what finance
// pays from and reconciles with the storefront's orders.
var entryColumns = []string{"statement", "program", "promoter", "currency", "entry", "kind", "amount",
	"order", "customer", "refund", "reason", "at", "available_at", "status"}

func entriesCSV(st *attribution.Statement, es []EntryAnswer) [][]string {
	rows := make([][]string, 0, len(es)+1)
	rows = append(rows, entryColumns)
	for _, e := range es {
		rows = append(rows, []string{st.ID, e.Program, e.Promoter, e.Currency, e.ID, string(e.Kind),
			strconv.FormatInt(e.Amount, 10), e.Order, e.Customer, e.Refund, e.Reason,
			e.At.UTC().Format(time.RFC3339Nano), e.AvailableAt.UTC().Format(time.RFC3339Nano), string(e.Status)})
	}
	return rows
}

// replyCSV answers 200 with rows as CSV (RFC 4180), as an attachment named
// name. A cell that a spreadsheet would run as a formula is prefixed with
// ' (OWASP's advice on CSV injection): reasons are operators' free text.
func (s *Server) replyCSV(ctx *fasthttp.RequestCtx, name string, rows [][]string) {
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	for _, r := range rows {
		for i, cell := range r {
			if cell != "" && strings.ContainsRune("=+-@\t\r", rune(cell[0])) && !isNumber(cell) {
				r[i] = "'" + cell
			}
		}
		w.Write(r)
	}
	w.Flush()
	ctx.SetStatusCode(200)
	ctx.SetContentType("text/csv; charset=utf-8")
	ctx.Response.Header.Set("Cache-Control", "no-store")
	ctx.Response.Header.Set("Content-Disposition", `attachment; filename="`+name+`"`)
	ctx.SetBody(b.Bytes())
}

func isNumber(s string) bool {
	_, err := strconv.ParseInt(s, 10, 64)
	return err == nil
}
