package store_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/store"
	"github.com/refgate/refgate/store/embedded"
	"github.com/refgate/refgate/store/storetest"
)

func TestInstrument(t *testing.T) {
	st, err := embedded.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	s := store.Instrument(st, reg)
	ctx := context.Background()
	if _, err := s.Link(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatal(err)
	}
	s.PutProgram(ctx, storetest.Program("p"))
	s.Close()
	if err := s.PutProgram(ctx, storetest.Program("p")); err == nil {
		t.Fatal("write to a closed store succeeded")
	}
	want := map[string]float64{"link": 0, "put_program": 1}
	for op, n := range want {
		if got := errorsFor(t, reg, op); got != n {
			t.Errorf("errors{op=%s} = %v, want %v (not found is an answer, not an error)", op, got, n)
		}
	}
}

func errorsFor(t *testing.T, reg *prometheus.Registry, op string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "refgate_store_errors_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if l := m.GetLabel(); len(l) == 1 && l[0].GetValue() == op {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no refgate_store_errors_total{op=%q}", op)
	return 0
}

// refusing is a store whose writes the test refuses.
type refusing struct {
	store.Store
	err error
}

func (r *refusing) PutProgram(ctx context.Context, p *attribution.Program) error {
	if r.err != nil {
		return r.err
	}
	return r.Store.PutProgram(ctx, p)
}

func (r *refusing) ReleaseClick(ctx context.Context, click, customer, claim string) error { return nil }

func TestInstrumentWriteHealth(t *testing.T) {
	st, err := embedded.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	reg := prometheus.NewRegistry()
	r := &refusing{Store: st}
	s := store.Instrument(r, reg)
	ctx := context.Background()
	if h := s.WriteHealth(); h.Refused {
		t.Fatalf("health before any write: %+v", h)
	}
	oom := &store.RefusedError{Reason: "oom", Message: "OOM command not allowed", Err: errors.New("OOM command not allowed")}
	r.err = fmt.Errorf("redis set: %w", oom)
	s.PutProgram(ctx, storetest.Program("p"))
	s.PutProgram(ctx, storetest.Program("p"))
	h := s.WriteHealth()
	if !h.Refused || h.Reason != "oom" || h.Message != "OOM command not allowed" || h.Refusals != 2 || h.Since.IsZero() {
		t.Fatalf("health after two refused writes: %+v", h)
	}
	if got := writeErrors(t, reg); got != 2 {
		t.Errorf("refgate_store_write_errors_total{reason=oom} = %v, want 2", got)
	}
	// Reads, and a release that Redis allows even when full, say nothing
	// of writes.
	s.Program(ctx, "p")
	s.ReleaseClick(ctx, "k", "c", "claim")
	if h := s.WriteHealth(); !h.Refused {
		t.Fatalf("a read or a release cleared the refusal: %+v", h)
	}
	r.err = nil
	if err := s.PutProgram(ctx, storetest.Program("p")); err != nil {
		t.Fatal(err)
	}
	if h := s.WriteHealth(); h.Refused {
		t.Fatalf("health after a write was taken: %+v", h)
	}
}

// writeErrors is refgate_store_write_errors_total{reason="oom"}.
func writeErrors(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if mf.GetName() == "refgate_store_write_errors_total" && m.GetLabel()[0].GetValue() == "oom" {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatal(`no refgate_store_write_errors_total{reason="oom"}`)
	return 0
}

// TestInstrumentLedger: a ledger conflict is an answer, not a failure; a
// post that found its entry says nothing of writes, one that created it
// clears a refusal.
func TestInstrumentLedger(t *testing.T) {
	st, err := embedded.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	reg := prometheus.NewRegistry()
	r := &refusing{Store: st}
	s := store.Instrument(r, reg)
	ctx := context.Background()
	e := storetest.Accrual("alice", "o1", 3000, time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC))
	if _, created, err := s.PostEntry(ctx, e, ""); err != nil || !created {
		t.Fatal(created, err)
	}
	other := *e
	other.Amount++
	if _, _, err := s.PostEntry(ctx, &other, ""); !errors.Is(err, store.ErrEntryConflict) {
		t.Fatal(err)
	}
	if got := errorsFor(t, reg, "post_entry"); got != 0 {
		t.Errorf("errors{op=post_entry} = %v, want 0: a conflict is an answer", got)
	}
	r.err = &store.RefusedError{Reason: "oom", Message: "OOM", Err: errors.New("OOM")}
	s.PutProgram(ctx, storetest.Program("p"))
	if _, created, err := s.PostEntry(ctx, e, ""); err != nil || created {
		t.Fatal(created, err)
	}
	if h := s.WriteHealth(); !h.Refused {
		t.Errorf("a post that found its entry cleared the refusal: %+v", h)
	}
	e2 := storetest.Accrual("alice", "o2", 3000, e.At)
	if _, created, err := s.PostEntry(ctx, e2, ""); err != nil || !created {
		t.Fatal(created, err)
	}
	if h := s.WriteHealth(); h.Refused {
		t.Errorf("a post that created its entry left the refusal: %+v", h)
	}
}
