package events

import (
	"context"
	"os"
	"sync"

	"github.com/refgate/refgate/internal/seglog"
)

// FileDir is the directory under the data dir that holds the JSON Lines
// event files.
const FileDir = "events"

// JSONLines delivers events to JSON Lines files, one event per line, in
// <dir>/events-000001.jsonl, events-000002.jsonl, ...: a segment log
// (internal/seglog), the same as the spool's. The highest number is the
// file being written; the next one starts before a write would take a file
// past maxBytes, and each start of refgate begins a new one (the last line
// of the previous one may be torn by a crash). Each Write ends with an
// fsync, so a delivered event survives a crash of the machine.
type JSONLines struct {
	mu  sync.Mutex
	log *seglog.Log // nil once closed
}

// OpenJSONLines opens (creating) dir. keep > 0 deletes the oldest files
// beyond that many; 0 keeps every file.
func OpenJSONLines(dir string, maxBytes int64, keep int) (*JSONLines, error) {
	l, err := seglog.Open(seglog.Config{Dir: dir, Prefix: "events-", Suffix: ".jsonl", Digits: 6,
		SegmentBytes: maxBytes, Keep: keep})
	if err != nil {
		return nil, err
	}
	return &JSONLines{log: l}, nil
}

// EventFile is one JSON Lines file of events.
type EventFile = seglog.Segment

// EventFiles lists dir's event files, oldest first.
func EventFiles(dir string) ([]EventFile, error) { return seglog.List(dir, "events-", ".jsonl") }

// Name implements Sink.
func (s *JSONLines) Name() string { return "jsonl" }

// Write implements Sink.
func (s *JSONLines) Write(_ context.Context, recs []Record) ([]Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.log == nil {
		return recs, os.ErrClosed
	}
	n, err := s.log.Append(len(recs), func(i int) []byte { return recs[i].JSON })
	if err != nil {
		return recs[n:], err
	}
	return nil, nil
}

// Ping implements Sink: the log is open.
func (s *JSONLines) Ping(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.log == nil {
		return os.ErrClosed
	}
	return nil
}

// Close implements Sink.
func (s *JSONLines) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.log == nil {
		return nil
	}
	err := s.log.Close()
	s.log = nil
	return err
}
