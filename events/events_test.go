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

// testSink is a sink whose failures the test controls. It stands in for a
// sink in the pipeline's own logic; the Redis sink is tested
// against the real thing.
type testSink struct {
	mu    sync.Mutex
	fail  bool
	stall chan struct{} // non-nil: writes block until closed or ctx ends
	got   []Record
}

func (s *testSink) Write(ctx context.Context, rs []Record) ([]Record, error) {
	s.mu.Lock()
	stall, fail := s.stall, s.fail
	s.mu.Unlock()
	if stall != nil {
		select {
		case <-stall:
		case <-ctx.Done():
			return rs, ctx.Err()
		}
	}
	if fail {
		return rs, errors.New("sink down")
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

func (s *testSink) set(fail bool, stall chan struct{}) {
	s.mu.Lock()
	s.fail, s.stall = fail, stall
	s.mu.Unlock()
}

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
