package attribution

import (
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"maps"
	"slices"
	"strings"
	"time"
)

// EntryKind says what decision made a ledger entry.
type EntryKind string

const (
	Accrual    EntryKind = "accrual"    // an attributed conversion: its commission, > 0
	Reversal   EntryKind = "reversal"   // a refund that reduced a commission: the reduction, < 0
	Adjustment EntryKind = "adjustment" // an operator's correction, either sign
)

// Entry is one ledger entry: money a program owes a promoter (or takes
// back). Its ID is derived from what made it, so a retried or repaired
// write of the same decision finds it: AccrualID, ReversalID or
// AdjustmentID. Entries are never changed once written, but for Statement,
// set once when a statement settles them; a refund after payout is a new,
// negative entry, never a change to an old one.
type Entry struct {
	ID          string    `json:"id"`
	Program     string    `json:"program"`
	Promoter    string    `json:"promoter"`
	Kind        EntryKind `json:"kind"`
	Amount      int64     `json:"amount"` // minor units, signed; never 0
	Currency    string    `json:"currency"`
	Order       string    `json:"order,omitempty"`
	Customer    string    `json:"customer,omitempty"`
	Refund      string    `json:"refund,omitempty"`
	Reason      string    `json:"reason,omitempty"`
	At          time.Time `json:"at"`
	AvailableAt time.Time `json:"available_at"` // At + the program's hold, fixed when written
	// Link is the link the entry's order came through, if known: a store
	// adds the entry's amount to that link's report too. It is not part of
	// the entry as stored or shown.
	Link string `json:"-"`
	// Statement is the statement that settled the entry, set once. It is
	// the last field, and empty on a new entry, so that a store can add it
	// to the stored JSON without decoding it (redisstore does).
	Statement string `json:"statement,omitempty"`
}

// AccrualID is the id of the accrual of order.
func AccrualID(order string) string { return "acc:" + order }

// ReversalID is the id of the reversal of refund of order.
func ReversalID(order, refund string) string { return "rev:" + order + ":" + refund }

// AdjustmentID is the id of the adjustment the operator named id.
func AdjustmentID(id string) string { return "adj:" + id }

// MaxEntryAmount bounds an entry's amount either way: the largest
// commission (MaxAmount at twice RateScale). Sums of entries are checked
// for overflow too: they are exact or an error, never wrapped.
const MaxEntryAmount = 2 * MaxAmount

// MaxCurrencyLen and MaxReasonLen bound an entry's currency and reason, in
// bytes.
const (
	MaxCurrencyLen = 8
	MaxReasonLen   = 1000
)

// Ledger times are kept as Unix nanoseconds (the stores order entries by
// them), so they must lie within these.
var (
	minLedgerTime = time.Unix(0, 0)
	maxLedgerTime = time.Date(2262, 1, 1, 0, 0, 0, 0, time.UTC)
)

// ValidLedgerTime reports whether t can be an entry's or a statement's
// time: from 1970 to 2261, the range of Unix nanoseconds.
func ValidLedgerTime(t time.Time) bool {
	return !t.Before(minLedgerTime) && t.Before(maxLedgerTime)
}

// Validate reports, as an *Error with code EInvalid, what makes e unfit to
// be written: an id that is not the one its kind and fields derive, an
// invalid program, promoter or customer id, an amount of 0, of the wrong
// sign for its kind (an accrual is positive, a reversal negative) or over
// MaxEntryAmount, no currency, times out of range or AvailableAt before At,
// or a Statement already set.
func (e *Entry) Validate() error {
	bad := func(format string, args ...any) error {
		return Errorf(EInvalid, "ledger entry %q: "+format, append([]any{e.ID}, args...)...)
	}
	switch {
	case !ValidProgramID(e.Program):
		return bad("program %q must be 1 to 64 characters of A-Z a-z 0-9 _ -", e.Program)
	case !ValidID(e.Promoter):
		return bad("promoter %q must be 1 to %d characters of A-Z a-z 0-9 . _ : @ -", e.Promoter, maxIDLen)
	case e.Customer != "" && !ValidID(e.Customer):
		return bad("customer %q must be 1 to %d characters of A-Z a-z 0-9 . _ : @ -", e.Customer, maxIDLen)
	}
	switch e.Kind {
	case Accrual:
		if !ValidID(e.Order) || e.Refund != "" || e.ID != AccrualID(e.Order) {
			return bad("an accrual names a valid order and no refund, and its id is %q", AccrualID(e.Order))
		}
		if e.Amount <= 0 {
			return bad("an accrual's amount must be positive, not %d", e.Amount)
		}
	case Reversal:
		if !ValidID(e.Order) || !ValidRefundID(e.Refund) || e.ID != ReversalID(e.Order, e.Refund) {
			return bad("a reversal names a valid order and refund, and its id is %q", ReversalID(e.Order, e.Refund))
		}
		if e.Amount >= 0 {
			return bad("a reversal's amount must be negative, not %d", e.Amount)
		}
	case Adjustment:
		if id, ok := strings.CutPrefix(e.ID, "adj:"); !ok || !ValidID(id) {
			return bad("an adjustment's id is %q and 1 to %d characters of A-Z a-z 0-9 . _ : @ -", AdjustmentID("ID"), maxIDLen)
		}
		if e.Amount == 0 {
			return bad("an adjustment's amount must not be 0")
		}
	default:
		return bad("kind %q must be %s, %s or %s", e.Kind, Accrual, Reversal, Adjustment)
	}
	switch {
	case e.Amount > MaxEntryAmount || e.Amount < -MaxEntryAmount:
		return bad("amount %d is beyond ±%d", e.Amount, MaxEntryAmount)
	case !validCurrency(e.Currency):
		return bad("currency %q must be at most %d printable ASCII characters", e.Currency, MaxCurrencyLen)
	case len(e.Reason) > MaxReasonLen:
		return bad("reason is over %d bytes", MaxReasonLen)
	case !ValidLedgerTime(e.At) || !ValidLedgerTime(e.AvailableAt):
		return bad("at and available_at must be between 1970 and 2261")
	case e.AvailableAt.Before(e.At):
		return bad("available_at %v is before at %v", e.AvailableAt, e.At)
	case e.Statement != "":
		return bad("a new entry is on no statement")
	}
	return nil
}

// ValidCurrency reports whether s can be an order's and an entry's
// currency: up to MaxCurrencyLen printable ASCII characters, no space,
// quote or backslash (an ISO 4217 code such as CNY, or a program's own
// unit). It may be empty: a storefront that reports no currency has its
// promoters' entries and balances under "".
func ValidCurrency(s string) bool { return validCurrency(s) }

func validCurrency(s string) bool {
	if len(s) > MaxCurrencyLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' || s[i] == '"' || s[i] == '\\' {
			return false
		}
	}
	return true
}

// SameMoney reports whether o moves the same money as e: the same
// promoter, kind, amount and currency. An entry written again with the same
// id must (PostEntry); anything else is a conflict.
func (e *Entry) SameMoney(o *Entry) bool {
	return e.Promoter == o.Promoter && e.Kind == o.Kind && e.Amount == o.Amount && e.Currency == o.Currency
}

// EntryStatus is where an entry stands, computed when it is read.
type EntryStatus string

const (
	EntryPending   EntryStatus = "pending"   // before its AvailableAt: still refundable
	EntryAvailable EntryStatus = "available" // due, on no statement yet
	EntrySettled   EntryStatus = "settled"   // on an open statement
	EntryPaid      EntryStatus = "paid"      // on a paid statement
)

// Status is e's status at now; stmt is the status of its statement (the
// zero value when e is on none).
func (e *Entry) Status(now time.Time, stmt StatementStatus) EntryStatus {
	switch {
	case e.Statement == "" && now.Before(e.AvailableAt):
		return EntryPending
	case e.Statement == "":
		return EntryAvailable
	case stmt == StatementPaid:
		return EntryPaid
	}
	return EntrySettled
}

// StatementStatus is a statement's status.
type StatementStatus string

const (
	StatementOpen StatementStatus = "open" // settled, not paid yet
	StatementPaid StatementStatus = "paid"
)

// Statement is what one settlement run owes one promoter in one currency:
// the sum of the entries it settled.
type Statement struct {
	ID        string          `json:"id"`
	Program   string          `json:"program"`
	Promoter  string          `json:"promoter"`
	Currency  string          `json:"currency"`
	Through   time.Time       `json:"through"`
	Entries   int             `json:"entries"`
	Amount    int64           `json:"amount"`
	Status    StatementStatus `json:"status"`
	CreatedAt time.Time       `json:"created_at"`
	PaidAt    *time.Time      `json:"paid_at,omitempty"`
	Reference string          `json:"reference,omitempty"`
}

// MaxReferenceLen bounds a payment reference, in bytes.
const MaxReferenceLen = 256

const statementPrefix = "st_"

// NewStatementID returns a new random statement id of program: "st_", 16
// lowercase hex digits, "_" and the program id. The routes on one
// statement (/v1/admin/statements/{id}/...) have no program parameter, so
// the id carries it (StatementProgram).
func NewStatementID(program string) string {
	var b [8]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	return statementPrefix + hex.EncodeToString(b[:]) + "_" + program
}

// StatementProgram returns the program a statement id names, and false for
// a string that is no statement id.
func StatementProgram(id string) (string, bool) {
	rest, ok := strings.CutPrefix(id, statementPrefix)
	if !ok || len(rest) < 18 || rest[16] != '_' {
		return "", false
	}
	for i := 0; i < 16; i++ {
		if c := rest[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return "", false
		}
	}
	p := rest[17:]
	if !ValidProgramID(p) {
		return "", false
	}
	return p, true
}

// Balance is what a promoter has in one currency of one program, by the
// status of its entries.
type Balance struct {
	Pending   int64 `json:"pending"`   // unsettled, before AvailableAt
	Available int64 `json:"available"` // unsettled, due
	Settled   int64 `json:"settled"`   // on open statements
	Paid      int64 `json:"paid"`      // on paid statements
}

// Balances sums a promoter's unsettled entries (by AvailableAt against now)
// and statements (by status) per currency. It fails, as an *Error with
// code EInternal, rather than wrap a sum past the int64 range.
func Balances(unsettled []Entry, statements []Statement, now time.Time) (map[string]Balance, error) {
	out := map[string]Balance{}
	overflow := false
	add := func(sum *int64, v int64) {
		s, ok := addExact(*sum, v)
		overflow = overflow || !ok
		*sum = s
	}
	for i := range unsettled {
		e := &unsettled[i]
		b := out[e.Currency]
		if now.Before(e.AvailableAt) {
			add(&b.Pending, e.Amount)
		} else {
			add(&b.Available, e.Amount)
		}
		out[e.Currency] = b
	}
	for i := range statements {
		s := &statements[i]
		b := out[s.Currency]
		if s.Status == StatementPaid {
			add(&b.Paid, s.Amount)
		} else {
			add(&b.Settled, s.Amount)
		}
		out[s.Currency] = b
	}
	if overflow {
		return nil, Errorf(EInternal, "a balance is beyond the int64 range")
	}
	return out, nil
}

// Settlement is one statement a settlement run makes and the entries it
// settles.
type Settlement struct {
	Statement Statement
	Entries   []string // ids, oldest first (by At, then ID)
}

// PlanSettlement decides what settling a promoter's unsettled entries
// through through makes: per currency, the entries with AvailableAt ≤
// through (entries with a Statement, or of another program or promoter,
// are ignored) go on one new open statement when their sum is positive and
// at least minPayout; the others stay unsettled for a later run. Statements
// come in currency order. It fails, as an *Error with code EInternal,
// rather than wrap a sum past the int64 range, and with EInvalid for a now
// outside ValidLedgerTime.
func PlanSettlement(program, promoter string, unsettled []Entry, through time.Time, minPayout int64, now time.Time) ([]Settlement, error) {
	if !ValidLedgerTime(now) {
		return nil, Errorf(EInvalid, "a statement's time %v must be between 1970 and 2261", now)
	}
	byCurrency := map[string][]*Entry{}
	for i := range unsettled {
		e := &unsettled[i]
		if e.Statement != "" || e.Program != program || e.Promoter != promoter || e.AvailableAt.After(through) {
			continue
		}
		byCurrency[e.Currency] = append(byCurrency[e.Currency], e)
	}
	var out []Settlement
	for _, cur := range slices.Sorted(maps.Keys(byCurrency)) {
		es := byCurrency[cur]
		var sum int64
		for _, e := range es {
			s, ok := addExact(sum, e.Amount)
			if !ok {
				return nil, Errorf(EInternal, "the sum of %s's %s entries is beyond the int64 range", promoter, cur)
			}
			sum = s
		}
		if sum <= 0 || sum < minPayout {
			continue
		}
		slices.SortFunc(es, func(a, b *Entry) int { return cmp.Or(a.At.Compare(b.At), strings.Compare(a.ID, b.ID)) })
		ids := make([]string, len(es))
		for i, e := range es {
			ids[i] = e.ID
		}
		out = append(out, Settlement{
			Statement: Statement{ID: NewStatementID(program), Program: program, Promoter: promoter, Currency: cur,
				Through: through, Entries: len(es), Amount: sum, Status: StatementOpen, CreatedAt: now},
			Entries: ids,
		})
	}
	return out, nil
}

// addExact returns a + b and whether it fits in an int64.
func addExact(a, b int64) (int64, bool) {
	s := a + b
	return s, (s > a) == (b > 0)
}
