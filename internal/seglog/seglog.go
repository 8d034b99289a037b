// Package seglog is the one segment log behind everything refgate appends
// to disk and may read back: numbered segment files <prefix><n><suffix> in a
// directory, one record a line, appended in batches that are fsynced once
// each, rotated at a size, bounded in total, and read back from a position
// that is committed only once the reader's consumer has taken what it read.
//
// The event spool (records waiting for a sink) and the JSON Lines event
// sink (records kept, the oldest files deleted past a count) are both
// seglogs.
//
// A segment a previous run left is never appended to: its last line may be
// torn by a crash. Readers skip lines their decoder rejects.
//
// nsqio/go-diskqueue was considered; it advances its read position when it
// hands a message out, before the consumer has taken it, so a crash between
// the two would lose the message. lumberjack and similar rotating writers do
// not fsync.
package seglog

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
)

// Config says where a log lives and how it is bounded. Dir, Prefix and
// Suffix are required.
type Config struct {
	Dir    string
	Prefix string // "spool-"
	Suffix string // ".jsonl"
	Digits int    // width of the zero-padded segment number [9]
	// SegmentBytes starts a new segment before a record would take the
	// current one past it (a record larger than that gets a segment of
	// its own) [16 MiB].
	SegmentBytes int64
	// MaxBytes bounds what the log holds and has not consumed; 0 is no
	// bound. Append refuses records past it with ErrFull.
	MaxBytes int64
	// Keep, if positive, deletes the oldest segments beyond that many
	// whenever a new one starts: for a log nobody consumes.
	Keep int
}

// ErrFull is returned by Append for the records that did not fit under
// MaxBytes.
var ErrFull = errors.New("segment log full")

// Log is one segment log. It is used by one goroutine at a time (the
// caller serialises); Bytes may be read from any.
type Log struct {
	cfg Config

	segs    []*segment // oldest first
	w       *os.File   // the last segment, open for appending; nil until needed
	readOff int64      // read position in segs[0]
	bytes   atomic.Int64
	buf     []byte
}

type segment struct {
	seq  int
	size int64
}

// Segment is one segment file.
type Segment struct {
	Seq  int
	Path string
}

// Position is how far a Peek read; Advance commits it.
type Position struct {
	seg int   // index into segs at Peek time
	off int64 // offset in that segment
}

// Open opens (creating) the log's directory with the segments a previous
// run left; they are read first.
func Open(cfg Config) (*Log, error) {
	if cfg.Digits == 0 {
		cfg.Digits = 9
	}
	if cfg.SegmentBytes == 0 {
		cfg.SegmentBytes = 16 << 20
	}
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return nil, err
	}
	segs, err := List(cfg.Dir, cfg.Prefix, cfg.Suffix)
	if err != nil {
		return nil, err
	}
	l := &Log{cfg: cfg}
	var total int64
	for _, s := range segs {
		info, err := os.Stat(s.Path)
		if err != nil {
			return nil, err
		}
		l.segs = append(l.segs, &segment{seq: s.Seq, size: info.Size()})
		total += info.Size()
	}
	l.bytes.Store(total)
	return l, nil
}

// List returns dir's segments named prefix<n>suffix, oldest first.
func List(dir, prefix, suffix string) ([]Segment, error) {
	ents, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	var out []Segment
	for _, e := range ents {
		num, ok := strings.CutPrefix(e.Name(), prefix)
		num, ok2 := strings.CutSuffix(num, suffix)
		if !ok || !ok2 {
			continue
		}
		if n, err := strconv.Atoi(num); err == nil && n > 0 {
			out = append(out, Segment{Seq: n, Path: filepath.Join(dir, e.Name())})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Seq < out[j].Seq })
	return out, nil
}

// Name returns the file name of segment seq.
func (l *Log) Name(seq int) string {
	return fmt.Sprintf("%s%0*d%s", l.cfg.Prefix, l.cfg.Digits, seq, l.cfg.Suffix)
}

func (l *Log) path(seq int) string { return filepath.Join(l.cfg.Dir, l.Name(seq)) }

// Bytes is what the log holds and has not consumed.
func (l *Log) Bytes() int64 { return l.bytes.Load() }

// Empty reports whether nothing waits to be read.
func (l *Log) Empty() bool { return l.bytes.Load() == 0 }

// Append writes records 0..n-1 (rec(i) is record i, without its newline)
// and fsyncs each segment it wrote to once. It returns how many were
// written: the rest did not fit under MaxBytes (ErrFull) or could not be
// written (the error).
func (l *Log) Append(n int, rec func(i int) []byte) (int, error) {
	written := 0
	for written < n {
		size := int64(0) // of the segment being written; a new one starts empty
		if l.w != nil {
			size = l.segs[len(l.segs)-1].size
		}
		l.buf = l.buf[:0]
		j, full := written, false
		for ; j < n; j++ {
			r := rec(j)
			grow := int64(len(r) + 1)
			if l.cfg.MaxBytes > 0 && l.bytes.Load()+int64(len(l.buf))+grow > l.cfg.MaxBytes {
				full = true
				break
			}
			if at := size + int64(len(l.buf)); at > 0 && at+grow > l.cfg.SegmentBytes {
				break // the next segment's
			}
			l.buf = append(append(l.buf, r...), '\n')
		}
		if len(l.buf) > 0 {
			if err := l.write(l.buf); err != nil {
				return written, err
			}
			l.bytes.Add(int64(len(l.buf)))
			written = j
		}
		if full {
			return written, ErrFull
		}
		if j < n {
			if err := l.rotate(); err != nil {
				return written, err
			}
		}
	}
	return written, nil
}

// rotate closes the segment being written; the next write starts another.
func (l *Log) rotate() error {
	if l.w == nil {
		return nil
	}
	err := l.w.Close()
	l.w = nil
	return err
}

func (l *Log) write(b []byte) error {
	if l.w == nil {
		seq := 1
		if n := len(l.segs); n > 0 {
			seq = l.segs[n-1].seq + 1
		}
		f, err := os.OpenFile(l.path(seq), os.O_CREATE|os.O_WRONLY|os.O_APPEND|os.O_EXCL, 0o640)
		if err != nil {
			return err
		}
		l.w = f
		l.segs = append(l.segs, &segment{seq: seq})
		l.trim()
	}
	seg := l.segs[len(l.segs)-1]
	n, err := l.w.Write(b)
	seg.size += int64(n)
	if err == nil {
		err = l.w.Sync()
	}
	if err != nil {
		// Whatever part landed is counted, so that reads and the byte
		// count stay in step; a torn line is skipped when read.
		l.bytes.Add(int64(n))
		l.w.Close()
		l.w = nil
		return err
	}
	return nil
}

// trim deletes the oldest segments beyond Keep.
func (l *Log) trim() {
	if l.cfg.Keep <= 0 {
		return
	}
	for len(l.segs) > l.cfg.Keep {
		l.bytes.Add(-(l.segs[0].size - l.readOff))
		os.Remove(l.path(l.segs[0].seq))
		l.segs, l.readOff = l.segs[1:], 0
	}
}

// Peek reads up to max records from the read position without consuming
// them, calling take for each line (without its newline; a slice of its
// own, the caller's to keep). take reports whether the line is a record;
// lines it rejects (a torn write before a crash) are passed over and do
// not count towards max.
func (l *Log) Peek(max int, take func(line []byte) bool) (Position, error) {
	got := 0
	pos := Position{seg: 0, off: l.readOff}
	for pos.seg < len(l.segs) && got < max {
		seg := l.segs[pos.seg]
		if pos.off >= seg.size {
			pos = Position{seg: pos.seg + 1}
			continue
		}
		f, err := os.Open(l.path(seg.seq))
		if err != nil {
			return pos, err
		}
		r := bufio.NewReaderSize(io.NewSectionReader(f, pos.off, seg.size-pos.off), 64<<10)
		for got < max {
			line, err := r.ReadBytes('\n')
			if len(line) == 0 && err != nil {
				break
			}
			pos.off += int64(len(line))
			if take(bytes.TrimSuffix(line, []byte("\n"))) {
				got++
			}
		}
		f.Close()
	}
	return pos, nil
}

// Advance consumes everything up to pos, deleting segments fully read.
func (l *Log) Advance(pos Position) {
	consumed := -l.readOff
	for pos.seg > 0 || (len(l.segs) > 0 && pos.off >= l.segs[0].size) {
		seg := l.segs[0]
		consumed += seg.size
		if l.w != nil && len(l.segs) == 1 {
			l.w.Close()
			l.w = nil
		}
		os.Remove(l.path(seg.seq))
		l.segs = l.segs[1:]
		if pos.seg > 0 {
			pos.seg--
		} else {
			pos.off = 0
		}
		if len(l.segs) == 0 {
			pos = Position{}
			break
		}
	}
	consumed += pos.off
	l.readOff = pos.off
	l.bytes.Add(-consumed)
}

// Close closes the segment being written; what is left is read by the
// next Open.
func (l *Log) Close() error {
	if l.w == nil {
		return nil
	}
	err := l.w.Close()
	l.w = nil
	return err
}
