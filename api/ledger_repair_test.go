package api

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/internal/clock"
	"github.com/refgate/refgate/store"
	"github.com/refgate/refgate/store/embedded"
)

// raceStore stops a repair between reading a decision and dropping its
// mark, and makes one request die before posting its entry.
type raceStore struct {
	store.Store
	failUpdate, failPost bool
	unmarking            chan struct{} // the repair has read, and is about to unmark
	release              chan struct{} // let it
}

var errDied = errors.New("process died here")

func (s *raceStore) UpdateCustomer(ctx context.Context, id, order string, fn store.UpdateFunc) error {
	if s.failUpdate {
		s.failUpdate = false
		return errDied
	}
	return s.Store.UpdateCustomer(ctx, id, order, fn)
}

func (s *raceStore) UnmarkLedger(ctx context.Context, program, mark string, before time.Time) error {
	if s.unmarking != nil {
		close(s.unmarking)
		<-s.release
	}
	return s.Store.UnmarkLedger(ctx, program, mark, before)
}

func (s *raceStore) PostEntry(ctx context.Context, e *attribution.Entry, mark string) (*attribution.Entry, bool, error) {
	if s.failPost {
		s.failPost = false
		close(s.release) // the repair goes on while this request is dead
		return nil, false, errDied
	}
	return s.Store.PostEntry(ctx, e, mark)
}

// TestRepairRacesLateRetry: a retry more than ledgerGrace after the first
// attempt (which died after its mark, before its decision) marks again; a
// repair that read the order before the retry stored its decision must not
// drop that mark, or the entry would be lost if the retry then died before
// posting it.
func TestRepairRacesLateRetry(t *testing.T) {
	emb, err := embedded.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer emb.Close()
	st := &raceStore{Store: emb}
	sv := newService(t, st)
	sv.LedgerMetrics = NewLedgerMetrics(prometheus.NewRegistry())
	c := new(clock.Clock)
	sv.Now = c.Now
	ctx := context.Background()
	if err := st.PutPromoter(ctx, &attribution.Promoter{ID: "alice", Status: "active"}); err != nil {
		t.Fatal(err)
	}
	if a, err := sv.Bind(ctx, BindInput{Program: "shop", Customer: "c1", Event: "register", Token: sv.tokenFor(t, "alice")}); err != nil || !a.Associated {
		t.Fatal(a, err)
	}
	in := ConversionInput{Program: "shop", Order: "o1", Customer: "c1", Amount: 10000, Currency: "CNY", Product: "cvm", Prepaid: true}

	// Attempt 1 dies after MarkLedger, before the decision.
	st.failUpdate = true
	if _, err := sv.Convert(ctx, in); !errors.Is(err, errDied) {
		t.Fatal(err)
	}
	c.Advance(2 * time.Minute) // the storefront retries two minutes later

	// A repair (a settlement run, a ledger or balance read) takes the
	// mark, reads no decision, and is about to drop the mark...
	st.unmarking, st.release = make(chan struct{}), make(chan struct{})
	repaired := make(chan error)
	go func() { _, err := sv.RepairLedger(ctx, "shop"); repaired <- err }()
	<-st.unmarking
	// ...while attempt 2 marks again (the mark takes its time), stores the
	// decision and dies before its entry.
	st.failPost = true
	if _, err := sv.Convert(ctx, in); !errors.Is(err, errDied) {
		t.Fatal(err)
	}
	if err := <-repaired; err != nil {
		t.Fatal(err)
	}
	st.unmarking = nil

	// The storefront gives up. The next repair past the grace writes the
	// entry from the stored decision.
	if marks, _ := st.LedgerMarks(ctx, "shop", c.Now().Add(time.Hour), 10); len(marks) != 1 {
		t.Fatalf("marks %v: the retry's mark was dropped by a repair that read no decision", marks)
	}
	c.Advance(2 * time.Minute)
	if n, err := sv.RepairLedger(ctx, "shop"); err != nil || n != 1 {
		t.Fatalf("repair: %d entries, %v; want 1", n, err)
	}
	e, err := st.Entry(ctx, "shop", attribution.AccrualID("o1"))
	if err != nil || e.Amount != 3000 {
		t.Errorf("order o1's entry: %+v %v", e, err)
	}
	if got := testutil.ToFloat64(sv.LedgerMetrics.repaired); got != 1 {
		t.Errorf("refgate_ledger_repaired_total %v, want 1", got)
	}
	if got := testutil.ToFloat64(sv.LedgerMetrics.entries[attribution.Accrual]); got != 1 {
		t.Errorf("refgate_ledger_entries_total{kind=accrual} %v, want 1", got)
	}
	if marks, _ := st.LedgerMarks(ctx, "shop", c.Now().Add(time.Hour), 10); len(marks) != 0 {
		t.Errorf("marks left: %v", marks)
	}
}

// erasingStore answers UpdateCustomer of one customer with ErrErasing, as
// Redis does for a customer whose erasure stopped part-way.
type erasingStore struct {
	store.Store
	erasing string
	die     bool
}

func (s *erasingStore) UpdateCustomer(ctx context.Context, id, order string, fn store.UpdateFunc) error {
	if s.die {
		s.die = false
		return errDied
	}
	if id == s.erasing {
		return store.ErrErasing
	}
	return s.Store.UpdateCustomer(ctx, id, order, fn)
}

// TestRepairSkipsUnresolvableMark: a mark whose decision cannot be read now
// (its customer's erasure stopped part-way) is left for a later repair; the
// program's settlement runs and reads go on.
func TestRepairSkipsUnresolvableMark(t *testing.T) {
	emb, _ := embedded.Open(t.TempDir())
	defer emb.Close()
	st := &erasingStore{Store: emb}
	sv := newService(t, st)
	sv.LedgerMetrics = NewLedgerMetrics(prometheus.NewRegistry())
	c := new(clock.Clock)
	sv.Now = c.Now
	ctx := context.Background()
	st.PutPromoter(ctx, &attribution.Promoter{ID: "alice", Status: "active"})
	for _, c := range []string{"c1", "c2"} {
		if a, err := sv.Bind(ctx, BindInput{Program: "shop", Customer: c, Event: "register", Token: sv.tokenFor(t, "alice")}); err != nil || !a.Associated {
			t.Fatal(a, err)
		}
	}
	if _, err := sv.Convert(ctx, ConversionInput{Program: "shop", Order: "o2", Customer: "c2", Amount: 10000, Currency: "CNY", Product: "x", Prepaid: true}); err != nil {
		t.Fatal(err)
	}
	st.die = true // c1's order: the process dies after the mark
	sv.Convert(ctx, ConversionInput{Program: "shop", Order: "o1", Customer: "c1", Amount: 10000, Currency: "CNY", Product: "x", Prepaid: true})
	st.erasing = "c1" // and c1's erasure stops part-way
	c.Advance(40 * 24 * time.Hour)
	sts, err := sv.Settle(ctx, "shop", time.Time{})
	if err != nil || len(sts) != 1 || sts[0].Amount != 3000 {
		t.Fatalf("settlement run with one unresolvable mark: %+v %v", sts, err)
	}
	if _, err := sv.Balance(ctx, "shop", "alice"); err != nil {
		t.Errorf("alice's balance: %v", err)
	}
	if marks, _ := st.LedgerMarks(ctx, "shop", c.Now().Add(time.Hour), 10); len(marks) != 1 {
		t.Errorf("marks %v: the unresolvable one must stay for a later repair", marks)
	}
	if got := testutil.ToFloat64(sv.LedgerMetrics.left); got < 1 {
		t.Errorf("refgate_ledger_repair_failures_total %v, want it counted", got)
	}
	st.erasing = "" // the erasure is finished: o1 was never decided, its mark goes
	if n, err := sv.RepairLedger(ctx, "shop"); err != nil || n != 0 {
		t.Errorf("repair once the customer reads again: %d entries, %v; want none", n, err)
	}
	if marks, _ := st.LedgerMarks(ctx, "shop", c.Now().Add(time.Hour), 10); len(marks) != 0 {
		t.Errorf("marks %v after the repair", marks)
	}
}
