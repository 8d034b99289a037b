package events

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// FileDir is the directory under the data dir that holds the JSON Lines
// event files.
const FileDir = "events"

// JSONLines delivers events to JSON Lines files, one event per line, in
// <dir>/events-000001.jsonl, events-000002.jsonl, ...: the highest number is
// the file being written; a file is closed and the next one started when it
// would grow past maxBytes. Each Write ends with an fsync, so a delivered
// event survives a crash of the machine.
//
// lumberjack and similar rotating writers were considered: none fsyncs, and
// an event reported delivered must be on disk.
type JSONLines struct {
	dir      string
	maxBytes int64
	keep     int

	mu   sync.Mutex
	f    *os.File
	seq  int
	size int64
	buf  []byte
}

// OpenJSONLines opens (creating) dir and appends to its newest file. keep > 0
// deletes the oldest files beyond that many; 0 keeps every file.
func OpenJSONLines(dir string, maxBytes int64, keep int) (*JSONLines, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	files, err := EventFiles(dir)
	if err != nil {
		return nil, err
	}
	s := &JSONLines{dir: dir, maxBytes: maxBytes, keep: keep, seq: 1}
	if n := len(files); n > 0 {
		s.seq = files[n-1].Seq
	}
	if err := s.open(); err != nil {
		return nil, err
	}
	return s, nil
}

// EventFile is one JSON Lines file of events.
type EventFile struct {
	Seq  int
	Path string
}

// FileName returns the name of event file seq.
func FileName(seq int) string { return fmt.Sprintf("events-%06d.jsonl", seq) }

// EventFiles lists dir's event files, oldest first.
func EventFiles(dir string) ([]EventFile, error) {
	ents, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	var out []EventFile
	for _, e := range ents {
		name := e.Name()
		num, ok := strings.CutPrefix(name, "events-")
		num, ok2 := strings.CutSuffix(num, ".jsonl")
		if !ok || !ok2 {
			continue
		}
		if n, err := strconv.Atoi(num); err == nil && n > 0 {
			out = append(out, EventFile{Seq: n, Path: filepath.Join(dir, name)})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Seq < out[j].Seq })
	return out, nil
}

func (s *JSONLines) open() error {
	f, err := os.OpenFile(filepath.Join(s.dir, FileName(s.seq)), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	s.f, s.size = f, st.Size()
	return nil
}

// rotate closes the current file and starts the next one.
func (s *JSONLines) rotate() error {
	if err := s.f.Sync(); err != nil {
		return err
	}
	if err := s.f.Close(); err != nil {
		return err
	}
	s.seq++
	if err := s.open(); err != nil {
		return err
	}
	if s.keep > 0 {
		files, err := EventFiles(s.dir)
		if err != nil {
			return err
		}
		for len(files) > s.keep {
			os.Remove(files[0].Path)
			files = files[1:]
		}
	}
	return nil
}

// Name implements Sink.
func (s *JSONLines) Name() string { return "jsonl" }

// Write implements Sink.
func (s *JSONLines) Write(_ context.Context, recs []Record) ([]Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return recs, os.ErrClosed
	}
	for i := 0; i < len(recs); {
		s.buf = s.buf[:0]
		j := i
		for ; j < len(recs); j++ {
			n := int64(len(s.buf) + len(recs[j].JSON) + 1)
			if s.size+n > s.maxBytes && (s.size > 0 || len(s.buf) > 0) {
				break
			}
			s.buf = append(s.buf, recs[j].JSON...)
			s.buf = append(s.buf, '\n')
		}
		if len(s.buf) > 0 {
			n, err := s.f.Write(s.buf)
			s.size += int64(n)
			if err != nil {
				return recs[i:], err
			}
		}
		if j < len(recs) {
			if err := s.rotate(); err != nil {
				return recs[j:], err
			}
		}
		i = j
	}
	if err := s.f.Sync(); err != nil {
		return recs, err
	}
	return nil, nil
}

// Ping implements Sink: the file is open.
func (s *JSONLines) Ping(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return os.ErrClosed
	}
	return nil
}

// Close implements Sink.
func (s *JSONLines) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return nil
	}
	err := s.f.Sync()
	if cerr := s.f.Close(); err == nil {
		err = cerr
	}
	s.f = nil
	return err
}
