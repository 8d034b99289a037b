// Package storetest is the one conformance suite every store.Store must
// pass: store/embedded, store/redisstore on a single redis-server and on a
// Redis Cluster all run it.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/store"
)

// Run runs every conformance test; newStore returns an empty store for each.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"Programs", testPrograms},
		{"Promoters", testPromoters},
		{"UpdatePromoter", testUpdatePromoter},
		{"Links", testLinks},
		{"LastClickReplaces", testLastClick},
		{"FirstClickKept", testFirstClick},
		{"LinkStats", testLinkStats},
		{"ConcurrentClicks", testConcurrentClicks},
		{"BatchCountedOnce", testBatchCountedOnce},
		{"ConcurrentBatchRetries", testConcurrentBatchRetries},
		{"Invalidations", testInvalidations},
		{"CustomerUpdates", testCustomerUpdates},
		{"CustomerLinearizable", testCustomerLinearizable},
		{"DecisionLog", testDecisionLog},
		{"Orders", testOrders},
		{"DecisionsPerProgram", testDecisionsPerProgram},
		{"ClickClaims", testClickClaims},
		{"ConcurrentClickClaims", testConcurrentClickClaims},
		{"EraseCustomer", testEraseCustomer},
		{"EraseUnknownCustomer", testEraseUnknownCustomer},
		{"EraseRacingUpdates", testEraseRacingUpdates},
		{"Holders", testHolders},
	}
	tests = append(tests, ledgerTests...)
	tests = append(tests, reportTests...)
	tests = append(tests, listTests...)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			tt.fn(t, s)
		})
	}
}

var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

// Program returns a valid program for tests.
func Program(id string) *attribution.Program {
	p := &attribution.Program{ID: id, CookieDays: 30, AllowedHosts: []string{"shop.example.com", ".example.org"},
		Rates: attribution.Rates{Protected: 300000, Standard: 250000}, TierBonus: []attribution.Rate{0, 20000}}
	p.Normalize()
	return p
}

// Link stores a link of promoter on program under code unless it exists: a
// click token binds only while its link exists.
func Link(tb testing.TB, s store.Store, program, promoter, code string) {
	tb.Helper()
	err := s.CreateLink(context.Background(), &attribution.Link{Code: code, Program: program, Promoter: promoter,
		Destination: "https://shop.example.com/"})
	if err != nil && !errors.Is(err, store.ErrExists) {
		tb.Fatal(err)
	}
}

func testPrograms(t *testing.T, s store.Store) {
	c := ctx(t)
	if _, err := s.Program(c, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("ErrNotFound: got %v", err)
	}
	p := Program("tencent")
	if err := s.PutProgram(c, p); err != nil {
		t.Fatal(err)
	}
	got, err := s.Program(c, "tencent")
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(p, got); d != "" {
		t.Errorf("program round trip (-want +got):\n%s", d)
	}
	p.CookieDays = 7
	p.ClickModel = attribution.FirstClick
	if err := s.PutProgram(c, p); err != nil {
		t.Fatal(err)
	}
	got, _ = s.Program(c, "tencent")
	if got.CookieDays != 7 || got.ClickModel != attribution.FirstClick {
		t.Errorf("replace: got %+v", got)
	}
}

func testPromoters(t *testing.T, s store.Store) {
	c := ctx(t)
	if _, err := s.Promoter(c, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("ErrNotFound: got %v", err)
	}
	h := attribution.NewFingerprintHasher([]byte("0123456789abcdef"))
	fp, err := h.Hash(attribution.Fingerprints{IPs: []string{"203.0.113.9"}, Emails: []string{"A@x.com"}})
	if err != nil {
		t.Fatal(err)
	}
	p := &attribution.Promoter{ID: "alice", Status: attribution.StatusActive, Tier: 2, Fingerprints: fp}
	if err := s.PutPromoter(c, p); err != nil {
		t.Fatal(err)
	}
	got, err := s.Promoter(c, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(p, got); d != "" {
		t.Errorf("promoter round trip (-want +got):\n%s", d)
	}
	if !got.Fingerprints.Has(h.IP("203.0.113.9")) {
		t.Error("fingerprint lost")
	}
}

func testLinks(t *testing.T, s store.Store) {
	c := ctx(t)
	l := &attribution.Link{Code: "abc123", Program: "tencent", Promoter: "alice",
		Destination: "https://shop.example.com/x", CreatedAt: t0}
	if err := s.CreateLink(c, l); err != nil {
		t.Fatal(err)
	}
	got, err := s.Link(c, "abc123")
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(l, got); d != "" {
		t.Errorf("link round trip (-want +got):\n%s", d)
	}
	if err := s.CreateLink(c, l); !errors.Is(err, store.ErrExists) {
		t.Errorf("ErrExists on duplicate: got %v", err)
	}
	if _, err := s.Link(c, "zzz999"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ErrNotFound on unknown: got %v", err)
	}
	if err := s.DeleteLink(c, "abc123"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Link(c, "abc123"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ErrNotFound after delete: got %v", err)
	}
	if err := s.DeleteLink(c, "abc123"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ErrNotFound on second delete: got %v", err)
	}
	if err := s.DeleteLink(c, "zzz999"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ErrNotFound deleting unknown: got %v", err)
	}
	if err := s.CreateLink(c, l); !errors.Is(err, store.ErrExists) {
		t.Errorf("ErrExists: a deleted code must not be reused, got %v", err)
	}
}

func click(id, vid string, at time.Time, model attribution.ClickModel) attribution.Click {
	return attribution.Click{ID: id, Program: "tencent", Promoter: "p-" + id, Link: "abc123", Visitor: vid,
		At: at, ExpiresAt: at.Add(7 * 24 * time.Hour), Model: model, Outcome: attribution.OutcomeAttributed}
}

func mustVisitor(t *testing.T, s store.Store, vid string) *attribution.Click {
	t.Helper()
	got, err := s.VisitorClick(ctx(t), "tencent", vid)
	if err != nil {
		t.Fatalf("VisitorClick(%s): %v", vid, err)
	}
	return got
}

func testLastClick(t *testing.T, s store.Store) {
	c := ctx(t)
	if _, err := s.VisitorClick(c, "tencent", "v1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("ErrNotFound: got %v", err)
	}
	first := click("c1", "v1", t0, attribution.LastClick)
	second := click("c2", "v1", t0.Add(time.Hour), attribution.LastClick)
	if err := s.RecordClicks(c, "b1", []attribution.Click{first}); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(&first, mustVisitor(t, s, "v1")); d != "" {
		t.Errorf("visitor record (-want +got):\n%s", d)
	}
	if err := s.RecordClicks(c, "b2", []attribution.Click{second}); err != nil {
		t.Fatal(err)
	}
	if got := mustVisitor(t, s, "v1"); got.ID != "c2" {
		t.Errorf("last click must replace: got %s", got.ID)
	}
	if _, err := s.VisitorClick(c, "other", "v1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("records are per program: got %v", err)
	}
}

func testFirstClick(t *testing.T, s store.Store) {
	c := ctx(t)
	first := click("c1", "v1", t0, attribution.FirstClick)
	within := click("c2", "v1", t0.Add(6*24*time.Hour), attribution.FirstClick)
	after := click("c3", "v1", t0.Add(7*24*time.Hour), attribution.FirstClick)
	if err := s.RecordClicks(c, "b1", []attribution.Click{first, within}); err != nil {
		t.Fatal(err)
	}
	if got := mustVisitor(t, s, "v1"); got.ID != "c1" {
		t.Errorf("first click must be kept while unexpired: got %s", got.ID)
	}
	if err := s.RecordClicks(c, "b2", []attribution.Click{after}); err != nil {
		t.Fatal(err)
	}
	if got := mustVisitor(t, s, "v1"); got.ID != "c3" {
		t.Errorf("an expired first click must give way: got %s", got.ID)
	}
}

func testLinkStats(t *testing.T, s store.Store) {
	c := ctx(t)
	var batch []attribution.Click
	want := map[attribution.Outcome]int64{}
	for i, o := range []attribution.Outcome{"attributed", "bot", "bot", "suspect", "self_click", "attributed", "bot"} {
		cl := click(fmt.Sprint("c", i), "", t0, attribution.LastClick)
		cl.Outcome = o
		batch = append(batch, cl)
		want[o]++
	}
	if err := s.RecordClicks(c, "b1", batch); err != nil {
		t.Fatal(err)
	}
	got, err := s.LinkStats(c, "abc123")
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("stats (-want +got):\n%s", d)
	}
	got, err = s.LinkStats(c, "never")
	if err != nil || len(got) != 0 {
		t.Errorf("stats of a link without clicks: %v %v", got, err)
	}
}

func testConcurrentClicks(t *testing.T, s store.Store) {
	c := ctx(t)
	var wg sync.WaitGroup
	const workers, per = 8, 25
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var batch []attribution.Click
			for i := 0; i < per; i++ {
				batch = append(batch, click(fmt.Sprint(w, "-", i), fmt.Sprint("v", w, "-", i), t0, attribution.LastClick))
			}
			if err := s.RecordClicks(c, fmt.Sprint("b", w), batch); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	got, err := s.LinkStats(c, "abc123")
	if err != nil {
		t.Fatal(err)
	}
	if got[attribution.OutcomeAttributed] != workers*per {
		t.Errorf("got %d attributed clicks, want %d", got[attribution.OutcomeAttributed], workers*per)
	}
	mustVisitor(t, s, "v3-7")
}

// multiLinkBatch is a batch over several links (on a cluster, several
// slots) with several outcomes, and what it adds to each link's stats.
func multiLinkBatch(prefix string) ([]attribution.Click, map[string]map[attribution.Outcome]int64) {
	var batch []attribution.Click
	want := map[string]map[attribution.Outcome]int64{}
	for i := range 40 {
		link := fmt.Sprint("link", i%8)
		cl := click(fmt.Sprint(prefix, i), fmt.Sprint("v", i), t0, attribution.LastClick)
		cl.Link = link
		if i%3 == 0 {
			cl.Outcome, cl.Visitor = attribution.OutcomeBot, ""
		}
		batch = append(batch, cl)
		if want[link] == nil {
			want[link] = map[attribution.Outcome]int64{}
		}
		want[link][cl.Outcome]++
	}
	return batch, want
}

func wantStats(t *testing.T, s store.Store, want map[string]map[attribution.Outcome]int64, times int64) {
	t.Helper()
	for link, w := range want {
		got, err := s.LinkStats(ctx(t), link)
		if err != nil {
			t.Fatal(err)
		}
		scaled := map[attribution.Outcome]int64{}
		for o, n := range w {
			scaled[o] = n * times
		}
		if d := cmp.Diff(scaled, got); d != "" {
			t.Errorf("stats of %s (-want +got):\n%s", link, d)
		}
	}
}

// testBatchCountedOnce: a batch written again with the same id (a retry)
// counts once; the same clicks under another id are another batch; an id
// is required.
func testBatchCountedOnce(t *testing.T, s store.Store) {
	c := ctx(t)
	batch, want := multiLinkBatch("c")
	for range 3 {
		if err := s.RecordClicks(c, "batch-1", batch); err != nil {
			t.Fatal(err)
		}
	}
	wantStats(t, s, want, 1)
	if got := mustVisitor(t, s, "v1"); got.ID != "c1" {
		t.Errorf("visitor record: got click %s, want c1", got.ID)
	}
	if err := s.RecordClicks(c, "batch-2", batch); err != nil {
		t.Fatal(err)
	}
	wantStats(t, s, want, 2)
	if err := s.RecordClicks(c, "", batch); err == nil {
		t.Error("a batch without an id was accepted")
	}
	if err := s.RecordClicks(c, strings.Repeat("x", store.MaxBatchID+1), batch); err == nil {
		t.Error("a batch id over MaxBatchID was accepted")
	}
	wantStats(t, s, want, 2)
}

// testConcurrentBatchRetries: retries of one batch racing each other (a
// driver's retry still in flight when the caller retries) count once.
func testConcurrentBatchRetries(t *testing.T, s store.Store) {
	c := ctx(t)
	batch, want := multiLinkBatch("c")
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if err := s.RecordClicks(c, "batch-1", batch); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	wantStats(t, s, want, 1)
}

func testInvalidations(t *testing.T, s store.Store) {
	c, cancel := context.WithCancel(ctx(t))
	defer cancel()
	got := make(chan store.Invalidation, 100)
	// What a subscriber reads of inv001 when told it changed: the change
	// must be visible by then, or a cache re-reads the old state and keeps
	// it.
	linkAt := make(chan error, 100)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.WatchInvalidations(c, func(i store.Invalidation) {
			if i == (store.Invalidation{Kind: store.Link, ID: "inv001"}) {
				_, err := s.Link(c, "inv001")
				linkAt <- err
			}
			got <- i
		})
	}()
	wait := func(want store.Invalidation) {
		t.Helper()
		timeout := time.After(2 * time.Second)
		for {
			select {
			case i := <-got:
				if i == want {
					return
				}
			case <-timeout:
				t.Fatalf("no invalidation %v within 2s", want)
			}
		}
	}
	wait(store.Invalidation{Kind: store.All})
	l := &attribution.Link{Code: "inv001", Program: "tencent", Promoter: "alice", Destination: "https://shop.example.com/", CreatedAt: t0}
	if err := s.CreateLink(c, l); err != nil {
		t.Fatal(err)
	}
	wait(store.Invalidation{Kind: store.Link, ID: "inv001"})
	if err := <-linkAt; err != nil {
		t.Errorf("the link's creation was announced before it could be read: %v", err)
	}
	if err := s.DeleteLink(c, "inv001"); err != nil {
		t.Fatal(err)
	}
	wait(store.Invalidation{Kind: store.Link, ID: "inv001"})
	if err := <-linkAt; !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the link's deletion was announced before it was written: %v", err)
	}
	if err := s.PutProgram(c, Program("tencent")); err != nil {
		t.Fatal(err)
	}
	wait(store.Invalidation{Kind: store.Program, ID: "tencent"})
	if err := s.PutPromoter(c, &attribution.Promoter{ID: "alice", Status: "active"}); err != nil {
		t.Fatal(err)
	}
	wait(store.Invalidation{Kind: store.Promoter, ID: "alice"})
	err := s.UpdatePromoter(c, "bob", func(*attribution.Promoter) (*attribution.Promoter, error) {
		return &attribution.Promoter{ID: "bob", Status: "active"}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	wait(store.Invalidation{Kind: store.Promoter, ID: "bob"})
	cancel()
	<-done
}

func testUpdatePromoter(t *testing.T, s store.Store) {
	c := ctx(t)
	err := s.UpdatePromoter(c, "carol", func(old *attribution.Promoter) (*attribution.Promoter, error) {
		if old != nil {
			t.Errorf("an unknown promoter read as %+v", old)
		}
		return nil, nil
	})
	if _, gerr := s.Promoter(c, "carol"); err != nil || !errors.Is(gerr, store.ErrNotFound) {
		t.Fatalf("an update writing nothing: %v, then %v", err, gerr)
	}
	// Concurrent updates lose nothing: each adds one to the tier.
	if err := s.PutPromoter(c, &attribution.Promoter{ID: "carol", Status: attribution.StatusActive}); err != nil {
		t.Fatal(err)
	}
	const n = 20
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := s.UpdatePromoter(c, "carol", func(old *attribution.Promoter) (*attribution.Promoter, error) {
				p := *old
				p.Tier++
				return &p, nil
			})
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	got, err := s.Promoter(c, "carol")
	if err != nil || got.Tier != n {
		t.Errorf("after %d concurrent updates: %+v %v", n, got, err)
	}
	revoked := t0
	err = s.UpdatePromoter(c, "carol", func(old *attribution.Promoter) (*attribution.Promoter, error) {
		p := *old
		p.TokensRevokedAt = &revoked
		return &p, nil
	})
	if got, gerr := s.Promoter(c, "carol"); err != nil || gerr != nil || got.TokensRevokedAt == nil || !got.TokensRevokedAt.Equal(t0) || got.Tier != n {
		t.Errorf("revocation: %v, then %+v %v", err, got, gerr)
	}
}

func testCustomerUpdates(t *testing.T, s store.Store) {
	c := ctx(t)
	if _, err := s.Customer(c, "c1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("ErrNotFound: %v", err)
	}
	err := s.UpdateCustomer(c, "c1", "", func(cu *attribution.Customer, o *attribution.Order) (*store.CustomerUpdate, error) {
		if cu.ID != "c1" || cu.Paid || o != nil {
			t.Errorf("a new customer starts empty: %+v %v", cu, o)
		}
		cu.Paid = true
		cu.State("p").Assoc = &attribution.Association{Promoter: "alice", Kind: attribution.Protected, Since: t0, ExpiresAt: t0.Add(time.Hour)}
		return &store.CustomerUpdate{Customer: cu}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Customer(c, "c1")
	if err != nil || !got.Paid || got.Programs["p"].Assoc.Promoter != "alice" {
		t.Fatalf("%+v %v", got, err)
	}
	// A nil update writes nothing; an error is returned as is.
	boom := errors.New("boom")
	if err := s.UpdateCustomer(c, "c2", "", func(*attribution.Customer, *attribution.Order) (*store.CustomerUpdate, error) {
		return nil, boom
	}); !errors.Is(err, boom) {
		t.Errorf("fn's error: %v", err)
	}
	if err := s.UpdateCustomer(c, "c2", "", func(*attribution.Customer, *attribution.Order) (*store.CustomerUpdate, error) {
		return nil, nil
	}); err != nil {
		t.Error(err)
	}
	if _, err := s.Customer(c, "c2"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a nil update must write nothing: %v", err)
	}
}

// testCustomerLinearizable: concurrent read-modify-write updates of one
// customer lose nothing.
func testCustomerLinearizable(t *testing.T, s store.Store) {
	c := ctx(t)
	const n = 30
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := s.UpdateCustomer(c, "hot", "", func(cu *attribution.Customer, _ *attribution.Order) (*store.CustomerUpdate, error) {
				cu.State("p").CapUsed++
				return &store.CustomerUpdate{Customer: cu,
					Decisions: []attribution.Decision{{Program: "p", At: t0, Event: "login", Outcome: fmt.Sprint(cu.State("p").CapUsed)}}}, nil
			})
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	got, err := s.Customer(c, "hot")
	if err != nil || got.Programs["p"].CapUsed != n {
		t.Fatalf("after %d concurrent increments: %+v %v", n, got, err)
	}
	ds, _ := s.Decisions(c, "p", "hot")
	for i, d := range ds {
		if d.Outcome != fmt.Sprint(n-i) {
			t.Fatalf("decision log out of order at %d: %s", i, d.Outcome)
		}
	}
}

func testDecisionLog(t *testing.T, s store.Store) {
	c := ctx(t)
	if ds, err := s.Decisions(c, "p", "nobody"); err != nil || len(ds) != 0 {
		t.Errorf("no decisions: %v %v", ds, err)
	}
	for i := 0; i < attribution.MaxDecisions+20; i++ {
		err := s.UpdateCustomer(c, "c1", "", func(cu *attribution.Customer, _ *attribution.Order) (*store.CustomerUpdate, error) {
			return &store.CustomerUpdate{Customer: cu, Decisions: []attribution.Decision{{Program: "p", At: t0.Add(time.Duration(i) * time.Second), Event: "login", Reason: fmt.Sprint(i)}}}, nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	ds, err := s.Decisions(c, "p", "c1")
	if err != nil || len(ds) != attribution.MaxDecisions {
		t.Fatalf("%d decisions, %v", len(ds), err)
	}
	if ds[0].Reason != fmt.Sprint(attribution.MaxDecisions+19) || ds[len(ds)-1].Reason != "20" {
		t.Errorf("newest first, latest %d kept: first %s last %s", attribution.MaxDecisions, ds[0].Reason, ds[len(ds)-1].Reason)
	}
	if ds, _ := s.Decisions(c, "other", "c1"); len(ds) != 0 {
		t.Errorf("decisions are per program: %d", len(ds))
	}
}

func testOrders(t *testing.T, s store.Store) {
	c := ctx(t)
	if _, err := s.OrderOwner(c, "o1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("ErrNotFound: %v", err)
	}
	if owner, err := s.ClaimOrder(c, "o1", "c1"); err != nil || owner != "c1" {
		t.Fatalf("claim: %s %v", owner, err)
	}
	if owner, err := s.ClaimOrder(c, "o1", "c2"); err != nil || owner != "c1" {
		t.Fatalf("a claimed order keeps its owner: %s %v", owner, err)
	}
	if owner, err := s.OrderOwner(c, "o1"); err != nil || owner != "c1" {
		t.Fatalf("owner: %s %v", owner, err)
	}
	write := func(amount int64) {
		err := s.UpdateCustomer(c, "c1", "o1", func(cu *attribution.Customer, o *attribution.Order) (*store.CustomerUpdate, error) {
			if o == nil {
				o = &attribution.Order{ID: "o1", Program: "p", Customer: "c1"}
			}
			o.Amount += amount
			return &store.CustomerUpdate{Order: o}, nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	write(100)
	write(50)
	err := s.UpdateCustomer(c, "c1", "o1", func(cu *attribution.Customer, o *attribution.Order) (*store.CustomerUpdate, error) {
		if o == nil || o.Amount != 150 {
			t.Errorf("the order record is read back: %+v", o)
		}
		return nil, nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// testDecisionsPerProgram: one update logs decisions of several programs,
// each in its own log, in order.
func testDecisionsPerProgram(t *testing.T, s store.Store) {
	c := ctx(t)
	err := s.UpdateCustomer(c, "c1", "", func(cu *attribution.Customer, _ *attribution.Order) (*store.CustomerUpdate, error) {
		return &store.CustomerUpdate{Customer: cu, Decisions: []attribution.Decision{
			{ID: "d1", Program: "a", At: t0, Outcome: "ended"},
			{ID: "d2", Program: "b", At: t0, Outcome: "ended"},
			{ID: "d3", Program: "a", At: t0, Outcome: "created"},
		}}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	a, err := s.Decisions(c, "a", "c1")
	if err != nil || len(a) != 2 || a[0].ID != "d3" || a[1].ID != "d1" {
		t.Errorf("program a, newest first: %+v %v", a, err)
	}
	if b, err := s.Decisions(c, "b", "c1"); err != nil || len(b) != 1 || b[0].ID != "d2" {
		t.Errorf("program b: %+v %v", b, err)
	}
}

func testClickClaims(t *testing.T, s store.Store) {
	c := ctx(t)
	exp := time.Hour
	f := func(customer, op string, limit int, want store.ClickClaim) {
		t.Helper()
		if got, err := s.ClaimClick(c, "k1", customer, op, limit, exp); err != nil || got != want {
			t.Errorf("claim by %s/%s limit %d: %v %v, want %v", customer, op, limit, got, err, want)
		}
	}
	f("c1", "op1", 2, store.ClickClaimed)
	f("c1", "op1", 2, store.ClickClaimed) // the same claim again: still its own
	f("c1", "op9", 2, store.ClickHeld)    // the same customer by another claim: not a new use
	f("c2", "op2", 2, store.ClickClaimed)
	f("c3", "op3", 2, store.ClickUsed)
	f("c3", "op3", 3, store.ClickClaimed) // a higher limit lets one more in
	if err := s.ReleaseClick(c, "k1", "c2", "other-op"); err != nil {
		t.Fatal(err)
	}
	f("c4", "op4", 3, store.ClickUsed) // only the claiming request releases
	if err := s.ReleaseClick(c, "k1", "c2", "op2"); err != nil {
		t.Fatal(err)
	}
	if err := s.ReleaseClick(c, "k1", "c2", "op2"); err != nil { // twice is fine
		t.Fatal(err)
	}
	f("c4", "op4", 3, store.ClickClaimed)
	f("c1", "op1", 1, store.ClickClaimed) // other clicks are not counted: k2 is separate
	if got, err := s.ClaimClick(c, "k2", "c9", "op", 1, exp); err != nil || got != store.ClickClaimed {
		t.Errorf("another click: %v %v", got, err)
	}
}

// testConcurrentClickClaims: however many customers race for a click, at
// most limit get it.
func testConcurrentClickClaims(t *testing.T, s store.Store) {
	c := ctx(t)
	const n, limit = 30, 3
	var wg sync.WaitGroup
	var mu sync.Mutex
	claimed := 0
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := s.ClaimClick(c, "hot", fmt.Sprint("c", i), fmt.Sprint("op", i), limit, time.Hour)
			if err != nil {
				t.Error(err)
			}
			if got == store.ClickClaimed {
				mu.Lock()
				claimed++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if claimed != limit {
		t.Errorf("%d of %d customers claimed a click that binds %d", claimed, n, limit)
	}
}

// Alias is the alias the erasure tests give: stores take it from the
// caller.
const Alias = "erased:3q2-7wXyZ0123456789abc"

// erasable writes customer c1 as the service would leave it: fingerprints,
// an association with click k1 and a remembered bind, decisions in
// programs p and q, two claimed orders (one refunded), a claim of k1; and
// another customer, c2, with its own order, decisions and claim.
func erasable(t *testing.T, s store.Store) {
	t.Helper()
	c := ctx(t)
	write := func(id, order string, fn func(cu *attribution.Customer) *store.CustomerUpdate) {
		t.Helper()
		if order != "" {
			if _, err := s.ClaimOrder(c, order, id); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.UpdateCustomer(c, id, order, func(cu *attribution.Customer, _ *attribution.Order) (*store.CustomerUpdate, error) {
			return fn(cu), nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"c1", "c2"} {
		click := "k-" + id
		if _, err := s.ClaimClick(c, click, id, "claim-"+id, 1, time.Hour); err != nil {
			t.Fatal(err)
		}
		write(id, "", func(cu *attribution.Customer) *store.CustomerUpdate {
			cu.Fingerprints = attribution.FingerprintSet{"email:x-" + id}
			a := &attribution.Association{Promoter: "alice", Kind: attribution.Protected, Click: click, Since: t0, ExpiresAt: t0.Add(time.Hour)}
			cu.State("p").Assoc = a
			d := attribution.Decision{ID: "bind-" + id, Program: "p", At: t0, Event: "register", Promoter: "alice", Click: click, Outcome: "created"}
			cu.Remember(attribution.Applied{Op: "bind:" + id, At: t0, Associated: true, Assoc: a, Decisions: []attribution.Decision{d}})
			return &store.CustomerUpdate{Customer: cu, Decisions: []attribution.Decision{d,
				{ID: "q-" + id, Program: "q", At: t0, Event: "login", Outcome: "rejected", Reason: "no_click"}}}
		})
		for i, amount := range []int64{10000, 2500} {
			order := fmt.Sprint("o", i, "-", id)
			write(id, order, func(cu *attribution.Customer) *store.CustomerUpdate {
				cu.Paid = true
				o := &attribution.Order{ID: order, Program: "p", Customer: id, Amount: amount, Currency: "CNY", Eligible: true,
					Promoter: "alice", Click: click, Commission: amount / 10, Granted: amount / 10, At: t0,
					Decisions: []attribution.Decision{{ID: "conv-" + order, Program: "p", At: t0, Event: "conversion", Promoter: "alice",
						Click: click, Outcome: "attributed", Order: order}}}
				if i == 0 {
					o.Refunded, o.Commission = 5000, 500
					o.Refunds = []attribution.RefundRecord{{ID: "r1", Amount: 5000, Refunded: 5000, Commission: 500, Delta: -500, At: t0}}
				}
				return &store.CustomerUpdate{Customer: cu, Order: o, Decisions: o.Decisions}
			})
		}
	}
}

// order reads the order record customer holds for order, or nil.
func order(t *testing.T, s store.Store, customer, id string) *attribution.Order {
	t.Helper()
	var got *attribution.Order
	err := s.UpdateCustomer(ctx(t), customer, id, func(_ *attribution.Customer, o *attribution.Order) (*store.CustomerUpdate, error) {
		got = o
		return nil, nil
	})
	if err != nil {
		t.Fatalf("reading order %s of %s: %v", id, customer, err)
	}
	return got
}

// testEraseCustomer: an erased customer's record, decision logs and claims
// are gone; its orders are the alias's, whole, and the order index names
// the alias; another customer is untouched; erasing again changes nothing.
func testEraseCustomer(t *testing.T, s store.Store) {
	c := ctx(t)
	erasable(t, s)
	before0, before1 := order(t, s, "c1", "o0-c1"), order(t, s, "c1", "o1-c1")
	e, err := s.EraseCustomer(c, "c1", Alias)
	if err != nil {
		t.Fatal(err)
	}
	if want := (store.Erasure{Customer: true, Orders: 2, DecisionLogs: 2, ClickClaims: 1}); e != want {
		t.Errorf("erasure %+v, want %+v", e, want)
	}
	if _, err := s.Customer(c, "c1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the customer record is kept: %v", err)
	}
	for _, p := range []string{"p", "q"} {
		if ds, err := s.Decisions(c, p, "c1"); err != nil || len(ds) != 0 {
			t.Errorf("decision log of %s kept: %v %v", p, ds, err)
		}
		if ds, err := s.Decisions(c, p, Alias); err != nil || len(ds) != 0 {
			t.Errorf("a decision log of the alias in %s: %v %v", p, ds, err)
		}
	}
	for _, want := range []*attribution.Order{before0, before1} {
		if o := order(t, s, "c1", want.ID); o != nil {
			t.Errorf("order %s is still the customer's: %+v", want.ID, o)
		}
		got := order(t, s, Alias, want.ID)
		w := *want
		w.Customer, w.Erased = Alias, true
		if d := cmp.Diff(&w, got); d != "" {
			t.Errorf("order %s under the alias (-want +got):\n%s", want.ID, d)
		}
		if owner, err := s.OrderOwner(c, want.ID); err != nil || owner != Alias {
			t.Errorf("the index of %s names %q, %v", want.ID, owner, err)
		}
		if owner, err := s.ClaimOrder(c, want.ID, "c1"); err != nil || owner != Alias {
			t.Errorf("claiming %s again: %q %v", want.ID, owner, err)
		}
	}
	// The click's use still counts, no longer under the customer's id: the
	// id is a new customer for it.
	if got, err := s.ClaimClick(c, "k-c1", "c3", "claim-c3", 1, time.Hour); err != nil || got != store.ClickUsed {
		t.Errorf("a click the erased customer used is free again: %v %v", got, err)
	}
	if got, err := s.ClaimClick(c, "k-c1", "c1", "claim-c1", 1, time.Hour); err != nil || got != store.ClickUsed {
		t.Errorf("the claim still names the erased customer: %v %v", got, err)
	}
	if got, err := s.ClaimClick(c, "k-c1", "c1", "claim-c1b", 2, time.Hour); err != nil || got != store.ClickClaimed {
		t.Errorf("the id used again is a new use of the click: %v %v", got, err)
	}
	// c2 is untouched.
	if cu, err := s.Customer(c, "c2"); err != nil || !cu.Paid || len(cu.Fingerprints) != 1 {
		t.Errorf("another customer: %+v %v", cu, err)
	}
	if ds, err := s.Decisions(c, "p", "c2"); err != nil || len(ds) != 3 {
		t.Errorf("another customer's decisions: %d %v", len(ds), err)
	}
	if o := order(t, s, "c2", "o0-c2"); o == nil || o.Customer != "c2" || o.Erased {
		t.Errorf("another customer's order: %+v", o)
	}
	if got, err := s.ClaimClick(c, "k-c2", "c2", "claim-c2", 1, time.Hour); err != nil || got != store.ClickClaimed {
		t.Errorf("another customer's claim: %v %v", got, err)
	}

	// Again: nothing left to erase, the orders stay the alias's.
	if e, err := s.EraseCustomer(c, "c1", Alias); err != nil || e != (store.Erasure{}) {
		t.Errorf("erasing again: %+v %v", e, err)
	}
	if o := order(t, s, Alias, "o0-c1"); o == nil || o.Refunded != 5000 {
		t.Errorf("erasing again lost an order: %+v", o)
	}
	// A refund after the erasure is written to the alias's order, and a
	// further erasure does not undo it.
	err = s.UpdateCustomer(c, Alias, "o1-c1", func(_ *attribution.Customer, o *attribution.Order) (*store.CustomerUpdate, error) {
		o.Refunded = 100
		return &store.CustomerUpdate{Order: o}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.EraseCustomer(c, "c1", Alias); err != nil {
		t.Fatal(err)
	}
	if o := order(t, s, Alias, "o1-c1"); o == nil || o.Refunded != 100 {
		t.Errorf("a refund after the erasure was undone: %+v", o)
	}
	// The id may be used again: a new customer.
	if err := s.UpdateCustomer(c, "c1", "", func(cu *attribution.Customer, _ *attribution.Order) (*store.CustomerUpdate, error) {
		if cu.Paid || len(cu.Fingerprints) > 0 || len(cu.Programs) > 0 {
			t.Errorf("a customer id used again after erasure starts empty: %+v", cu)
		}
		cu.AgentServed = true
		return &store.CustomerUpdate{Customer: cu}, nil
	}); err != nil {
		t.Fatal(err)
	}
	if cu, err := s.Customer(c, "c1"); err != nil || !cu.AgentServed {
		t.Errorf("the new customer: %+v %v", cu, err)
	}
}

func testEraseUnknownCustomer(t *testing.T, s store.Store) {
	if e, err := s.EraseCustomer(ctx(t), "nobody", Alias); err != nil || e != (store.Erasure{}) {
		t.Errorf("%+v %v", e, err)
	}
	if _, err := s.Customer(ctx(t), "nobody"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("erasing an unknown customer made one: %v", err)
	}
}

// testEraseRacingUpdates: updates of a customer racing its erasure each
// either land before it (their order is then the alias's) or after it
// (the customer's, anew), or fail; no order that was written is lost.
func testEraseRacingUpdates(t *testing.T, s store.Store) {
	c := ctx(t)
	const n = 40
	var wg sync.WaitGroup
	var mu sync.Mutex
	var written []string
	for i := range n {
		wg.Go(func() {
			id := fmt.Sprint("race-", i)
			err := s.UpdateCustomer(c, "c1", id, func(cu *attribution.Customer, o *attribution.Order) (*store.CustomerUpdate, error) {
				cu.Paid = true
				return &store.CustomerUpdate{Customer: cu, Order: &attribution.Order{ID: id, Program: "p", Customer: "c1", Amount: 100},
					Decisions: []attribution.Decision{{Program: "p", At: t0, Event: "conversion", Order: id}}}, nil
			})
			switch {
			case err == nil:
				mu.Lock()
				written = append(written, id)
				mu.Unlock()
			case !errors.Is(err, store.ErrErasing) && !errors.Is(err, store.ErrConflict):
				t.Error(err)
			}
		})
		if i == n/2 {
			wg.Go(func() {
				if _, err := s.EraseCustomer(c, "c1", Alias); err != nil {
					t.Error(err)
				}
			})
		}
	}
	wg.Wait()
	if _, err := s.EraseCustomer(c, "c1", Alias); err != nil { // what landed after the first
		t.Fatal(err)
	}
	for _, id := range written {
		if o := order(t, s, Alias, id); o == nil || o.Customer != Alias || o.Amount != 100 {
			t.Errorf("order %s was written and is lost: %+v", id, o)
		}
	}
	if _, err := s.Customer(c, "c1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the customer is kept: %v", err)
	}
}
