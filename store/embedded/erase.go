package embedded

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"

	bolt "go.etcd.io/bbolt"

	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/store"
)

// EraseCustomer does the whole erasure in one transaction: it is done or
// not, never half, so the customer is never left marked (ErrErasing).
func (s *Store) EraseCustomer(_ context.Context, id, alias string) (store.Erasure, error) {
	var e store.Erasure
	err := s.db.Update(func(tx *bolt.Tx) error {
		e = store.Erasure{}
		clicks := map[string]bool{}
		programs := map[string]bool{}
		customers := tx.Bucket(bCustomers)
		var c attribution.Customer
		decided := map[string][]attribution.Decision{} // program → the customer's decision log
		if b := customers.Get([]byte(id)); b != nil {
			if err := json.Unmarshal(b, &c); err != nil {
				return err
			}
			for _, k := range c.ClickIDs() {
				clicks[k] = true
			}
			for p := range c.Programs {
				programs[p] = true
			}
			if err := customers.Delete([]byte(id)); err != nil {
				return err
			}
			e.Customer = true
		}

		// Orders: moved to the alias, the index following them. The
		// record is written only where the alias has none: erasing again
		// must not put back an older copy over one a refund has changed
		// since.
		orders, idx := tx.Bucket(bOrders), tx.Bucket(bOrderIdx)
		prefix := []byte(id + "\x00")
		var moved [][]byte
		oc := orders.Cursor()
		for k, v := oc.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = oc.Next() {
			var o attribution.Order
			if err := json.Unmarshal(v, &o); err != nil {
				return err
			}
			programs[o.Program] = true
			o.Customer, o.Erased = alias, true
			to := []byte(alias + "\x00" + o.ID)
			if orders.Get(to) == nil {
				if err := putJSON(orders, to, &o); err != nil {
					return err
				}
			}
			if owner := idx.Get([]byte(o.ID)); owner == nil || string(owner) == id {
				if err := idx.Put([]byte(o.ID), []byte(alias)); err != nil {
					return err
				}
			}
			moved = append(moved, bytes.Clone(k))
			n, err := aliasEntries(tx, &o, id, alias)
			if err != nil {
				return err
			}
			e.Entries += n
		}
		for _, k := range moved {
			if err := orders.Delete(k); err != nil {
				return err
			}
		}
		e.Orders = len(moved)

		// Decision logs: the index of the customer's, and for those written
		// before there was one, every program the store knows or the
		// customer's records name.
		logs := tx.Bucket(bDecisionLogs)
		var indexed [][]byte
		lc := logs.Cursor()
		for k, _ := lc.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = lc.Next() {
			programs[string(k[len(prefix):])] = true
			indexed = append(indexed, bytes.Clone(k))
		}
		for _, k := range indexed {
			if err := logs.Delete(k); err != nil {
				return err
			}
		}
		if err := tx.Bucket(bPrograms).ForEach(func(k, _ []byte) error {
			programs[string(k)] = true
			return nil
		}); err != nil {
			return err
		}
		decisions := tx.Bucket(bDecisions)
		for p := range programs {
			dk := []byte(p + "\x00" + id)
			b := decisions.Get(dk)
			if b == nil {
				continue
			}
			var ds []attribution.Decision
			if err := json.Unmarshal(b, &ds); err == nil {
				decided[p] = ds
				for _, d := range ds {
					if d.Click != "" {
						clicks[d.Click] = true
					}
				}
			}
			if err := decisions.Delete(dk); err != nil {
				return err
			}
			e.DecisionLogs++
		}

		c.ID = id
		if err := eraseHoldings(tx, &c, id, decided); err != nil {
			return err
		}

		// Click claims: moved, so that the click's uses are still counted
		// (binds_per_click) without naming the customer; they keep their
		// expiry, for the sweep.
		use := tx.Bucket(bClickUse)
		for click := range clicks {
			from := []byte(click + "\x00" + id)
			v := use.Get(from)
			if v == nil {
				continue
			}
			_, exp, _ := parseClaim(v)
			if err := use.Delete(from); err != nil {
				return err
			}
			to := []byte(click + "\x00" + store.ErasedClaim(alias))
			if err := use.Put(to, claimValue(store.ErasedClaimID, exp)); err != nil {
				return err
			}
			e.ClickClaims++
		}
		return nil
	})
	return e, translate(err)
}

// aliasEntries names alias instead of customer id in the ledger entries of
// order o (its accrual and the reversals of its refunds) and returns how
// many it changed.
func aliasEntries(tx *bolt.Tx, o *attribution.Order, id, alias string) (int, error) {
	l, err := ledgerOf(tx, o.Program, false)
	if l == nil || err != nil {
		return 0, err
	}
	ids := []string{attribution.AccrualID(o.ID)}
	for _, r := range o.Refunds {
		ids = append(ids, attribution.ReversalID(o.ID, r.ID))
	}
	n := 0
	for _, eid := range ids {
		en, err := l.entry(eid)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return n, err
		}
		if en.Customer != id {
			continue
		}
		en.Customer = alias
		if err := putJSON(l.e, []byte(eid), en); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}
