package events

import (
	"errors"

	"github.com/refgate/refgate/internal/seglog"
)

// Spool holds events the sink could not take, on disk, until they are
// replayed: a segment log (internal/seglog) of spool-<n>.jsonl files, each
// event one line of its encoded JSON (so a spool can be read with any JSON
// Lines tool). Appends are fsynced once per batch; replay reads from the
// oldest, and a segment is deleted once all of it was delivered. The replay
// position is kept in memory only: after a crash a segment is replayed from
// its start again, which delivers some events twice with the same id,
// never loses one.
//
// A Spool is used by one goroutine; Bytes may be read from any.
type Spool struct {
	log     *seglog.Log
	skipped int64 // unreadable lines found (torn writes after a crash)
}

// Position is how far a Peek read; Advance commits it.
type Position = seglog.Position

// OpenSpool opens (creating) dir with the segments a previous run left,
// which are replayed first. maxBytes bounds what it holds.
func OpenSpool(dir string, maxBytes int64) (*Spool, error) {
	return openSpool(dir, maxBytes, min(maxBytes/8+1, 16<<20))
}

func openSpool(dir string, maxBytes, segBytes int64) (*Spool, error) {
	l, err := seglog.Open(seglog.Config{Dir: dir, Prefix: "spool-", Suffix: ".jsonl",
		SegmentBytes: segBytes, MaxBytes: maxBytes})
	if err != nil {
		return nil, err
	}
	return &Spool{log: l}, nil
}

// Bytes is what the spool holds and has not replayed.
func (s *Spool) Bytes() int64 { return s.log.Bytes() }

// Empty reports whether nothing waits for replay.
func (s *Spool) Empty() bool { return s.log.Empty() }

// ErrFull is returned by Append for the records that did not fit.
var ErrFull = errors.New("event spool full")

// Append writes recs and fsyncs. It returns how many were written; the
// rest did not fit under the bound (ErrFull) or could not be written.
func (s *Spool) Append(recs []Record) (int, error) {
	n, err := s.log.Append(len(recs), func(i int) []byte { return recs[i].JSON })
	if errors.Is(err, seglog.ErrFull) {
		err = ErrFull
	}
	return n, err
}

// Peek reads up to max records from the replay position without consuming
// them. Lines that do not decode (a torn write before a crash) are skipped
// and counted. The records are the caller's to keep.
func (s *Spool) Peek(max int) ([]Record, Position, error) {
	var out []Record
	pos, err := s.log.Peek(max, func(line []byte) bool {
		rec, derr := decodeRecord(line)
		if derr != nil || rec.ID == "" {
			s.skipped++
			return false
		}
		out = append(out, rec)
		return true
	})
	return out, pos, err
}

// Advance consumes everything up to pos, deleting segments fully replayed.
func (s *Spool) Advance(pos Position) { s.log.Advance(pos) }

// Skipped is how many unreadable lines replay has passed over.
func (s *Spool) Skipped() int64 { return s.skipped }

// Close closes the segment being written; what is left is replayed by the
// next OpenSpool.
func (s *Spool) Close() error { return s.log.Close() }
