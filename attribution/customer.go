package attribution

import (
	"maps"
	"slices"
	"time"
)

// Kind is how a customer was associated with a promoter.
type Kind string

const (
	Protected Kind = "protected" // new registrant: no other promoter can take them until it expires
	Standard  Kind = "standard"  // never-paid customer logging in: the last promoter wins
)

// Reason codes. Empty means yes.
const (
	ReasonProtectedByOther  = "protected_by_other"
	ReasonOldCustomer       = "old_customer"
	ReasonAgentServed       = "agent_served"
	ReasonSamePerson        = "same_person"
	ReasonPromoterSuspended = "promoter_suspended"
	ReasonNoClick           = "no_click"
	ReasonTokenInvalid      = "token_invalid"
	ReasonTokenExpired      = "token_expired"
	ReasonZeroAmount        = "zero_amount"
	ReasonNoAssociation     = "no_association"
	ReasonRepeatPurchase    = "repeat_purchase"
	ReasonNotPrepaid        = "not_prepaid"
	ReasonProductIneligible = "product_not_eligible"
	ReasonClickUsed         = "click_used"
)

// Events a decision is about.
const (
	EventRegister   = "register"
	EventLogin      = "login"
	EventConversion = "conversion"
	EventRefund     = "refund"
	EventCustomer   = "customer" // PUT /v1/customers/{id}
)

// Outcomes of a decision.
const (
	DecisionCreated    = "created"    // a new association
	DecisionRenewed    = "renewed"    // the same promoter's association, extended
	DecisionOverridden = "overridden" // another promoter's association replaced
	DecisionKept       = "kept"       // the same promoter's protected association stands as it was
	DecisionRejected   = "rejected"
	DecisionAttributed = "attributed" // an order that earns commission
	DecisionRefunded   = "refunded"
	DecisionEnded      = "ended" // an association ended before its expiry (agent_served, same_person)
)

// Association ties a customer to a promoter for one program until ExpiresAt,
// unless it ends before (docs/rules.md T 2.5): then Ended holds the reason.
type Association struct {
	Promoter  string     `json:"promoter"`
	Kind      Kind       `json:"kind"`
	Link      string     `json:"link,omitempty"`
	Click     string     `json:"click,omitempty"`
	Since     time.Time  `json:"since"`
	ExpiresAt time.Time  `json:"expires_at"`
	Ended     string     `json:"ended,omitempty"` // ReasonAgentServed or ReasonSamePerson
	EndedAt   *time.Time `json:"ended_at,omitempty"`
}

// Active reports whether a is set, has not ended and is unexpired at now.
func (a *Association) Active(now time.Time) bool {
	return a != nil && a.Ended == "" && now.Before(a.ExpiresAt)
}

// end ends the customer's active association with program for reason and
// returns the decision that says so.
func (c *Customer) end(program, reason, event string, now time.Time) Decision {
	a := c.State(program).Assoc
	ended := *a
	ended.Ended, ended.EndedAt = reason, &now
	c.State(program).Assoc = &ended
	return Decision{Program: program, At: now, Event: event, Promoter: a.Promoter, Click: a.Click,
		Outcome: DecisionEnded, Reason: reason}
}

// EndAgentServed ends every active association of a customer served by an
// agent or a sales team (docs/rules.md T 2.5, 2.6) and returns a decision for each,
// programs in name order. event is what brought the news.
func EndAgentServed(c *Customer, event string, now time.Time) []Decision {
	if !c.AgentServed {
		return nil
	}
	var ds []Decision
	for _, program := range slices.Sorted(maps.Keys(c.Programs)) {
		if c.Programs[program].Assoc.Active(now) {
			ds = append(ds, c.end(program, ReasonAgentServed, event, now))
		}
	}
	return ds
}

// ProgramState is what one program knows of one customer.
type ProgramState struct {
	Assoc        *Association `json:"assoc,omitempty"`
	PaidProducts []string     `json:"paid_products,omitempty"` // sorted
	CapUsed      int64        `json:"cap_used,omitempty"`      // commission granted so far, minor units
}

// Customer is a storefront's customer account as refgate knows it. Paid and
// AgentServed, once true, stay true.
type Customer struct {
	ID           string                   `json:"id"`
	Paid         bool                     `json:"paid"`
	AgentServed  bool                     `json:"agent_served"`
	Fingerprints FingerprintSet           `json:"fingerprint_hashes,omitempty"`
	Programs     map[string]*ProgramState `json:"programs,omitempty"`
	// Applied remembers the latest writes by request id (MaxApplied of
	// them, ReplayWindow long), so that a request tried again after its
	// reply was lost is recognised and answered as before, not applied
	// twice. Orders and refunds are remembered for ever in the order
	// record; this is for binds and customer updates.
	Applied []Applied `json:"applied,omitempty"`
}

// Applied is a write the customer's record remembers by its request id.
type Applied struct {
	Op        string     `json:"op"`
	At        time.Time  `json:"at"`
	Decisions []Decision `json:"decisions,omitempty"` // what it decided, ids included
	// For binds: the answer.
	Associated bool         `json:"associated,omitempty"`
	Assoc      *Association `json:"assoc,omitempty"`
	Previous   string       `json:"previous,omitempty"` // the promoter an override replaced
}

// How many writes, and for how long, a customer remembers. A retry comes
// within seconds; ten minutes also covers a storefront's own retry queue.
const (
	MaxApplied   = 16
	ReplayWindow = 10 * time.Minute
)

// Recall returns the remembered write op, or nil if there is none younger
// than ReplayWindow at now.
func (c *Customer) Recall(op string, now time.Time) *Applied {
	for i := range c.Applied {
		if a := &c.Applied[i]; a.Op == op && now.Sub(a.At) < ReplayWindow {
			return a
		}
	}
	return nil
}

// KeepUntil says how long c matters, for a store that drops what no longer
// does: for ever (forever true) once the customer has paid or is
// agent-served, facts that decide every later bind and order (old_customer,
// repeat_purchase, customer_cap, agent_served), like the money records;
// otherwise until the latest expiry of its associations, ended ones too
// (an attribution lookup says why one ended), and of the writes it
// remembers for retries. A customer with neither, known only by
// fingerprints, matters until now: binds and conversions bring the
// fingerprints again.
func (c *Customer) KeepUntil(now time.Time) (until time.Time, forever bool) {
	if c.Paid || c.AgentServed {
		return time.Time{}, true
	}
	until = now
	for _, s := range c.Programs {
		if len(s.PaidProducts) > 0 || s.CapUsed > 0 {
			return time.Time{}, true
		}
		if s.Assoc != nil && s.Assoc.ExpiresAt.After(until) {
			until = s.Assoc.ExpiresAt
		}
	}
	for i := range c.Applied {
		if t := c.Applied[i].At.Add(ReplayWindow); t.After(until) {
			until = t
		}
	}
	return until, false
}

// Remember records a write, forgetting the oldest past MaxApplied.
func (c *Customer) Remember(a Applied) {
	c.Applied = append(c.Applied, a)
	if n := len(c.Applied); n > MaxApplied {
		c.Applied = slices.Delete(c.Applied, 0, n-MaxApplied)
	}
}

// Prune drops what of c no rule reads any more at now, grace after it
// stopped mattering: associations that expired more than grace ago (one
// that ended stays, as it says why), program states left with nothing, and
// remembered writes older than ReplayWindow + grace. It reports whether c
// changed. What a customer paid, its flags and fingerprints always stay.
func (c *Customer) Prune(now time.Time, grace time.Duration) bool {
	changed := false
	for program, st := range c.Programs {
		if a := st.Assoc; a != nil && a.Ended == "" && now.Sub(a.ExpiresAt) > grace {
			st.Assoc, changed = nil, true
		}
		if st.Assoc == nil && len(st.PaidProducts) == 0 && st.CapUsed == 0 {
			delete(c.Programs, program)
			changed = true
		}
	}
	if len(c.Programs) == 0 && c.Programs != nil {
		c.Programs = nil
	}
	n := len(c.Applied)
	c.Applied = slices.DeleteFunc(c.Applied, func(a Applied) bool { return now.Sub(a.At) > ReplayWindow+grace })
	if len(c.Applied) == 0 {
		c.Applied = nil
	}
	return changed || len(c.Applied) != n
}

// ClickIDs returns the ids of the clicks c's record names (its
// associations', those of its remembered writes), sorted, each once.
func (c *Customer) ClickIDs() []string {
	var ids []string
	add := func(a *Association) {
		if a != nil && a.Click != "" {
			ids = append(ids, a.Click)
		}
	}
	for _, st := range c.Programs {
		add(st.Assoc)
	}
	for _, a := range c.Applied {
		add(a.Assoc)
		for _, d := range a.Decisions {
			if d.Click != "" {
				ids = append(ids, d.Click)
			}
		}
	}
	slices.Sort(ids)
	return slices.Compact(ids)
}

// Empty reports whether c holds nothing a rule reads: not paid, not
// agent-served, no fingerprints, no program state, no remembered write. A
// customer that is not stored reads the same.
func (c *Customer) Empty() bool {
	return !c.Paid && !c.AgentServed && len(c.Fingerprints) == 0 && len(c.Programs) == 0 && len(c.Applied) == 0
}

// State returns the customer's state for program, creating it if absent.
func (c *Customer) State(program string) *ProgramState {
	if c.Programs == nil {
		c.Programs = map[string]*ProgramState{}
	}
	s := c.Programs[program]
	if s == nil {
		s = &ProgramState{}
		c.Programs[program] = s
	}
	return s
}

// CustomerInfo is what a storefront tells about a customer. Flags only ever
// turn on; fingerprints add to those already known (identity data piles up:
// a same-person hit on any of them counts).
type CustomerInfo struct {
	Paid         bool
	AgentServed  bool
	Fingerprints FingerprintSet
}

// Merge applies info to c.
func (c *Customer) Merge(info CustomerInfo) {
	c.Paid = c.Paid || info.Paid
	c.AgentServed = c.AgentServed || info.AgentServed
	if len(info.Fingerprints) > 0 {
		fp := append(slices.Clone(c.Fingerprints), info.Fingerprints...)
		slices.Sort(fp)
		c.Fingerprints = slices.Compact(fp)
	}
}

// Decision is one bind, conversion or refund decision, kept per customer and
// program so that a disputed commission can be explained.
type Decision struct {
	// ID is unique: the id of the decision's event too, so a consumer can
	// dedupe an event that a retry emits again.
	ID       string    `json:"id,omitempty"`
	Program  string    `json:"program,omitempty"`
	At       time.Time `json:"at"`
	Event    string    `json:"event"`
	Promoter string    `json:"promoter,omitempty"`
	Click    string    `json:"click,omitempty"`
	Outcome  string    `json:"outcome"`
	Reason   string    `json:"reason"`
	Order    string    `json:"order,omitempty"`
	Refund   string    `json:"refund,omitempty"`
}

// MaxDecisions is how many decisions are kept per customer and program.
const MaxDecisions = 100

// MaskCustomer is how a customer id is shown to a promoter: its first 2
// and last 2 characters around "***", or "***" alone for an id of 4
// characters or fewer, which would otherwise be shown whole. A promoter
// can tell their customers apart by it, as the seed consoles let them, but
// cannot read the storefront's account names.
func MaskCustomer(id string) string {
	r := []rune(id)
	if len(r) <= 4 {
		return "***"
	}
	return string(r[:2]) + "***" + string(r[len(r)-2:])
}
