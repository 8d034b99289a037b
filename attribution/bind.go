package attribution

import "time"

// ClickRef is the click a bind is based on: from a verified token or from
// the visitor's server-side record.
type ClickRef struct {
	Promoter  string
	Link      string
	Click     string
	IssuedAt  time.Time
	ExpiresAt time.Time
}

// MaxClickLife is the longest a click may stay attributable: a token whose
// expiry lies further from its issue time was not made by any program
// (cookie_days is at most 365) and does not bind.
const MaxClickLife = 365 * 24 * time.Hour

// Plausible reports whether the click's lifetime is one a program can give.
func (k *ClickRef) Plausible() bool {
	life := k.ExpiresAt.Sub(k.IssuedAt)
	return life > 0 && life <= MaxClickLife
}

// BindRequest is everything Bind needs besides the customer.
type BindRequest struct {
	Event   string // EventRegister or EventLogin
	Program *Program
	// Click is the visitor's click; nil when there is none. ClickReason,
	// when set (ReasonTokenInvalid, ReasonTokenExpired, ReasonNoClick), says
	// why there is none.
	Click       *ClickRef
	ClickReason string
	// ClickUsed says the click has already bound the program's
	// binds_per_click other customers.
	ClickUsed bool
	// Promoter is the click's promoter; nil if unknown.
	Promoter *Promoter
	// Holder is the promoter of the customer's active association, if it
	// has one; nil otherwise.
	Holder *Promoter
	Now    time.Time
}

// BindResult is Bind's answer.
type BindResult struct {
	Associated bool
	Assoc      *Association // the association the customer holds afterwards, if any is active
	Reason     string
	Decision   Decision
	// Ended, if set, is the decision that ended the customer's association
	// because customer and holder turned out to be the same person.
	Ended *Decision
}

// Bind applies the program's association rules for a register or login event
// to c (which it changes in place) and returns the answer. The checks run in
// this order, the first that applies deciding:
//
//  0. before any of them: if customer and the holder of their active
//     association are the same person, the association ends (T 2.5);
//  1. no valid click: token_invalid, token_expired or no_click; a click
//     that has bound binds_per_click other customers: click_used;
//  2. the customer is served by an agent or sales team: agent_served
//     (docs/rules.md: T 2.6, A, K; sticky);
//  3. the promoter is suspended: promoter_suspended;
//  4. customer and promoter share a fingerprint: same_person (T, A, K);
//  5. login by a customer who has paid, unless the program associates paid
//     customers: old_customer (T 2.2; K allows it);
//  6. an unexpired protected association with another promoter:
//     protected_by_other (T 2.3, A 2.2, K);
//  7. register: a protected association until now+protect_days (T 2.3);
//     login: a standard association until now+associate_days, replacing
//     any standard one (T 2.4, A 2.2). The same promoter's protected
//     association is never renewed or downgraded.
func Bind(c *Customer, r BindRequest) BindResult {
	now := r.Now
	d := Decision{Program: r.Program.ID, At: now, Event: r.Event}
	if r.Click != nil {
		d.Promoter, d.Click = r.Click.Promoter, r.Click.Click
	}
	st := c.State(r.Program.ID)
	var ended *Decision
	if st.Assoc.Active(now) && r.Holder != nil && r.Holder.ID == st.Assoc.Promoter &&
		c.Fingerprints.Shares(r.Holder.Fingerprints) {
		e := c.end(r.Program.ID, ReasonSamePerson, r.Event, now)
		ended = &e
	}
	reject := func(reason string) BindResult {
		d.Outcome, d.Reason = DecisionRejected, reason
		res := BindResult{Reason: reason, Decision: d, Ended: ended}
		if st.Assoc.Active(now) {
			res.Assoc = st.Assoc
		}
		return res
	}
	switch {
	case r.Click == nil || r.ClickReason != "":
		if r.ClickReason == "" {
			r.ClickReason = ReasonNoClick
		}
		return reject(r.ClickReason)
	case !now.Before(r.Click.ExpiresAt):
		return reject(ReasonNoClick)
	case r.ClickUsed:
		return reject(ReasonClickUsed)
	case r.Promoter == nil:
		return reject(ReasonNoClick)
	case c.AgentServed:
		return reject(ReasonAgentServed)
	case r.Promoter.Status == StatusSuspended:
		return reject(ReasonPromoterSuspended)
	case c.Fingerprints.Shares(r.Promoter.Fingerprints):
		return reject(ReasonSamePerson)
	case r.Event == EventLogin && c.Paid && !r.Program.AssociatePaid:
		return reject(ReasonOldCustomer)
	}
	prev := st.Assoc
	if prev.Active(now) && prev.Kind == Protected {
		if prev.Promoter != r.Promoter.ID {
			return reject(ReasonProtectedByOther)
		}
		d.Outcome = DecisionKept
		return BindResult{Associated: true, Assoc: prev, Decision: d, Ended: ended}
	}
	kind, days := Standard, r.Program.AssociateDays
	if r.Event == EventRegister {
		kind, days = Protected, r.Program.ProtectDays
	}
	a := &Association{Promoter: r.Promoter.ID, Kind: kind, Link: r.Click.Link, Click: r.Click.Click,
		Since: now, ExpiresAt: now.Add(time.Duration(days) * 24 * time.Hour)}
	switch {
	case !prev.Active(now):
		d.Outcome = DecisionCreated
	case prev.Promoter == r.Promoter.ID:
		d.Outcome = DecisionRenewed
		a.Since = prev.Since
	default:
		d.Outcome = DecisionOverridden
	}
	st.Assoc = a
	return BindResult{Associated: true, Assoc: a, Decision: d, Ended: ended}
}
