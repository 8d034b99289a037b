package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/store"
)

// The ledger's conformance tests (docs/design.md "Ledger and statements").

var ledgerTests = []struct {
	name string
	fn   func(t *testing.T, s store.Store)
}{
	{"LedgerPostEntry", testPostEntry},
	{"LedgerInvalidEntries", testInvalidEntries},
	{"LedgerMarks", testLedgerMarks},
	{"LedgerEntriesPaging", testEntriesPaging},
	{"LedgerPagingWhileWriting", testPagingWhileWriting},
	{"LedgerSettle", testSettle},
	{"LedgerSettlePerPromoter", testSettlePerPromoter},
	{"LedgerConcurrentSettle", func(t *testing.T, s store.Store) { ConcurrentSettle(t, s, s) }},
	{"LedgerConcurrentPost", func(t *testing.T, s store.Store) { ConcurrentPost(t, s, s) }},
	{"LedgerMarkPaid", testMarkPaid},
	{"LedgerBalance", testBalance},
	{"LedgerStatementIDs", testStatementIDs},
	{"LedgerEraseCustomer", testEraseLedger},
}

// hold is the tests' hold period: AvailableAt is At + hold.
const hold = 30 * 24 * time.Hour

// Accrual returns a valid accrual of order for promoter in program shop,
// at at, in CNY, held 30 days.
func Accrual(promoter, order string, amount int64, at time.Time) *attribution.Entry {
	return &attribution.Entry{ID: attribution.AccrualID(order), Program: "shop", Promoter: promoter, Kind: attribution.Accrual,
		Amount: amount, Currency: "CNY", Order: order, Customer: "c-" + order, At: at, AvailableAt: at.Add(hold)}
}

// Adjustment returns a valid adjustment id for promoter in program shop.
func Adjustment(promoter, id string, amount int64, currency string, at time.Time) *attribution.Entry {
	return &attribution.Entry{ID: attribution.AdjustmentID(id), Program: "shop", Promoter: promoter, Kind: attribution.Adjustment,
		Amount: amount, Currency: currency, Reason: "correction <" + id + "> & more", At: at, AvailableAt: at.Add(hold)}
}

// Reversal returns a valid reversal of refund of order.
func Reversal(promoter, order, refund string, amount int64, at time.Time) *attribution.Entry {
	return &attribution.Entry{ID: attribution.ReversalID(order, refund), Program: "shop", Promoter: promoter, Kind: attribution.Reversal,
		Amount: amount, Currency: "CNY", Order: order, Customer: "c-" + order, Refund: refund, At: at, AvailableAt: at.Add(hold)}
}

// Post writes e, which must be new.
func Post(tb testing.TB, s store.Store, e *attribution.Entry) {
	tb.Helper()
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, created, err := s.PostEntry(c, e, ""); err != nil || !created {
		tb.Fatalf("posting %s: created %v, %v", e.ID, created, err)
	}
}

func testPostEntry(t *testing.T, s store.Store) {
	c := ctx(t)
	e := Accrual("alice", "o1", 3000, t0)
	if _, err := s.Entry(c, "shop", e.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("an unknown entry: %v", err)
	}
	if err := s.MarkLedger(c, "shop", "o:o1", t0); err != nil {
		t.Fatal(err)
	}
	stored, created, err := s.PostEntry(c, e, "o:o1")
	if err != nil || !created {
		t.Fatalf("first post: created %v, %v", created, err)
	}
	if d := cmp.Diff(e, stored); d != "" {
		t.Errorf("stored entry (-want +got):\n%s", d)
	}
	if marks, err := s.LedgerMarks(c, "shop", t0.Add(time.Hour), 10); err != nil || len(marks) != 0 {
		t.Errorf("the mark outlived its entry's post: %q %v", marks, err)
	}
	got, err := s.Entry(c, "shop", e.ID)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(e, got); d != "" {
		t.Errorf("Entry (-want +got):\n%s", d)
	}
	if _, err := s.Entry(c, "other", e.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("entries are per program: %v", err)
	}

	// The same decision again (a retry, a repair): one entry, the first,
	// and its mark goes too.
	if err := s.MarkLedger(c, "shop", "o:o1", t0); err != nil {
		t.Fatal(err)
	}
	again := *e
	again.At, again.AvailableAt, again.Customer = t0.Add(time.Minute), t0.Add(time.Minute+hold), "someone"
	stored, created, err = s.PostEntry(c, &again, "o:o1")
	if err != nil || created {
		t.Fatalf("second post: created %v, %v; want the existing entry", created, err)
	}
	if d := cmp.Diff(e, stored); d != "" {
		t.Errorf("second post returned (-want the first +got):\n%s", d)
	}
	if marks, _ := s.LedgerMarks(c, "shop", t0.Add(time.Hour), 10); len(marks) != 0 {
		t.Errorf("posting an existing entry kept its mark: %q", marks)
	}

	// Other money under the same id is a conflict, answered with what is
	// stored.
	for name, change := range map[string]func(e *attribution.Entry){
		"Amount":   func(e *attribution.Entry) { e.Amount++ },
		"Promoter": func(e *attribution.Entry) { e.Promoter = "bob" },
		"Currency": func(e *attribution.Entry) { e.Currency = "USD" },
	} {
		other := *e
		change(&other)
		stored, created, err := s.PostEntry(c, &other, "")
		if !errors.Is(err, store.ErrEntryConflict) || created || stored == nil || stored.Amount != e.Amount || stored.Promoter != "alice" {
			t.Errorf("%s differs: %+v created %v, %v; want ErrEntryConflict with the stored entry", name, stored, created, err)
		}
	}
	adj := Adjustment("alice", "fix-1", -500, "CNY", t0)
	Post(t, s, adj)
	other := *adj
	other.Kind, other.ID, other.Order, other.Refund = attribution.Reversal, attribution.ReversalID("o1", "fix-1"), "o1", "fix-1"
	Post(t, s, &other) // another id: another entry
	es, _, err := s.Entries(c, "shop", "alice", store.EntryQuery{Limit: 10})
	if err != nil || len(es) != 3 {
		t.Errorf("entries after posting three: %d, %v", len(es), err)
	}
	if es, _, _ := s.Entries(c, "shop", "bob", store.EntryQuery{Limit: 10}); len(es) != 0 {
		t.Errorf("a conflicting post wrote an entry for bob: %+v", es)
	}
}

// testInvalidEntries: an entry that does not validate is refused and
// writes nothing, its mark included.
func testInvalidEntries(t *testing.T, s store.Store) {
	c := ctx(t)
	if err := s.MarkLedger(c, "shop", "o:o1", t0); err != nil {
		t.Fatal(err)
	}
	for name, change := range map[string]func(e *attribution.Entry){
		"ZeroAmount":      func(e *attribution.Entry) { e.Amount = 0 },
		"NoPromoter":      func(e *attribution.Entry) { e.Promoter = "" },
		"CurrencyTooLong": func(e *attribution.Entry) { e.Currency = "ABCDEFGHI" },
		"BadID":           func(e *attribution.Entry) { e.ID = "acc:o1|x" },
		"NoID":            func(e *attribution.Entry) { e.ID = "" },
		"BadProgram":      func(e *attribution.Entry) { e.Program = "{shop}" },
	} {
		e := Accrual("alice", "o1", 3000, t0)
		change(e)
		if _, created, err := s.PostEntry(c, e, "o:o1"); err == nil || created {
			t.Errorf("%s: created %v, %v; want an error", name, created, err)
		}
	}
	if _, err := s.Entry(c, "shop", attribution.AccrualID("o1")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("an invalid entry was written: %v", err)
	}
	if marks, _ := s.LedgerMarks(c, "shop", t0.Add(time.Hour), 10); !slices.Equal(marks, []string{"o:o1"}) {
		t.Errorf("a refused post removed its mark: %q", marks)
	}
	if ps, err := s.LedgerPromoters(c, "shop"); err != nil || len(ps) != 0 {
		t.Errorf("promoters after refused posts: %q %v", ps, err)
	}
}

func testLedgerMarks(t *testing.T, s store.Store) {
	c := ctx(t)
	if marks, err := s.LedgerMarks(c, "shop", t0, 10); err != nil || len(marks) != 0 {
		t.Fatalf("no marks: %q %v", marks, err)
	}
	mark := func(m string, at time.Time) {
		t.Helper()
		if err := s.MarkLedger(c, "shop", m, at); err != nil {
			t.Fatal(err)
		}
	}
	mark("o:b", t0.Add(2*time.Second))
	mark("o:a", t0.Add(1*time.Second))
	mark("r:a:r1", t0.Add(3*time.Second))
	mark("o:b", t0.Add(9*time.Second)) // again, later: keeps the latest
	mark("o:b", t0.Add(4*time.Second)) // again, earlier: still the latest
	mark("o:c", t0.Add(10*time.Second))
	if err := s.MarkLedger(c, "other", "o:z", t0); err != nil {
		t.Fatal(err)
	}
	f := func(before time.Time, n int, want ...string) {
		t.Helper()
		got, err := s.LedgerMarks(c, "shop", before, n)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("marks before %v, %d: %q %v, want %q", before.Sub(t0), n, got, err, want)
		}
	}
	f(t0.Add(time.Minute), 10, "o:a", "r:a:r1", "o:b", "o:c")
	f(t0.Add(time.Minute), 2, "o:a", "r:a:r1")
	f(t0.Add(3*time.Second), 10, "o:a") // before: exclusive
	f(t0, 10)
	// A repair that read o:b before 9 s (as set at 2 s) must not remove it
	// once a retry set it again at 9 s; one that read it before 10 s may.
	if err := s.UnmarkLedger(c, "shop", "o:b", t0.Add(5*time.Second)); err != nil {
		t.Fatal(err)
	}
	f(t0.Add(time.Minute), 10, "o:a", "r:a:r1", "o:b", "o:c")
	if err := s.UnmarkLedger(c, "shop", "o:b", t0.Add(9*time.Second)); err != nil { // not before: kept
		t.Fatal(err)
	}
	f(t0.Add(time.Minute), 10, "o:a", "r:a:r1", "o:b", "o:c")
	if err := s.UnmarkLedger(c, "shop", "o:b", t0.Add(9*time.Second+time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	f(t0.Add(time.Minute), 10, "o:a", "r:a:r1", "o:c")
	if err := s.UnmarkLedger(c, "shop", "o:b", time.Time{}); err != nil {
		t.Errorf("unmarking an absent mark: %v", err)
	}
	if err := s.UnmarkLedger(c, "nowhere", "o:b", time.Time{}); err != nil {
		t.Errorf("unmarking in a program without a ledger: %v", err)
	}
	if err := s.UnmarkLedger(c, "shop", "r:a:r1", time.Time{}); err != nil { // unconditional
		t.Fatal(err)
	}
	f(t0.Add(time.Minute), 10, "o:a", "o:c")
	mark("o:b", t0.Add(30*time.Second)) // set again after removal: a new mark
	f(t0.Add(time.Minute), 10, "o:a", "o:c", "o:b")
	if got, err := s.LedgerMarks(c, "other", t0.Add(time.Minute), 10); err != nil || !slices.Equal(got, []string{"o:z"}) {
		t.Errorf("marks are per program: %q %v", got, err)
	}
	// A conversion claims its order and marks it in one call.
	for _, cust := range []string{"cust-1", "cust-2"} {
		owner, err := s.ClaimOrderAndMark(c, "ord-m", cust, "other", "o:ord-m", t0.Add(time.Second))
		if err != nil || owner != "cust-1" {
			t.Errorf("ClaimOrderAndMark for %s: owner %q, %v; want cust-1, the first", cust, owner, err)
		}
	}
	if got, err := s.LedgerMarks(c, "other", t0.Add(time.Minute), 10); err != nil || !slices.Equal(got, []string{"o:z", "o:ord-m"}) {
		t.Errorf("marks after ClaimOrderAndMark: %q %v", got, err)
	}
	if err := s.MarkLedger(c, "shop", "", t0); err == nil {
		t.Error("an empty mark was accepted")
	}
}

// pageAll lists all of a promoter's entries, limit at a time.
func pageAll(t *testing.T, s store.Store, promoter string, q store.EntryQuery) []attribution.Entry {
	t.Helper()
	var out []attribution.Entry
	for i := 0; ; i++ {
		es, next, err := s.Entries(ctx(t), "shop", promoter, q)
		if err != nil {
			t.Fatalf("page %d: %v", i, err)
		}
		if len(es) > q.Limit {
			t.Fatalf("page %d: %d entries, over the limit %d", i, len(es), q.Limit)
		}
		out = append(out, es...)
		if next == "" {
			return out
		}
		if len(es) != q.Limit {
			t.Fatalf("page %d: %d entries and a next cursor; want full pages before the last", i, len(es))
		}
		q.Cursor = next
	}
}

func ids(es []attribution.Entry) []string {
	out := make([]string, len(es))
	for i := range es {
		out[i] = es[i].ID
	}
	return out
}

func testEntriesPaging(t *testing.T, s store.Store) {
	c := ctx(t)
	// 25 entries, two at a time at the same time, a nanosecond apart from
	// the next pair: ties go by id, descending.
	for i := range 25 {
		at := t0.Add(time.Duration(i/2) * time.Nanosecond)
		Post(t, s, Accrual("alice", fmt.Sprintf("o%02d", (i*7)%25), int64(100+i), at))
	}
	Post(t, s, Accrual("bob", "b1", 1, t0))
	all := pageAll(t, s, "alice", store.EntryQuery{Limit: 1000})
	if len(all) != 25 {
		t.Fatalf("%d entries, want 25", len(all))
	}
	for i := 1; i < len(all); i++ {
		a, b := &all[i-1], &all[i]
		if a.At.Before(b.At) || a.At.Equal(b.At) && a.ID < b.ID {
			t.Errorf("not newest first (ties by id descending) at %d: %s %v, then %s %v", i, a.ID, a.At, b.ID, b.At)
		}
	}
	for _, limit := range []int{1, 7, 25, 26} {
		if got := ids(pageAll(t, s, "alice", store.EntryQuery{Limit: limit})); !slices.Equal(got, ids(all)) {
			t.Errorf("pages of %d: %q\nwant %q", limit, got, ids(all))
		}
	}
	// From (inclusive) and To (exclusive) on At.
	from, to := all[20].At, all[4].At
	var bounded []string
	for _, e := range all {
		if !e.At.Before(from) && e.At.Before(to) {
			bounded = append(bounded, e.ID)
		}
	}
	for _, limit := range []int{3, 100} {
		if got := ids(pageAll(t, s, "alice", store.EntryQuery{Limit: limit, From: from, To: to})); !slices.Equal(got, bounded) {
			t.Errorf("from %v to %v, pages of %d: %q\nwant %q", from, to, limit, got, bounded)
		}
	}
	if es, next, err := s.Entries(c, "shop", "alice", store.EntryQuery{Limit: 10, From: to, To: from}); err != nil || len(es) != 0 || next != "" {
		t.Errorf("an empty range: %d %q %v", len(es), next, err)
	}
	if es, next, err := s.Entries(c, "shop", "carol", store.EntryQuery{Limit: 10}); err != nil || len(es) != 0 || next != "" {
		t.Errorf("a promoter without entries: %d %q %v", len(es), next, err)
	}
	if es, next, err := s.Entries(c, "nowhere", "alice", store.EntryQuery{Limit: 10}); err != nil || len(es) != 0 || next != "" {
		t.Errorf("a program without a ledger: %d %q %v", len(es), next, err)
	}
	for _, cur := range []string{"x", "12|acc:o1", "00000000000000000001|a|b", "00000000000000000001|"} {
		if _, _, err := s.Entries(c, "shop", "alice", store.EntryQuery{Limit: 10, Cursor: cur}); !errors.Is(err, store.ErrBadCursor) {
			t.Errorf("cursor %q: %v, want ErrBadCursor", cur, err)
		}
	}
	for _, limit := range []int{0, -1, store.MaxPage + 1} {
		if _, _, err := s.Entries(c, "shop", "alice", store.EntryQuery{Limit: limit}); err == nil {
			t.Errorf("limit %d was accepted", limit)
		}
	}
}

// testPagingWhileWriting: entries written while a listing pages through
// (newer ones, and back-dated ones) never make it show an entry twice or
// miss one that was there when it began; the newer ones never show up on
// its later pages.
func testPagingWhileWriting(t *testing.T, s store.Store) {
	c := ctx(t)
	var before []string
	for i := range 60 {
		e := Accrual("alice", fmt.Sprint("old", i), 10, t0.Add(time.Duration(i)*time.Minute))
		Post(t, s, e)
		before = append(before, e.ID)
	}
	q := store.EntryQuery{Limit: 5}
	es, next, err := s.Entries(c, "shop", "alice", q)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, e := range es {
		seen[e.ID]++
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			at := t0.Add(time.Duration(100+i) * time.Minute) // newer than all
			if i%2 == 1 {
				at = t0.Add(time.Duration(i%60)*time.Minute - time.Second) // among the old ones
			}
			if _, _, err := s.PostEntry(c, Accrual("alice", fmt.Sprint("new", i), 10, at), ""); err != nil {
				t.Error(err)
				return
			}
		}
	})
	for next != "" {
		q.Cursor = next
		if es, next, err = s.Entries(c, "shop", "alice", q); err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			seen[e.ID]++
			if e.At.After(t0.Add(99 * time.Minute)) {
				t.Errorf("%s, written after the listing began and newer than its first page, is on a later page", e.ID)
			}
		}
	}
	close(stop)
	wg.Wait()
	for id, n := range seen {
		if n > 1 {
			t.Errorf("%s listed %d times", id, n)
		}
	}
	for _, id := range before {
		if seen[id] != 1 {
			t.Errorf("%s, there before the listing began, is missing", id)
		}
	}
}

// settled maps each entry id to the statements that list it.
func settledOn(t *testing.T, s store.Store, sts []attribution.Statement) map[string][]string {
	t.Helper()
	on := map[string][]string{}
	for _, st := range sts {
		es, err := s.StatementEntries(ctx(t), st.ID)
		if err != nil {
			t.Fatalf("entries of %s: %v", st.ID, err)
		}
		if len(es) != st.Entries {
			t.Errorf("statement %s says %d entries and lists %d", st.ID, st.Entries, len(es))
		}
		var sum int64
		for i, e := range es {
			sum += e.Amount
			if e.Statement != st.ID {
				t.Errorf("entry %s listed on %s says statement %q", e.ID, st.ID, e.Statement)
			}
			if e.Currency != st.Currency || e.Promoter != st.Promoter {
				t.Errorf("entry %s (%s, %s) on statement %s (%s, %s)", e.ID, e.Promoter, e.Currency, st.ID, st.Promoter, st.Currency)
			}
			if i > 0 && (e.At.Before(es[i-1].At) || e.At.Equal(es[i-1].At) && e.ID < es[i-1].ID) {
				t.Errorf("statement %s's entries out of order at %s", st.ID, e.ID)
			}
			on[e.ID] = append(on[e.ID], st.ID)
		}
		if sum != st.Amount {
			t.Errorf("statement %s: amount %d, its entries sum to %d", st.ID, st.Amount, sum)
		}
	}
	return on
}

func testSettle(t *testing.T, s store.Store) {
	c := ctx(t)
	through := t0.Add(hold + 24*time.Hour) // entries up to a day after t0 are due
	now := through.Add(time.Hour)
	due1 := Accrual("alice", "o1", 3000, t0)
	due2 := Accrual("alice", "o2", 2000, t0.Add(24*time.Hour)) // AvailableAt = through: due
	later := Accrual("alice", "o3", 4000, t0.Add(24*time.Hour+time.Nanosecond))
	refund := Reversal("alice", "o1", "r1", -700, t0.Add(time.Hour))
	usd1 := Adjustment("alice", "u1", 500, "USD", t0)
	usd2 := Adjustment("alice", "u2", -800, "USD", t0) // USD sums to -300: no statement
	rub := Adjustment("alice", "r1", 900, "RUB", t0)   // below min payout
	for _, e := range []*attribution.Entry{due1, due2, later, refund, usd1, usd2, rub} {
		Post(t, s, e)
	}
	if sts, err := s.Settle(c, "shop", "nobody", through, 0, now); err != nil || sts == nil || len(sts) != 0 {
		t.Errorf("settling a promoter without entries: %v %v; want an empty list", sts, err)
	}
	if sts, err := s.Settle(c, "shop", "alice", through, 4400, now); err != nil || sts == nil || len(sts) != 0 {
		t.Errorf("CNY 4300 under a min payout of 4400: %+v %v; want nothing", sts, err)
	}
	sts, err := s.Settle(c, "shop", "alice", through, 1000, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(sts) != 1 {
		t.Fatalf("statements %+v, want one, CNY", sts)
	}
	st := sts[0]
	want := attribution.Statement{ID: st.ID, Program: "shop", Promoter: "alice", Currency: "CNY", Through: through,
		Entries: 3, Amount: 4300, Status: attribution.StatementOpen, CreatedAt: now}
	if d := cmp.Diff(want, st); d != "" {
		t.Errorf("statement (-want +got):\n%s", d)
	}
	if got, err := s.Statement(c, st.ID); err != nil || cmp.Diff(&st, got) != "" {
		t.Errorf("Statement: %+v %v, want %+v", got, err, st)
	}
	es, err := s.StatementEntries(c, st.ID)
	if err != nil || !slices.Equal(ids(es), []string{due1.ID, refund.ID, due2.ID}) {
		t.Errorf("its entries, oldest first: %q %v", ids(es), err)
	}
	settledOn(t, s, sts)
	for _, e := range []*attribution.Entry{later, usd1, usd2, rub} {
		if got, _ := s.Entry(c, "shop", e.ID); got == nil || got.Statement != "" {
			t.Errorf("%s was settled: %+v", e.ID, got)
		}
	}
	if got, _ := s.Entry(c, "shop", due1.ID); got == nil || got.Statement != st.ID || got.Status(now, attribution.StatementOpen) != attribution.EntrySettled {
		t.Errorf("a settled entry reads %+v", got)
	}
	if ps, err := s.LedgerPromoters(c, "shop"); err != nil || !slices.Equal(ps, []string{"alice"}) {
		t.Errorf("promoters with unsettled entries: %q %v", ps, err)
	}

	// Nothing is settled twice.
	if again, err := s.Settle(c, "shop", "alice", through, 1000, now); err != nil || len(again) != 0 {
		t.Errorf("settling again: %+v %v; want nothing", again, err)
	}

	// A refund after the statement is a new entry for the next one, with
	// the entry that was not due, and RUB rolls in once over the minimum.
	refund2 := Reversal("alice", "o2", "r2", -1500, now)
	rub2 := Adjustment("alice", "r2", 200, "RUB", t0.Add(2*time.Hour))
	Post(t, s, refund2)
	Post(t, s, rub2)
	through2 := now.Add(hold)
	now2 := through2.Add(time.Minute)
	sts2, err := s.Settle(c, "shop", "alice", through2, 1000, now2)
	if err != nil {
		t.Fatal(err)
	}
	if len(sts2) != 2 || sts2[0].Currency != "CNY" || sts2[0].Amount != 2500 || sts2[0].Entries != 2 ||
		sts2[1].Currency != "RUB" || sts2[1].Amount != 1100 || sts2[1].Entries != 2 {
		t.Fatalf("second run: %+v; want CNY 2500 (two entries) and RUB 1100 (two entries)", sts2)
	}
	on := settledOn(t, s, append(sts, sts2...))
	for _, e := range []*attribution.Entry{due1, due2, later, refund, refund2, rub, rub2} {
		if len(on[e.ID]) != 1 {
			t.Errorf("%s is on %d statements: %q", e.ID, len(on[e.ID]), on[e.ID])
		}
	}
	for _, e := range []*attribution.Entry{usd1, usd2} {
		if len(on[e.ID]) != 0 {
			t.Errorf("%s, of a negative sum, was settled", e.ID)
		}
	}
	if ps, _ := s.LedgerPromoters(c, "shop"); !slices.Equal(ps, []string{"alice"}) {
		t.Errorf("promoters: %q; alice's USD entries are unsettled", ps)
	}
	// A positive USD adjustment clears the negative balance: then alice
	// has nothing unsettled.
	Post(t, s, Adjustment("alice", "u3", 301, "USD", t0))
	sts3, err := s.Settle(c, "shop", "alice", through2, 0, now2.Add(time.Second))
	if err != nil || len(sts3) != 1 || sts3[0].Amount != 1 || sts3[0].Entries != 3 {
		t.Fatalf("USD once positive: %+v %v", sts3, err)
	}
	if ps, err := s.LedgerPromoters(c, "shop"); err != nil || len(ps) != 0 {
		t.Errorf("promoters with everything settled: %q %v", ps, err)
	}

	// Lists: newest first, by promoter too, paged.
	all := append(append(slices.Clone(sts3), sts2[1], sts2[0]), sts...)
	slices.SortStableFunc(all[1:3], func(a, b attribution.Statement) int { // equal CreatedAt: by id, descending
		if a.ID > b.ID {
			return -1
		}
		return 1
	})
	var wantIDs []string
	for _, st := range all {
		wantIDs = append(wantIDs, st.ID)
	}
	for _, promoter := range []string{"", "alice"} {
		for _, limit := range []int{1, 2, 10} {
			var got []string
			cursor := ""
			for {
				page, next, err := s.Statements(c, "shop", promoter, cursor, limit)
				if err != nil {
					t.Fatal(err)
				}
				for _, st := range page {
					got = append(got, st.ID)
				}
				if next == "" {
					break
				}
				cursor = next
			}
			if !slices.Equal(got, wantIDs) {
				t.Errorf("statements of %q in pages of %d: %q\nwant %q", promoter, limit, got, wantIDs)
			}
		}
	}
	if page, next, err := s.Statements(c, "shop", "bob", "", 10); err != nil || len(page) != 0 || next != "" {
		t.Errorf("statements of a promoter without any: %+v %q %v", page, next, err)
	}
	if _, _, err := s.Statements(c, "shop", "", "nope", 10); !errors.Is(err, store.ErrBadCursor) {
		t.Errorf("a bad statements cursor: %v", err)
	}
}

// testSettlePerPromoter: settling one promoter leaves another's entries,
// of the same program, as they were.
func testSettlePerPromoter(t *testing.T, s store.Store) {
	c := ctx(t)
	Post(t, s, Accrual("alice", "o1", 100, t0))
	Post(t, s, Accrual("bob", "o2", 200, t0))
	other := Accrual("alice", "o3", 300, t0)
	other.Program = "games"
	Post(t, s, other)
	sts, err := s.Settle(c, "shop", "alice", t0.Add(hold), 0, t0.Add(hold))
	if err != nil || len(sts) != 1 || sts[0].Amount != 100 {
		t.Fatalf("alice: %+v %v", sts, err)
	}
	if ps, _ := s.LedgerPromoters(c, "shop"); !slices.Equal(ps, []string{"bob"}) {
		t.Errorf("promoters of shop: %q, want bob's unsettled", ps)
	}
	if ps, _ := s.LedgerPromoters(c, "games"); !slices.Equal(ps, []string{"alice"}) {
		t.Errorf("promoters of games: %q, want alice's unsettled", ps)
	}
	if e, _ := s.Entry(c, "games", other.ID); e == nil || e.Statement != "" {
		t.Errorf("alice's entry in another program was settled: %+v", e)
	}
	if e, _ := s.Entry(c, "shop", attribution.AccrualID("o2")); e == nil || e.Statement != "" {
		t.Errorf("bob's entry was settled: %+v", e)
	}
}

// ConcurrentSettle: two settlement runs for the same promoter at once, one
// through a and one through b (two clients of one Redis, or one store
// twice), settle each entry exactly once, round after round.
func ConcurrentSettle(t *testing.T, a, b store.Store) {
	c := ctx(t)
	var all []attribution.Statement
	var posted []string
	var total int64
	for round := range 50 {
		for i := range 4 {
			amount := int64(100*round + i + 1)
			if i == 3 {
				amount = -amount / 4
			}
			e := Adjustment("alice", fmt.Sprint("r", round, "-", i), amount, "CNY", t0.Add(time.Duration(round)*time.Hour))
			Post(t, a, e)
			posted = append(posted, e.ID)
			total += amount
		}
		through := t0.Add(time.Duration(round)*time.Hour + hold)
		now := through.Add(time.Minute)
		var wg sync.WaitGroup
		var mu sync.Mutex
		for _, s := range []store.Store{a, b} {
			wg.Go(func() {
				sts, err := s.Settle(c, "shop", "alice", through, 0, now)
				if err != nil {
					t.Errorf("round %d: %v", round, err)
				}
				mu.Lock()
				all = append(all, sts...)
				mu.Unlock()
			})
		}
		wg.Wait()
	}
	on := settledOn(t, a, all)
	var sum int64
	for _, st := range all {
		sum += st.Amount
	}
	for _, id := range posted {
		if len(on[id]) != 1 {
			t.Errorf("entry %s is on %d statements: %q", id, len(on[id]), on[id])
		}
	}
	if sum != total {
		t.Errorf("statements sum to %d, the entries to %d", sum, total)
	}
	listed := 0
	for cursor := ""; ; {
		page, next, err := a.Statements(c, "shop", "alice", cursor, store.MaxPage)
		if err != nil {
			t.Fatal(err)
		}
		listed += len(page)
		if next == "" {
			break
		}
		cursor = next
	}
	if listed != len(all) {
		t.Errorf("%d statements listed, %d made", listed, len(all))
	}
}

// ConcurrentPost: the same entry posted by many at once (through a and b
// alternately) is created once, and every post gets it back. It uses
// promoter poster of program shop, ConcurrentSettle promoter alice: both
// may run on one store.
func ConcurrentPost(t *testing.T, a, b store.Store) {
	c := ctx(t)
	for round := range 10 {
		e := Accrual("poster", fmt.Sprint("post", round), 3000, t0)
		var wg sync.WaitGroup
		var mu sync.Mutex
		created := 0
		for i := range 16 {
			s := a
			if i%2 == 1 {
				s = b
			}
			wg.Go(func() {
				stored, ok, err := s.PostEntry(c, e, "")
				if err != nil || stored == nil || stored.ID != e.ID || stored.Amount != e.Amount {
					t.Errorf("post %d: %+v %v", i, stored, err)
				}
				if ok {
					mu.Lock()
					created++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if created != 1 {
			t.Errorf("round %d: %d posts created the entry, want 1", round, created)
		}
	}
	es, _, err := a.Entries(c, "shop", "poster", store.EntryQuery{Limit: 100})
	if err != nil || len(es) != 10 {
		t.Errorf("%d entries, want 10: %v", len(es), err)
	}
	b1, err := a.Balance(c, "shop", "poster", t0)
	if err != nil || b1["CNY"].Pending != 30000 {
		t.Errorf("balance %+v %v: want 30000 pending, each entry once", b1, err)
	}
}

func testMarkPaid(t *testing.T, s store.Store) {
	c := ctx(t)
	Post(t, s, Accrual("alice", "o1", 3000, t0))
	now := t0.Add(hold)
	sts, err := s.Settle(c, "shop", "alice", now, 0, now)
	if err != nil || len(sts) != 1 {
		t.Fatalf("%+v %v", sts, err)
	}
	id := sts[0].ID
	paidAt := now.Add(24 * time.Hour)
	st, err := s.MarkPaid(c, id, "wire-2026-12-01", paidAt)
	if err != nil || st.Status != attribution.StatementPaid || st.Reference != "wire-2026-12-01" || st.PaidAt == nil || !st.PaidAt.Equal(paidAt) {
		t.Fatalf("paid: %+v %v", st, err)
	}
	if got, err := s.Statement(c, id); err != nil || cmp.Diff(st, got) != "" {
		t.Errorf("Statement after paid: %+v %v", got, err)
	}
	again, err := s.MarkPaid(c, id, "wire-2026-12-01", paidAt.Add(time.Hour))
	if err != nil || cmp.Diff(st, again) != "" {
		t.Errorf("the same reference again: %+v %v; want it unchanged", again, err)
	}
	other, err := s.MarkPaid(c, id, "wire-other", paidAt)
	if !errors.Is(err, store.ErrPaidConflict) {
		t.Errorf("another reference: %v, want ErrPaidConflict", err)
	}
	if other != nil && cmp.Diff(st, other) != "" {
		t.Errorf("another reference returned %+v, want the stored statement", other)
	}
	if got, _ := s.Statement(c, id); got == nil || got.Reference != "wire-2026-12-01" {
		t.Errorf("a conflicting MarkPaid changed the statement: %+v", got)
	}
	for _, unknown := range []string{attribution.NewStatementID("shop"), attribution.NewStatementID("nowhere"), "st_x", ""} {
		if _, err := s.MarkPaid(c, unknown, "wire", paidAt); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("MarkPaid of unknown %q: %v", unknown, err)
		}
	}
	if _, err := s.MarkPaid(c, id, "", paidAt); err == nil {
		t.Error("an empty reference was accepted")
	}
	es, err := s.StatementEntries(c, id)
	if err != nil || len(es) != 1 || es[0].Status(paidAt, st.Status) != attribution.EntryPaid {
		t.Errorf("entries of a paid statement: %+v %v", es, err)
	}
}

func testBalance(t *testing.T, s store.Store) {
	c := ctx(t)
	if b, err := s.Balance(c, "shop", "alice", t0); err != nil || len(b) != 0 {
		t.Errorf("a promoter without entries: %+v %v", b, err)
	}
	// Paid: 1000 CNY; settled (open): 200 CNY and 7 USD; available: 30
	// CNY; pending: 4 CNY and -2 USD.
	Post(t, s, Adjustment("alice", "p1", 1000, "CNY", t0))
	sts, err := s.Settle(c, "shop", "alice", t0.Add(hold), 0, t0.Add(hold))
	if err != nil || len(sts) != 1 {
		t.Fatal(sts, err)
	}
	if _, err := s.MarkPaid(c, sts[0].ID, "wire", t0.Add(hold)); err != nil {
		t.Fatal(err)
	}
	Post(t, s, Adjustment("alice", "s1", 250, "CNY", t0.Add(time.Hour)))
	Post(t, s, Adjustment("alice", "s2", -50, "CNY", t0.Add(time.Hour)))
	Post(t, s, Adjustment("alice", "s3", 7, "USD", t0.Add(time.Hour)))
	if sts, err := s.Settle(c, "shop", "alice", t0.Add(time.Hour+hold), 0, t0.Add(time.Hour+hold)); err != nil || len(sts) != 2 {
		t.Fatal(sts, err)
	}
	Post(t, s, Adjustment("alice", "a1", 30, "CNY", t0.Add(2*time.Hour)))
	Post(t, s, Adjustment("alice", "n1", 4, "CNY", t0.Add(3*time.Hour)))
	Post(t, s, Adjustment("alice", "n2", -2, "USD", t0.Add(3*time.Hour)))
	Post(t, s, Adjustment("bob", "b1", 99, "CNY", t0))
	now := t0.Add(2*time.Hour + hold) // a1 is due, n1 and n2 are not
	got, err := s.Balance(c, "shop", "alice", now)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]attribution.Balance{"CNY": {Pending: 4, Available: 30, Settled: 200, Paid: 1000}, "USD": {Pending: -2, Settled: 7}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("balance (-want +got):\n%s", d)
	}
	if got, err := s.Balance(c, "shop", "bob", now); err != nil || cmp.Diff(map[string]attribution.Balance{"CNY": {Available: 99}}, got) != "" {
		t.Errorf("bob's balance: %+v %v", got, err)
	}
}

// testStatementIDs: a statement is found by its id alone, which names its
// program, and not in another program.
func testStatementIDs(t *testing.T, s store.Store) {
	c := ctx(t)
	e := Accrual("alice", "o1", 100, t0)
	e.Program = "games_2"
	Post(t, s, e)
	sts, err := s.Settle(c, "games_2", "alice", t0.Add(hold), 0, t0.Add(hold))
	if err != nil || len(sts) != 1 {
		t.Fatal(sts, err)
	}
	id := sts[0].ID
	if p, ok := attribution.StatementProgram(id); !ok || p != "games_2" || sts[0].Program != "games_2" {
		t.Errorf("statement id %q names %q", id, p)
	}
	if st, err := s.Statement(c, id); err != nil || st.ID != id {
		t.Errorf("Statement(%s): %+v %v", id, st, err)
	}
	if es, err := s.StatementEntries(c, id); err != nil || len(es) != 1 || es[0].ID != e.ID {
		t.Errorf("StatementEntries(%s): %+v %v", id, es, err)
	}
	moved := "st_" + id[3:19] + "_shop" // its random part under another program
	for _, bad := range []string{moved, attribution.NewStatementID("games_2"), "nope", "", "st_0123456789abcdef_{x}"} {
		if _, err := s.Statement(c, bad); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Statement(%q): %v, want ErrNotFound", bad, err)
		}
		if _, err := s.StatementEntries(c, bad); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("StatementEntries(%q): %v, want ErrNotFound", bad, err)
		}
	}
}

// testEraseLedger: erasing a customer keeps its orders' ledger entries,
// amounts and statements included, with the alias for customer; other
// entries are untouched.
func testEraseLedger(t *testing.T, s store.Store) {
	c := ctx(t)
	erasable(t, s) // c1's orders o0-c1 (refund r1) and o1-c1, c2's o0-c2, in program p
	inP := func(e *attribution.Entry) *attribution.Entry {
		e.Program = "p"
		return e
	}
	acc0 := inP(Accrual("alice", "o0-c1", 1000, t0))
	acc1 := inP(Accrual("alice", "o1-c1", 250, t0))
	rev := inP(Reversal("alice", "o0-c1", "r1", -500, t0.Add(time.Hour)))
	other := inP(Accrual("alice", "o0-c2", 1000, t0))
	adj := inP(Adjustment("alice", "a1", 5, "CNY", t0))
	for _, e := range []*attribution.Entry{acc0, acc1, rev, other, adj} {
		if e.Order != "" {
			e.Customer = e.Order[strings.LastIndexByte(e.Order, '-')+1:] // c1 or c2
		}
		Post(t, s, e)
	}
	// Settled: the statement stays.
	sts, err := s.Settle(c, "p", "alice", t0.Add(time.Hour+hold), 0, t0.Add(time.Hour+hold))
	if err != nil || len(sts) != 1 {
		t.Fatal(sts, err)
	}
	e, err := s.EraseCustomer(c, "c1", Alias)
	if err != nil {
		t.Fatal(err)
	}
	if e.Entries != 3 {
		t.Errorf("erasure %+v: want 3 ledger entries aliased", e)
	}
	for _, want := range []*attribution.Entry{acc0, acc1, rev} {
		got, err := s.Entry(c, "p", want.ID)
		if err != nil {
			t.Fatal(err)
		}
		w := *want
		w.Customer, w.Statement = Alias, sts[0].ID
		if d := cmp.Diff(&w, got); d != "" {
			t.Errorf("entry %s after the erasure (-want +got):\n%s", want.ID, d)
		}
	}
	for _, want := range []*attribution.Entry{other, adj} {
		if got, err := s.Entry(c, "p", want.ID); err != nil || got.Customer != want.Customer {
			t.Errorf("entry %s of no erased customer: %+v %v", want.ID, got, err)
		}
	}
	if es, err := s.StatementEntries(c, sts[0].ID); err != nil || len(es) != 5 {
		t.Errorf("the statement's entries after the erasure: %d %v", len(es), err)
	}
	if e, err := s.EraseCustomer(c, "c1", Alias); err != nil || e.Entries != 0 {
		t.Errorf("erasing again: %+v %v", e, err)
	}
}
