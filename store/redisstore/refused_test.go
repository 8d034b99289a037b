package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/internal/redistest"
	"github.com/refgate/refgate/store"
	"github.com/refgate/refgate/store/storetest"
)

// TestRefusedWrites: the writes a Redis refuses while it answers come back
// as store.RefusedError with their reason, whether the command was sent
// alone, pipelined or called by a script.
func TestRefusedWrites(t *testing.T) {
	ctx := context.Background()
	clicks := []attribution.Click{{ID: "k1", Program: "p", Promoter: "a", Link: "l1", Visitor: "v1",
		At: time.Now(), ExpiresAt: time.Now().Add(time.Hour), Outcome: attribution.OutcomeAttributed}}
	writes := map[string]func(s *Store) error{
		"RecordClicks": func(s *Store) error { return s.RecordClicks(ctx, "b1", clicks) },
		"UpdateCustomer": func(s *Store) error {
			return s.UpdateCustomer(ctx, "c1", "", func(c *attribution.Customer, _ *attribution.Order) (*store.CustomerUpdate, error) {
				c.Paid = true
				return &store.CustomerUpdate{Customer: c}, nil
			})
		},
		"ClaimOrder": func(s *Store) error { _, err := s.ClaimOrder(ctx, "o1", "c1"); return err },
		"ClaimClick": func(s *Store) error {
			_, err := s.ClaimClick(ctx, "k1", "c1", "claim", 1, time.Hour)
			return err
		},
		"PutProgram": func(s *Store) error { return s.PutProgram(ctx, storetest.Program("p")) },
	}
	check := func(t *testing.T, s *Store, reason, words string) {
		t.Helper()
		for name, write := range writes {
			err := write(s)
			var re *store.RefusedError
			if !errors.As(err, &re) || re.Reason != reason || !strings.HasPrefix(re.Message, words) || strings.Contains(re.Message, "script:") {
				t.Errorf("%s: %v (%#v), want a RefusedError %s saying %q", name, err, re, reason, words)
			}
		}
	}
	t.Run("OOM", func(t *testing.T) {
		srv := redistest.Start(t, "--maxmemory", "1mb", "--maxmemory-policy", "noeviction")
		s := open(t, srv)
		admin := srv.Client()
		junk := strings.Repeat("x", 64<<10)
		for i := 0; admin.Set(ctx, fmt.Sprint("junk:", i), junk, 0).Err() == nil; i++ {
		}
		check(t, s, "oom", "OOM command not allowed when used memory > 'maxmemory'.")
		if _, err := s.Program(ctx, "p"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("a read with Redis full: %v", err)
		}
	})
	t.Run("ReadOnlyReplica", func(t *testing.T) {
		// A replica of a master that is not there is still a replica.
		srv := redistest.Start(t, "--replicaof", "127.0.0.1", "1")
		check(t, open(t, srv), "readonly", "READONLY You can't write against a read only replica.")
	})
}

// TestReportWhileFull: a report reads while Redis refuses writes, waiting
// deltas included: the fold's first write frees memory (DEL), so Redis
// lets the rest of the script write.
func TestReportWhileFull(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t, "--maxmemory", "2mb", "--maxmemory-policy", "noeviction")
	s, admin := open(t, srv), srv.Client()
	if err := admin.Set(ctx, "refgate:{lg:p}:rp:f", "1", time.Hour).Err(); err != nil { // the deltas wait
		t.Fatal(err)
	}
	at := time.Now().UTC()
	for i := range 3 {
		c := attribution.Click{ID: fmt.Sprint("k", i), Program: "p", Promoter: "a", Link: "l1", Visitor: fmt.Sprint("v", i),
			At: at, ExpiresAt: at.Add(time.Hour), Outcome: attribution.OutcomeAttributed}
		if err := s.RecordClicks(ctx, fmt.Sprint("b", i), []attribution.Click{c}); err != nil {
			t.Fatal(err)
		}
	}
	junk := strings.Repeat("x", 64<<10)
	for i := 0; admin.Set(ctx, fmt.Sprint("junk:", i), junk, 0).Err() == nil; i++ {
	}
	// Far past the limit, so that small writes are refused too.
	if err := admin.ConfigSet(ctx, "maxmemory", "1mb").Err(); err != nil {
		t.Fatal(err)
	}
	if err := admin.HIncrBy(ctx, "small", "f", 1).Err(); err == nil || !strings.HasPrefix(err.Error(), "OOM") {
		t.Fatalf("a small write with Redis full: %v, want OOM", err)
	}
	r, err := s.Report(ctx, store.ReportQuery{Program: "p", Link: "l1", From: store.DayStart(at), To: store.DayStart(at)})
	if err != nil {
		t.Fatalf("a report with Redis full: %v", err)
	}
	if n := r[0].Counts[store.ClickField(attribution.OutcomeAttributed)]; n != 3 || r[0].Visitors != 3 {
		t.Errorf("a report with Redis full: %+v, want 3 clicks and visitors", r[0])
	}
}
