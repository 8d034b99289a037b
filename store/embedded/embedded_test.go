package embedded

import (
	"context"
	"errors"
	"testing"
	"time"

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
	s.RecordClicks(ctx, []attribution.Click{{ID: "c1", Program: "p1", Link: "abc", Visitor: "v1", At: at,
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
