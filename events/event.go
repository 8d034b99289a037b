// Package events turns clicks and attribution decisions into CloudEvents and
// carries them, with each click's record for the store, on one durable path
// (Pipeline): a local append-only log written every millisecond, from which
// click records go to the store and events, at least once and with the same
// ids on every delivery, to a sink: a Redis Stream on the Redis store; on the
// embedded store the log is itself the JSON Lines event files.
//
// The schema is documented for consumers in docs/events.md.
package events

import (
	"encoding/json"
	"time"

	"github.com/google/uuid"
)

// Event types. A consumer switches on Event.Type.
const (
	TypeClick                 = "refgate.click"
	TypeAssociationCreated    = "refgate.association.created"
	TypeAssociationRenewed    = "refgate.association.renewed"
	TypeAssociationOverridden = "refgate.association.overridden"
	TypeAssociationRejected   = "refgate.association.rejected"
	TypeConversionAttributed  = "refgate.conversion.attributed"
	TypeConversionRejected    = "refgate.conversion.rejected"
	TypeConversionRefunded    = "refgate.conversion.refunded"
	TypeAssociationEnded      = "refgate.association.ended"
	TypeLedgerEntry           = "refgate.ledger.entry"
	TypeStatementCreated      = "refgate.statement.created"
	TypeStatementPaid         = "refgate.statement.paid"
)

// Types lists every event type, in the order docs/events.md documents them.
var Types = []string{TypeClick, TypeAssociationCreated, TypeAssociationRenewed,
	TypeAssociationOverridden, TypeAssociationRejected, TypeConversionAttributed,
	TypeConversionRejected, TypeConversionRefunded, TypeAssociationEnded, TypeLedgerEntry,
	TypeStatementCreated, TypeStatementPaid}

// SpecVersion is the CloudEvents version of every event.
const SpecVersion = "1.0"

// Event is one CloudEvents 1.0 event in structured JSON mode. Only the
// attributes refgate sets are here; they are the required ones plus time,
// subject and datacontenttype.
type Event struct {
	SpecVersion     string    `json:"specversion"`
	ID              string    `json:"id"`     // a UUIDv7: unique, and ordered by creation time
	Source          string    `json:"source"` // "refgate/<instance>"
	Type            string    `json:"type"`
	Subject         string    `json:"subject"` // "link/<code>" for clicks, "customer/<id>" for decisions
	Time            time.Time `json:"time"`
	DataContentType string    `json:"datacontenttype"`
	Data            Data      `json:"data"`
}

// Data is the payload of every event type; a field a type does not use is
// left out. Amounts are integers in the currency's minor units.
type Data struct {
	Program  string `json:"program"`
	Promoter string `json:"promoter,omitempty"`
	Link     string `json:"link,omitempty"`
	ClickID  string `json:"click_id,omitempty"`
	Visitor  string `json:"visitor,omitempty"`
	Customer string `json:"customer,omitempty"`

	// Clicks.
	Outcome     string `json:"outcome,omitempty"` // click: attributed|bot|suspect|self_click|rate_limited|gpc|inactive; decisions: the decision's outcome
	Bot         bool   `json:"bot,omitempty"`
	Suspect     bool   `json:"suspect,omitempty"`
	SelfClick   bool   `json:"self_click,omitempty"`
	RateLimited bool   `json:"rate_limited,omitempty"`
	GPC         bool   `json:"gpc,omitempty"`
	Inactive    bool   `json:"inactive,omitempty"` // on a paused or expired link
	// SecFetchSite and UserActivation are on every click event (nil on
	// decisions): Sec-Fetch-Site ("" when absent) and Sec-Fetch-User: ?1.
	SecFetchSite   *string    `json:"sec_fetch_site,omitempty"`
	UserActivation *bool      `json:"user_activation,omitempty"`
	Model          string     `json:"click_model,omitempty"`
	IP             string     `json:"ip,omitempty"` // anonymised unless --keep-full-ip
	UserAgent      string     `json:"user_agent,omitempty"`
	Referer        string     `json:"referer,omitempty"`
	Geo            *Geo       `json:"geo,omitempty"`
	ExpiresAt      *time.Time `json:"expires_at,omitempty"` // click: the cookie's expiry; association: the association's

	// Decisions.
	Event            string `json:"event,omitempty"` // register|login|conversion|refund|customer
	Reason           string `json:"reason,omitempty"`
	Kind             string `json:"kind,omitempty"` // protected|standard
	PreviousPromoter string `json:"previous_promoter,omitempty"`
	Holder           string `json:"holder,omitempty"` // who keeps the customer when a bind is rejected

	// Conversions and refunds.
	Order           string          `json:"order,omitempty"`
	Amount          *int64          `json:"amount,omitempty"`
	Currency        string          `json:"currency,omitempty"`
	Product         string          `json:"product,omitempty"`
	Rate            json.RawMessage `json:"rate,omitempty"`
	Commission      *int64          `json:"commission,omitempty"`
	RefundID        string          `json:"refund_id,omitempty"`        // the storefront's id of this refund
	Refund          *int64          `json:"refund,omitempty"`           // cash refunded by this refund
	Refunded        *int64          `json:"refunded,omitempty"`         // cash refunded so far
	CommissionDelta *int64          `json:"commission_delta,omitempty"` // change to the commission, negative for a refund

	// Ledger entries and statements.
	Entry       string     `json:"entry,omitempty"`      // the entry's id
	EntryKind   string     `json:"entry_kind,omitempty"` // accrual|reversal|adjustment
	AvailableAt *time.Time `json:"available_at,omitempty"`
	Statement   string     `json:"statement,omitempty"` // the statement's id
	Entries     *int       `json:"entries,omitempty"`   // entries on the statement
	Through     *time.Time `json:"through,omitempty"`
	Reference   string     `json:"reference,omitempty"` // the payment's reference
}

// Geo is what the GeoIP databases say of the client IP, looked up before
// the IP is anonymised.
type Geo struct {
	Country string `json:"country,omitempty"` // ISO 3166-1 alpha-2
	City    string `json:"city,omitempty"`    // English name
	ASN     uint   `json:"asn,omitempty"`
	ASOrg   string `json:"as_org,omitempty"`
}

// NewID returns a fresh event id: a UUIDv7, unique and ordered by time
// within this process.
func NewID() string {
	id, err := uuid.NewV7()
	if err != nil { // only if the system's random source fails
		return uuid.NewString()
	}
	return id.String()
}

// Int64 returns a pointer to v, for Data's optional amounts.
func Int64(v int64) *int64 { return &v }
