package attribution

import (
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
)

// Events a decision is about.
const (
	EventRegister   = "register"
	EventLogin      = "login"
	EventConversion = "conversion"
	EventRefund     = "refund"
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
)

// Association ties a customer to a promoter for one program until ExpiresAt.
type Association struct {
	Promoter  string    `json:"promoter"`
	Kind      Kind      `json:"kind"`
	Link      string    `json:"link,omitempty"`
	Click     string    `json:"click,omitempty"`
	Since     time.Time `json:"since"`
	ExpiresAt time.Time `json:"expires_at"`
}

// Active reports whether a is set and unexpired at now.
func (a *Association) Active(now time.Time) bool {
	return a != nil && now.Before(a.ExpiresAt)
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
	At       time.Time `json:"at"`
	Event    string    `json:"event"`
	Promoter string    `json:"promoter,omitempty"`
	Click    string    `json:"click,omitempty"`
	Outcome  string    `json:"outcome"`
	Reason   string    `json:"reason"`
	Order    string    `json:"order,omitempty"`
}

// MaxDecisions is how many decisions are kept per customer and program.
const MaxDecisions = 100
