package embedded

import (
	"context"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/store"
)

// TestLinkIndexBuiltOnOpen: a file written before the link lists (no
// index bucket) has its links indexed when it is opened, deleted ones
// left out.
func TestLinkIndexBuiltOnOpen(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	c := context.Background()
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	for i, code := range []string{"old001", "old002", "old003"} {
		if err := s.CreateLink(c, &attribution.Link{Code: code, Program: "p1", Promoter: "alice",
			Destination: "https://shop.example.com/", CreatedAt: t0.Add(time.Duration(i) * time.Second)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DeleteLink(c, "old002"); err != nil {
		t.Fatal(err)
	}
	// What an older version left: the links without their index.
	if err := s.db.Update(func(tx *bolt.Tx) error { return tx.DeleteBucket(bLinkIndex) }); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s = open(t, dir)
	ls, next, err := s.Links(c, store.LinkQuery{Program: "p1", Promoter: "alice", Limit: 10})
	if err != nil || next != "" || len(ls) != 2 || ls[0].Code != "old003" || ls[1].Code != "old001" {
		t.Fatalf("links after reopening: %+v %q %v; want old003, old001", ls, next, err)
	}
}
