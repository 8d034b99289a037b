package events

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/internal/seglog"
)

// testStore is a ClickWriter whose failures the test controls. It counts a
// batch id once, as the real stores do, and remembers how often each id
// came.
type testStore struct {
	faults
	mu      sync.Mutex
	batches map[string]int
	clicks  map[string]int // click id -> times recorded (under distinct batch ids)
	n       int
}

func newTestStore() *testStore {
	return &testStore{batches: map[string]int{}, clicks: map[string]int{}}
}

func (s *testStore) RecordClicks(ctx context.Context, id string, cs []attribution.Click) error {
	if err := s.err(ctx, "store"); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.batches[id]++
	if s.batches[id] > 1 {
		return nil
	}
	for _, c := range cs {
		s.clicks[c.ID]++
		s.n++
	}
	return nil
}

func (s *testStore) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// checkStore asserts that every click 0..n-1 was recorded exactly once.
func (s *testStore) check(t *testing.T, n int) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range n {
		if got := s.clicks[fmt.Sprintf("c%05d", i)]; got != 1 {
			t.Fatalf("click %d recorded %d times (%d records, %d clicks)", i, got, s.n, len(s.clicks))
		}
	}
	if s.n != n {
		t.Fatalf("%d records for %d clicks", s.n, n)
	}
}

func testConfig(dir string, st ClickWriter, sink Sink) Config {
	return Config{Dir: dir, Store: st, Sink: sink, FlushInterval: 5 * time.Millisecond,
		WriteTimeout: 50 * time.Millisecond, RetryMin: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond,
		Geo: func(ip netip.Addr, g *Geo) bool {
			if ip == netip.MustParseAddr("81.2.69.142") {
				*g = Geo{Country: "GB", City: "London"}
				return true
			}
			return false
		}}
}

func newPipeline(t *testing.T, cfg Config) *Pipeline {
	t.Helper()
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close(context.Background()) })
	return p
}

func TestPipelineClickEvent(t *testing.T) {
	sink, st := &testSink{}, newTestStore()
	p := newPipeline(t, testConfig(t.TempDir(), st, sink))
	c := click(1)
	c.ExpiresAt = c.At.Add(7 * 24 * time.Hour)
	p.Click(c, &attribution.Seen{IP: netip.MustParseAddr("::ffff:81.2.69.142"), UserAgent: []byte("Mozilla/5.0"),
		Referer:   []byte("https://reader:pw@blog.example/post?session=5f3a9c&email=a%40b.example#comments"),
		FetchSite: attribution.FetchSiteCrossSite, UserActivation: true})
	b := click(2)
	b.Outcome, b.Visitor = attribution.OutcomeBot, ""
	p.Click(b, &attribution.Seen{IP: netip.MustParseAddr("2001:db8:1234:5678::1"), UserAgent: []byte("Googlebot/2.1")})
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
	if u, err := uuid.Parse(e.ID); err != nil || u.Version() != 7 || u.String() != e.ID {
		t.Fatalf("click event id %q is not a UUIDv7: %v", e.ID, err)
	}
	d := e.Data
	if d.IP != "81.2.69.0" || d.Geo == nil || d.Geo.Country != "GB" || d.UserAgent != "Mozilla/5.0" ||
		d.Referer != "https://blog.example/post" || d.ClickID != "c00001" || d.Visitor != "v1" || d.Bot ||
		d.ExpiresAt == nil || d.Outcome != "attributed" {
		t.Fatalf("click data: %+v", d)
	}
	if d := evs[1].Data; !d.Bot || d.IP != "2001:db8:1234::" || d.Geo != nil {
		t.Fatalf("bot click data: %+v", d)
	}
	if evs[2].Type != TypeAssociationCreated || evs[2].ID <= evs[0].ID {
		t.Fatalf("ids are time ordered: %s after %s", evs[2].ID, evs[0].ID)
	}
	// The store got the two clicks, not the decision.
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.n != 2 || st.clicks["c00001"] != 1 || st.clicks["c00002"] != 1 {
		t.Fatalf("store: %v", st.clicks)
	}
}

// The click record read back from the log is the one that went in.
func TestDecodeLineRoundTrip(t *testing.T) {
	p := &Pipeline{cfg: Config{Source: "refgate"}}
	c := click(7)
	c.ExpiresAt = c.At.Add(time.Hour).Add(123456789)
	c.At = c.At.Add(987654321)
	var b buffer
	e := p.clickEvent(&b, &item{click: *c, ip: netip.MustParseAddr("203.0.113.9")})
	rec, err := p.encode(e)
	if err != nil {
		t.Fatal(err)
	}
	line := append([]byte(nil), rec.JSON...)
	got, gc, err := decodeLine(line)
	if err != nil || got.ID != rec.ID || got.Subject != "link/abc" {
		t.Fatalf("%+v %v", got, err)
	}
	// The log's reader reuses its buffer: nothing decoded may point into
	// the line.
	for i := range line {
		line[i] = 'x'
	}
	if got.ID != rec.ID || got.Subject != "link/abc" {
		t.Fatalf("the record points into the line: %+v", got)
	}
	if !gc.At.Equal(c.At) || !gc.ExpiresAt.Equal(c.ExpiresAt) {
		t.Fatalf("times: %v %v, want %v %v", gc.At, gc.ExpiresAt, c.At, c.ExpiresAt)
	}
	gc.At, gc.ExpiresAt = c.At, c.ExpiresAt
	if gc != *c {
		t.Fatalf("decoded %+v, want %+v", gc, *c)
	}
	ev := &Event{Type: TypeConversionAttributed, Subject: "customer/u", Data: Data{Program: "shop", Link: "abc"}}
	rec, _ = p.encode(ev)
	if _, gc, err := decodeLine(rec.JSON); err != nil || gc.Link != "" {
		t.Fatalf("a decision is not a click: %+v %v", gc, err)
	}
}

// TestPipelineOutages: while the store or the sink fails or hangs, clicks
// and events wait in the log (beyond the in-memory window, read back from
// it); once it answers, every click is recorded exactly once and every
// event delivered under its id.
func TestPipelineOutages(t *testing.T) {
	for _, who := range []string{"store", "sink"} {
		for _, mode := range []string{"fail", "stall"} {
			t.Run(who+"-"+mode, func(t *testing.T) {
				sink, st := &testSink{}, newTestStore()
				reg := prometheus.NewRegistry()
				cfg := testConfig(t.TempDir(), st, sink)
				cfg.Window, cfg.BatchSize, cfg.Registerer = 50, 20, reg
				p := newPipeline(t, cfg)
				stall := make(chan struct{})
				n := 0
				send := func(k int) {
					for range k {
						if !p.Click(click(n), &attribution.Seen{}) {
							t.Fatal("dropped")
						}
						n++
					}
				}
				send(100)
				waitFor(t, "first clicks", func() bool { return len(sink.events(t)) == 100 && st.count() == 100 })
				set := func(fail bool, stall chan struct{}) {
					if who == "store" {
						st.set(fail, stall)
					} else {
						sink.set(fail, stall)
					}
				}
				if mode == "fail" {
					set(true, nil)
				} else {
					set(false, stall)
				}
				send(300)
				waitFor(t, "degraded", func() bool { return p.LogBytes() > 0 && status(p, who) == "degraded" })
				send(300)
				set(false, nil)
				close(stall)
				waitFor(t, "caught up", func() bool { return p.LogBytes() == 0 && status(p, who) == "ok" })
				send(100)
				p.Close(context.Background())
				st.check(t, n)
				checkOnce(t, sink.events(t), n)
				if r := testutil.ToFloat64(p.m.consumers[who].replayed); r == 0 {
					t.Errorf("nothing read back from the log past a window of 50")
				}
			})
		}
	}
}

func status(p *Pipeline, to string) string {
	for _, d := range p.Deliveries() {
		if d.To == to {
			return d.Status
		}
	}
	return ""
}

// TestPipelineCloseKeepsLog: closing while the store and the sink are down
// keeps everything in the log; the next pipeline on the same directory
// delivers it, and the batches in flight at the close go again under
// their ids.
func TestPipelineCloseKeepsLog(t *testing.T) {
	dir := t.TempDir()
	sink, st := &testSink{}, newTestStore()
	sink.set(true, nil)
	st.set(true, nil)
	p := newPipeline(t, testConfig(dir, st, sink))
	for i := range 50 {
		p.Click(click(i), &attribution.Seen{})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	p.Close(ctx)
	if d := time.Since(start); d > 3*time.Second { // bounded by ctx (200ms), with room for a starved machine
		t.Errorf("close took %v with everything down", d)
	}
	if p.LogBytes() == 0 || len(sink.events(t)) != 0 {
		t.Fatalf("log %d bytes, %d delivered", p.LogBytes(), len(sink.events(t)))
	}
	l, err := seglog.Open(seglog.Config{Dir: dir, Prefix: "spool-", Suffix: ".jsonl",
		Readers: []seglog.Reader{{Name: ToStore}, {Name: ToSink}}})
	if err != nil {
		t.Fatal(err)
	}
	pend := l.State(ToStore).Pending
	l.Close()
	if pend == nil {
		t.Fatal("no batch in flight recorded")
	}
	sink.set(false, nil)
	st.set(false, nil)
	p = newPipeline(t, testConfig(dir, st, sink))
	waitFor(t, "delivery", func() bool { return st.count() == 50 && p.LogBytes() == 0 })
	p.Close(context.Background())
	st.check(t, 50)
	checkOnce(t, sink.events(t), 50)
	if st.batches[pend.ID] != 1 {
		t.Fatalf("the batch in flight did not go again under its id %s: %v", pend.ID, st.batches)
	}
}

// A batch whose write landed but whose reply was lost is sent again under
// the same id after a restart: the store counts it once.
func TestPipelinePendingAfterCrash(t *testing.T) {
	dir := t.TempDir()
	st := newTestStore()
	p := newPipeline(t, testConfig(dir, st, nil))
	for i := range 10 {
		p.Click(click(i), &attribution.Seen{})
	}
	p.Close(context.Background())
	st.check(t, 10)
	// Rewind the store's cursor as a crash after the write and before
	// the commit would leave it: the last batch pending.
	var id string
	for id = range st.batches {
	}
	l, _ := seglog.Open(seglog.Config{Dir: dir, Prefix: "spool-", Suffix: ".jsonl", Readers: []seglog.Reader{{Name: ToStore}}})
	l.Begin(ToStore, seglog.Pending{From: seglog.Pos{}, To: l.State(ToStore).Pos, ID: id})
	l.Commit(ToStore, seglog.Pos{})
	l.Begin(ToStore, seglog.Pending{From: seglog.Pos{}, To: l.End(), ID: id})
	l.Close()
	p = newPipeline(t, testConfig(dir, st, nil))
	waitFor(t, "replay", func() bool { return p.LogBytes() == 0 })
	p.Close(context.Background())
	if st.batches[id] != 2 {
		t.Fatalf("batch %s sent %d times", id, st.batches[id])
	}
	st.check(t, 10)
}

func TestPipelineQueueFullDrops(t *testing.T) {
	st := newTestStore()
	cfg := testConfig(t.TempDir(), st, nil)
	cfg.QueueSize, cfg.WriteInterval = 10, time.Hour
	p := newPipeline(t, cfg)
	ok := 0
	for i := range 20 {
		if p.Click(click(i), &attribution.Seen{}) {
			ok++
		}
	}
	p.Close(context.Background())
	if ok != 10 || st.count() != 10 || testutil.ToFloat64(p.m.dropped.WithLabelValues("queue_full")) != 10 {
		t.Fatalf("accepted %d, recorded %d", ok, st.count())
	}
}

// Past --spool-max-bytes new clicks are dropped and counted, and the log
// stays within its bound.
func TestPipelineLogFull(t *testing.T) {
	st := newTestStore()
	st.set(true, nil)
	cfg := testConfig(t.TempDir(), st, nil)
	cfg.MaxBytes = 20 << 10
	p := newPipeline(t, cfg)
	for i := range 500 {
		p.Click(click(i), &attribution.Seen{})
	}
	waitFor(t, "drops", func() bool {
		return testutil.ToFloat64(p.m.appended)+testutil.ToFloat64(p.m.dropped.WithLabelValues("log_full")) == 500
	})
	if b := p.LogBytes(); b > cfg.MaxBytes {
		t.Fatalf("log %d bytes, bound %d", b, cfg.MaxBytes)
	}
	written := int(testutil.ToFloat64(p.m.appended))
	dropped := int(testutil.ToFloat64(p.m.dropped.WithLabelValues("log_full")))
	if written+dropped != 500 {
		t.Fatalf("%d written + %d dropped != 500", written, dropped)
	}
	st.set(false, nil)
	waitFor(t, "delivery", func() bool { return st.count() == written })
}

// With Files the log is the event output: JSON Lines files kept once the
// store took them, the oldest deleted past FileKeep.
func TestPipelineFiles(t *testing.T) {
	dir := t.TempDir()
	st := newTestStore()
	cfg := testConfig(dir, st, nil)
	cfg.Files, cfg.FileKeep, cfg.SegmentBytes = true, 3, 2000
	p := newPipeline(t, cfg)
	for i := range 100 {
		p.Click(click(i), &attribution.Seen{})
		if i%10 == 9 {
			time.Sleep(3 * time.Millisecond) // several writes, several files
		}
	}
	p.Emit(&Event{Type: TypeAssociationCreated, Subject: "customer/u1", Data: Data{Program: "shop"}})
	waitFor(t, "store", func() bool { return st.count() == 100 })
	p.Close(context.Background())
	files, err := EventFiles(dir)
	if err != nil || len(files) != 3 {
		t.Fatalf("keep 3: %v %v", files, err)
	}
	var lines int
	for _, f := range files {
		b, _ := os.ReadFile(f.Path)
		for _, l := range splitLines(b) {
			if _, _, err := decodeLine(l); err != nil {
				t.Fatalf("%s: %q: %v", f.Path, l, err)
			}
			lines++
		}
		if len(b) > 2000 {
			t.Errorf("%s is %d bytes", f.Path, len(b))
		}
	}
	if lines == 0 || lines > 101 {
		t.Fatalf("%d lines", lines)
	}
	if _, err := os.Stat(filepath.Join(dir, "events-cursors")); err != nil {
		t.Fatal(err)
	}
	st.check(t, 100)
}

// TestPipelineFilesBounded: the event files are kept within FileKeepBytes
// once the store has taken them, and files it has not taken are kept
// whatever the bound (an outage of the store must not lose clicks);
// refgate_event_files_bytes reports what is on disk.
func TestPipelineFilesBounded(t *testing.T) {
	dir := t.TempDir()
	st := newTestStore()
	cfg := testConfig(dir, st, nil)
	reg := prometheus.NewRegistry()
	cfg.Files, cfg.FileKeepBytes, cfg.SegmentBytes, cfg.Registerer = true, 5000, 1000, reg
	p := newPipeline(t, cfg)
	onDisk := func() (n int64, files int) {
		fs, err := EventFiles(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fs {
			if info, err := os.Stat(f.Path); err == nil {
				n += info.Size()
			}
		}
		return n, len(fs)
	}
	st.set(true, nil) // the store is down: nothing is taken
	for i := range 100 {
		p.Click(click(i), &attribution.Seen{})
		if i%10 == 9 {
			time.Sleep(3 * time.Millisecond)
		}
	}
	waitFor(t, "the log", func() bool { return p.Depth() == 0 && p.LogBytes() > 10000 })
	if n, _ := onDisk(); n < p.LogBytes() {
		t.Fatalf("files the store has not taken were deleted: %d bytes on disk, %d not taken", n, p.LogBytes())
	}
	st.set(false, nil)
	waitFor(t, "store", func() bool { return st.count() == 100 })
	waitFor(t, "the bound", func() bool { n, _ := onDisk(); return n <= 5000+1000 })
	n, files := onDisk()
	if got := testutil.ToFloat64(p.m.filesBytes); int64(got) != n {
		t.Errorf("refgate_event_files_bytes %v, %d bytes in %d files on disk", got, n, files)
	}
	st.check(t, 100)
}

func splitLines(b []byte) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		i := 0
		for i < len(b) && b[i] != '\n' {
			i++
		}
		out = append(out, b[:i])
		b = b[min(i+1, len(b)):]
	}
	return out
}

// Clicks queued before Close are all in the log or delivered when it
// returns, also with writes racing it (run with -race).
func TestPipelineCloseRacingClicks(t *testing.T) {
	dir := t.TempDir()
	st := newTestStore()
	p := newPipeline(t, testConfig(dir, st, nil))
	var wg sync.WaitGroup
	var mu sync.Mutex
	accepted := 0
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				if p.Click(click(g*2000+i), &attribution.Seen{}) {
					mu.Lock()
					accepted++
					mu.Unlock()
				}
			}
		}()
	}
	time.Sleep(2 * time.Millisecond)
	p.Close(context.Background())
	wg.Wait()
	if st.count() != accepted || p.LogBytes() != 0 {
		t.Fatalf("accepted %d, recorded %d, %d bytes left", accepted, st.count(), p.LogBytes())
	}
}

func click(i int) *attribution.Click {
	return &attribution.Click{ID: fmt.Sprintf("c%05d", i), Program: "shop", Promoter: "alice", Link: "abc",
		Visitor: "v1", At: time.Unix(1700000000, 0).UTC(), Outcome: attribution.OutcomeAttributed, Model: attribution.LastClick}
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

// A click on a paused or expired link says so in its event, as the other
// outcomes that set no cookie do.
func TestPipelineInactiveClickEvent(t *testing.T) {
	sink, st := &testSink{}, newTestStore()
	p := newPipeline(t, testConfig(t.TempDir(), st, sink))
	c := click(1)
	c.Outcome, c.Visitor = attribution.OutcomeInactive, ""
	p.Click(c, &attribution.Seen{IP: netip.MustParseAddr("81.2.69.142"), UserAgent: []byte("Mozilla/5.0")})
	if err := p.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	evs := sink.events(t)
	if len(evs) != 1 {
		t.Fatalf("%d events", len(evs))
	}
	if d := evs[0].Data; !d.Inactive || d.Outcome != "inactive" || d.Bot || d.SelfClick || d.RateLimited || d.GPC || d.Suspect {
		t.Fatalf("inactive click data: %+v", d)
	}
}
