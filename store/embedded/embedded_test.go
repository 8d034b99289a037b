package embedded

import (
	"context"
	"errors"
	"testing"
	"time"

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
	if _, err := Open(dir); err == nil {
		t.Fatal("a second Open of a held file must fail")
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
