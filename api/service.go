package api

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/cookie"
	"github.com/refgate/refgate/events"
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
	// Events takes one event per decision made; nil for none.
	Events Emitter

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

// BindInput is a bind request, validated.
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
		return nil, errorf(EInvalid, "unknown program "+id)
	}
	return p, err
}

// promoter returns the promoter, or nil if there is none by that id.
func (sv *Service) promoter(ctx context.Context, id string) (*attribution.Promoter, error) {
	return sv.entities().promoter(ctx, sv.Store, id)
}

// click resolves the visitor's click from the token or, failing that, the
// visitor id's server-side record. It returns a reason instead when there
// is no valid click; an error only when the store cannot answer.
func (sv *Service) click(ctx context.Context, program, token, visitor string, now time.Time) (*attribution.ClickRef, string, error) {
	if token != "" {
		var t cookie.Token
		switch err := sv.Signer.Verify([]byte(token), now, &t); {
		case errors.Is(err, cookie.ErrExpired):
			return nil, attribution.ReasonTokenExpired, nil
		case err != nil || t.Program != program:
			return nil, attribution.ReasonTokenInvalid, nil
		}
		return &attribution.ClickRef{Promoter: t.Promoter, Link: t.Link, Click: t.Click, ExpiresAt: t.Expires}, "", nil
	}
	if visitor == "" {
		return nil, attribution.ReasonNoClick, nil
	}
	c, err := sv.Store.VisitorClick(ctx, program, visitor)
	if errors.Is(err, store.ErrNotFound) {
		return nil, attribution.ReasonNoClick, nil
	}
	if err != nil {
		return nil, "", err
	}
	return &attribution.ClickRef{Promoter: c.Promoter, Link: c.Link, Click: c.ID, ExpiresAt: c.ExpiresAt}, "", nil
}

// Bind ties a customer to the promoter of the visitor's click, by the
// program's rules (attribution.Bind).
func (sv *Service) Bind(ctx context.Context, in BindInput) (*BindAnswer, error) {
	now := sv.Now()
	p, err := sv.program(ctx, in.Program)
	if err != nil {
		return nil, err
	}
	ref, reason, err := sv.click(ctx, p.ID, in.Token, in.Visitor, now)
	if err != nil {
		return nil, err
	}
	var pr *attribution.Promoter
	if ref != nil {
		if pr, err = sv.promoter(ctx, ref.Promoter); err != nil {
			return nil, err
		}
	}
	var res attribution.BindResult
	var prev attribution.Association
	err = sv.Store.UpdateCustomer(ctx, in.Customer, "", func(c *attribution.Customer, _ *attribution.Order) (*store.CustomerUpdate, error) {
		c.Merge(in.Info)
		if a := c.State(p.ID).Assoc; a.Active(now) {
			prev = *a
		} else {
			prev = attribution.Association{}
		}
		res = attribution.Bind(c, attribution.BindRequest{Event: in.Event, Program: p, Click: ref, ClickReason: reason, Promoter: pr, Now: now})
		return &store.CustomerUpdate{Customer: c, Decision: &res.Decision, Program: p.ID}, nil
	})
	if err != nil {
		return nil, err
	}
	sv.Decisions.count(&res.Decision)
	sv.emit(bindEvent(p.ID, in, ref, &res, &prev))
	a := &BindAnswer{Associated: res.Associated, Reason: res.Reason}
	if res.Assoc != nil {
		a.Promoter, a.Kind, a.ExpiresAt = res.Assoc.Promoter, string(res.Assoc.Kind), &res.Assoc.ExpiresAt
	}
	return a, nil
}

// CustomerAnswer is the customer response body: fingerprints are counted,
// never echoed.
type CustomerAnswer struct {
	ID           string `json:"id"`
	Paid         bool   `json:"paid"`
	AgentServed  bool   `json:"agent_served"`
	Fingerprints int    `json:"fingerprints"`
}

// PutCustomer records what the storefront knows of a customer.
func (sv *Service) PutCustomer(ctx context.Context, id string, info attribution.CustomerInfo) (*CustomerAnswer, error) {
	var out CustomerAnswer
	err := sv.Store.UpdateCustomer(ctx, id, "", func(c *attribution.Customer, _ *attribution.Order) (*store.CustomerUpdate, error) {
		c.Merge(info)
		out = CustomerAnswer{ID: c.ID, Paid: c.Paid, AgentServed: c.AgentServed, Fingerprints: len(c.Fingerprints)}
		return &store.CustomerUpdate{Customer: c}, nil
	})
	return &out, err
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
// is an error (503), never "not attributed".
func (sv *Service) Attribution(ctx context.Context, program, customer string) (*AttributionAnswer, error) {
	c, err := sv.Store.Customer(ctx, customer)
	if errors.Is(err, store.ErrNotFound) {
		return &AttributionAnswer{}, nil
	}
	if err != nil {
		return nil, err
	}
	st := c.Programs[program]
	if st == nil || !st.Assoc.Active(sv.Now()) {
		return &AttributionAnswer{}, nil
	}
	a := st.Assoc
	return &AttributionAnswer{Attributed: true, Promoter: a.Promoter, Kind: string(a.Kind), Link: a.Link,
		Click: a.Click, Since: &a.Since, ExpiresAt: &a.ExpiresAt}, nil
}

// TokenAttribution answers what an attribution token says, if it is valid.
func (sv *Service) TokenAttribution(program, token string) *AttributionAnswer {
	var t cookie.Token
	switch err := sv.Signer.Verify([]byte(token), sv.Now(), &t); {
	case errors.Is(err, cookie.ErrExpired):
		return &AttributionAnswer{Reason: attribution.ReasonTokenExpired}
	case err != nil || (program != "" && t.Program != program):
		return &AttributionAnswer{Reason: attribution.ReasonTokenInvalid}
	}
	return &AttributionAnswer{Attributed: true, Promoter: t.Promoter, Link: t.Link, Click: t.Click,
		Since: &t.Issued, ExpiresAt: &t.Expires}
}

// ConversionInput is a conversion request, validated.
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
// decision.
func (sv *Service) Convert(ctx context.Context, in ConversionInput) (*ConversionAnswer, error) {
	now := sv.Now()
	p, err := sv.program(ctx, in.Program)
	if err != nil {
		return nil, err
	}
	owner, err := sv.Store.ClaimOrder(ctx, in.Order, in.Customer)
	if err != nil {
		return nil, err
	}
	if owner != in.Customer {
		return nil, errorf(EConflict, "order "+in.Order+" was reported for another customer")
	}
	promoters := map[string]*attribution.Promoter{} // read once, whatever the retries
	var out *attribution.Order
	var decided *attribution.Decision
	err = sv.Store.UpdateCustomer(ctx, in.Customer, in.Order, func(c *attribution.Customer, o *attribution.Order) (*store.CustomerUpdate, error) {
		decided = nil
		if o != nil {
			if o.Program != p.ID {
				return nil, errorf(EConflict, "order "+in.Order+" was reported for program "+o.Program)
			}
			out = o
			return nil, nil
		}
		c.Merge(in.Info)
		var pr *attribution.Promoter
		if a := c.State(p.ID).Assoc; a.Active(now) {
			var ok bool
			if pr, ok = promoters[a.Promoter]; !ok {
				var err error
				if pr, err = sv.promoter(ctx, a.Promoter); err != nil {
					return nil, err
				}
				promoters[a.Promoter] = pr
			}
		}
		ord := attribution.Convert(c, attribution.ConversionRequest{Program: p, Order: in.Order, Amount: in.Amount,
			Currency: in.Currency, Product: in.Product, Prepaid: in.Prepaid, Promoter: pr, Now: now})
		out = &ord
		d := ord.Decision()
		decided = &d
		return &store.CustomerUpdate{Customer: c, Order: &ord, Decision: &d, Program: p.ID}, nil
	})
	if err != nil {
		return nil, err
	}
	if decided != nil { // not for a replay of a known order
		sv.Decisions.count(decided)
		sv.emit(conversionEvent(out, decided))
	}
	return conversionAnswer(out), nil
}

// RefundAnswer is the refund response body.
type RefundAnswer struct {
	Order      string `json:"order"`
	Refunded   int64  `json:"refunded"`
	Commission int64  `json:"commission"`
}

// Refund reduces an order's kept cash and its commission in proportion.
func (sv *Service) Refund(ctx context.Context, order string, amount int64) (*RefundAnswer, error) {
	now := sv.Now()
	customer, err := sv.Store.OrderOwner(ctx, order)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errorf(ENotFound, "no order "+order)
	}
	if err != nil {
		return nil, err
	}
	var out RefundAnswer
	var d attribution.Decision
	var ord attribution.Order
	var delta int64
	err = sv.Store.UpdateCustomer(ctx, customer, order, func(c *attribution.Customer, o *attribution.Order) (*store.CustomerUpdate, error) {
		if o == nil { // claimed, but its decision was never stored
			return nil, errorf(ENotFound, "no order "+order)
		}
		before := o.Commission
		if err := attribution.Refund(c, o, amount); err != nil {
			return nil, err
		}
		ord, delta = *o, o.Commission-before
		out = RefundAnswer{Order: o.ID, Refunded: o.Refunded, Commission: o.Commission}
		d = attribution.Decision{At: now, Event: attribution.EventRefund, Promoter: o.Promoter, Click: o.Click,
			Outcome: attribution.DecisionRefunded, Order: o.ID}
		return &store.CustomerUpdate{Customer: c, Order: o, Decision: &d, Program: o.Program}, nil
	})
	if err != nil {
		return nil, err
	}
	sv.Decisions.count(&d)
	sv.emit(refundEvent(&ord, &d, customer, amount, delta))
	return &out, nil
}
