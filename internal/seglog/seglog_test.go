package seglog

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func lines(from int) func(i int) []byte {
	return func(i int) []byte { return []byte(fmt.Sprintf("rec-%04d", from+i)) } // 8 bytes + newline
}

var noLimit = Pos{Seq: math.MaxInt}

func open(t *testing.T, cfg Config) *Log {
	t.Helper()
	l, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func appendN(t *testing.T, l *Log, from, n int) []Pos {
	t.Helper()
	ends, w, err := l.Append(n, lines(from), nil)
	if w != n || err != nil {
		t.Fatal(w, err)
	}
	return ends
}

// read reads what reader r has not taken, up to max records, and commits.
func read(t *testing.T, l *Log, r string, max int) []string {
	t.Helper()
	var got []string
	pos, err := l.Read(l.State(r).Pos, noLimit, max, func(line []byte, _ Pos) bool {
		if !strings.HasPrefix(string(line), "rec-") {
			return false
		}
		got = append(got, string(line))
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Commit(r, pos); err != nil {
		t.Fatal(err)
	}
	return got
}

func cfg(dir string, readers ...string) Config {
	c := Config{Dir: dir, Prefix: "s-", Suffix: ".log", SegmentBytes: 30}
	for _, r := range readers {
		c.Readers = append(c.Readers, Reader{Name: r})
	}
	return c
}

func TestRotationReadersAndRestart(t *testing.T) {
	dir := t.TempDir()
	l := open(t, cfg(dir, "a", "b"))
	var ends []Pos
	for i := 0; i < 4; i++ {
		ends = append(ends, appendN(t, l, i*5, 5)...)
	}
	segs, _ := List(dir, "s-", ".log")
	if len(segs) != 7 { // 20 records of 9 bytes, 3 to a 30-byte segment
		t.Fatalf("%d segments", len(segs))
	}
	if ends[2] != (Pos{1, 27}) || ends[3] != (Pos{2, 9}) || l.End() != ends[19] {
		t.Fatalf("ends %v, end %v", ends[:4], l.End())
	}
	if l.Bytes() != 20*9 {
		t.Errorf("bytes %d", l.Bytes())
	}
	if got := read(t, l, "a", 7); len(got) != 7 || got[6] != "rec-0006" {
		t.Fatalf("a: %v", got)
	}
	// Nothing is deleted or released while b has not read it.
	if segs, _ := List(dir, "s-", ".log"); len(segs) != 7 || l.Bytes() != 20*9 || l.Lag("a") != 13*9 {
		t.Fatalf("%d segments, %d bytes, lag a %d", len(segs), l.Bytes(), l.Lag("a"))
	}
	if got := read(t, l, "b", 8); len(got) != 8 {
		t.Fatal(got)
	}
	if segs, _ := List(dir, "s-", ".log"); len(segs) != 5 || l.Bytes() != 13*9 {
		t.Errorf("segments both readers took are deleted: %d left, %d bytes", len(segs), l.Bytes())
	}
	l.Close()
	// A new run resumes each reader where it committed, and never appends
	// to a segment it found.
	l = open(t, cfg(dir, "a", "b"))
	appendN(t, l, 20, 1)
	if got := read(t, l, "a", 100); len(got) != 14 || got[0] != "rec-0007" || got[13] != "rec-0020" {
		t.Fatalf("a after reopening: %v", got)
	}
	if got := read(t, l, "b", 100); len(got) != 13 || got[0] != "rec-0008" {
		t.Fatalf("b after reopening: %v", got)
	}
	if l.Bytes() != 0 {
		t.Errorf("bytes %d after reading everything", l.Bytes())
	}
}

// Positions compare alike however they were reached: the end of a
// segment, as Read and End report it, is where the next write's records
// start, even after a rotation.
func TestPositionsAtSegmentEnds(t *testing.T) {
	l := open(t, cfg(t.TempDir(), "a"))
	ends := appendN(t, l, 0, 3) // fills segment 1 exactly... less its last 3 bytes
	start := l.End()
	if start != ends[2] {
		t.Fatal(start, ends)
	}
	more := appendN(t, l, 3, 2)
	if more[0].Seq != 2 {
		t.Fatalf("the fourth record starts segment 2: %v", more)
	}
	var got []string
	pos, _ := l.Read(Pos{}, start, 100, func(b []byte, _ Pos) bool { got = append(got, string(b)); return true })
	if pos != start || len(got) != 3 {
		t.Fatalf("read to the end of segment 1: %v at %v", got, pos)
	}
	got = nil
	pos, _ = l.Read(start, noLimit, 100, func(b []byte, _ Pos) bool { got = append(got, string(b)); return true })
	if pos != more[1] || len(got) != 2 || got[0] != "rec-0003" {
		t.Fatalf("read from there: %v at %v", got, pos)
	}
}

func TestBoundAndLargeRecord(t *testing.T) {
	c := cfg(t.TempDir(), "a")
	c.SegmentBytes, c.MaxBytes = 20, 50
	l := open(t, c)
	_, n, err := l.Append(10, lines(0), nil)
	if n != 5 || !errors.Is(err, ErrFull) {
		t.Fatalf("5 of 10 fit in 50 bytes: %d %v", n, err)
	}
	read(t, l, "a", 100)
	big := strings.Repeat("x", 40)
	if _, n, err := l.Append(2, func(int) []byte { return []byte("rec-" + big) }, nil); n != 1 || !errors.Is(err, ErrFull) {
		t.Fatalf("a record larger than a segment gets one of its own: %d %v", n, err)
	}
}

func TestRetainKeep(t *testing.T) {
	dir := t.TempDir()
	l := open(t, Config{Dir: dir, Prefix: "e-", Suffix: ".jsonl", Digits: 6, SegmentBytes: 18, Retain: true, Keep: 2,
		Readers: []Reader{{Name: "a"}}})
	for i := 0; i < 10; i++ {
		appendN(t, l, i, 1)
	}
	if segs, _ := List(dir, "e-", ".jsonl"); len(segs) != 5 {
		t.Fatalf("segments the reader has not taken are kept past Keep: %v", segs)
	}
	read(t, l, "a", 100)
	appendN(t, l, 10, 2)
	segs, _ := List(dir, "e-", ".jsonl")
	if len(segs) != 2 || !strings.HasSuffix(segs[1].Path, "e-000006.jsonl") || l.Bytes() != 18 {
		t.Fatalf("keep 2 taken: %v, %d bytes", segs, l.Bytes())
	}
}

// TestRetainBytes: a retained log deletes its oldest taken segments while
// all of them hold more than KeepBytes, never one a reader has not taken.
func TestRetainBytes(t *testing.T) {
	dir := t.TempDir()
	l := open(t, Config{Dir: dir, Prefix: "e-", Suffix: ".jsonl", SegmentBytes: 18, Retain: true, KeepBytes: 40,
		Readers: []Reader{{Name: "a"}}})
	appendN(t, l, 0, 10) // 5 segments of 18 bytes
	if n, segs := l.Size(); n != 90 || segs != 5 {
		t.Fatalf("nothing taken, nothing deleted: %d bytes in %d segments", n, segs)
	}
	read(t, l, "a", 6) // the first 3 segments taken
	if n, segs := l.Size(); n != 36 || segs != 2 {
		t.Fatalf("taken segments past 40 bytes: %d bytes in %d segments left, want 36 in 2", n, segs)
	}
	read(t, l, "a", 100)
	appendN(t, l, 10, 2)
	read(t, l, "a", 100)
	// 3 segments of 18 bytes: the oldest goes, the open one never does.
	if n, segs := l.Size(); n != 36 || segs != 2 {
		t.Fatalf("%d bytes in %d segments, want 36 in 2", n, segs)
	}
	if got, _ := List(dir, "e-", ".jsonl"); len(got) != 2 || !strings.HasSuffix(got[1].Path, "e-000000006.jsonl") {
		t.Fatalf("files: %v", got)
	}
}

// TestRetainMaxAge: a retained segment is deleted once it was last written
// more than MaxAge ago and every reader has taken it, by Trim when nothing
// else happens; ages of a previous run's segments are their files' times.
func TestRetainMaxAge(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	c := Config{Dir: dir, Prefix: "e-", Suffix: ".jsonl", SegmentBytes: 18, Retain: true, MaxAge: 24 * time.Hour,
		Readers: []Reader{{Name: "a"}}, Now: func() time.Time { return now }}
	l := open(t, c)
	appendN(t, l, 0, 4) // segments 1, 2
	now = now.Add(12 * time.Hour)
	appendN(t, l, 4, 2) // segment 3, open
	now = now.Add(13 * time.Hour)
	l.Trim()
	if _, segs := l.Size(); segs != 3 {
		t.Fatalf("segments the reader has not taken are kept however old: %d left", segs)
	}
	read(t, l, "a", 100)
	l.Trim()
	if _, segs := l.Size(); segs != 1 {
		t.Fatalf("the taken segments older than a day go, the open one stays: %d left", segs)
	}
	now = now.Add(24 * time.Hour)
	l.Trim()
	if _, segs := l.Size(); segs != 1 {
		t.Fatalf("the segment being written is never deleted: %d left", segs)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// After a restart the old segment is closed: its file's time says how
	// old it is.
	path := filepath.Join(dir, "e-000000003.jsonl")
	if err := os.Chtimes(path, now.Add(-25*time.Hour), now.Add(-25*time.Hour)); err != nil {
		t.Fatal(err)
	}
	l = open(t, c)
	l.Trim()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("a taken segment of a previous run older than MaxAge is kept: %v", err)
	}
}

func TestPendingSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	l := open(t, cfg(dir, "a"))
	ends := appendN(t, l, 0, 4)
	if err := l.Begin("a", Pending{From: Pos{}, To: ends[1], ID: "batch-1"}); err != nil {
		t.Fatal(err)
	}
	l.Close() // a crash leaves the same: the cursor file is written at once
	l = open(t, cfg(dir, "a"))
	st := l.State("a")
	if st.Pending == nil || st.Pending.ID != "batch-1" || st.Pending.To != ends[1] || !st.Pos.Less(ends[0]) {
		t.Fatalf("state after restart: %+v", st)
	}
	if err := l.Commit("a", ends[1]); err != nil {
		t.Fatal(err)
	}
	if st := l.State("a"); st.Pending != nil || st.Pos != ends[1] {
		t.Fatalf("after commit: %+v", st)
	}
}

// A reader the cursor file does not know starts at the oldest record, or
// with Tail after the newest.
func TestNewReaders(t *testing.T) {
	dir := t.TempDir()
	l := open(t, cfg(dir, "x"))
	appendN(t, l, 0, 5)
	l.Close()
	os.Remove(filepath.Join(dir, "s-cursors"))
	c := cfg(dir)
	c.Readers = []Reader{{Name: "old"}, {Name: "new", Tail: true}}
	l = open(t, c)
	if got := read(t, l, "old", 100); len(got) != 5 {
		t.Fatal(got)
	}
	if got := read(t, l, "new", 100); len(got) != 0 {
		t.Fatal(got)
	}
}

func TestTornLineSkipped(t *testing.T) {
	dir := t.TempDir()
	l := open(t, cfg(dir, "a"))
	appendN(t, l, 0, 3)
	l.Close()
	segs, _ := List(dir, "s-", ".log")
	f, _ := os.OpenFile(segs[0].Path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("re") // a crash mid-write
	f.Close()
	l = open(t, cfg(dir, "a"))
	appendN(t, l, 3, 1)
	if got := read(t, l, "a", 100); len(got) != 4 || got[3] != "rec-0003" {
		t.Fatalf("the torn line is passed over, nothing is glued to it: %v", got)
	}
	if l.Bytes() != 0 {
		t.Fatalf("bytes %d: the torn tail is not counted", l.Bytes())
	}
}

// One appender and two readers at once (run with -race): every record is
// read once by each, in order.
func TestConcurrentReaders(t *testing.T) {
	c := cfg(t.TempDir(), "a", "b")
	c.SegmentBytes = 200
	l := open(t, c)
	const n = 3000
	var wg sync.WaitGroup
	for _, r := range []string{"a", "b"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			next := 0
			for next < n {
				pos, err := l.Read(l.State(r).Pos, l.End(), 7, func(line []byte, _ Pos) bool {
					if want := fmt.Sprintf("rec-%04d", next); string(line) != want {
						t.Errorf("%s: %q, want %q", r, line, want)
					}
					next++
					return true
				})
				if err != nil {
					t.Error(err)
					return
				}
				l.Commit(r, pos)
			}
		}()
	}
	for i := 0; i < n; i += 10 {
		appendN(t, l, i, 10)
	}
	wg.Wait()
	if l.Bytes() != 0 {
		t.Fatalf("%d bytes left", l.Bytes())
	}
}

// The cursor file is rewritten in place, padded: a shorter state after a
// longer one still decodes.
func TestCursorFileShrinks(t *testing.T) {
	dir := t.TempDir()
	l := open(t, cfg(dir, "a"))
	ends := appendN(t, l, 0, 3)
	l.Begin("a", Pending{From: Pos{}, To: ends[2], ID: strings.Repeat("x", 200)})
	l.Close()
	l = open(t, cfg(dir, "a"))
	l.Commit("a", ends[2])
	l.Close()
	l = open(t, cfg(dir, "a"))
	if st := l.State("a"); st.Pending != nil || l.Bytes() != 0 {
		t.Fatalf("%+v, %d bytes", st, l.Bytes())
	}
}

// Segment numbers are never used twice, also once every segment was taken
// and deleted: the readers' positions must stay behind the next records.
func TestSegmentNumbersNotReused(t *testing.T) {
	dir := t.TempDir()
	l := open(t, cfg(dir, "a"))
	appendN(t, l, 0, 5) // segments 1 and 2
	read(t, l, "a", 100)
	l.Close()
	l = open(t, cfg(dir, "a"))
	l.Commit("a", l.State("a").Pos) // deletes segment 2, the last
	if segs, _ := List(dir, "s-", ".log"); len(segs) != 0 {
		t.Fatalf("taken segments left: %v", segs)
	}
	l.Close()
	l = open(t, cfg(dir, "a"))
	ends := appendN(t, l, 5, 2)
	if ends[0].Seq != 3 {
		t.Fatalf("new records in segment %d", ends[0].Seq)
	}
	if got := read(t, l, "a", 100); len(got) != 2 || got[0] != "rec-0005" {
		t.Fatalf("the reader skipped the new segment: %v", got)
	}
}

// AppendLines writes what fits in one write, and otherwise splits as
// Append does: the same records, the same positions.
func TestAppendLines(t *testing.T) {
	for _, segBytes := range []int64{1000, 30} {
		dir := t.TempDir()
		c := cfg(dir, "a")
		c.SegmentBytes = segBytes
		l := open(t, c)
		var buf []byte
		for i := range 5 {
			buf = append(append(buf, lines(0)(i)...), '\n')
		}
		ends, n, err := l.AppendLines(buf, 5, nil)
		if err != nil || n != 5 || len(ends) != 5 || ends[4] != l.End() {
			t.Fatalf("segment %d: %v %d %v", segBytes, ends, n, err)
		}
		if got := read(t, l, "a", 100); len(got) != 5 || got[4] != "rec-0004" {
			t.Fatalf("segment %d: %v", segBytes, got)
		}
	}
	c := cfg(t.TempDir(), "a")
	c.MaxBytes = 20
	l := open(t, c)
	buf := []byte("rec-0000\nrec-0001\nrec-0002\n")
	if _, n, err := l.AppendLines(buf, 3, nil); n != 2 || !errors.Is(err, ErrFull) {
		t.Fatalf("bound: %d %v", n, err)
	}
}

// A second process (or a second Open) on the same log is refused while the
// first has it open.
func TestOneOpenAtATime(t *testing.T) {
	dir := t.TempDir()
	l := open(t, cfg(dir, "a"))
	if l2, err := Open(cfg(dir, "a")); err == nil || !strings.Contains(err.Error(), "in use") {
		if l2 != nil {
			l2.Close()
		}
		t.Fatalf("second open: %v", err)
	}
	l.Close()
	open(t, cfg(dir, "a")).Close()
}
