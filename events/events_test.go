package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
)

func recs(from, n int) []Record {
	out := make([]Record, n)
	for i := range out {
		id := fmt.Sprintf("id-%05d", from+i)
		out[i] = Record{ID: id, Subject: "link/x", JSON: []byte(`{"id":"` + id + `","subject":"link/x"}`)}
	}
	return out
}

// faults are the failures of a test's stand-in for the store or the sink,
// which the test sets: every call fails, or hangs until stall is closed or
// its context ends.
type faults struct {
	fmu   sync.Mutex
	fail  bool
	stall chan struct{}
}

func (f *faults) set(fail bool, stall chan struct{}) {
	f.fmu.Lock()
	f.fail, f.stall = fail, stall
	f.fmu.Unlock()
}

// err applies the faults to one call: the error it fails with, or nil.
func (f *faults) err(ctx context.Context, what string) error {
	f.fmu.Lock()
	stall, fail := f.stall, f.fail
	f.fmu.Unlock()
	if stall != nil {
		select {
		case <-stall:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if fail {
		return errors.New(what + " down")
	}
	return nil
}

// testSink is a sink whose failures the test controls. It stands in for a
// sink in the pipeline's own logic; the Redis sink is tested
// against the real thing.
type testSink struct {
	faults
	mu  sync.Mutex
	got []Record
}

func (s *testSink) Write(ctx context.Context, rs []Record) ([]Record, error) {
	if err := s.err(ctx, "sink"); err != nil {
		return rs, err
	}
	s.mu.Lock()
	for _, r := range rs {
		s.got = append(s.got, Record{ID: r.ID, Subject: r.Subject, JSON: append([]byte(nil), r.JSON...)})
	}
	s.mu.Unlock()
	return nil, nil
}
func (s *testSink) Ping(context.Context) error { return nil }
func (s *testSink) Name() string               { return "test" }
func (s *testSink) Close() error               { return nil }

func (s *testSink) events(t *testing.T) []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Event, len(s.got))
	for i, r := range s.got {
		if err := json.Unmarshal(r.JSON, &out[i]); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func TestAnonymize(t *testing.T) {
	for in, want := range map[string]string{
		"81.2.69.142":            "81.2.69.0",
		"::ffff:81.2.69.142":     "81.2.69.0",
		"2001:db8:abcd:12::1":    "2001:db8:abcd::",
		"2001:db8:abcd:ffff::ff": "2001:db8:abcd::",
	} {
		if got := Anonymize(netip.MustParseAddr(in), false); got != want {
			t.Errorf("%s: %s, want %s", in, got, want)
		}
	}
	if got := Anonymize(netip.MustParseAddr("::ffff:81.2.69.142"), true); got != "81.2.69.142" {
		t.Errorf("keep full: %s", got)
	}
	if Anonymize(netip.Addr{}, false) != "" {
		t.Error("invalid")
	}
}
