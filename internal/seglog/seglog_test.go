package seglog

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
)

func lines(from, n int) func(i int) []byte {
	return func(i int) []byte { return []byte(fmt.Sprintf("rec-%04d", from+i)) } // 8 bytes + newline
}

func open(t *testing.T, cfg Config) *Log {
	t.Helper()
	l, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func readAll(t *testing.T, l *Log) []string {
	t.Helper()
	var got []string
	pos, err := l.Peek(1<<20, func(line []byte) bool {
		if !strings.HasPrefix(string(line), "rec-") {
			return false
		}
		got = append(got, string(line))
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	l.Advance(pos)
	return got
}

func TestRotationAndReplay(t *testing.T) {
	dir := t.TempDir()
	l := open(t, Config{Dir: dir, Prefix: "s-", Suffix: ".log", SegmentBytes: 30})
	for i := 0; i < 4; i++ {
		if n, err := l.Append(5, lines(i*5, 5)); n != 5 || err != nil {
			t.Fatal(n, err)
		}
	}
	segs, _ := List(dir, "s-", ".log")
	if len(segs) != 7 { // 20 records of 9 bytes, 3 to a 30-byte segment
		t.Fatalf("%d segments", len(segs))
	}
	for _, s := range segs {
		if st, _ := os.Stat(s.Path); st.Size() > 30 {
			t.Errorf("%s is %d bytes", s.Path, st.Size())
		}
	}
	if l.Bytes() != 20*9 {
		t.Errorf("bytes %d", l.Bytes())
	}
	// Read 7 without consuming, then consume them: a segment and a bit.
	var got []string
	pos, _ := l.Peek(7, func(line []byte) bool { got = append(got, string(line)); return true })
	if len(got) != 7 || got[6] != "rec-0006" || l.Bytes() != 20*9 {
		t.Fatalf("peek: %v, bytes %d", got, l.Bytes())
	}
	l.Advance(pos)
	if l.Bytes() != 13*9 {
		t.Errorf("after consuming 7: %d bytes", l.Bytes())
	}
	if segs, _ := List(dir, "s-", ".log"); len(segs) != 5 {
		t.Errorf("fully read segments are deleted: %d left", len(segs))
	}
	l.Close()
	// A new run reads from the start of the segment it was in (the read
	// position is not kept), and never appends to a segment it found.
	l = open(t, Config{Dir: dir, Prefix: "s-", Suffix: ".log", SegmentBytes: 30})
	if _, err := l.Append(1, lines(20, 1)); err != nil {
		t.Fatal(err)
	}
	all := readAll(t, l)
	if len(all) != 15 || all[0] != "rec-0006" || all[14] != "rec-0020" {
		t.Fatalf("after reopening: %v", all)
	}
	if !l.Empty() {
		t.Errorf("bytes %d after reading everything", l.Bytes())
	}
}

func TestBoundAndLargeRecord(t *testing.T) {
	l := open(t, Config{Dir: t.TempDir(), Prefix: "s-", Suffix: ".log", SegmentBytes: 20, MaxBytes: 50})
	n, err := l.Append(10, lines(0, 10))
	if n != 5 || !errors.Is(err, ErrFull) {
		t.Fatalf("5 of 10 fit in 50 bytes: %d %v", n, err)
	}
	readAll(t, l)
	big := strings.Repeat("x", 40)
	if n, err := l.Append(2, func(int) []byte { return []byte("rec-" + big) }); n != 1 || !errors.Is(err, ErrFull) {
		t.Fatalf("a record larger than a segment gets one of its own: %d %v", n, err)
	}
}

func TestKeep(t *testing.T) {
	dir := t.TempDir()
	l := open(t, Config{Dir: dir, Prefix: "e-", Suffix: ".jsonl", Digits: 6, SegmentBytes: 18, Keep: 2})
	for i := 0; i < 10; i++ {
		if _, err := l.Append(1, lines(i, 1)); err != nil {
			t.Fatal(err)
		}
	}
	segs, _ := List(dir, "e-", ".jsonl")
	if len(segs) != 2 || !strings.HasSuffix(segs[1].Path, "e-000005.jsonl") {
		t.Fatalf("keep 2: %v", segs)
	}
}

func TestTornLineSkipped(t *testing.T) {
	dir := t.TempDir()
	l := open(t, Config{Dir: dir, Prefix: "s-", Suffix: ".log"})
	l.Append(3, lines(0, 3))
	l.Close()
	segs, _ := List(dir, "s-", ".log")
	f, _ := os.OpenFile(segs[0].Path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("re") // a crash mid-write
	f.Close()
	l = open(t, Config{Dir: dir, Prefix: "s-", Suffix: ".log"})
	l.Append(1, lines(3, 1))
	if got := readAll(t, l); len(got) != 4 || got[3] != "rec-0003" {
		t.Fatalf("the torn line is passed over, nothing is glued to it: %v", got)
	}
}
