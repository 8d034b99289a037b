package attribution

import "time"

// ClickRef is the click a bind is based on: from a verified token or from
// the visitor's server-side record.
type ClickRef struct {
	Promoter  string
	Link      string
	Click     string
	ExpiresAt time.Time
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
	// Promoter is the click's promoter; nil if unknown.
	Promoter *Promoter
	Now      time.Time
}

// BindResult is Bind's answer.
type BindResult struct {
	Associated bool
	Assoc      *Association // the association the customer holds afterwards, if any is active
	Reason     string
	Decision   Decision
}

// Bind applies the program's association rules for a register or login event
// to c (which it changes in place) and returns the answer. The checks run in
// this order, the first that applies deciding:
//
//  1. no valid click: token_invalid, token_expired or no_click;
//  2. the customer is served by an agent or sales team: agent_served
//     (RULES.md: T 2.6, A, K; sticky);
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
	d := Decision{At: now, Event: r.Event}
	if r.Click != nil {
		d.Promoter, d.Click = r.Click.Promoter, r.Click.Click
	}
	st := c.State(r.Program.ID)
	reject := func(reason string) BindResult {
		d.Outcome, d.Reason = DecisionRejected, reason
		res := BindResult{Reason: reason, Decision: d}
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
		return BindResult{Associated: true, Assoc: prev, Decision: d}
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
	return BindResult{Associated: true, Assoc: a, Decision: d}
}
