package store_test

import (
	"context"
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

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
