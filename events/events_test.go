package events

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/refgate/refgate/attribution"
)

func recs(from, n int) []Record {
	out := make([]Record, n)
	for i := range out {
		id := fmt.Sprintf("id-%05d", from+i)
		out[i] = Record{ID: id, Subject: "link/x", JSON: []byte(`{"id":"` + id + `","subject":"link/x"}`)}
	}
	return out
}

func ids(rs []Record) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.ID
	}
	return out
}

func TestSpool(t *testing.T) {
	dir := t.TempDir()
	sp, err := openSpool(dir, 1<<20, 200) // several segments
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		if n, err := sp.Append(recs(i*10, 10)); n != 10 || err != nil {
			t.Fatal(n, err)
		}
	}
	got, pos, err := sp.Peek(25)
	if err != nil || len(got) != 25 || got[0].ID != "id-00000" || got[24].ID != "id-00024" {
		t.Fatalf("peek: %v %v", ids(got), err)
	}
	sp.Advance(pos)
	// Reopen: a new run replays from the start of the segment it was in
	// (duplicates, same ids), never skips.
	sp.Close()
	sp, err = OpenSpool(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for !sp.Empty() {
		got, pos, err := sp.Peek(7)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range got {
			seen[r.ID]++
		}
		sp.Advance(pos)
	}
	for i := 25; i < 100; i++ {
		if seen[fmt.Sprintf("id-%05d", i)] != 1 {
			t.Fatalf("id %d seen %d times", i, seen[fmt.Sprintf("id-%05d", i)])
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 || sp.Bytes() != 0 {
		t.Fatalf("replayed spool not empty: %d files, %d bytes", len(ents), sp.Bytes())
	}
}

func TestSpoolBoundAndTornLine(t *testing.T) {
	dir := t.TempDir()
	sp, _ := OpenSpool(dir, 300)
	n, err := sp.Append(recs(0, 20))
	if !errors.Is(err, ErrFull) || n == 0 || n == 20 || sp.Bytes() > 300 {
		t.Fatalf("bound: %d %v %d", n, err, sp.Bytes())
	}
	sp.Close()
	// A crash mid-write leaves a torn last line: it is skipped.
	f, _ := os.OpenFile(filepath.Join(dir, "spool-000000001.jsonl"), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"id":"torn`)
	f.Close()
	sp, _ = OpenSpool(dir, 1<<20)
	got, pos, err := sp.Peek(100)
	if err != nil || len(got) != n || sp.Skipped() != 1 {
		t.Fatalf("after a torn write: %d records (want %d), %d skipped, %v", len(got), n, sp.Skipped(), err)
	}
	sp.Advance(pos)
	if !sp.Empty() {
		t.Fatal(sp.Bytes())
	}
}

func TestJSONLinesRotation(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenJSONLines(dir, 400, 3)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		if _, err := s.Write(context.Background(), recs(i*5, 5)); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	files, _ := EventFiles(dir)
	if len(files) != 3 {
		t.Fatalf("keep 3: %d files", len(files))
	}
	last := -1
	for _, f := range files {
		st, _ := os.Stat(f.Path)
		if st.Size() > 400 {
			t.Errorf("%s is %d bytes", f.Path, st.Size())
		}
		fh, _ := os.Open(f.Path)
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			var h header
			if err := json.Unmarshal(sc.Bytes(), &h); err != nil {
				t.Fatal(err)
			}
			var n int
			fmt.Sscanf(h.ID, "id-%d", &n)
			if n != last+1 && last != -1 {
				t.Fatalf("out of order: %d after %d", n, last)
			}
			last = n
		}
		fh.Close()
	}
	if last != 49 {
		t.Fatalf("last id %d", last)
	}
	// Reopening writes a new file after the newest (whose last line a
	// crash may have torn), and only once there is something to write.
	s, _ = OpenJSONLines(dir, 400, 3)
	if again, _ := EventFiles(dir); len(again) != len(files) {
		t.Fatalf("opening created a file: %v", again)
	}
	if _, err := s.Write(context.Background(), recs(50, 1)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	again, _ := EventFiles(dir)
	if len(again) != 3 || again[2].Seq != files[2].Seq+1 {
		t.Fatalf("after reopening: %v, before %v", again, files)
	}
}

// testSink is a sink whose failures the test controls. It stands in for a
// sink in the pipeline's own logic; the Redis and file sinks are tested
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

func click(i int) *attribution.Click {
	return &attribution.Click{ID: fmt.Sprintf("c%05d", i), Program: "shop", Promoter: "alice", Link: "abc",
		Visitor: "v1", At: time.Unix(1700000000, 0), Outcome: attribution.OutcomeAttributed, Model: attribution.LastClick}
}

func newPipeline(t *testing.T, sink Sink, dir string) *Pipeline {
	t.Helper()
	p, err := New(Config{Sink: sink, SpoolDir: dir, FlushInterval: 5 * time.Millisecond,
		WriteTimeout: 50 * time.Millisecond, RetryMin: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond,
		Geo: func(ip netip.Addr, g *Geo) bool {
			if ip == netip.MustParseAddr("81.2.69.142") {
				*g = Geo{Country: "GB", City: "London"}
				return true
			}
			return false
		}})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func waitFor(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// checkOnce asserts that every click id in 0..n-1 arrived, and that any
// duplicate carries the same event id.
func checkOnce(t *testing.T, evs []Event, n int) (dups int) {
	t.Helper()
	byClick := map[string]string{}
	for _, e := range evs {
		if id, ok := byClick[e.Data.ClickID]; ok {
			if id != e.ID {
				t.Fatalf("click %s delivered under two event ids %s and %s", e.Data.ClickID, id, e.ID)
			}
			dups++
		}
		byClick[e.Data.ClickID] = e.ID
	}
	if len(byClick) != n {
		t.Fatalf("%d distinct clicks delivered, %d sent", len(byClick), n)
	}
	return dups
}

func TestPipelineClickEvent(t *testing.T) {
	sink := &testSink{}
	p := newPipeline(t, sink, t.TempDir())
	c := click(1)
	c.ExpiresAt = c.At.Add(7 * 24 * time.Hour)
	p.Click(*c, netip.MustParseAddr("::ffff:81.2.69.142"), []byte("Mozilla/5.0"), []byte("https://blog.example/"))
	b := click(2)
	b.Outcome, b.Visitor = attribution.OutcomeBot, ""
	p.Click(*b, netip.MustParseAddr("2001:db8:1234:5678::1"), []byte("Googlebot/2.1"), nil)
	p.Emit(&Event{Type: TypeAssociationCreated, Subject: "customer/u1", Time: c.At,
		Data: Data{Program: "shop", Customer: "u1", Promoter: "alice", Outcome: "created"}})
	if err := p.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	evs := sink.events(t)
	if len(evs) != 3 {
		t.Fatalf("%d events", len(evs))
	}
	e := evs[0]
	if e.SpecVersion != "1.0" || e.Type != TypeClick || e.Subject != "link/abc" || e.Source != "refgate" ||
		e.DataContentType != "application/json" || !e.Time.Equal(c.At) || len(e.ID) != 36 {
		t.Fatalf("envelope: %+v", e)
	}
	d := e.Data
	if d.IP != "81.2.69.0" || d.Geo == nil || d.Geo.Country != "GB" || d.UserAgent != "Mozilla/5.0" ||
		d.Referer != "https://blog.example/" || d.ClickID != "c00001" || d.Visitor != "v1" || d.Bot ||
		d.ExpiresAt == nil || d.Outcome != "attributed" {
		t.Fatalf("click data: %+v", d)
	}
	if d := evs[1].Data; !d.Bot || d.IP != "2001:db8:1234::" || d.Geo != nil {
		t.Fatalf("bot click data: %+v", d)
	}
	if evs[2].Type != TypeAssociationCreated || evs[2].ID <= evs[0].ID {
		t.Fatalf("ids are time ordered: %s after %s", evs[2].ID, evs[0].ID)
	}
}

// TestPipelineSinkFailure: while the sink fails, events go to the spool;
// once it answers they are replayed with the same ids; nothing is lost.
func TestPipelineSinkFailure(t *testing.T) {
	for _, mode := range []string{"fail", "stall"} {
		t.Run(mode, func(t *testing.T) {
			sink := &testSink{}
			p := newPipeline(t, sink, t.TempDir())
			stall := make(chan struct{})
			n := 0
			send := func(k int) {
				for i := 0; i < k; i++ {
					if !p.Click(*click(n), netip.Addr{}, nil, nil) {
						t.Fatal("dropped")
					}
					n++
				}
			}
			send(100)
			waitFor(t, "first batch", func() bool { return len(sink.events(t)) == 100 })
			if mode == "fail" {
				sink.set(true, nil)
			} else {
				sink.set(false, stall)
			}
			send(300)
			waitFor(t, "spooling", func() bool { return p.SpoolBytes() > 0 && p.Status() == "degraded" })
			send(300)
			sink.set(false, nil)
			close(stall)
			waitFor(t, "replay", func() bool { return p.SpoolBytes() == 0 && p.Status() == "ok" })
			send(100)
			p.Close(context.Background())
			checkOnce(t, sink.events(t), n)
		})
	}
}

// TestPipelineCloseKeepsSpool: closing while the sink is down keeps the
// spool; the next pipeline on the same directory replays it.
func TestPipelineCloseKeepsSpool(t *testing.T) {
	dir := t.TempDir()
	sink := &testSink{fail: true}
	p := newPipeline(t, sink, dir)
	for i := 0; i < 50; i++ {
		p.Click(*click(i), netip.Addr{}, nil, nil)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	p.Close(ctx)
	if p.SpoolBytes() == 0 || len(sink.events(t)) != 0 {
		t.Fatalf("spool %d bytes, %d delivered", p.SpoolBytes(), len(sink.events(t)))
	}
	sink.set(false, nil)
	p = newPipeline(t, sink, dir)
	p.Close(context.Background())
	checkOnce(t, sink.events(t), 50)
}

func TestPipelineQueueFullDrops(t *testing.T) {
	sink := &testSink{}
	p, err := New(Config{Sink: sink, SpoolDir: t.TempDir(), QueueSize: 10, BatchSize: 1000, FlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ok := 0
	for i := 0; i < 20; i++ {
		if p.Click(*click(i), netip.Addr{}, nil, nil) {
			ok++
		}
	}
	p.Close(context.Background())
	if ok != 10 || len(sink.events(t)) != 10 {
		t.Fatalf("accepted %d, delivered %d", ok, len(sink.events(t)))
	}
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
