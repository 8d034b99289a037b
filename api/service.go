package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/cookie"
	"github.com/refgate/refgate/events"
	"github.com/refgate/refgate/internal/clock"
	"github.com/refgate/refgate/store"
)

// Emitter takes decision events off the request path; events.Pipeline is
// one. Emit must not block.
type Emitter interface {
	Emit(e *events.Event) bool
}

// Service applies the attribution rules against a store: it resolves clicks
// and promoters, then hands the rule and the customer's current state to
// store.UpdateCustomer, which applies the result atomically. The HTTP
// handlers decode, call it and encode; tests and benchmarks call it
// directly.
type Service struct {
	Store  store.Store
	Signer *cookie.Signer
	Hasher *attribution.FingerprintHasher
	Now    func() time.Time
	// Decisions counts decisions by event, outcome and reason; nil for none.
	Decisions *DecisionMetrics
	// LedgerMetrics counts ledger entries and repairs; nil for none.
	LedgerMetrics *LedgerMetrics
	// Events takes one event per decision made; nil for none.
	Events Emitter
	// PublicURL is the edge's base URL, without a trailing slash, for
	// links' "url" field.
	PublicURL string
	// Clock is the test clock MoveClock moves; nil for none.
	Clock *clock.Clock
	// Logger takes the line each erasure logs; nil for none.
	Logger *slog.Logger

	cacheOnce sync.Once
	cache     *entityCache
}

// CacheTTL is the longest a program or promoter read by the storefront
// routes is reused; invalidations usually drop it much sooner.
const CacheTTL = 2 * time.Second

func (sv *Service) entities() *entityCache {
	sv.cacheOnce.Do(func() { sv.cache = newEntityCache(CacheTTL) })
	return sv.cache
}

// Invalidate drops cached programs and promoters an invalidation names; wire
// it to store.Store.WatchInvalidations.
func (sv *Service) Invalidate(inv store.Invalidation) { sv.entities().invalidate(inv) }

// BindInput is a bind request; Info's fingerprints are hashed.
type BindInput struct {
	Program  string
	Customer string
	Event    string
	Token    string
	Visitor  string
	Info     attribution.CustomerInfo
}

// BindAnswer is the bind response body.
type BindAnswer struct {
	Associated bool       `json:"associated"`
	Promoter   string     `json:"promoter"`
	Kind       string     `json:"kind"`
	ExpiresAt  *time.Time `json:"expires_at"`
	Reason     string     `json:"reason"`
}

func (sv *Service) program(ctx context.Context, id string) (*attribution.Program, error) {
	p, err := sv.entities().program(ctx, sv.Store, id)
	if err == nil && p == nil {
		return nil, attribution.Errorf(attribution.EInvalid, "unknown program %s", id)
	}
	return p, err
}

// promoter returns the promoter, or nil if there is none by that id.
func (sv *Service) promoter(ctx context.Context, id string) (*attribution.Promoter, error) {
	return sv.entities().promoter(ctx, sv.Store, id)
}

// click resolves the visitor's click from the token or, failing that, the
// visitor id's server-side record. It returns a reason instead when there
// is no valid click; an error only when the store cannot answer. A click
// whose link was deleted, or whose lifetime no program gives, is no click.
func (sv *Service) click(ctx context.Context, program, token, visitor string, now time.Time) (*attribution.ClickRef, string, error) {
	switch {
	case token != "":
		ref, tokenProgram, reason := sv.tokenClick(token, now)
		if reason == "" && tokenProgram != program {
			reason = attribution.ReasonTokenInvalid
		}
		if reason != "" {
			return nil, reason, nil
		}
		return sv.checkClick(ctx, program, ref)
	case visitor != "":
		c, err := sv.Store.VisitorClick(ctx, program, visitor)
		if errors.Is(err, store.ErrNotFound) {
			return nil, attribution.ReasonNoClick, nil
		}
		if err != nil {
			return nil, "", err
		}
		return sv.checkClick(ctx, program, &attribution.ClickRef{Promoter: c.Promoter, Link: c.Link, Click: c.ID,
			IssuedAt: c.At, ExpiresAt: c.ExpiresAt})
	}
	return nil, attribution.ReasonNoClick, nil
}

// tokenClick reads a signed attribution token: the click it names and its
// program, or the reason it names none (token_expired, token_invalid).
func (sv *Service) tokenClick(token string, now time.Time) (*attribution.ClickRef, string, string) {
	var t cookie.Token
	switch err := sv.Signer.Verify([]byte(token), now, &t); {
	case errors.Is(err, cookie.ErrExpired):
		return nil, "", attribution.ReasonTokenExpired
	case err != nil:
		return nil, "", attribution.ReasonTokenInvalid
	}
	return &attribution.ClickRef{Promoter: t.Promoter, Link: t.Link, Click: t.Click, IssuedAt: t.Issued, ExpiresAt: t.Expires},
		t.Program, ""
}

// checkClick answers no_click for a click no program could have made or
// whose link no longer leads to its promoter on program.
func (sv *Service) checkClick(ctx context.Context, program string, ref *attribution.ClickRef) (*attribution.ClickRef, string, error) {
	if !ref.Plausible() {
		return nil, attribution.ReasonNoClick, nil
	}
	l, err := sv.entities().link(ctx, sv.Store, ref.Link)
	if err != nil {
		return nil, "", err
	}
	if l == nil || l.Program != program || l.Promoter != ref.Promoter {
		return nil, attribution.ReasonNoClick, nil
	}
	return ref, "", nil
}

// promoterSet holds the promoters a customer update may need. A
// store.UpdateCustomer callback must not call the store, so it takes them
// from here or from the entity cache's memory; for one it cannot find it
// returns *needPromoter, and update loads it and runs the update again.
type promoterSet map[string]*attribution.Promoter // a nil value: no such promoter

type needPromoter struct{ id string }

func (e *needPromoter) Error() string { return "promoter " + e.id + " not loaded" }

func (sv *Service) holder(ps promoterSet, id string) (*attribution.Promoter, error) {
	if p, ok := ps[id]; ok {
		return p, nil
	}
	if p, ok := sv.entities().cachedPromoter(id); ok {
		return p, nil
	}
	return nil, &needPromoter{id}
}

// update runs store.UpdateCustomer, loading the promoters fn asks for
// between runs (a customer changes holder rarely, so a few rounds at most).
func (sv *Service) update(ctx context.Context, customer, order string, ps promoterSet, fn store.UpdateFunc) error {
	for round := 0; ; round++ {
		err := sv.Store.UpdateCustomer(ctx, customer, order, fn)
		var need *needPromoter
		if !errors.As(err, &need) || round == 8 {
			return err
		}
		if ps[need.id], err = sv.promoter(ctx, need.id); err != nil {
			return err
		}
	}
}

// takeInfo merges what the storefront tells of c, ends c's associations if
// it is agent-served now, and returns those endings and the promoter holding
// c in program p afterwards (nil if none), from ps or the cache's memory
// (*needPromoter if neither has it).
func (sv *Service) takeInfo(c *attribution.Customer, info attribution.CustomerInfo, p *attribution.Program, event string,
	now time.Time, ps promoterSet) ([]attribution.Decision, *attribution.Promoter, error) {
	c.Merge(info)
	ended := attribution.EndAgentServed(c, event, now)
	if a := c.State(p.ID).Assoc; a.Active(now) {
		holder, err := sv.holder(ps, a.Promoter)
		return ended, holder, err
	}
	return ended, nil, nil
}

// checkIDs reports a program or customer id that cannot be one as an
// EInvalid error.
func checkIDs(program, customer string) error {
	if !attribution.ValidProgramID(program) {
		return attribution.Errorf(attribution.EInvalid, "program must be a program id")
	}
	if !attribution.ValidID(customer) {
		return attribution.Errorf(attribution.EInvalid, "customer must be 1 to 128 characters of A-Z a-z 0-9 . _ : @ -")
	}
	return nil
}

// opID names a request by what it asks, so that the same request sent
// again (a retry after a lost reply, by refgate or by the storefront) is
// recognised in the customer's Applied list.
func opID(kind string, parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return kind + ":" + base64.RawURLEncoding.EncodeToString(h.Sum(nil)[:18])
}

func infoKey(in attribution.CustomerInfo) string {
	return strconv.FormatBool(in.Paid) + strconv.FormatBool(in.AgentServed) + strings.Join(in.Fingerprints, ",")
}

// withIDs gives every new decision its id, also the id of its event.
func withIDs(ds []attribution.Decision) []attribution.Decision {
	for i := range ds {
		ds[i].ID = events.NewID()
	}
	return ds
}

// Bind ties a customer to the promoter of the visitor's click, by the
// program's rules (attribution.Bind). A click binds at most the program's
// binds_per_click customers. The same request again within
// attribution.ReplayWindow gets the same answer and re-emits the same
// events.
func (sv *Service) Bind(ctx context.Context, in BindInput) (*BindAnswer, error) {
	if err := checkIDs(in.Program, in.Customer); err != nil {
		return nil, err
	}
	if in.Event != attribution.EventRegister && in.Event != attribution.EventLogin {
		return nil, attribution.Errorf(attribution.EInvalid, `event must be "register" or "login"`)
	}
	now := sv.Now()
	p, err := sv.program(ctx, in.Program)
	if err != nil {
		return nil, err
	}
	ref, reason, err := sv.click(ctx, p.ID, in.Token, in.Visitor, now)
	if err != nil {
		return nil, err
	}
	clickID := ""
	ps := promoterSet{}
	if ref != nil {
		clickID = ref.Click
		if ps[ref.Promoter], err = sv.promoter(ctx, ref.Promoter); err != nil {
			return nil, err
		}
	}
	op := opID("bind", p.ID, in.Customer, in.Event, clickID, reason, infoKey(in.Info))
	// The click's use is claimed under an id of this attempt, not of the
	// request: the same request sent again later (a second login with the
	// same cookie) must not take for its own, and release, the use an
	// earlier bind of the customer made.
	claimID := op + "/" + events.NewID()
	claim := store.ClickHeld
	if ref != nil {
		if claim, err = sv.Store.ClaimClick(ctx, ref.Click, in.Customer, claimID, p.BindsPerClick, ref.ExpiresAt.Sub(now)); err != nil {
			return nil, err
		}
	}
	var rec attribution.Applied
	fresh := false
	err = sv.update(ctx, in.Customer, "", ps, func(c *attribution.Customer, _ *attribution.Order) (*store.CustomerUpdate, error) {
		if r := c.Recall(op, now); r != nil {
			rec, fresh = *r, false
			return nil, nil
		}
		ds, holder, err := sv.takeInfo(c, in.Info, p, in.Event, now, ps)
		if err != nil {
			return nil, err
		}
		var pr *attribution.Promoter
		if ref != nil {
			pr = ps[ref.Promoter]
		}
		res := attribution.Bind(c, attribution.BindRequest{Event: in.Event, Program: p, Click: ref, ClickReason: reason,
			ClickUsed: claim == store.ClickUsed, Promoter: pr, Holder: holder, Now: now})
		rec = attribution.Applied{Op: op, At: now, Associated: res.Associated}
		if res.Ended != nil {
			ds = append(ds, *res.Ended)
		} else if holder != nil {
			rec.Previous = holder.ID
		}
		if res.Assoc != nil {
			a := *res.Assoc
			rec.Assoc = &a
		}
		rec.Decisions = withIDs(append(ds, res.Decision))
		c.Remember(rec)
		fresh = true
		return &store.CustomerUpdate{Customer: c, Decisions: rec.Decisions, Now: now}, nil
	})
	if err != nil {
		// The claim stays: the write may have landed. A retry of the same
		// request finds the customer holding the click's use, which is no
		// new use; had the write not landed, the use is the customer's
		// all the same (never more than the limit, at worst one a
		// rejected bind should have given back).
		return nil, err
	}
	if !rec.Associated && claim == store.ClickClaimed {
		if err := sv.Store.ReleaseClick(ctx, ref.Click, in.Customer, claimID); err != nil {
			// The click keeps one use it should not; binding this customer
			// again still works (the use is theirs).
			return nil, err
		}
	}
	sv.decided(fresh, in.Customer, rec.Decisions, func(d *attribution.Decision) *events.Event {
		return bindEvent(in, ref, &rec, d)
	})
	if fresh {
		sv.countBind(ctx, p.ID, ref, &rec.Decisions[len(rec.Decisions)-1])
	}
	a := &BindAnswer{Associated: rec.Associated, Reason: rec.Decisions[len(rec.Decisions)-1].Reason}
	if rec.Assoc != nil {
		a.Promoter, a.Kind, a.ExpiresAt = rec.Assoc.Promoter, string(rec.Assoc.Kind), &rec.Assoc.ExpiresAt
	}
	return a, nil
}

// decided counts decisions just made and emits the events of ds, just made
// or replayed: a replay emits them again under the same ids, so that a
// decision whose first answer was lost is never missing downstream. ev
// builds the event of a decision that is not an association ending.
func (sv *Service) decided(fresh bool, customer string, ds []attribution.Decision, ev func(d *attribution.Decision) *events.Event) {
	if !fresh && len(ds) > 0 {
		sv.Decisions.replayed(ds[len(ds)-1].Event)
	}
	for i := range ds {
		d := &ds[i]
		if fresh {
			sv.Decisions.count(d)
		}
		if d.Outcome == attribution.DecisionEnded {
			sv.emit(endedEvent(customer, d))
		} else {
			sv.emit(ev(d))
		}
	}
}

// CustomerAnswer is the customer response body: fingerprints are counted,
// never echoed.
type CustomerAnswer struct {
	ID           string `json:"id"`
	Paid         bool   `json:"paid"`
	AgentServed  bool   `json:"agent_served"`
	Fingerprints int    `json:"fingerprints"`
}

// PutCustomer records what the storefront knows of a customer. A customer
// who becomes agent-served loses every association (docs/rules.md T 2.5).
func (sv *Service) PutCustomer(ctx context.Context, id string, info attribution.CustomerInfo) (*CustomerAnswer, error) {
	if !attribution.ValidID(id) {
		return nil, attribution.Errorf(attribution.EInvalid, "customer id must be 1 to 128 characters of A-Z a-z 0-9 . _ : @ -")
	}
	now := sv.Now()
	op := opID("customer", id, infoKey(info))
	var out CustomerAnswer
	var ended []attribution.Decision
	fresh := false
	err := sv.Store.UpdateCustomer(ctx, id, "", func(c *attribution.Customer, _ *attribution.Order) (*store.CustomerUpdate, error) {
		r := c.Recall(op, now)
		if fresh = r == nil; fresh {
			c.Merge(info)
			if ended = withIDs(attribution.EndAgentServed(c, attribution.EventCustomer, now)); len(ended) > 0 {
				c.Remember(attribution.Applied{Op: op, At: now, Decisions: ended})
			}
		} else {
			ended = r.Decisions
		}
		out = CustomerAnswer{ID: c.ID, Paid: c.Paid, AgentServed: c.AgentServed, Fingerprints: len(c.Fingerprints)}
		if !fresh {
			return nil, nil
		}
		return &store.CustomerUpdate{Customer: c, Decisions: ended, Now: now}, nil
	})
	if err != nil {
		return nil, err
	}
	sv.decided(fresh, id, ended, nil)
	return &out, nil
}

// EraseCustomer forgets a customer (DESIGN "Privacy"): its record
// (fingerprints, associations, flags), its decision logs in every program
// and its claims of clicks go; its orders stay, decisions and amounts
// included, with the customer replaced by its keyed hash
// (FingerprintHasher.CustomerAlias). The same order reported again then
// gets its stored decision, never a second one; a refund of it is applied
// to the order alone. Erasing is idempotent: an unknown or erased
// customer is erased already, and an erasure that failed part-way (an
// error, a crash) is finished by the next. The customer id may be used
// again afterwards, as a new customer.
//
// There is no event type for it: it is logged, with the alias, not the
// id, and counts of what went. An id with the alias prefix ("erased:") is
// refused (EInvalid): it names what is kept of an erased customer.
func (sv *Service) EraseCustomer(ctx context.Context, id string) error {
	switch {
	case !attribution.ValidID(id):
		return attribution.Errorf(attribution.EInvalid, "customer id must be 1 to 128 characters of A-Z a-z 0-9 . _ : @ -")
	case strings.HasPrefix(id, attribution.AliasPrefix):
		// An alias holds an erased customer's orders: erasing it would
		// move them again, out of reach of the customer's id.
		return attribution.Errorf(attribution.EInvalid, "customer ids starting with %q name erased customers; they cannot be erased again", attribution.AliasPrefix)
	}
	alias := sv.Hasher.CustomerAlias(id)
	e, err := sv.Store.EraseCustomer(ctx, id, alias)
	if err != nil {
		return err
	}
	if sv.Logger != nil {
		sv.Logger.Info("customer erased", "alias", alias, "record", e.Customer, "orders", e.Orders,
			"decision_logs", e.DecisionLogs, "click_claims", e.ClickClaims)
	}
	return nil
}

// AttributionAnswer is the attribution lookup response body.
type AttributionAnswer struct {
	Attributed bool       `json:"attributed"`
	Promoter   string     `json:"promoter"`
	Kind       string     `json:"kind"`
	Link       string     `json:"link"`
	Click      string     `json:"click"`
	Since      *time.Time `json:"since"`
	ExpiresAt  *time.Time `json:"expires_at"`
	Reason     string     `json:"reason,omitempty"`
}

// Attribution answers who holds a customer now. A store that cannot answer
// is an error (503), never "not attributed". An association that ended
// answers not attributed, with the reason it ended.
func (sv *Service) Attribution(ctx context.Context, program, customer string) (*AttributionAnswer, error) {
	c, err := sv.Store.Customer(ctx, customer)
	if errors.Is(err, store.ErrNotFound) {
		return &AttributionAnswer{}, nil
	}
	if err != nil {
		return nil, err
	}
	st := c.Programs[program]
	switch {
	case st == nil || st.Assoc == nil:
		return &AttributionAnswer{}, nil
	case st.Assoc.Ended != "":
		return &AttributionAnswer{Reason: st.Assoc.Ended}, nil
	case !st.Assoc.Active(sv.Now()):
		return &AttributionAnswer{}, nil
	}
	a := st.Assoc
	return &AttributionAnswer{Attributed: true, Promoter: a.Promoter, Kind: string(a.Kind), Link: a.Link,
		Click: a.Click, Since: &a.Since, ExpiresAt: &a.ExpiresAt}, nil
}

// TokenAttribution answers what an attribution token says, if it is valid
// and would bind: its link not deleted, its lifetime one a program gives.
func (sv *Service) TokenAttribution(ctx context.Context, program, token string) (*AttributionAnswer, error) {
	ref, tokenProgram, reason := sv.tokenClick(token, sv.Now())
	if reason == "" && program != "" && tokenProgram != program {
		reason = attribution.ReasonTokenInvalid
	}
	if reason == "" {
		var err error
		if ref, reason, err = sv.checkClick(ctx, tokenProgram, ref); err != nil {
			return nil, err
		}
	}
	if reason != "" {
		return &AttributionAnswer{Reason: reason}, nil
	}
	return &AttributionAnswer{Attributed: true, Promoter: ref.Promoter, Link: ref.Link, Click: ref.Click,
		Since: &ref.IssuedAt, ExpiresAt: &ref.ExpiresAt}, nil
}

// ConversionInput is a conversion request; Info's fingerprints are hashed.
type ConversionInput struct {
	Program  string
	Order    string
	Customer string
	Amount   int64
	Currency string
	Product  string
	Prepaid  bool
	Info     attribution.CustomerInfo
}

// ConversionAnswer is the conversion response body.
type ConversionAnswer struct {
	Order      string           `json:"order"`
	Eligible   bool             `json:"eligible"`
	Reason     string           `json:"reason"`
	Promoter   string           `json:"promoter"`
	Kind       string           `json:"kind"`
	Rate       attribution.Rate `json:"rate"`
	Commission int64            `json:"commission"`
	Currency   string           `json:"currency"`
}

// conversionAnswer is the decision as it was made: a retry after refunds
// still gets the commission granted then (refunds answer with what is left).
func conversionAnswer(o *attribution.Order) *ConversionAnswer {
	return &ConversionAnswer{Order: o.ID, Eligible: o.Eligible, Reason: o.Reason, Promoter: o.Promoter,
		Kind: string(o.Kind), Rate: o.Rate, Commission: o.Granted, Currency: o.Currency}
}

// Convert decides an order (attribution.Convert). The order id makes it
// idempotent: the same order again, concurrently too, gets the stored
// decision and its events again under the same ids; the same order id with
// other values is a conflict.
func (sv *Service) Convert(ctx context.Context, in ConversionInput) (*ConversionAnswer, error) {
	if err := checkIDs(in.Program, in.Customer); err != nil {
		return nil, err
	}
	switch {
	case !attribution.ValidID(in.Order):
		return nil, attribution.Errorf(attribution.EInvalid, "order must be 1 to 128 characters of A-Z a-z 0-9 . _ : @ -")
	case in.Amount < 0 || in.Amount > attribution.MaxAmount:
		return nil, attribution.Errorf(attribution.EInvalid, "amount must be between 0 and 10^15 minor units")
	case len(in.Currency) > attribution.MaxCurrencyLen || len(in.Product) > 128:
		return nil, attribution.Errorf(attribution.EInvalid, "currency or product too long")
	}
	now := sv.Now()
	p, err := sv.program(ctx, in.Program)
	if err != nil {
		return nil, err
	}
	// The ledger's mark goes with the claim, before the decision is
	// stored: a crash between the decision and its entry leaves it for
	// RepairLedger (ledger.go).
	mark := orderMark(in.Order)
	owner, err := sv.Store.ClaimOrderAndMark(ctx, in.Order, in.Customer, p.ID, mark, now)
	if err != nil {
		return nil, err
	}
	if owner != in.Customer {
		if alias := sv.Hasher.CustomerAlias(in.Customer); owner == alias {
			return sv.erasedOrder(ctx, p, in, alias)
		}
		return nil, attribution.Errorf(attribution.EConflict, "order %s was reported for another customer", in.Order)
	}
	// The commission goes into the ledger in the order's currency.
	if !attribution.ValidCurrency(in.Currency) {
		return nil, attribution.Errorf(attribution.EInvalid, "currency must be at most %d printable ASCII characters, such as CNY", attribution.MaxCurrencyLen)
	}
	var out *attribution.Order
	fresh := false
	ps := promoterSet{}
	err = sv.update(ctx, in.Customer, in.Order, ps, func(c *attribution.Customer, o *attribution.Order) (*store.CustomerUpdate, error) {
		if o != nil {
			if err := o.CheckSame(p.ID, in.Customer, in.Amount, in.Currency, in.Product, in.Prepaid); err != nil {
				return nil, err
			}
			out, fresh = o, false
			return nil, nil
		}
		ended, pr, err := sv.takeInfo(c, in.Info, p, attribution.EventConversion, now, ps)
		if err != nil {
			return nil, err
		}
		ord := attribution.Convert(c, attribution.ConversionRequest{Program: p, Order: in.Order, Amount: in.Amount,
			Currency: in.Currency, Product: in.Product, Prepaid: in.Prepaid, Promoter: pr, Now: now})
		ord.Decisions = withIDs(append(ended, ord.Decisions...))
		out, fresh = &ord, true
		return &store.CustomerUpdate{Customer: c, Order: &ord, Decisions: ord.Decisions, Now: now}, nil
	})
	if err != nil {
		return nil, err
	}
	sv.decided(fresh, in.Customer, out.Decisions, func(d *attribution.Decision) *events.Event {
		return conversionEvent(out, d)
	})
	if fresh {
		sv.countConversion(ctx, out)
	}
	// A replayed order posts its entry again: that is what repairs one
	// whose first request stopped before the entry.
	if _, _, err := sv.post(ctx, p.ID, accrual(p, out), mark); err != nil {
		return nil, err
	}
	return conversionAnswer(out), nil
}

// erasedOrder answers an order of a customer since erased, reported again:
// its record is the alias's now, and the same order gets its stored
// decision (and its events again, under their ids, with the alias for the
// customer), never a new one. The conflict check compares the request's
// customer by its alias, the rest as for any order: other values are a
// conflict. Nothing is written: the customer stays erased.
func (sv *Service) erasedOrder(ctx context.Context, p *attribution.Program, in ConversionInput, alias string) (*ConversionAnswer, error) {
	var out *attribution.Order
	err := sv.Store.UpdateCustomer(ctx, alias, in.Order, func(_ *attribution.Customer, o *attribution.Order) (*store.CustomerUpdate, error) {
		if o == nil { // claimed, but its decision was never stored
			return nil, attribution.Errorf(attribution.EConflict, "order %s was reported for a customer since erased, and never decided", in.Order)
		}
		if err := o.CheckSame(p.ID, alias, in.Amount, in.Currency, in.Product, in.Prepaid); err != nil {
			return nil, err
		}
		out = o
		return nil, nil
	})
	if err != nil {
		return nil, err
	}
	sv.decided(false, alias, out.Decisions, func(d *attribution.Decision) *events.Event {
		return conversionEvent(out, d)
	})
	if e := accrual(p, out); e != nil {
		if _, _, err := sv.post(ctx, p.ID, e, orderMark(in.Order)); err != nil {
			return nil, err
		}
	}
	return conversionAnswer(out), nil
}

// RefundAnswer is the refund response body.
type RefundAnswer struct {
	Order      string `json:"order"`
	Refund     string `json:"refund"`
	Refunded   int64  `json:"refunded"`
	Commission int64  `json:"commission"`
}

// Refund reduces an order's kept cash and its commission in proportion
// (attribution.Refund). The refund id makes it idempotent: the same refund
// again gets the same answer and its event again under the same id.
func (sv *Service) Refund(ctx context.Context, order, refund string, amount int64) (*RefundAnswer, error) {
	switch {
	case !attribution.ValidID(order):
		return nil, attribution.Errorf(attribution.ENotFound, "no order %s", order)
	case !attribution.ValidRefundID(refund):
		return nil, attribution.Errorf(attribution.EInvalid, "refund (the storefront's id of this refund, 1 to 128 characters of A-Z a-z 0-9 . _ : -) is required")
	case amount < 1 || amount > attribution.MaxAmount:
		return nil, attribution.Errorf(attribution.EInvalid, "amount must be between 1 and 10^15 minor units")
	}
	now := sv.Now()
	customer, err := sv.Store.OrderOwner(ctx, order)
	if errors.Is(err, store.ErrNotFound) {
		return nil, attribution.Errorf(attribution.ENotFound, "no order %s", order)
	}
	if err != nil {
		return nil, err
	}
	// The order's program is known only from its record: the mark goes in
	// once it is read, before the refund is stored.
	mark := refundMark(order, refund)
	marked := ""
	var ord attribution.Order
	var rec attribution.RefundRecord
	var d attribution.Decision
	fresh := false
	update := func() error {
		return sv.Store.UpdateCustomer(ctx, customer, order, func(c *attribution.Customer, o *attribution.Order) (*store.CustomerUpdate, error) {
			if o == nil { // claimed, but its decision was never stored
				return nil, attribution.Errorf(attribution.ENotFound, "no order %s", order)
			}
			if marked != o.Program {
				// fn runs inside the store's update; marking here would
				// call the store from fn. Stop, mark, and run it again.
				return nil, errMarkFirst{program: o.Program}
			}
			r, replay, err := attribution.Refund(c, o, refund, amount, now)
			if err != nil {
				return nil, err
			}
			if fresh = !replay; fresh {
				r.Decision = events.NewID()
			}
			rec, ord, d = *r, *o, o.RefundDecision(r)
			switch {
			case !fresh:
				return nil, nil
			case o.Erased:
				// The customer is gone: the order alone keeps the refund,
				// and no customer record or decision log is made for the
				// alias.
				return &store.CustomerUpdate{Order: o}, nil
			}
			return &store.CustomerUpdate{Customer: c, Order: o, Decisions: []attribution.Decision{d}, Now: now}, nil
		})
	}
	var program string
	for {
		err = update()
		var mf errMarkFirst
		if !errors.As(err, &mf) {
			break
		}
		if err := sv.Store.MarkLedger(ctx, mf.program, mark, now); err != nil {
			return nil, err
		}
		marked, program = mf.program, mf.program
	}
	if err != nil {
		return nil, err
	}
	sv.decided(fresh, customer, []attribution.Decision{d}, func(d *attribution.Decision) *events.Event {
		return refundEvent(&ord, &rec, d)
	})
	if fresh {
		sv.countRefund(ctx, &ord, &rec)
	}
	p, err := sv.program(ctx, program)
	if err != nil {
		return nil, err
	}
	if _, _, err := sv.post(ctx, program, reversal(p, &ord, &rec), mark); err != nil {
		return nil, err
	}
	return &RefundAnswer{Order: order, Refund: refund, Refunded: rec.Refunded, Commission: rec.Commission}, nil
}

// errMarkFirst stops a refund's update to mark the ledger of the order's
// program before the refund is stored.
type errMarkFirst struct{ program string }

func (e errMarkFirst) Error() string { return "ledger mark needed in program " + e.program }

// orNotFound turns store.ErrNotFound into an ENotFound error saying msg.
func orNotFound(err error, msg string) error {
	if errors.Is(err, store.ErrNotFound) {
		return attribution.Errorf(attribution.ENotFound, "%s", msg)
	}
	return err
}

// Explain lists the decisions kept for a customer in a program, newest
// first; none is an empty list, a store that cannot answer an error.
func (sv *Service) Explain(ctx context.Context, program, customer string) (*ExplainAnswer, error) {
	ds, err := sv.Store.Decisions(ctx, program, customer)
	if err != nil {
		return nil, err
	}
	if ds == nil {
		ds = []attribution.Decision{}
	}
	return &ExplainAnswer{Decisions: ds}, nil
}

// ExplainAnswer is the explain response body.
type ExplainAnswer struct {
	Decisions []attribution.Decision `json:"decisions"`
}

// PutProgram stores p as program id, normalised, and drops cached copies.
// A body id other than id, or a bad value, is an EInvalid error.
func (sv *Service) PutProgram(ctx context.Context, id string, p attribution.Program) (*attribution.Program, error) {
	if p.ID != "" && p.ID != id {
		return nil, attribution.Errorf(attribution.EInvalid, "body id %s does not match the path's %s", p.ID, id)
	}
	p.ID = id
	p.Normalize()
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if err := sv.Store.PutProgram(ctx, &p); err != nil {
		return nil, err
	}
	sv.Invalidate(store.Invalidation{Kind: store.Program, ID: p.ID})
	return &p, nil
}

// GetProgram reads a program from the store (not the cache); an unknown id
// is an ENotFound error.
func (sv *Service) GetProgram(ctx context.Context, id string) (*attribution.Program, error) {
	p, err := sv.Store.Program(ctx, id)
	if err != nil {
		return nil, orNotFound(err, "no program "+id)
	}
	return p, nil
}

// PromoterInput is the promoter PUT body.
type PromoterInput struct {
	Status       string                    `json:"status"`
	Tier         int                       `json:"tier"`
	Fingerprints *attribution.Fingerprints `json:"fingerprints"` // nil: keep the stored ones
}

// PromoterAnswer is a promoter as the API shows it: fingerprints are never
// echoed, only how many are kept.
type PromoterAnswer struct {
	ID           string `json:"id"`
	Status       string `json:"status"`
	Tier         int    `json:"tier"`
	Fingerprints int    `json:"fingerprints"`
	// TokensRevokedAt is when the promoter's tokens were last revoked
	// (DELETE /v1/admin/promoters/{id}/tokens); absent if never.
	TokensRevokedAt *time.Time `json:"tokens_revoked_at,omitempty"`
}

func promoterAnswer(p *attribution.Promoter) *PromoterAnswer {
	return &PromoterAnswer{p.ID, p.Status, p.Tier, len(p.Fingerprints), p.TokensRevokedAt}
}

// PutPromoter stores promoter id and drops cached copies. Without
// fingerprints it keeps the stored ones (a monthly tier update must not
// erase the self-referral data); with them it replaces them. It always
// keeps the time the promoter's tokens were revoked: a PUT must not bring
// revoked tokens back. What it keeps is kept atomically
// (store.Store.UpdatePromoter), also against a concurrent revocation. A
// bad value, a fingerprint that does not parse among them, is an EInvalid
// error.
func (sv *Service) PutPromoter(ctx context.Context, id string, in PromoterInput) (*PromoterAnswer, error) {
	p := attribution.Promoter{ID: id, Status: in.Status, Tier: in.Tier}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	var fp attribution.FingerprintSet
	if in.Fingerprints != nil {
		var err error
		if fp, err = sv.Hasher.Hash(*in.Fingerprints); err != nil {
			return nil, err
		}
	}
	var out attribution.Promoter
	err := sv.Store.UpdatePromoter(ctx, id, func(old *attribution.Promoter) (*attribution.Promoter, error) {
		out = p
		if old != nil {
			out.Fingerprints, out.TokensRevokedAt = old.Fingerprints, old.TokensRevokedAt
		}
		if in.Fingerprints != nil {
			out.Fingerprints = fp
		}
		return &out, nil
	})
	if err != nil {
		return nil, err
	}
	sv.Invalidate(store.Invalidation{Kind: store.Promoter, ID: p.ID})
	return promoterAnswer(&out), nil
}

// GetPromoter reads a promoter from the store; an unknown id is an
// ENotFound error.
func (sv *Service) GetPromoter(ctx context.Context, id string) (*PromoterAnswer, error) {
	p, err := sv.Store.Promoter(ctx, id)
	if err != nil {
		return nil, orNotFound(err, "no promoter "+id)
	}
	return promoterAnswer(p), nil
}

// LinkInput is the link POST body; an empty Code asks for a generated one.
type LinkInput struct {
	Program     string `json:"program"`
	Promoter    string `json:"promoter"`
	Destination string `json:"destination"`
	Code        string `json:"code"`
}

// LinkAnswer is a link as the API shows it, with its clicks by outcome when
// read back.
type LinkAnswer struct {
	Code        string                        `json:"code"`
	URL         string                        `json:"url"`
	Program     string                        `json:"program"`
	Promoter    string                        `json:"promoter"`
	Destination string                        `json:"destination"`
	CreatedAt   time.Time                     `json:"created_at"`
	Status      attribution.LinkStatus        `json:"status"`      // active or paused
	ExpiresAt   *time.Time                    `json:"expires_at"`  // null: never
	ExpiredURL  string                        `json:"expired_url"` // "": the destination
	Clicks      map[attribution.Outcome]int64 `json:"clicks,omitempty"`
}

func (sv *Service) linkAnswer(l *attribution.Link) *LinkAnswer {
	st := l.Status
	if st == "" {
		st = attribution.LinkActive
	}
	return &LinkAnswer{Code: l.Code, URL: sv.PublicURL + "/r/" + l.Code, Program: l.Program,
		Promoter: l.Promoter, Destination: l.Destination, CreatedAt: l.CreatedAt,
		Status: st, ExpiresAt: l.ExpiresAt, ExpiredURL: l.ExpiredURL}
}

// Generated codes: 10 characters of [A-Za-z0-9], about 59.5 random bits,
// so that codes cannot be enumerated.
const (
	codeLen      = 10
	codeAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
)

// newCode draws a code from crypto/rand, rejecting bytes that would bias the
// alphabet (256 is not a multiple of 62).
func newCode() string {
	b := make([]byte, 0, codeLen)
	var buf [32]byte
	for len(b) < codeLen {
		rand.Read(buf[:])
		for _, x := range buf {
			if x < 248 && len(b) < codeLen { // 248 = 4 × 62
				b = append(b, codeAlphabet[x%62])
			}
		}
	}
	return string(b)
}

// CreateLink stores a new link for a known program and promoter, its
// destination host allowed by the program. Without a code it draws one,
// drawing again (5 tries in all) if it is taken. An unknown program or
// promoter, a bad code or destination is an EInvalid error; a code given
// and taken an EConflict error.
func (sv *Service) CreateLink(ctx context.Context, in LinkInput) (*LinkAnswer, error) {
	if in.Code != "" && !attribution.ValidCode(in.Code) {
		return nil, attribution.Errorf(attribution.EInvalid, "code must be 3 to 64 characters of A-Z a-z 0-9 _ -")
	}
	p, err := sv.Store.Program(ctx, in.Program)
	if errors.Is(err, store.ErrNotFound) || in.Program == "" {
		err = attribution.Errorf(attribution.EInvalid, "unknown program %s", in.Program)
	}
	if err != nil {
		return nil, err
	}
	_, err = sv.Store.Promoter(ctx, in.Promoter)
	if errors.Is(err, store.ErrNotFound) || in.Promoter == "" {
		err = attribution.Errorf(attribution.EInvalid, "unknown promoter %s", in.Promoter)
	}
	if err != nil {
		return nil, err
	}
	u, host, err := attribution.ParseDestination(in.Destination)
	if err != nil {
		return nil, err
	}
	if !p.AllowsHost(host) {
		return nil, attribution.Errorf(attribution.EInvalid, "destination host %s is not allowed by program %s", host, p.ID)
	}
	l := attribution.Link{Code: in.Code, Program: p.ID, Promoter: in.Promoter,
		Destination: u.String(), CreatedAt: sv.Now()}
	for try := 0; ; try++ {
		if in.Code == "" {
			l.Code = newCode()
		}
		err = sv.Store.CreateLink(ctx, &l)
		if !errors.Is(err, store.ErrExists) || in.Code != "" || try == 4 {
			break
		}
	}
	if errors.Is(err, store.ErrExists) {
		err = attribution.Errorf(attribution.EConflict, "link code %s is taken", l.Code)
	}
	if err != nil {
		return nil, err
	}
	return sv.linkAnswer(&l), nil
}

// GetLink reads a link and its clicks by outcome; an unknown or deleted
// code is an ENotFound error.
func (sv *Service) GetLink(ctx context.Context, code string) (*LinkAnswer, error) {
	l, err := sv.Store.Link(ctx, code)
	if err != nil {
		return nil, orNotFound(err, "no link "+code)
	}
	a := sv.linkAnswer(l)
	if a.Clicks, err = sv.Store.LinkStats(ctx, code); err != nil {
		return nil, err
	}
	return a, nil
}

// DeleteLink deletes a link; an unknown or deleted code is an ENotFound
// error.
func (sv *Service) DeleteLink(ctx context.Context, code string) error {
	return orNotFound(sv.Store.DeleteLink(ctx, code), "no link "+code)
}

// ClockInput is the test clock POST body: exactly one of Set (RFC 3339) and
// Advance (a duration).
type ClockInput struct {
	Set     string `json:"set"`
	Advance string `json:"advance"`
}

// MoveClock sets or advances the test clock and returns the time it reads
// now. A request that gives neither or both, or a value that does not
// parse, is an EInvalid error; a service without a Clock cannot move it
// (ENotFound).
func (sv *Service) MoveClock(in ClockInput) (time.Time, error) {
	switch {
	case sv.Clock == nil:
		return time.Time{}, attribution.Errorf(attribution.ENotFound, "no test clock")
	case in.Set != "" && in.Advance != "", in.Set == "" && in.Advance == "":
		return time.Time{}, attribution.Errorf(attribution.EInvalid, `give exactly one of "set" (RFC 3339) or "advance" (a duration such as "720h")`)
	case in.Set != "":
		t, err := time.Parse(time.RFC3339, in.Set)
		if err != nil {
			return time.Time{}, attribution.Errorf(attribution.EInvalid, "set: %v", err)
		}
		return sv.Clock.Set(t), nil
	}
	d, err := time.ParseDuration(in.Advance)
	if err != nil {
		return time.Time{}, attribution.Errorf(attribution.EInvalid, "advance: %v", err)
	}
	return sv.Clock.Advance(d), nil
}
