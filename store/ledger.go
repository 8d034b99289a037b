package store

import (
	"fmt"
	"strconv"
	"time"

	"github.com/refgate/refgate/attribution"
)

// EntryQuery is a page of Store.Entries.
type EntryQuery struct {
	Cursor   string    // "" for the first page, else a next cursor Entries gave
	Limit    int       // 1 to MaxPage
	From, To time.Time // At in [From, To); zero: unbounded
}

// MaxPage is the most items one page of a ledger list holds.
const MaxPage = 1000

// MaxMark is the longest ledger mark: "r:", an order, ":" and a refund.
const MaxMark = 2 + 128 + 1 + 128

// CheckPost returns an error for an entry or a mark PostEntry must
// refuse: an entry attribution.Entry.Validate rejects, a bad mark ("" is
// none).
func CheckPost(e *attribution.Entry, mark string) error {
	if err := e.Validate(); err != nil {
		return err
	}
	if mark == "" {
		return nil
	}
	return CheckMark(mark)
}

// CheckMark returns an error for a mark MarkLedger must refuse.
func CheckMark(mark string) error {
	if mark == "" || len(mark) > MaxMark {
		return fmt.Errorf("bad ledger mark %q: want 1 to %d bytes", mark, MaxMark)
	}
	return nil
}

// Ledger lists are ordered by a page key, which is also what a cursor
// holds: the item's time as 20 decimal digits of Unix nanoseconds, "|" and
// its id. Ids never hold "|", and times lie within 1970 to 2261
// (attribution.ValidLedgerTime), so byte order is time order, then id
// order; both stores sort by it (Redis as a sorted set's members of equal
// score, bbolt as keys).

// PageKey is the page key of the item id at t.
func PageKey(t time.Time, id string) string { return TimeKey(t) + "|" + id }

// TimeKey is the page key prefix of t: every item at t sorts after it and
// before the TimeKey of any later time. Times before 1970 are taken as 1970
// and times from 2262 as the latest key, beyond every item.
func TimeKey(t time.Time) string {
	var ns int64
	switch {
	case !t.After(time.Unix(0, 0)):
	case attribution.ValidLedgerTime(t):
		ns = t.UnixNano()
	default:
		ns = 1<<63 - 1
	}
	b := make([]byte, 0, 20)
	s := strconv.AppendInt(nil, ns, 10)
	for range 20 - len(s) {
		b = append(b, '0')
	}
	return string(append(b, s...))
}

// PageRange turns a page request into page keys: items from lo (inclusive)
// to hi (exclusive), newest first; "" is unbounded. It checks limit and the
// cursor (ErrBadCursor).
func PageRange(cursor string, limit int, from, to time.Time) (lo, hi string, err error) {
	if limit < 1 || limit > MaxPage {
		return "", "", fmt.Errorf("page limit %d: want 1 to %d", limit, MaxPage)
	}
	if cursor != "" && !validPageKey(cursor) {
		return "", "", fmt.Errorf("%w %q", ErrBadCursor, cursor)
	}
	if !from.IsZero() {
		lo = TimeKey(from)
	}
	hi = cursor
	if !to.IsZero() {
		if k := TimeKey(to); hi == "" || k < hi {
			hi = k
		}
	}
	return lo, hi, nil
}

// validPageKey reports whether s is a page key: 20 digits, "|" and an id
// of 1 to 300 bytes of attribution's id alphabet.
func validPageKey(s string) bool {
	if len(s) < 22 || len(s) > 21+300 || s[20] != '|' {
		return false
	}
	for i := 0; i < 20; i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	for i := 21; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.' || c == ':' || c == '@') {
			return false
		}
	}
	return true
}

// CheckReference returns an error for a payment reference MarkPaid must
// refuse.
func CheckReference(ref string) error {
	if ref == "" || len(ref) > attribution.MaxReferenceLen {
		return fmt.Errorf("bad payment reference: want 1 to %d bytes", attribution.MaxReferenceLen)
	}
	return nil
}

// Pay marks st paid with reference at at, as MarkPaid does, and reports
// whether it changed st: not for a statement paid already, with the same
// reference (nil) or another (an error wrapping ErrPaidConflict).
func Pay(st *attribution.Statement, reference string, at time.Time) (changed bool, err error) {
	if st.Status == attribution.StatementPaid {
		if st.Reference != reference {
			return false, fmt.Errorf("statement %s was paid with reference %q: %w", st.ID, st.Reference, ErrPaidConflict)
		}
		return false, nil
	}
	st.Status, st.PaidAt, st.Reference = attribution.StatementPaid, &at, reference
	return true, nil
}

// PageID is the id in a page key.
func PageID(key string) string {
	if len(key) < 21 {
		return ""
	}
	return key[21:]
}
