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
	Eligible   bool      `json:"eligible"`
	Reason     string    `json:"reason"`
	Promoter   string    `json:"promoter,omitempty"`
	Click      string    `json:"click,omitempty"`
	Kind       Kind      `json:"kind,omitempty"`
	Rate       Rate      `json:"rate"`
	Commission int64     `json:"commission"` // after refunds
	Granted    int64     `json:"granted"`    // before refunds
	Refunded   int64     `json:"refunded"`   // cash refunded so far
	At         time.Time `json:"at"`
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
//  4. same_person (T, A, K: checked again at the order);
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
// when it is reported.
func Convert(c *Customer, r ConversionRequest) Order {
	p := r.Program
	now := r.Now
	st := c.State(p.ID)
	o := Order{ID: r.Order, Program: p.ID, Customer: c.ID, Amount: r.Amount, Currency: r.Currency,
		Product: r.Product, At: now}
	if st.Assoc.Active(now) {
		o.Promoter, o.Click, o.Kind = st.Assoc.Promoter, st.Assoc.Click, st.Assoc.Kind
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
	if reason != "" {
		return o
	}
	o.Eligible = true
	o.Rate = p.RateFor(o.Kind, r.Promoter.Tier)
	o.Commission = o.Rate.Apply(r.Amount)
	if p.CustomerCap > 0 {
		o.Commission = min(o.Commission, max(p.CustomerCap-st.CapUsed, 0))
	}
	o.Granted = o.Commission
	st.CapUsed += o.Commission
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

// Refund records amount of cash refunded on o and reduces its commission in
// proportion to the cash kept: granted × kept / amount, rounded half up. It
// returns an *Error (EInvalid) when amount is not positive or exceeds what
// is left. The customer's cap use drops by the commission taken back.
func Refund(c *Customer, o *Order, amount int64) error {
	if amount <= 0 {
		return Errorf(EInvalid, "refund amount must be positive")
	}
	if amount > o.Amount-o.Refunded {
		return Errorf(EInvalid, "refund of %d exceeds the %d left on order %s", amount, o.Amount-o.Refunded, o.ID)
	}
	o.Refunded += amount
	kept := o.Amount - o.Refunded
	newCommission := int64(0)
	if o.Amount > 0 {
		newCommission = (o.Granted*kept*2 + o.Amount) / (2 * o.Amount) // half up
	}
	st := c.State(o.Program)
	st.CapUsed -= o.Commission - newCommission
	o.Commission = newCommission
	return nil
}

func hasString(sorted []string, s string) bool {
	_, ok := slices.BinarySearch(sorted, s)
	return ok
}

// Decision is the explain-log entry for the order's conversion decision.
func (o *Order) Decision() Decision {
	d := Decision{At: o.At, Event: EventConversion, Promoter: o.Promoter, Click: o.Click,
		Outcome: DecisionAttributed, Reason: o.Reason, Order: o.ID}
	if !o.Eligible {
		d.Outcome = DecisionRejected
	}
	return d
}
