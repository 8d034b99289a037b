package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/store"
)

var listTests = []struct {
	name string
	fn   func(t *testing.T, s store.Store)
}{
	{"ListPrograms", testListPrograms},
	{"ListPromoters", testListPromoters},
	{"ListLinks", testListLinks},
	{"ListLinksWhileInserting", testListLinksWhileInserting},
	{"ListProgramsWhileInserting", testListProgramsWhileInserting},
	{"ListBadCursor", testListBadCursor},
	{"UpdateLink", testUpdateLink},
	{"UpdateLinkConcurrent", testUpdateLinkConcurrent},
	{"UpdateLinkInvalidates", testUpdateLinkInvalidates},
}

// allPages follows a list's cursors to the end, limit items a page, and
// fails on a page over limit or a next cursor after a short page.
func allPages[T any](t *testing.T, limit int, list func(cursor string, limit int) ([]T, string, error)) []T {
	t.Helper()
	var out []T
	cursor := ""
	for range 10000 {
		items, next, err := list(cursor, limit)
		if err != nil {
			t.Fatalf("page after %q: %v", cursor, err)
		}
		if len(items) > limit {
			t.Fatalf("page of %d items, limit %d", len(items), limit)
		}
		out = append(out, items...)
		if next == "" {
			return out
		}
		if len(items) < limit {
			t.Fatalf("a short page (%d of %d) with a next cursor %q", len(items), limit, next)
		}
		cursor = next
	}
	t.Fatal("the cursors never end")
	return nil
}

// writers runs n writers, each calling write(w, i) for i from 0 to
// rounds-1 until it fails (a test error) or halt is called. halt stops
// them and waits for them: defer it, so that none outlives the test,
// t.Fatal included; calling it again does nothing.
func writers(t *testing.T, n, rounds int, write func(w, i int) error) (halt func()) {
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rounds {
				select {
				case <-stop:
					return
				default:
				}
				if err := write(w, i); err != nil {
					t.Errorf("a write while listing: %v", err)
					return
				}
			}
		}()
	}
	var once sync.Once
	return func() { once.Do(func() { close(stop) }); wg.Wait() }
}

func testListPrograms(t *testing.T, s store.Store) {
	c := ctx(t)
	if ps, next, err := s.Programs(c, "", 10); err != nil || len(ps) != 0 || next != "" {
		t.Fatalf("empty store: %v %q %v; want nothing", ps, next, err)
	}
	var want []string
	for i := range 7 {
		id := fmt.Sprintf("prog-%02d", 6-i) // written in reverse, listed by id
		if err := s.PutProgram(c, Program(id)); err != nil {
			t.Fatal(err)
		}
		want = append([]string{id}, want...)
	}
	// A program written again is listed once.
	if err := s.PutProgram(c, Program("prog-03")); err != nil {
		t.Fatal(err)
	}
	for _, limit := range []int{1, 2, 3, 7, 100} {
		got := allPages(t, limit, func(cur string, n int) ([]attribution.Program, string, error) { return s.Programs(c, cur, n) })
		var ids []string
		for _, p := range got {
			ids = append(ids, p.ID)
		}
		if fmt.Sprint(ids) != fmt.Sprint(want) {
			t.Errorf("limit %d: %v; want %v", limit, ids, want)
		}
	}
	ps, next, err := s.Programs(c, "", 7)
	if err != nil || len(ps) != 7 || next != "" {
		t.Errorf("a full last page: %d items, next %q, %v; want 7 and no next", len(ps), next, err)
	}
	if ps[0].CookieDays != 30 || len(ps[0].AllowedHosts) == 0 {
		t.Errorf("listed program lacks its fields: %+v", ps[0])
	}
}

func testListPromoters(t *testing.T, s store.Store) {
	c := ctx(t)
	h := attribution.NewFingerprintHasher([]byte("0123456789abcdef"))
	fp, err := h.Hash(attribution.Fingerprints{IPs: []string{"203.0.113.9"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"carol", "alice@example.com", "bob", "a:1"} {
		if err := s.PutPromoter(c, &attribution.Promoter{ID: id, Status: attribution.StatusActive, Fingerprints: fp}); err != nil {
			t.Fatal(err)
		}
	}
	got := allPages(t, 3, func(cur string, n int) ([]attribution.Promoter, string, error) { return s.Promoters(c, cur, n) })
	var ids []string
	for _, p := range got {
		ids = append(ids, p.ID)
		if len(p.Fingerprints) != 1 {
			t.Errorf("promoter %s listed with %d fingerprints; want 1", p.ID, len(p.Fingerprints))
		}
	}
	if want := "[a:1 alice@example.com bob carol]"; fmt.Sprint(ids) != want {
		t.Errorf("promoters %v; want %s", ids, want)
	}
}

func codes(ls []attribution.Link) string {
	var out []string
	for _, l := range ls {
		out = append(out, l.Code)
	}
	return fmt.Sprint(out)
}

func testListLinks(t *testing.T, s store.Store) {
	c := ctx(t)
	// Two programs and two promoters, the links a second apart; two at
	// the same time, ordered by code.
	mk := func(code, program, promoter string, at time.Time) {
		t.Helper()
		err := s.CreateLink(c, &attribution.Link{Code: code, Program: program, Promoter: promoter,
			Destination: "https://shop.example.com/", CreatedAt: at})
		if err != nil {
			t.Fatal(err)
		}
	}
	mk("lnk001", "p1", "alice", t0)
	mk("lnk002", "p1", "bob", t0.Add(time.Second))
	mk("lnk003", "p2", "alice", t0.Add(2*time.Second))
	mk("lnk004", "p2", "bob", t0.Add(3*time.Second))
	mk("lnk005", "p1", "alice", t0.Add(4*time.Second))
	mk("lnk007", "p1", "alice", t0.Add(5*time.Second))
	mk("lnk006", "p1", "alice", t0.Add(5*time.Second))
	// A create that finds its code taken lists nothing of its own.
	if err := s.CreateLink(c, &attribution.Link{Code: "lnk001", Program: "p2", Promoter: "bob",
		Destination: "https://shop.example.com/", CreatedAt: t0.Add(time.Hour)}); !errors.Is(err, store.ErrExists) {
		t.Fatalf("taken code: %v", err)
	}
	list := func(q store.LinkQuery) func(string, int) ([]attribution.Link, string, error) {
		return func(cur string, n int) ([]attribution.Link, string, error) {
			q.Cursor, q.Limit = cur, n
			return s.Links(c, q)
		}
	}
	f := func(q store.LinkQuery, want string) {
		t.Helper()
		for _, limit := range []int{1, 2, 3, 100} {
			if got := codes(allPages(t, limit, list(q))); got != want {
				t.Errorf("%+v, limit %d: %s; want %s", q, limit, got, want)
			}
		}
	}
	f(store.LinkQuery{}, "[lnk007 lnk006 lnk005 lnk004 lnk003 lnk002 lnk001]")
	f(store.LinkQuery{Program: "p1"}, "[lnk007 lnk006 lnk005 lnk002 lnk001]")
	f(store.LinkQuery{Promoter: "bob"}, "[lnk004 lnk002]")
	f(store.LinkQuery{Program: "p1", Promoter: "alice"}, "[lnk007 lnk006 lnk005 lnk001]")
	f(store.LinkQuery{Program: "p3"}, "[]")

	if err := s.DeleteLink(c, "lnk005"); err != nil {
		t.Fatal(err)
	}
	f(store.LinkQuery{}, "[lnk007 lnk006 lnk004 lnk003 lnk002 lnk001]")
	f(store.LinkQuery{Program: "p1", Promoter: "alice"}, "[lnk007 lnk006 lnk001]")

	ls, _, err := s.Links(c, store.LinkQuery{Promoter: "bob", Limit: 1})
	if err != nil || len(ls) != 1 || ls[0].Program != "p2" || !ls[0].CreatedAt.Equal(t0.Add(3*time.Second)) {
		t.Errorf("listed link: %+v, %v", ls, err)
	}
}

// testListLinksWhileInserting pages through the links while other callers
// create more (a bounded number: a listing that new links kept outpacing
// would never end): every link that existed when the listing began is listed
// exactly once, and nothing twice.
func testListLinksWhileInserting(t *testing.T, s store.Store) {
	c := ctx(t)
	before := map[string]bool{}
	for i := range 60 {
		code := fmt.Sprintf("old%03d", i)
		before[code] = true
		err := s.CreateLink(c, &attribution.Link{Code: code, Program: "p1", Promoter: "alice",
			Destination: "https://shop.example.com/", CreatedAt: t0.Add(time.Duration(i) * time.Second)})
		if err != nil {
			t.Fatal(err)
		}
	}
	// Some newer than every old link, some among them, some older than
	// all.
	defer writers(t, 3, 150, func(w, i int) error {
		at := t0.Add(time.Duration(i%90-15)*time.Second + time.Duration(w)*time.Millisecond)
		return s.CreateLink(c, &attribution.Link{Code: fmt.Sprintf("new%d-%04d", w, i), Program: "p1",
			Promoter: "alice", Destination: "https://shop.example.com/", CreatedAt: at})
	})()
	for _, q := range []store.LinkQuery{{}, {Program: "p1"}, {Promoter: "alice"}, {Program: "p1", Promoter: "alice"}} {
		seen := map[string]bool{}
		got := allPages(t, 7, func(cur string, n int) ([]attribution.Link, string, error) {
			q.Cursor, q.Limit = cur, n
			time.Sleep(time.Millisecond) // let the writers in between pages
			return s.Links(c, q)
		})
		last := ""
		for _, l := range got {
			if seen[l.Code] {
				t.Errorf("%+v: %s listed twice", q, l.Code)
			}
			seen[l.Code] = true
			if k := store.LinkPageKey(&l); last != "" && k >= last {
				t.Errorf("%+v: %s out of order", q, l.Code)
			}
			last = store.LinkPageKey(&l)
		}
		for code := range before {
			if !seen[code] {
				t.Errorf("%+v: %s, there from the start, was not listed", q, code)
			}
		}
	}
}

func testListProgramsWhileInserting(t *testing.T, s store.Store) {
	c := ctx(t)
	for i := range 40 {
		if err := s.PutProgram(c, Program(fmt.Sprintf("m%02d", i))); err != nil {
			t.Fatal(err)
		}
	}
	halt := writers(t, 1, 100, func(_, i int) error {
		for _, prefix := range []string{"a", "m", "z"} {
			if err := s.PutProgram(c, Program(fmt.Sprintf("%s%02d-%d", prefix, i%40, i))); err != nil {
				return err
			}
		}
		return nil
	})
	defer halt()
	got := allPages(t, 6, func(cur string, n int) ([]attribution.Program, string, error) {
		time.Sleep(time.Millisecond)
		return s.Programs(c, cur, n)
	})
	halt()
	seen := map[string]bool{}
	for _, p := range got {
		if seen[p.ID] {
			t.Errorf("%s listed twice", p.ID)
		}
		seen[p.ID] = true
	}
	for i := range 40 {
		if id := fmt.Sprintf("m%02d", i); !seen[id] {
			t.Errorf("%s, there from the start, was not listed", id)
		}
	}
}

func testListBadCursor(t *testing.T, s store.Store) {
	c := ctx(t)
	for _, cur := range []string{"x y", "{}", "no|pe"} {
		if _, _, err := s.Programs(c, cur, 10); !errors.Is(err, store.ErrBadCursor) {
			t.Errorf("Programs cursor %q: %v; want ErrBadCursor", cur, err)
		}
		if _, _, err := s.Promoters(c, cur, 10); !errors.Is(err, store.ErrBadCursor) {
			t.Errorf("Promoters cursor %q: %v; want ErrBadCursor", cur, err)
		}
	}
	for _, cur := range []string{"abc", "00000000000000000000|", "0000000000000000000x|abc", "00000000000000000001|a b"} {
		if _, _, err := s.Links(c, store.LinkQuery{Cursor: cur, Limit: 10}); !errors.Is(err, store.ErrBadCursor) {
			t.Errorf("Links cursor %q: %v; want ErrBadCursor", cur, err)
		}
	}
	for _, n := range []int{0, -1, store.MaxPage + 1} {
		if _, _, err := s.Programs(c, "", n); err == nil {
			t.Errorf("Programs limit %d: no error", n)
		}
		if _, _, err := s.Links(c, store.LinkQuery{Limit: n}); err == nil {
			t.Errorf("Links limit %d: no error", n)
		}
	}
}

func testUpdateLink(t *testing.T, s store.Store) {
	c := ctx(t)
	l := &attribution.Link{Code: "upd001", Program: "p1", Promoter: "alice", Destination: "https://shop.example.com/", CreatedAt: t0}
	if err := s.CreateLink(c, l); err != nil {
		t.Fatal(err)
	}
	exp := t0.Add(24 * time.Hour)
	got, err := s.UpdateLink(c, "upd001", func(l *attribution.Link) error {
		l.Status, l.ExpiresAt, l.ExpiredURL = attribution.LinkPaused, &exp, "https://shop.example.com/ended"
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	read, err := s.Link(c, "upd001")
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range []*attribution.Link{got, read} {
		if x.Status != attribution.LinkPaused || x.ExpiresAt == nil || !x.ExpiresAt.Equal(exp) ||
			x.ExpiredURL != "https://shop.example.com/ended" || x.Destination != l.Destination || !x.CreatedAt.Equal(t0) {
			t.Errorf("updated link: %+v", x)
		}
	}
	ls, _, err := s.Links(c, store.LinkQuery{Program: "p1", Limit: 10})
	if err != nil || len(ls) != 1 || ls[0].Status != attribution.LinkPaused {
		t.Errorf("the list after an update: %+v, %v", ls, err)
	}
	boom := errors.New("boom")
	if _, err := s.UpdateLink(c, "upd001", func(l *attribution.Link) error { l.Destination = "x"; return boom }); !errors.Is(err, boom) {
		t.Errorf("fn's error: got %v", err)
	}
	if read, _ := s.Link(c, "upd001"); read.Destination != l.Destination {
		t.Errorf("a failed update wrote: %+v", read)
	}
	if _, err := s.UpdateLink(c, "nope01", func(*attribution.Link) error { return nil }); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown code: %v; want ErrNotFound", err)
	}
	if err := s.DeleteLink(c, "upd001"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateLink(c, "upd001", func(*attribution.Link) error { return nil }); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("deleted code: %v; want ErrNotFound", err)
	}
}

// testUpdateLinkConcurrent: updates of different fields at once all stay.
func testUpdateLinkConcurrent(t *testing.T, s store.Store) {
	c := ctx(t)
	if err := s.CreateLink(c, &attribution.Link{Code: "upd002", Program: "p1", Promoter: "alice",
		Destination: "https://shop.example.com/", CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.UpdateLink(c, "upd002", func(l *attribution.Link) error {
				l.ExpiredURL += fmt.Sprint(i)
				return nil
			})
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	l, err := s.Link(c, "upd002")
	if err != nil {
		t.Fatal(err)
	}
	if len(l.ExpiredURL) != 8 {
		t.Errorf("8 concurrent updates left %q: some were lost", l.ExpiredURL)
	}
}

// testUpdateLinkInvalidates: an update is announced once it can be read.
func testUpdateLinkInvalidates(t *testing.T, s store.Store) {
	c, cancel := context.WithCancel(ctx(t))
	defer cancel()
	if err := s.CreateLink(c, &attribution.Link{Code: "upd003", Program: "p1", Promoter: "alice",
		Destination: "https://shop.example.com/", CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{}, 1)
	status := make(chan attribution.LinkStatus, 10)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.WatchInvalidations(c, func(i store.Invalidation) {
			switch i {
			case store.Invalidation{Kind: store.All}:
				select {
				case ready <- struct{}{}:
				default:
				}
			case store.Invalidation{Kind: store.Link, ID: "upd003"}:
				if l, err := s.Link(c, "upd003"); err == nil {
					status <- l.Status
				}
			}
		})
	}()
	<-ready
	if _, err := s.UpdateLink(c, "upd003", func(l *attribution.Link) error { l.Status = attribution.LinkPaused; return nil }); err != nil {
		t.Fatal(err)
	}
	select {
	case st := <-status:
		if st != attribution.LinkPaused {
			t.Errorf("the update was announced before it could be read: status %q", st)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("no invalidation within 2s")
	}
	cancel()
	<-done
}
