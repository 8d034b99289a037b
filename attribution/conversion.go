package attribution

import (
	"slices"
	"time"
)

// Order is a reported paid order and the decision made on it. The decision
// is made once; the same order id reported again gets the same answer.
type Order struct {
	ID         string    `json:"order"`
	Program    string    `json:"program"`
	Customer   string    `json:"customer"`
	Amount     int64     `json:"amount"` // cash paid, minor units
	Currency   string    `json:"currency"`
	Product    string    `json:"product"`
	Prepaid    bool      `json:"prepaid"`
	Eligible   bool      `json:"eligible"`
	Reason     string    `json:"reason"`
	Promoter   string    `json:"promoter,omitempty"`
	Click      string    `json:"click,omitempty"`
	Link       string    `json:"link,omitempty"` // the link of the association the order found
	Kind       Kind      `json:"kind,omitempty"`
	Rate       Rate      `json:"rate"`
	Commission int64     `json:"commission"` // after refunds
	Granted    int64     `json:"granted"`    // before refunds
	Refunded   int64     `json:"refunded"`   // cash refunded so far
	At         time.Time `json:"at"`
	// Decisions are those the conversion made, ids included: an
	// association it ended, then the conversion decision. A retried order
	// emits their events again under the same ids.
	Decisions []Decision     `json:"decisions,omitempty"`
	Refunds   []RefundRecord `json:"refunds,omitempty"`
	// Erased says the customer was erased (DELETE /v1/customers/{id}):
	// Customer is then the keyed hash of its id
	// (FingerprintHasher.CustomerAlias), and the order is kept for its
	// money alone.
	Erased bool `json:"erased,omitempty"`
}

// RefundRecord is one refund of an order, kept by its id so that the same
// refund reported again is answered as before.
type RefundRecord struct {
	ID         string    `json:"id"`
	Amount     int64     `json:"amount"`     // cash this refund gave back
	Refunded   int64     `json:"refunded"`   // the order's refunded cash after it
	Commission int64     `json:"commission"` // the order's commission after it
	Delta      int64     `json:"delta"`      // the change to the commission, ≤ 0
	At         time.Time `json:"at"`
	// Decision is the id of the refund's decision (Order.RefundDecision);
	// the rest of it is the order's, so it is not kept twice: an order
	// rewritten whole on each refund stays small.
	Decision string `json:"decision,omitempty"`
}

// RefundDecision is the explain-log entry, and the event's content, of
// refund r of o.
func (o *Order) RefundDecision(r *RefundRecord) Decision {
	return Decision{ID: r.Decision, Program: o.Program, At: r.At, Event: EventRefund, Promoter: o.Promoter,
		Click: o.Click, Outcome: DecisionRefunded, Order: o.ID, Refund: r.ID}
}

// MaxRefunds is how many refunds one order takes.
const MaxRefunds = 100

// Refund finds a refund of o by id, or returns nil.
func (o *Order) Refund(id string) *RefundRecord {
	for i := range o.Refunds {
		if o.Refunds[i].ID == id {
			return &o.Refunds[i]
		}
	}
	return nil
}

// CheckSame reports, as an *Error with code EConflict, how a conversion
// request for an order already decided differs from it: the same order id
// with other values is a storefront bug, never answered with the old
// decision as if nothing were wrong.
func (o *Order) CheckSame(program, customer string, amount int64, currency, product string, prepaid bool) error {
	f := func(field string, was, now any) error {
		return Errorf(EConflict, "order %s was reported with %s %v, now %v", o.ID, field, was, now)
	}
	switch {
	case o.Program != program:
		return f("program", o.Program, program)
	case o.Customer != customer:
		return f("customer", o.Customer, customer)
	case o.Amount != amount:
		return f("amount", o.Amount, amount)
	case o.Currency != currency:
		return f("currency", o.Currency, currency)
	case o.Product != product:
		return f("product", o.Product, product)
	case o.Prepaid != prepaid:
		return f("prepaid", o.Prepaid, prepaid)
	}
	return nil
}

// ConversionRequest is a paid order as the storefront reports it.
type ConversionRequest struct {
	Program  *Program
	Order    string
	Amount   int64
	Currency string
	Product  string
	Prepaid  bool
	// Promoter is the associated promoter's current record, if the
	// customer has an active association; nil otherwise.
	Promoter *Promoter
	Now      time.Time
}

// Convert decides whether an order earns a commission, marks the customer as
// paid, and returns the order record. c changes in place. The reasons, in the
// order they are checked:
//
//  1. zero_amount: nothing was paid (free trial, 0-yuan order); it does not
//     use up the first purchase (A);
//  2. agent_served (T 2.6, A, K);
//  3. no_association: none active at now;
//  4. same_person (T, A, K: checked again at the order); the association
//     ends (T 2.5);
//  5. promoter_suspended;
//  6. repeat_purchase: the customer already paid for an order (scope
//     account; T, A), or for this product (scope product; K);
//  7. not_prepaid (A, K);
//  8. product_not_eligible (T 1.3, A).
//
// Any paid order marks the customer as paid, and the product as bought,
// eligible or not. An eligible order earns amount × (rates[kind] +
// tier_bonus[tier]) rounded half up, capped by what is left of customer_cap.
// The rates are those of p as it is now: an order uses the rates in force
// when it is reported. o.Decisions holds the decisions made, the
// conversion's last; amounts must lie in 0..MaxAmount.
func Convert(c *Customer, r ConversionRequest) Order {
	p := r.Program
	now := r.Now
	st := c.State(p.ID)
	o := Order{ID: r.Order, Program: p.ID, Customer: c.ID, Amount: r.Amount, Currency: r.Currency,
		Product: r.Product, Prepaid: r.Prepaid, At: now}
	if st.Assoc.Active(now) {
		o.Promoter, o.Click, o.Link, o.Kind = st.Assoc.Promoter, st.Assoc.Click, st.Assoc.Link, st.Assoc.Kind
	}
	reason := func() string {
		switch {
		case r.Amount == 0:
			return ReasonZeroAmount
		case c.AgentServed:
			return ReasonAgentServed
		case !st.Assoc.Active(now) || r.Promoter == nil:
			return ReasonNoAssociation
		case c.Fingerprints.Shares(r.Promoter.Fingerprints):
			return ReasonSamePerson
		case r.Promoter.Status == StatusSuspended:
			return ReasonPromoterSuspended
		case p.FirstPurchaseScope == ScopeProduct && hasString(st.PaidProducts, r.Product),
			p.FirstPurchaseScope != ScopeProduct && c.Paid:
			return ReasonRepeatPurchase
		case p.RequirePrepaid && !r.Prepaid:
			return ReasonNotPrepaid
		case len(p.Products) > 0 && !slices.Contains(p.Products, r.Product):
			return ReasonProductIneligible
		}
		return ""
	}()
	if r.Amount > 0 {
		c.Paid = true
		if !hasString(st.PaidProducts, r.Product) {
			st.PaidProducts = append(st.PaidProducts, r.Product)
			slices.Sort(st.PaidProducts)
		}
	}
	o.Reason = reason
	if reason == ReasonSamePerson {
		o.Decisions = append(o.Decisions, c.end(p.ID, ReasonSamePerson, EventConversion, now))
	}
	if reason == "" {
		o.Eligible = true
		o.Rate = p.RateFor(o.Kind, r.Promoter.Tier)
		o.Commission = o.Rate.Apply(r.Amount)
		if p.CustomerCap > 0 {
			o.Commission = min(o.Commission, max(p.CustomerCap-st.CapUsed, 0))
		}
		o.Granted = o.Commission
		st.CapUsed = AddCapped(st.CapUsed, o.Commission)
	}
	o.Decisions = append(o.Decisions, o.Decision())
	return o
}

// RateFor is the commission rate for an association kind and a promoter
// tier: the kind's base rate plus the tier's bonus. A tier past the end of
// tier_bonus gets the last bonus.
func (p *Program) RateFor(k Kind, tier int) Rate {
	r := p.Rates.Standard
	if k == Protected {
		r = p.Rates.Protected
	}
	if n := len(p.TierBonus); n > 0 {
		r += p.TierBonus[min(max(tier, 0), n-1)]
	}
	return r
}

// Refund records refund id, amount of cash given back on o, and reduces the
// order's commission in proportion to the cash kept: granted × kept /
// amount, rounded half up, exact over the whole range of amounts. The
// customer's cap use drops by the commission taken back.
//
// The refund id makes it idempotent: a refund id o already holds with the
// same amount returns that record and replay true, changing nothing; with
// another amount it is an *Error with code EConflict. An amount that is not
// positive or exceeds what is left, or a refund past MaxRefunds, is an
// *Error with code EInvalid.
func Refund(c *Customer, o *Order, id string, amount int64, now time.Time) (rec *RefundRecord, replay bool, err error) {
	if r := o.Refund(id); r != nil {
		if r.Amount != amount {
			return nil, false, Errorf(EConflict, "refund %s of order %s was for %d, not %d", id, o.ID, r.Amount, amount)
		}
		return r, true, nil
	}
	switch {
	case amount <= 0:
		return nil, false, Errorf(EInvalid, "refund amount must be positive")
	case amount > o.Amount-o.Refunded:
		return nil, false, Errorf(EInvalid, "refund of %d exceeds the %d left on order %s", amount, o.Amount-o.Refunded, o.ID)
	case len(o.Refunds) >= MaxRefunds:
		return nil, false, Errorf(EInvalid, "order %s already has %d refunds, the most one order takes", o.ID, MaxRefunds)
	}
	o.Refunded += amount
	commission, _ := MulDivHalfUp(o.Granted, o.Amount-o.Refunded, o.Amount) // fits: ≤ granted
	delta := commission - o.Commission
	st := c.State(o.Program)
	st.CapUsed = max(st.CapUsed+delta, 0)
	o.Commission = commission
	o.Refunds = append(o.Refunds, RefundRecord{ID: id, Amount: amount, Refunded: o.Refunded,
		Commission: commission, Delta: delta, At: now})
	return &o.Refunds[len(o.Refunds)-1], false, nil
}

func hasString(sorted []string, s string) bool {
	_, ok := slices.BinarySearch(sorted, s)
	return ok
}

// Decision is the explain-log entry for the order's conversion decision.
func (o *Order) Decision() Decision {
	d := Decision{Program: o.Program, At: o.At, Event: EventConversion, Promoter: o.Promoter, Click: o.Click,
		Outcome: DecisionAttributed, Reason: o.Reason, Order: o.ID}
	if !o.Eligible {
		d.Outcome = DecisionRejected
	}
	return d
}
