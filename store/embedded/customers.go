package embedded

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/store"
)

var (
	bCustomers = []byte("customers") // id → Customer JSON
	bOrders    = []byte("orders")    // customer 0x00 order → Order JSON
	bDecisions = []byte("decisions") // program 0x00 customer → []Decision JSON, newest first
	bOrderIdx  = []byte("orderidx")  // order → customer
	bClickUse  = []byte("clickuse")  // click 0x00 customer → claimValue (expiry, id of the claim that bound it)
	// customer 0x00 program → empty: the customer has a decision log in
	// the program, so that erasing the customer finds every one.
	bDecisionLogs = []byte("decisionlogs")
)

func (s *Store) Customer(_ context.Context, id string) (*attribution.Customer, error) {
	return get[attribution.Customer](s, bCustomers, id)
}

// UpdateCustomer runs fn inside one bbolt write transaction: bbolt has a
// single writer, so updates are serialised and fn runs exactly once.
func (s *Store) UpdateCustomer(_ context.Context, id, order string, fn store.UpdateFunc) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		c := &attribution.Customer{ID: id}
		if b := tx.Bucket(bCustomers).Get([]byte(id)); b != nil {
			if err := json.Unmarshal(b, c); err != nil {
				return err
			}
		}
		var o *attribution.Order
		okey := []byte(id + "\x00" + order)
		if order != "" {
			if b := tx.Bucket(bOrders).Get(okey); b != nil {
				o = new(attribution.Order)
				if err := json.Unmarshal(b, o); err != nil {
					return err
				}
			}
		}
		held := store.Holdings(c) // before fn, which may change c in place
		u, err := fn(c, o)
		if err != nil || u == nil {
			return err
		}
		if u.Customer != nil {
			if err := putJSON(tx.Bucket(bCustomers), []byte(id), u.Customer); err != nil {
				return err
			}
			add, remove := store.HoldingChanges(held, store.Holdings(u.Customer))
			if err := indexHoldings(tx, add, remove); err != nil {
				return err
			}
		}
		if u.Order != nil {
			if err := putJSON(tx.Bucket(bOrders), []byte(id+"\x00"+u.Order.ID), u.Order); err != nil {
				return err
			}
		}
		for _, d := range u.Decisions {
			if err := tx.Bucket(bDecisionLogs).Put([]byte(id+"\x00"+d.Program), []byte{}); err != nil {
				return err
			}
			dk := []byte(d.Program + "\x00" + id)
			var ds []attribution.Decision
			if b := tx.Bucket(bDecisions).Get(dk); b != nil {
				if err := json.Unmarshal(b, &ds); err != nil {
					return err
				}
			}
			ds = append([]attribution.Decision{d}, ds...)
			if len(ds) > attribution.MaxDecisions {
				ds = ds[:attribution.MaxDecisions]
			}
			if err := putJSON(tx.Bucket(bDecisions), dk, ds); err != nil {
				return err
			}
		}
		return nil
	})
	return translate(err)
}

func putJSON(b *bolt.Bucket, k []byte, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(k, data)
}

func (s *Store) Decisions(_ context.Context, program, customer string) ([]attribution.Decision, error) {
	ds, err := get[[]attribution.Decision](s, bDecisions, program+"\x00"+customer)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return *ds, nil
}

// ClaimOrderAndMark is ClaimOrder and MarkLedger: two local
// transactions, as cheap as one.
func (s *Store) ClaimOrderAndMark(ctx context.Context, order, customer, program, mark string, at time.Time) (string, error) {
	if err := s.MarkLedger(ctx, program, mark, at); err != nil {
		return "", err
	}
	return s.ClaimOrder(ctx, order, customer)
}

func (s *Store) ClaimOrder(_ context.Context, order, customer string) (string, error) {
	owner := customer
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bOrderIdx)
		if v := b.Get([]byte(order)); v != nil {
			owner = string(v)
			return nil
		}
		return b.Put([]byte(order), []byte(customer))
	})
	return owner, translate(err)
}

func (s *Store) OrderOwner(_ context.Context, order string) (string, error) {
	var owner string
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bOrderIdx).Get([]byte(order))
		if v == nil {
			return store.ErrNotFound
		}
		owner = string(v)
		return nil
	})
	return owner, translate(err)
}

// ClaimClick counts the click's customers under its key prefix: there are at
// most limit of them, so the scan is short. A claim expires keep after it
// is made, by the server's clock (the click's own expiry, as the caller
// computes keep), and is swept SweepGrace later.
func (s *Store) ClaimClick(_ context.Context, click, customer, claim string, limit int, keep time.Duration) (store.ClickClaim, error) {
	got := store.ClickUsed
	exp := s.clock().Add(max(keep, 0))
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bClickUse)
		prefix := []byte(click + "\x00")
		key := append(prefix[:len(prefix):len(prefix)], customer...)
		if v := b.Get(key); v != nil {
			got = store.ClickHeld
			if held, _, _ := parseClaim(v); held == claim {
				got = store.ClickClaimed
			}
			return nil
		}
		n := 0
		c := b.Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && n < limit; k, _ = c.Next() {
			n++
		}
		if n >= limit {
			return nil
		}
		got = store.ClickClaimed
		return b.Put(key, claimValue(claim, exp))
	})
	return got, translate(err)
}

func (s *Store) ReleaseClick(_ context.Context, click, customer, claim string) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bClickUse)
		key := []byte(click + "\x00" + customer)
		if v := b.Get(key); v != nil {
			if held, _, _ := parseClaim(v); held == claim {
				return b.Delete(key)
			}
		}
		return nil
	})
	return translate(err)
}
