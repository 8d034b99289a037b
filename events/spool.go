package events

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

// Spool holds events the sink could not take, on disk, until they are
// replayed. It is a directory of segment files spool-<n>.jsonl, each event
// one line of its encoded JSON (so a spool can be read with any JSON Lines
// tool). Appends go to the newest segment and are fsynced once per batch;
// replay reads from the oldest, and a segment is deleted once all of it was
// delivered. The replay position is kept in memory only: after a crash a
// segment is replayed from its start again, which delivers some events
// twice with the same id, never loses one.
//
// nsqio/go-diskqueue was considered; it advances its read position when it
// hands a message out, before the sink has taken it, so a crash between the
// two would lose the message.
//
// A Spool is used by one goroutine; Bytes may be read from any.
type Spool struct {
	dir      string
	maxBytes int64
	segBytes int64

	segs    []*segment // oldest first; the last one takes appends
	w       *os.File   // the last segment, open for appending; nil until needed
	readOff int64      // replay position in segs[0]
	bytes   atomic.Int64
	skipped int64 // unreadable lines found (torn writes after a crash)
	buf     []byte
}

type segment struct {
	seq  int
	size int64
}

// Position is how far a Peek read; Advance commits it.
type Position struct {
	seg int   // index into segs at Peek time
	off int64 // offset in that segment
}

// OpenSpool opens (creating) dir with the segments a previous run left,
// which are replayed first. maxBytes bounds what it holds.
func OpenSpool(dir string, maxBytes int64) (*Spool, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	s := &Spool{dir: dir, maxBytes: maxBytes, segBytes: min(maxBytes/8+1, 16<<20)}
	var total int64
	for _, e := range ents {
		num, ok := strings.CutPrefix(e.Name(), "spool-")
		num, ok2 := strings.CutSuffix(num, ".jsonl")
		n, err := strconv.Atoi(num)
		if !ok || !ok2 || err != nil {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return nil, err
		}
		s.segs = append(s.segs, &segment{seq: n, size: info.Size()})
		total += info.Size()
	}
	sort.Slice(s.segs, func(i, j int) bool { return s.segs[i].seq < s.segs[j].seq })
	s.bytes.Store(total)
	return s, nil
}

func (s *Spool) path(seq int) string {
	return filepath.Join(s.dir, fmt.Sprintf("spool-%09d.jsonl", seq))
}

// Bytes is what the spool holds and has not replayed.
func (s *Spool) Bytes() int64 { return s.bytes.Load() }

// Empty reports whether nothing waits for replay.
func (s *Spool) Empty() bool { return s.bytes.Load() == 0 }

// ErrFull is returned by Append for the records that did not fit.
var ErrFull = errors.New("event spool full")

// Append writes recs and fsyncs. It returns how many were written; the
// rest did not fit under the bound (ErrFull) or could not be written.
func (s *Spool) Append(recs []Record) (int, error) {
	s.buf = s.buf[:0]
	n := 0
	var full bool
	for _, r := range recs {
		if s.bytes.Load()+int64(len(s.buf)+len(r.JSON)+1) > s.maxBytes {
			full = true
			break
		}
		s.buf = append(s.buf, r.JSON...)
		s.buf = append(s.buf, '\n')
		n++
	}
	if n > 0 {
		if err := s.write(s.buf); err != nil {
			return 0, err
		}
		s.bytes.Add(int64(len(s.buf)))
	}
	if full {
		return n, ErrFull
	}
	return n, nil
}

func (s *Spool) write(b []byte) error {
	// A segment a previous run left is never appended to: its last line may
	// be torn.
	if s.w == nil || s.segs[len(s.segs)-1].size >= s.segBytes {
		if s.w != nil {
			s.w.Close()
			s.w = nil
		}
		seq := 1
		if n := len(s.segs); n > 0 {
			seq = s.segs[n-1].seq + 1
		}
		f, err := os.OpenFile(s.path(seq), os.O_CREATE|os.O_WRONLY|os.O_APPEND|os.O_EXCL, 0o640)
		if err != nil {
			return err
		}
		s.w = f
		s.segs = append(s.segs, &segment{seq: seq})
	}
	seg := s.segs[len(s.segs)-1]
	n, err := s.w.Write(b)
	seg.size += int64(n)
	if err == nil {
		err = s.w.Sync()
	}
	if err != nil {
		// Whatever part landed is counted, so that replay and the byte
		// count stay in step; a torn line is skipped on replay.
		s.bytes.Add(int64(n))
		s.w.Close()
		s.w = nil
		return err
	}
	return nil
}

// Peek reads up to max records from the replay position without consuming
// them. Lines that do not decode (a torn write before a crash) are skipped
// and counted.
func (s *Spool) Peek(max int) ([]Record, Position, error) {
	var out []Record
	pos := Position{seg: 0, off: s.readOff}
	for pos.seg < len(s.segs) && len(out) < max {
		seg := s.segs[pos.seg]
		if pos.off >= seg.size {
			pos = Position{seg: pos.seg + 1}
			continue
		}
		f, err := os.Open(s.path(seg.seq))
		if err != nil {
			return out, pos, err
		}
		r := bufio.NewReaderSize(io.NewSectionReader(f, pos.off, seg.size-pos.off), 64<<10)
		for len(out) < max {
			line, err := r.ReadBytes('\n')
			if len(line) == 0 && err != nil {
				break
			}
			pos.off += int64(len(line))
			line = bytes.TrimSuffix(line, []byte("\n"))
			rec, derr := decodeRecord(line)
			if derr != nil || rec.ID == "" {
				s.skipped++
				continue
			}
			out = append(out, rec)
		}
		f.Close()
	}
	return out, pos, nil
}

// Advance consumes everything up to pos, deleting segments fully replayed.
func (s *Spool) Advance(pos Position) {
	consumed := -s.readOff
	for pos.seg > 0 || (len(s.segs) > 0 && pos.off >= s.segs[0].size) {
		seg := s.segs[0]
		consumed += seg.size
		if s.w != nil && len(s.segs) == 1 {
			s.w.Close()
			s.w = nil
		}
		os.Remove(s.path(seg.seq))
		s.segs = s.segs[1:]
		if pos.seg > 0 {
			pos.seg--
		} else {
			pos.off = 0
		}
		if len(s.segs) == 0 {
			pos = Position{}
			break
		}
	}
	consumed += pos.off
	s.readOff = pos.off
	s.bytes.Add(-consumed)
}

// Skipped is how many unreadable lines replay has passed over.
func (s *Spool) Skipped() int64 { return s.skipped }

// Close closes the segment being written; what is left is replayed by the
// next OpenSpool.
func (s *Spool) Close() error {
	if s.w == nil {
		return nil
	}
	err := s.w.Close()
	s.w = nil
	return err
}
