package storetest

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/store"
)

// Associate gives customer an association with promoter in program from
// since until until, as a bind would (a protected one; an override when it
// had another).
func Associate(t *testing.T, s store.Store, program, customer, promoter string, since, until time.Time) {
	t.Helper()
	err := s.UpdateCustomer(ctx(t), customer, "", func(c *attribution.Customer, _ *attribution.Order) (*store.CustomerUpdate, error) {
		c.State(program).Assoc = &attribution.Association{Promoter: promoter, Kind: attribution.Protected,
			Link: "l-" + promoter, Click: "k-" + customer, Since: since, ExpiresAt: until}
		d := attribution.Decision{ID: "d-" + customer + "-" + since.Format(time.RFC3339Nano), Program: program, At: since,
			Event: attribution.EventRegister, Promoter: promoter, Outcome: attribution.DecisionCreated}
		return &store.CustomerUpdate{Customer: c, Decisions: []attribution.Decision{d}, Now: since}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// holders lists every page of promoter's holders at now, limit a page,
// checking that pages hold no duplicate.
func holders(t *testing.T, s store.Store, program, promoter string, now time.Time, limit int) []string {
	t.Helper()
	var out []string
	seen := map[string]bool{}
	cursor := ""
	for range 100 {
		hs, next, err := s.Holders(ctx(t), program, promoter, now, cursor, limit)
		if err != nil {
			t.Fatalf("Holders(%s, %s, cursor %q): %v", program, promoter, cursor, err)
		}
		if len(hs) > limit {
			t.Fatalf("a page of %d holders, limit %d", len(hs), limit)
		}
		for _, h := range hs {
			if seen[h.Customer] {
				t.Fatalf("%s listed twice", h.Customer)
			}
			seen[h.Customer] = true
			out = append(out, h.Customer)
		}
		if next == "" {
			return out
		}
		cursor = next
	}
	t.Fatal("Holders does not end")
	return nil
}

func testHolders(t *testing.T, s store.Store) {
	const day = 24 * time.Hour
	for i := range 7 {
		Associate(t, s, "p", fmt.Sprintf("c%d", i), "alice", t0.Add(time.Duration(i)*time.Minute), t0.Add(30*day))
	}
	Associate(t, s, "p", "b1", "bob", t0, t0.Add(30*day))
	Associate(t, s, "q", "c0", "bob", t0, t0.Add(30*day)) // another program
	now := t0.Add(time.Hour)
	want := []string{"c6", "c5", "c4", "c3", "c2", "c1", "c0"}
	for _, limit := range []int{1, 2, 3, 7, 100} {
		if got := holders(t, s, "p", "alice", now, limit); !cmp.Equal(got, want) {
			t.Errorf("alice's holders by %d: %v, want %v", limit, got, want)
		}
	}
	hs, next, err := s.Holders(ctx(t), "p", "alice", now, "", 2)
	if err != nil || len(hs) != 2 || next == "" {
		t.Fatalf("first page: %v %q %v", hs, next, err)
	}
	wantFirst := store.Holder{Customer: "c6", Assoc: attribution.Association{Promoter: "alice", Kind: attribution.Protected,
		Link: "l-alice", Click: "k-c6", Since: t0.Add(6 * time.Minute), ExpiresAt: t0.Add(30 * day)}}
	if d := cmp.Diff(wantFirst, hs[0]); d != "" {
		t.Errorf("first holder (-want +got):\n%s", d)
	}
	if got := holders(t, s, "p", "bob", now, 10); !cmp.Equal(got, []string{"b1"}) {
		t.Errorf("bob's holders in p: %v", got)
	}
	if got := holders(t, s, "q", "bob", now, 10); !cmp.Equal(got, []string{"c0"}) {
		t.Errorf("bob's holders in q: %v", got)
	}
	if got := holders(t, s, "p", "nobody", now, 10); len(got) != 0 {
		t.Errorf("an unknown promoter holds %v", got)
	}
	if _, _, err := s.Holders(ctx(t), "p", "alice", now, "not a cursor", 10); !errors.Is(err, store.ErrBadCursor) {
		t.Errorf("a bad cursor: %v", err)
	}

	// An override moves c2 to bob; a renewal (the same Since, a later
	// expiry) keeps c3 where it is.
	Associate(t, s, "p", "c2", "bob", t0.Add(2*time.Hour), t0.Add(30*day))
	Associate(t, s, "p", "c3", "alice", t0.Add(3*time.Minute), t0.Add(60*day))
	now = t0.Add(3 * time.Hour)
	if got, want := holders(t, s, "p", "alice", now, 2), []string{"c6", "c5", "c4", "c3", "c1", "c0"}; !cmp.Equal(got, want) {
		t.Errorf("alice's holders after the override: %v, want %v", got, want)
	}
	if got, want := holders(t, s, "p", "bob", now, 2), []string{"c2", "b1"}; !cmp.Equal(got, want) {
		t.Errorf("bob's holders after the override: %v, want %v", got, want)
	}

	// An association that ended, one that expired: held no more.
	err = s.UpdateCustomer(ctx(t), "c4", "", func(c *attribution.Customer, _ *attribution.Order) (*store.CustomerUpdate, error) {
		c.AgentServed = true
		return &store.CustomerUpdate{Customer: c, Decisions: attribution.EndAgentServed(c, attribution.EventCustomer, now), Now: now}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	Associate(t, s, "p", "c5", "alice", t0.Add(5*time.Minute), t0.Add(4*time.Hour))
	if got, want := holders(t, s, "p", "alice", now, 3), []string{"c6", "c5", "c3", "c1", "c0"}; !cmp.Equal(got, want) {
		t.Errorf("alice's holders before c5's expiry: %v, want %v", got, want)
	}
	later := t0.Add(4 * time.Hour)
	if got, want := holders(t, s, "p", "alice", later, 3), []string{"c6", "c3", "c1", "c0"}; !cmp.Equal(got, want) {
		t.Errorf("alice's holders at c5's expiry: %v, want %v", got, want)
	}
	// Once every association expired, none is held.
	if got, want := holders(t, s, "p", "alice", t0.Add(61*day), 3), []string(nil); !cmp.Equal(got, want) {
		t.Errorf("alice's holders once all expired: %v", got)
	}

	// Erasure takes the customer out of every index.
	Associate(t, s, "p", "e1", "carol", t0, t0.Add(30*day))
	Associate(t, s, "p", "e1", "dave", t0.Add(time.Minute), t0.Add(30*day))
	if _, err := s.EraseCustomer(ctx(t), "e1", Alias); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"carol", "dave"} {
		if got := holders(t, s, "p", p, now, 10); len(got) != 0 {
			t.Errorf("%s holds %v after the erasure", p, got)
		}
	}
	// A customer bound again after its erasure is held again.
	Associate(t, s, "p", "e1", "dave", t0.Add(2*time.Minute), t0.Add(30*day))
	if got := holders(t, s, "p", "dave", now, 10); !cmp.Equal(got, []string{"e1"}) {
		t.Errorf("dave's holders after a new bind: %v", got)
	}
}
