package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/internal/redistest"
	"github.com/refgate/refgate/store"
	"github.com/refgate/refgate/store/storetest"
)

// TestEraseFinishesAfterCrash: an erasure that stopped after moving the
// orders (a crash, a lost connection) leaves the customer marked, its
// updates refused and its record unreadable; the next EraseCustomer
// finishes it without undoing a refund made meanwhile on the alias's copy.
// On a cluster the customer, the alias and the order index are in other
// slots.
func TestEraseFinishesAfterCrash(t *testing.T) {
	f := func(t *testing.T, s *Store) {
		ctx := context.Background()
		alias := storetest.Alias
		if _, err := s.ClaimOrder(ctx, "o1", "c1"); err != nil {
			t.Fatal(err)
		}
		err := s.UpdateCustomer(ctx, "c1", "o1", func(c *attribution.Customer, _ *attribution.Order) (*store.CustomerUpdate, error) {
			c.Paid = true
			return &store.CustomerUpdate{Customer: c, Order: &attribution.Order{ID: "o1", Program: "p", Customer: "c1", Amount: 1000},
				Decisions: []attribution.Decision{{Program: "p", Event: "conversion", Order: "o1"}}}, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		// Steps 1 to 3 of an erasure, then nothing.
		if err := markErasing.Run(ctx, s.rdb, []string{customerKey("c1"), ordersKey("c1"), decisionLogsKey("c1")}).Err(); err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(&attribution.Order{ID: "o1", Program: "p", Customer: alias, Amount: 1000, Erased: true})
		if err := s.rdb.HSetNX(ctx, ordersKey(alias), "o1", b).Err(); err != nil {
			t.Fatal(err)
		}
		if err := repointOrder.Run(ctx, s.rdb, []string{orderIdxKey("o1")}, "c1", alias).Err(); err != nil {
			t.Fatal(err)
		}

		err = s.UpdateCustomer(ctx, "c1", "", func(c *attribution.Customer, _ *attribution.Order) (*store.CustomerUpdate, error) {
			return &store.CustomerUpdate{Customer: c}, nil
		})
		if !errors.Is(err, store.ErrErasing) {
			t.Errorf("an update of a customer being erased: %v", err)
		}
		if _, err := s.Customer(ctx, "c1"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("a customer being erased reads: %v", err)
		}
		// A refund meanwhile, on the order the index names now.
		if owner, _ := s.OrderOwner(ctx, "o1"); owner != alias {
			t.Fatalf("index names %q", owner)
		}
		err = s.UpdateCustomer(ctx, alias, "o1", func(_ *attribution.Customer, o *attribution.Order) (*store.CustomerUpdate, error) {
			o.Refunded = 400
			return &store.CustomerUpdate{Order: o}, nil
		})
		if err != nil {
			t.Fatal(err)
		}

		e, err := s.EraseCustomer(ctx, "c1", alias)
		if err != nil || !e.Customer || e.Orders != 1 || e.DecisionLogs != 1 {
			t.Fatalf("finishing: %+v %v", e, err)
		}
		err = s.UpdateCustomer(ctx, alias, "o1", func(_ *attribution.Customer, o *attribution.Order) (*store.CustomerUpdate, error) {
			if o == nil || o.Refunded != 400 || !o.Erased {
				t.Errorf("the alias's order after the erasure finished: %+v", o)
			}
			return nil, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{customerKey("c1"), ordersKey("c1"), decisionLogsKey("c1"), decisionsKey("c1", "p")} {
			if n, err := s.rdb.Exists(ctx, k).Result(); err != nil || n != 0 {
				t.Errorf("%s is left: %d %v", k, n, err)
			}
		}
		err = s.UpdateCustomer(ctx, "c1", "", func(c *attribution.Customer, _ *attribution.Order) (*store.CustomerUpdate, error) {
			return &store.CustomerUpdate{Customer: c}, nil
		})
		if err != nil {
			t.Errorf("the id used again after the erasure finished: %v", err)
		}
	}
	t.Run("Single", func(t *testing.T) { f(t, open(t, redistest.Start(t))) })
	t.Run("Cluster", func(t *testing.T) {
		cl := redistest.StartCluster(t, 3, 0)
		s, err := New(Config{Addrs: cl.Addrs(), Cluster: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		f(t, s)
	})
}
