package redisstore

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/internal/redistest"
	"github.com/refgate/refgate/store"
)

// TestListsWithoutIndexEntries: an object written before the indexes
// existed is not listed until it is written again; an index entry whose
// object is missing is skipped, and the page is still filled.
func TestListsWithoutIndexEntries(t *testing.T) {
	srv := redistest.Start(t)
	s := open(t, srv)
	c := context.Background()
	rdb := srv.Client()
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)

	// An old version's program and link: their objects alone.
	old := storeProgram("legacy")
	b, _ := json.Marshal(old)
	rdb.Set(c, programKey("legacy"), b, 0)
	l := attribution.Link{Code: "legacy1", Program: "p1", Promoter: "alice", Destination: "https://shop.example.com/", CreatedAt: t0}
	b, _ = json.Marshal(&l)
	rdb.Set(c, linkKey("legacy1"), b, 0)
	if ps, _, err := s.Programs(c, "", 10); err != nil || len(ps) != 0 {
		t.Fatalf("programs: %+v %v; want none listed before a PUT", ps, err)
	}
	if ls, _, err := s.Links(c, store.LinkQuery{Limit: 10}); err != nil || len(ls) != 0 {
		t.Fatalf("links: %+v %v; want none listed before an update", ls, err)
	}
	if err := s.PutProgram(c, old); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateLink(c, "legacy1", func(l *attribution.Link) error { l.Status = attribution.LinkActive; return nil }); err != nil {
		t.Fatal(err)
	}
	if ps, _, err := s.Programs(c, "", 10); err != nil || len(ps) != 1 || ps[0].ID != "legacy" {
		t.Errorf("programs after a PUT: %+v %v", ps, err)
	}
	for _, q := range []store.LinkQuery{{}, {Program: "p1"}, {Promoter: "alice"}, {Program: "p1", Promoter: "alice"}} {
		q.Limit = 10
		if ls, _, err := s.Links(c, q); err != nil || len(ls) != 1 || ls[0].Code != "legacy1" {
			t.Errorf("%+v after an update: %+v %v", q, ls, err)
		}
	}

	// Entries whose objects never came (a create that failed after its
	// entries were written), among real ones.
	for i := range 4 {
		if err := s.CreateLink(c, &attribution.Link{Code: "real" + string(rune('a'+i)), Program: "p1", Promoter: "alice",
			Destination: "https://shop.example.com/", CreatedAt: t0.Add(time.Duration(2*i+1) * time.Second)}); err != nil {
			t.Fatal(err)
		}
		ghost := &attribution.Link{Code: "ghost" + string(rune('a'+i)), CreatedAt: t0.Add(time.Duration(2*i+2) * time.Second)}
		rdb.ZAdd(c, linkIndex, redis.Z{Member: store.LinkPageKey(ghost)})
		rdb.ZAdd(c, programIndex, redis.Z{Member: "ghost" + string(rune('a'+i))})
	}
	ls, next, err := s.Links(c, store.LinkQuery{Limit: 3})
	if err != nil || len(ls) != 3 || ls[0].Code != "reald" || ls[2].Code != "realb" || next == "" {
		t.Fatalf("first page: %+v %q %v; want reald, realc, realb and a cursor", ls, next, err)
	}
	ls, next, err = s.Links(c, store.LinkQuery{Limit: 3, Cursor: next})
	if err != nil || len(ls) != 2 || ls[0].Code != "reala" || ls[1].Code != "legacy1" || next != "" {
		t.Fatalf("second page: %+v %q %v; want reala, legacy1 and no cursor", ls, next, err)
	}
	if ps, next, err := s.Programs(c, "", 1); err != nil || len(ps) != 1 || ps[0].ID != "legacy" || next != "" {
		t.Errorf("programs among ghosts: %+v %q %v; want legacy alone", ps, next, err)
	}
}

func storeProgram(id string) *attribution.Program {
	p := &attribution.Program{ID: id, CookieDays: 30, AllowedHosts: []string{"shop.example.com"}}
	p.Normalize()
	return p
}
