package store

import (
	"time"

	"github.com/refgate/refgate/attribution"
)

// Holder is a customer a promoter holds in a program, with the association
// that makes it theirs. Holders returns it.
type Holder struct {
	Customer string
	Assoc    attribution.Association
}

// Holding is one entry of the index of a promoter's customers in a
// program (docs/design.md "The promoter's own view"), which both stores
// keep up to date in UpdateCustomer: the customer, held since Since until
// ExpiresAt. Its page key (PageKey(Since, Customer)) orders the index.
type Holding struct {
	Program, Promoter, Customer string
	Since, ExpiresAt            time.Time
}

// Key is the holding's page key.
func (h Holding) Key() string { return PageKey(h.Since, h.Customer) }

// Holdings returns the holdings c's associations make, by program: one per
// association that has not ended, expired or not (expiry is checked when
// the index is read, against the reader's clock).
func Holdings(c *attribution.Customer) map[string]Holding {
	if c == nil {
		return nil
	}
	var out map[string]Holding
	for program, st := range c.Programs {
		a := st.Assoc
		if a == nil || a.Ended != "" {
			continue
		}
		if out == nil {
			out = map[string]Holding{}
		}
		out[program] = Holding{Program: program, Promoter: a.Promoter, Customer: c.ID, Since: a.Since, ExpiresAt: a.ExpiresAt}
	}
	return out
}

// HoldingChanges is what an update from holdings old to holdings new (as
// Holdings returns them) changes in the index: holdings to add (new, or
// with another promoter, start or expiry) and holdings to remove (gone, or
// replaced by one under another key). A holding that stays as it was is
// in neither, so that most updates (an order, a refund) write nothing to
// the index.
func HoldingChanges(old, new map[string]Holding) (add, remove []Holding) {
	for program, o := range old {
		n, ok := new[program]
		if !ok || n.Promoter != o.Promoter || n.Key() != o.Key() {
			remove = append(remove, o)
		}
	}
	for program, n := range new {
		if o, ok := old[program]; !ok || o != n {
			add = append(add, n)
		}
	}
	return add, remove
}

// Holds reports whether c is promoter's holder in program at now by the
// holding whose page key is key: its association there is promoter's, has
// not ended, is unexpired at now and is the one key names. A holding for
// which it is false is stale for good: an association that expired or
// ended never becomes active again, and a new one starts later, under
// another key.
func Holds(c *attribution.Customer, program, promoter, key string, now time.Time) (attribution.Association, bool) {
	st := c.Programs[program]
	if st == nil || !st.Assoc.Active(now) || st.Assoc.Promoter != promoter || PageKey(st.Assoc.Since, c.ID) != key {
		return attribution.Association{}, false
	}
	return *st.Assoc, true
}
