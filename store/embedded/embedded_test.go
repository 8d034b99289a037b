package embedded

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	bolt "go.etcd.io/bbolt"

	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/store"
	"github.com/refgate/refgate/store/storetest"
)

func open(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return open(t, t.TempDir()) })
}

func TestSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s := open(t, dir)
	at := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	s.PutProgram(ctx, storetest.Program("p1"))
	s.CreateLink(ctx, &attribution.Link{Code: "abc", Program: "p1", Promoter: "a", Destination: "https://shop.example.com/"})
	s.RecordClicks(ctx, "b1", []attribution.Click{{ID: "c1", Program: "p1", Link: "abc", Visitor: "v1", At: at,
		ExpiresAt: at.Add(time.Hour), Outcome: attribution.OutcomeAttributed}})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := s.Ping(ctx); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Ping after Close: %v", err)
	}

	s = open(t, dir)
	if _, err := s.Program(ctx, "p1"); err != nil {
		t.Errorf("program lost: %v", err)
	}
	if _, err := s.Link(ctx, "abc"); err != nil {
		t.Errorf("link lost: %v", err)
	}
	if c, err := s.VisitorClick(ctx, "p1", "v1"); err != nil || c.ID != "c1" {
		t.Errorf("visitor record lost: %v %v", c, err)
	}
}

func TestLockedFile(t *testing.T) {
	dir := t.TempDir()
	open(t, dir)
	_, err := Open(dir)
	if !errors.Is(err, ErrLocked) || err.Error() != "data dir "+dir+" is locked by another process (another refgate serve?)" {
		t.Fatalf("a second Open of a held file: %v, want ErrLocked naming the data dir", err)
	}
}

// TestBatchIDsForgotten: a click batch id is remembered store.BatchKeep,
// then dropped by a later write, so the ids take bounded space.
func TestBatchIDsForgotten(t *testing.T) {
	s := open(t, t.TempDir())
	ctx := context.Background()
	now := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	s.now = func() time.Time { return now }
	record := func(id string) {
		t.Helper()
		err := s.RecordClicks(ctx, id, []attribution.Click{{ID: "c1", Link: "abc", Outcome: attribution.OutcomeBot}})
		if err != nil {
			t.Fatal(err)
		}
	}
	check := func(clicks int64, ids int) {
		t.Helper()
		got, err := s.LinkStats(ctx, "abc")
		if err != nil {
			t.Fatal(err)
		}
		var n, age int
		s.db.View(func(tx *bolt.Tx) error {
			n, age = tx.Bucket(bBatches).Stats().KeyN, tx.Bucket(bBatchAge).Stats().KeyN
			return nil
		})
		if got[attribution.OutcomeBot] != clicks || n != ids || age != ids {
			t.Errorf("got %d clicks, %d ids (%d by age); want %d clicks, %d ids", got[attribution.OutcomeBot], n, age, clicks, ids)
		}
	}
	record("b1")
	record("b2")
	now = now.Add(store.BatchKeep - time.Second)
	record("b1")
	check(2, 2)
	now = now.Add(2 * time.Second)
	record("b3")
	check(3, 1)
	record("b1") // forgotten: a retry this late counts again
	check(4, 2)
}

// TestSweep: records are swept SweepGrace after their expiry by the
// server's clock, in transactions of SweepBatch keys; a customer keeps what
// a rule reads, orders and decision logs are never swept.
func TestSweep(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	t0 := now
	day := 24 * time.Hour
	reg := prometheus.NewRegistry()
	s, err := New(Config{Dir: t.TempDir(), Now: func() time.Time { return now }, SweepInterval: -1, SweepBatch: 3, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })

	var clicks []attribution.Click
	for i := range 10 {
		life := day
		if i%2 == 0 {
			life = 30 * day
		}
		clicks = append(clicks, attribution.Click{ID: fmt.Sprint("k", i), Program: "p", Promoter: "a", Link: "abc",
			Visitor: fmt.Sprint("v", i), At: t0, ExpiresAt: t0.Add(life), Outcome: attribution.OutcomeAttributed})
	}
	if err := s.RecordClicks(ctx, "b1", clicks); err != nil {
		t.Fatal(err)
	}
	for i, keep := range []time.Duration{day, 30 * day} {
		if _, err := s.ClaimClick(ctx, fmt.Sprint("k", i), "c1", fmt.Sprint("claim", i), 1, keep); err != nil {
			t.Fatal(err)
		}
	}
	assoc := func(exp time.Time) *attribution.Association {
		return &attribution.Association{Promoter: "a", Kind: attribution.Protected, Since: t0, ExpiresAt: exp}
	}
	put := func(c *attribution.Customer, order *attribution.Order) {
		t.Helper()
		err := s.UpdateCustomer(ctx, c.ID, "", func(*attribution.Customer, *attribution.Order) (*store.CustomerUpdate, error) {
			return &store.CustomerUpdate{Customer: c, Order: order,
				Decisions: []attribution.Decision{{ID: "d-" + c.ID, Program: "p", At: t0, Event: "register", Outcome: "created"}}}, nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	// Gone: an expired association and nothing else, though it has a
	// zero-amount order (the order and its decisions stay).
	put(&attribution.Customer{ID: "gone", Programs: map[string]*attribution.ProgramState{"p": {Assoc: assoc(t0.Add(day))}}},
		&attribution.Order{ID: "o-gone", Program: "p", Customer: "gone", Reason: attribution.ReasonZeroAmount})
	if _, err := s.ClaimOrder(ctx, "o-gone", "gone"); err != nil {
		t.Fatal(err)
	}
	put(&attribution.Customer{ID: "paid", Paid: true, Programs: map[string]*attribution.ProgramState{"p": {Assoc: assoc(t0.Add(day)), CapUsed: 100}}}, nil)
	put(&attribution.Customer{ID: "live", Programs: map[string]*attribution.ProgramState{"p": {Assoc: assoc(t0.Add(30 * day))}}}, nil)
	put(&attribution.Customer{ID: "ended", Programs: map[string]*attribution.ProgramState{"p": {Assoc: &attribution.Association{
		Promoter: "a", ExpiresAt: t0.Add(day), Ended: attribution.ReasonSamePerson}}}}, nil)

	visitors := func() (n int) {
		for i := range 10 {
			if _, err := s.VisitorClick(ctx, "p", fmt.Sprint("v", i)); err == nil {
				n++
			}
		}
		return n
	}
	sweep := func(want map[string]int) {
		t.Helper()
		got, err := s.sweep()
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("swept (-want +got):\n%s", d)
		}
	}
	now = t0.Add(day + s.cfg.SweepGrace) // expired, but within the grace
	sweep(map[string]int{})
	if n := visitors(); n != 10 {
		t.Fatalf("%d visitors left within the grace", n)
	}

	now = now.Add(time.Second)
	sweep(map[string]int{sweptVisitor: 5, sweptClickClaim: 1, sweptCustomer: 1, sweptAssociation: 2})
	if n := visitors(); n != 5 {
		t.Errorf("%d visitors left, want the 5 unexpired", n)
	}
	if _, err := s.VisitorClick(ctx, "p", "v0"); err != nil {
		t.Errorf("an unexpired visitor was swept: %v", err)
	}
	if got, err := s.ClaimClick(ctx, "k0", "c2", "claim-x", 1, day); err != nil || got != store.ClickClaimed {
		t.Errorf("an expired claim still counts: %v %v", got, err)
	}
	if got, err := s.ClaimClick(ctx, "k1", "c2", "claim-y", 1, day); err != nil || got != store.ClickUsed {
		t.Errorf("an unexpired claim was swept: %v %v", got, err)
	}
	if _, err := s.Customer(ctx, "gone"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a customer left with nothing is kept: %v", err)
	}
	if c, err := s.Customer(ctx, "paid"); err != nil || !c.Paid || c.Programs["p"].Assoc != nil || c.Programs["p"].CapUsed != 100 {
		t.Errorf("a paid customer keeps its money state, loses its expired association: %+v %v", c, err)
	}
	if c, err := s.Customer(ctx, "live"); err != nil || c.Programs["p"].Assoc == nil {
		t.Errorf("an unexpired association was swept: %+v %v", c, err)
	}
	if c, err := s.Customer(ctx, "ended"); err != nil || c.Programs["p"].Assoc.Ended != attribution.ReasonSamePerson {
		t.Errorf("an ended association says why, and stays: %+v %v", c, err)
	}
	// Money and explanations stay.
	if owner, err := s.OrderOwner(ctx, "o-gone"); err != nil || owner != "gone" {
		t.Errorf("order index: %q %v", owner, err)
	}
	err = s.UpdateCustomer(ctx, "gone", "o-gone", func(_ *attribution.Customer, o *attribution.Order) (*store.CustomerUpdate, error) {
		if o == nil || o.Reason != attribution.ReasonZeroAmount {
			t.Errorf("the order record of a swept customer is kept: %+v", o)
		}
		return nil, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if ds, err := s.Decisions(ctx, "p", "gone"); err != nil || len(ds) != 1 {
		t.Errorf("decision logs are kept: %v %v", ds, err)
	}
	// The index of holders keeps only the unexpired association.
	var held []string
	s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bHolders).ForEach(func(k, _ []byte) error {
			held = append(held, store.PageID(string(k[len(holderPrefix("p", "a")):])))
			return nil
		})
	})
	if !slices.Equal(held, []string{"live"}) {
		t.Errorf("holders left after the sweep: %v, want live alone", held)
	}
	if got := testutil.ToFloat64(s.m.swept[sweptVisitor]); got != 5 {
		t.Errorf("refgate_store_swept_total{record=visitor} = %v", got)
	}
	sweep(map[string]int{}) // nothing left to sweep
}

// TestSweeperRunsAndStops: the sweeper runs every SweepInterval next to
// click batches and stops with Close, also mid-sweep.
func TestSweeperRunsAndStops(t *testing.T) {
	ctx := context.Background()
	var clock atomic.Int64
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	clock.Store(t0.UnixNano())
	reg := prometheus.NewRegistry()
	s, err := New(Config{Dir: t.TempDir(), Now: func() time.Time { return time.Unix(0, clock.Load()) },
		SweepInterval: 5 * time.Millisecond, SweepBatch: 50, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for b := range 20 {
		var batch []attribution.Click
		for i := range 100 {
			batch = append(batch, attribution.Click{ID: fmt.Sprint(b, "-", i), Program: "p", Link: "abc", Visitor: fmt.Sprint("v", b, "-", i),
				At: t0, ExpiresAt: t0.Add(time.Hour), Outcome: attribution.OutcomeAttributed})
		}
		if err := s.RecordClicks(ctx, fmt.Sprint("b", b), batch); err != nil {
			t.Fatal(err)
		}
		if b == 10 {
			clock.Store(t0.Add(8 * 24 * time.Hour).UnixNano()) // the sweeper starts taking them
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for testutil.ToFloat64(s.m.swept[sweptVisitor]) < 2000 {
		if time.Now().After(deadline) {
			t.Fatalf("swept %v of 2000 visitors", testutil.ToFloat64(s.m.swept[sweptVisitor]))
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}
