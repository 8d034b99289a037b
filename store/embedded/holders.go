package embedded

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/store"
)

// bHolders is the index of holders: program 0x00 promoter 0x00 page key
// (store.Holding.Key: Since, customer) → the association's expiry (RFC
// 3339), which the sweep reads to drop members of expired associations.
// UpdateCustomer changes it in the customer's own transaction, so it is
// exact but for expiry, which Holders checks against its clock.
var bHolders = []byte("holders")

func holderPrefix(program, promoter string) []byte {
	return []byte(program + "\x00" + promoter + "\x00")
}

func holdingKey(h store.Holding) []byte {
	return append(holderPrefix(h.Program, h.Promoter), h.Key()...)
}

// indexHoldings applies an update's holding changes to the index.
func indexHoldings(tx *bolt.Tx, add, remove []store.Holding) error {
	b := tx.Bucket(bHolders)
	for _, h := range remove {
		if err := b.Delete(holdingKey(h)); err != nil {
			return err
		}
	}
	for _, h := range add {
		if err := b.Put(holdingKey(h), []byte(h.ExpiresAt.UTC().Format(time.RFC3339Nano))); err != nil {
			return err
		}
	}
	return nil
}

// Holders walks the promoter's index from the cursor back, reading each
// customer in the same transaction; members whose association expired are
// removed afterwards, in a write transaction of their own.
func (s *Store) Holders(_ context.Context, program, promoter string, now time.Time, cursor string, limit int) ([]store.Holder, string, error) {
	_, hi, err := store.PageRange(cursor, limit, time.Time{}, time.Time{})
	if err != nil {
		return nil, "", err
	}
	var out []store.Holder
	var next string
	var stale [][]byte
	err = s.db.View(func(tx *bolt.Tx) error {
		prefix := holderPrefix(program, promoter)
		upper := append(bytes.Clone(prefix), hi...)
		if hi == "" {
			upper = append(upper, 0xff) // beyond every page key: they are ASCII
		}
		customers := tx.Bucket(bCustomers)
		c := tx.Bucket(bHolders).Cursor()
		k, _ := c.Seek(upper)
		if k == nil {
			k, _ = c.Last()
		} else {
			k, _ = c.Prev()
		}
		for ; k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Prev() {
			key := string(k[len(prefix):])
			id := store.PageID(key)
			var cust attribution.Customer
			if v := customers.Get([]byte(id)); v != nil {
				if err := json.Unmarshal(v, &cust); err != nil {
					return fmt.Errorf("corrupt customer in the holders of %s: %w", promoter, err)
				}
			}
			cust.ID = id
			a, ok := store.Holds(&cust, program, promoter, key, now)
			if !ok {
				stale = append(stale, bytes.Clone(k))
				continue
			}
			if len(out) == limit {
				next = store.PageKey(out[limit-1].Assoc.Since, out[limit-1].Customer)
				break
			}
			out = append(out, store.Holder{Customer: id, Assoc: a})
		}
		return nil
	})
	if err != nil {
		return nil, "", translate(err)
	}
	if len(stale) > 0 {
		// A stale member stays stale (store.Holds), so removing it
		// outside the read's transaction loses nothing.
		err := s.db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket(bHolders)
			for _, k := range stale {
				if err := b.Delete(k); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return nil, "", translate(err)
		}
	}
	return out, next, nil
}

// eraseHoldings removes customer id from the holders' indexes: those of
// its associations, and those of the binds its decision logs in programs
// name (an association the sweep pruned left its member to the sweep).
func eraseHoldings(tx *bolt.Tx, c *attribution.Customer, id string, logs map[string][]attribution.Decision) error {
	var hs []store.Holding
	for _, h := range store.Holdings(c) {
		hs = append(hs, h)
	}
	for program, ds := range logs {
		for _, d := range ds {
			if d.Promoter != "" && (d.Outcome == attribution.DecisionCreated || d.Outcome == attribution.DecisionOverridden) {
				hs = append(hs, store.Holding{Program: program, Promoter: d.Promoter, Customer: id, Since: d.At})
			}
		}
	}
	return indexHoldings(tx, nil, hs)
}
