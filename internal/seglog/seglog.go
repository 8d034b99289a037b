// Package seglog is the one segment log behind everything refgate appends
// to disk and reads back: numbered segment files <prefix><n><suffix> in a
// directory, one record a line, appended in batches, rotated at a size,
// bounded in what its readers have not yet taken, and read by named readers
// whose positions are kept in a cursor file next to the segments.
//
// Appends are written to the operating system at once and fsynced by Sync
// (the caller runs it on a timer, like Redis's appendfsync everysec); a
// segment is also fsynced when it is closed. A reader's position moves only
// when it commits what it read, after its consumer has taken it, and a
// reader may record the batch it is about to deliver (Begin) so that after
// a crash the same batch, the same records under the same id, is delivered
// again first.
//
// Segments every reader has taken are deleted, unless the log is retained
// (the event files of the embedded store are a log that is also the
// output): then only the oldest taken segments past the retention bounds
// are (Keep segments, KeepBytes in all, MaxAge since the last write). A
// segment some reader has not taken is never deleted, whatever the bounds.
//
// A segment a previous run left is never appended to: its last line may be
// torn by a crash. Readers skip lines their decoder rejects.
//
// nsqio/go-diskqueue was considered; it advances its read position when it
// hands a message out, before the consumer has taken it, so a crash between
// the two would lose the message, and it has one reader. lumberjack and
// similar rotating writers do not fsync.
package seglog

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
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
	// MaxBytes bounds what the log holds that some reader has not taken;
	// 0 is no bound. Append refuses records past it with ErrFull.
	MaxBytes int64
	// Readers are the log's readers.
	Readers []Reader
	// Retain keeps segments every reader has taken, within bounds: the
	// oldest taken segments are deleted while there are more than Keep
	// segments in all, while all of them hold more than KeepBytes, or
	// while the oldest was last written more than MaxAge ago. Each bound
	// is off when not positive; with none, everything is kept.
	Retain    bool
	Keep      int
	KeepBytes int64
	MaxAge    time.Duration
	// Now is the clock segment ages are measured by [time.Now].
	Now func() time.Time
}

// Reader names a reader of the log and says where it starts when the
// cursor file does not know it: at the oldest record, or (Tail) after the
// newest, for a reader added to segments an earlier version wrote whose
// records it must not take again.
type Reader struct {
	Name string
	Tail bool
}

// ErrFull is returned by Append for the records that did not fit under
// MaxBytes.
var ErrFull = errors.New("segment log full")

// Pos is a position in the log: an offset in a segment. The position after
// the last record of a segment and the start of the next are the same
// place; Read and End treat them alike.
type Pos struct {
	Seq int   `json:"seq"`
	Off int64 `json:"off"`
}

// Less orders positions.
func (p Pos) Less(q Pos) bool { return p.Seq < q.Seq || p.Seq == q.Seq && p.Off < q.Off }

// Pending is a batch a reader is delivering: the records in [From, To),
// under the consumer's id for it.
type Pending struct {
	From Pos    `json:"from"`
	To   Pos    `json:"to"`
	ID   string `json:"id"`
}

// State is a reader's position and the batch it may have been delivering.
type State struct {
	Pos     Pos      `json:"pos"`
	Pending *Pending `json:"pending,omitempty"`
}

// Log is one segment log, safe for one appender and any number of
// readers at once.
type Log struct {
	cfg Config

	mu      sync.Mutex
	segs    []*segment // oldest first
	w       *os.File   // the last segment, open for appending; nil until needed
	nextSeq int        // of the next segment: numbers are never used twice
	dirty   bool       // written since the last fsync
	remove  []string   // files of dropped segments, deleted by unlock
	// unsynced are closed segments not yet fsynced; Sync does it.
	unsynced []*os.File
	readers  map[string]*State
	cursors  *os.File
	curBuf   []byte
	buf      []byte
	bytes    atomic.Int64 // not taken by every reader
}

type segment struct {
	seq  int
	size int64
	mod  time.Time // last written
}

// readers are the buffered readers of Read, reused.
var readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 64<<10) }}

// Segment is one segment file.
type Segment struct {
	Seq  int
	Path string
}

// Open opens (creating) the log's directory with the segments and reader
// positions a previous run left.
func Open(cfg Config) (*Log, error) {
	if cfg.Digits == 0 {
		cfg.Digits = 9
	}
	if cfg.SegmentBytes == 0 {
		cfg.SegmentBytes = 16 << 20
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return nil, err
	}
	segs, err := List(cfg.Dir, cfg.Prefix, cfg.Suffix)
	if err != nil {
		return nil, err
	}
	l := &Log{cfg: cfg, readers: map[string]*State{}}
	for _, s := range segs {
		info, err := os.Stat(s.Path)
		if err != nil {
			return nil, err
		}
		l.segs = append(l.segs, &segment{seq: s.Seq, size: info.Size(), mod: info.ModTime()})
	}
	if n := len(l.segs); n > 0 {
		// A crash can leave the last segment with a torn line: its bytes
		// are not counted, so that a reader can reach the end.
		last := l.segs[n-1]
		if last.size, err = wholeLines(l.path(last.seq), last.size); err != nil {
			return nil, err
		}
	}
	saved, size, err := l.loadCursors()
	if err != nil {
		return nil, err
	}
	l.curBuf = make([]byte, size) // the next write covers all of the old
	// After every segment was taken and deleted, the readers' positions
	// still name the last one: the next must come after it.
	l.nextSeq = l.end().Seq + 1
	for _, st := range saved {
		l.nextSeq = max(l.nextSeq, st.Pos.Seq+1)
	}
	for _, r := range cfg.Readers {
		st, ok := saved[r.Name]
		switch {
		case ok:
			st.Pos = l.clamp(st.Pos)
		case r.Tail:
			st = &State{Pos: l.end()}
		default:
			st = &State{Pos: l.start()}
		}
		l.readers[r.Name] = st
	}

	f, err := os.OpenFile(l.cursorPath(), os.O_CREATE|os.O_RDWR, 0o640)
	if err != nil {
		return nil, err
	}
	// One process at a time: two writing the same segments and cursors
	// would lose records. The lock goes with the file when the process
	// ends, however it ends.
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s is in use by another process (%w): give each instance its own data dir", cfg.Dir, err)
	}
	l.cursors = f
	if err := l.saveCursors(); err != nil {
		f.Close()
		return nil, err
	}
	l.account()
	return l, nil
}

// wholeLines returns the size of the file's prefix that ends with a
// newline.
func wholeLines(path string, size int64) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	const tail = 64 << 10
	for end := size; end > 0; {
		from := max(end-tail, 0)
		b := make([]byte, end-from)
		if _, err := f.ReadAt(b, from); err != nil {
			return 0, err
		}
		if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
			return from + int64(i) + 1, nil
		}
		end = from
	}
	return 0, nil
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

func (l *Log) cursorPath() string { return filepath.Join(l.cfg.Dir, l.cfg.Prefix+"cursors") }

// loadCursors reads the readers' saved states. A cursor file that does not
// decode (a machine crash while it was written) starts every reader at the
// oldest record: records delivered twice, under the same ids, none lost.
func (l *Log) loadCursors() (map[string]*State, int, error) {
	b, err := os.ReadFile(l.cursorPath())
	if os.IsNotExist(err) {
		return map[string]*State{}, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	saved := map[string]*State{}
	if json.Unmarshal(b, &saved) != nil {
		saved = map[string]*State{}
		for _, r := range l.cfg.Readers {
			saved[r.Name] = &State{Pos: l.start()}
		}
	}
	return saved, len(b), nil
}

// saveCursors writes the readers' states to the cursor file (fsynced by
// Sync) in one write at its start, padded with spaces to the length of the
// previous one: a process killed at any moment leaves either the old
// states or the new, never a mix.
func (l *Log) saveCursors() error {
	b, err := json.Marshal(l.readers)
	if err != nil {
		return err
	}
	n := len(l.curBuf)
	l.curBuf = append(l.curBuf[:0], b...)
	for len(l.curBuf) < n-1 {
		l.curBuf = append(l.curBuf, ' ')
	}
	l.curBuf = append(l.curBuf, '\n')
	_, err = l.cursors.WriteAt(l.curBuf, 0)
	return err
}

// start is the position of the oldest record; end the one after the
// newest. Called with mu held.
func (l *Log) start() Pos {
	if len(l.segs) == 0 {
		return Pos{}
	}
	return Pos{Seq: l.segs[0].seq}
}

func (l *Log) end() Pos {
	if len(l.segs) == 0 {
		return Pos{}
	}
	s := l.segs[len(l.segs)-1]
	return Pos{Seq: s.seq, Off: s.size}
}

// clamp moves a saved position that lies outside the segments (deleted by
// hand, or past a segment's end after a machine crash) to the nearest one.
func (l *Log) clamp(p Pos) Pos {
	if len(l.segs) == 0 {
		return p // the next segment comes after it
	}
	if p.Less(l.start()) {
		return l.start()
	}
	for _, s := range l.segs {
		if s.seq >= p.Seq {
			if s.seq > p.Seq {
				return Pos{Seq: s.seq}
			}
			return Pos{Seq: s.seq, Off: min(p.Off, s.size)}
		}
	}
	return l.end()
}

// lag is the number of bytes from p to the end. Called with mu held.
func (l *Log) lag(p Pos) int64 {
	var n int64
	for _, s := range l.segs {
		switch {
		case s.seq > p.Seq:
			n += s.size
		case s.seq == p.Seq:
			n += max(s.size-p.Off, 0)
		}
	}
	return n
}

// slowest is the position of the reader furthest behind. Called with mu
// held.
func (l *Log) slowest() Pos {
	p := l.end()
	for _, st := range l.readers {
		if st.Pos.Less(p) {
			p = st.Pos
		}
	}
	return p
}

func (l *Log) account() { l.bytes.Store(l.lag(l.slowest())) }

// Bytes is what the log holds that some reader has not taken.
func (l *Log) Bytes() int64 { return l.bytes.Load() }

// Lag is what the log holds that reader name has not taken.
func (l *Log) Lag(name string) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.readers[name]
	if st == nil {
		return 0
	}
	return l.lag(st.Pos)
}

// End is the position after the newest record.
func (l *Log) End() Pos {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.end()
}

// Append writes records 0..n-1 (rec(i) is record i, without its newline)
// to the operating system, without an fsync (Sync does that), and appends
// the position after each record written to ends. It returns ends and how
// many were written: the rest did not fit under MaxBytes (ErrFull) or
// could not be written (the error).
func (l *Log) Append(n int, rec func(i int) []byte, ends []Pos) ([]Pos, int, error) {
	l.mu.Lock()
	defer l.unlock()
	defer l.account()
	written := 0
	held := l.lag(l.slowest())
	for written < n {
		size := int64(0) // of the segment being written; a new one starts empty
		if l.w != nil {
			size = l.segs[len(l.segs)-1].size
		}
		l.buf = l.buf[:0]
		j, full := written, false
		var offs []int64
		for ; j < n; j++ {
			r := rec(j)
			grow := int64(len(r) + 1)
			if l.cfg.MaxBytes > 0 && held+int64(len(l.buf))+grow > l.cfg.MaxBytes {
				full = true
				break
			}
			if at := size + int64(len(l.buf)); at > 0 && at+grow > l.cfg.SegmentBytes {
				break // the next segment's
			}
			l.buf = append(append(l.buf, r...), '\n')
			offs = append(offs, int64(len(l.buf)))
		}
		if len(l.buf) > 0 {
			seq, base, err := l.write(l.buf)
			if err != nil {
				return ends, written, err
			}
			for _, o := range offs {
				ends = append(ends, Pos{Seq: seq, Off: base + o})
			}
			held += int64(len(l.buf))
			written = j
		}
		if full {
			return ends, written, ErrFull
		}
		if j < n {
			if err := l.rotate(); err != nil {
				return ends, written, err
			}
		}
	}
	return ends, written, nil
}

// AppendLines is Append for records already laid out as n lines, each
// ending in a newline, in buf: when they fit in the segment being written
// and under MaxBytes, they go in one write without a copy.
func (l *Log) AppendLines(buf []byte, n int, ends []Pos) ([]Pos, int, error) {
	l.mu.Lock()
	size := int64(0)
	if l.w != nil {
		size = l.segs[len(l.segs)-1].size
	}
	fits := (size == 0 || size+int64(len(buf)) <= l.cfg.SegmentBytes) &&
		(l.cfg.MaxBytes <= 0 || l.lag(l.slowest())+int64(len(buf)) <= l.cfg.MaxBytes)
	if fits && len(buf) > 0 {
		defer l.unlock()
		defer l.account()
		seq, base, err := l.write(buf)
		if err != nil {
			return ends, 0, err
		}
		for off := 0; off < len(buf); {
			i := bytes.IndexByte(buf[off:], '\n')
			off += i + 1
			ends = append(ends, Pos{Seq: seq, Off: base + int64(off)})
		}
		return ends, n, nil
	}
	l.mu.Unlock()
	lines := make([][]byte, 0, n)
	for off := 0; off < len(buf); {
		i := bytes.IndexByte(buf[off:], '\n')
		lines = append(lines, buf[off:off+i])
		off += i + 1
	}
	return l.Append(len(lines), func(i int) []byte { return lines[i] }, ends)
}

// rotate closes the segment being written (Sync fsyncs it); the next
// write starts another.
func (l *Log) rotate() error {
	if l.w == nil {
		return nil
	}
	var err error
	if l.dirty {
		// Sync fsyncs and closes it, off the appender's path.
		l.unsynced = append(l.unsynced, l.w)
	} else {
		err = l.w.Close()
	}
	l.w, l.dirty = nil, false
	return err
}

// write appends b to the last segment, starting one if none is open, and
// returns the segment and the offset b starts at.
func (l *Log) write(b []byte) (int, int64, error) {
	if l.w == nil {
		seq := l.nextSeq
		f, err := os.OpenFile(l.path(seq), os.O_CREATE|os.O_WRONLY|os.O_APPEND|os.O_EXCL, 0o640)
		if err != nil {
			return 0, 0, err
		}
		l.w, l.nextSeq = f, seq+1
		l.segs = append(l.segs, &segment{seq: seq})
		l.trim()
	}
	seg := l.segs[len(l.segs)-1]
	base := seg.size
	n, err := l.w.Write(b)
	// Whatever part landed is counted, so that reads and the byte count
	// stay in step; a torn line is skipped when read.
	seg.size += int64(n)
	seg.mod = l.cfg.Now()
	l.dirty = true
	if err != nil {
		l.w.Close()
		l.w = nil
		return 0, 0, err
	}
	return seg.seq, base, nil
}

// Sync fsyncs what was appended since the last Sync, and the readers'
// positions.
//
// The fsyncs run without the log's lock, so that appends and readers do
// not wait on the disk. Sync is called by one goroutine at a time.
func (l *Log) Sync() error {
	l.mu.Lock()
	closed, cur := l.unsynced, l.cursors
	l.unsynced = nil
	var w *os.File
	if l.w != nil && l.dirty {
		w, l.dirty = l.w, false
	}
	l.mu.Unlock()
	return syncFiles(closed, w, cur)
}

// syncFiles fsyncs and closes the closed segments, and fsyncs w and the
// cursor file.
func syncFiles(closed []*os.File, w, cur *os.File) error {
	var errs []error
	for _, f := range closed {
		errs = append(errs, f.Sync(), f.Close())
	}
	for _, f := range []*os.File{w, cur} {
		if f != nil {
			// A segment closed meanwhile was fsynced first.
			if err := f.Sync(); err != nil && !errors.Is(err, os.ErrClosed) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// State returns reader name's state.
func (l *Log) State(name string) State {
	l.mu.Lock()
	defer l.mu.Unlock()
	if st := l.readers[name]; st != nil {
		return *st
	}
	return State{}
}

// Begin records that reader name is delivering p: after a crash, State
// returns it, so that the same records go again under the same id.
func (l *Log) Begin(name string, p Pending) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.readers[name]
	st.Pending = &p
	return l.saveCursors()
}

// unlock releases mu, then deletes the segments trim dropped: unlinking a
// large file can take milliseconds, which the appender must not wait for.
func (l *Log) unlock() {
	rm := l.remove
	l.remove = nil
	l.mu.Unlock()
	for _, p := range rm {
		os.Remove(p)
	}
}

// Commit moves reader name to pos: everything before it was taken. It
// deletes the segments every reader has taken (unless retained).
func (l *Log) Commit(name string, pos Pos) error {
	l.mu.Lock()
	defer l.unlock()
	st := l.readers[name]
	st.Pos, st.Pending = pos, nil
	l.trim()
	l.account()
	return l.saveCursors()
}

// trim drops taken segments, all of them or, if retained, the oldest past
// the retention bounds, for unlock to delete. The segment being written is
// never dropped. Called with mu held.
func (l *Log) trim() {
	c := &l.cfg
	if c.Retain && c.Keep <= 0 && c.KeepBytes <= 0 && c.MaxAge <= 0 {
		return
	}
	var total int64
	for _, s := range l.segs {
		total += s.size
	}
	now := c.Now()
	low := l.slowest()
	for len(l.segs) > 1 || (len(l.segs) == 1 && l.w == nil) {
		s := l.segs[0]
		taken := s.seq < low.Seq || s.seq == low.Seq && low.Off >= s.size
		if !taken || (l.w != nil && len(l.segs) == 1) {
			return
		}
		over := !c.Retain ||
			c.Keep > 0 && len(l.segs) > c.Keep ||
			c.KeepBytes > 0 && total > c.KeepBytes ||
			c.MaxAge > 0 && now.Sub(s.mod) > c.MaxAge
		if !over {
			return
		}
		l.remove = append(l.remove, l.path(s.seq))
		l.segs = l.segs[1:]
		total -= s.size
	}
}

// Trim deletes the retained segments that are past the retention bounds
// now. Appends and commits trim too; a retained log with a MaxAge is
// trimmed on a timer as well, so that an idle one ages out.
func (l *Log) Trim() {
	l.mu.Lock()
	defer l.unlock()
	l.trim()
}

// Size is what the log's segments hold in all, taken or not, and how many
// there are.
func (l *Log) Size() (bytes int64, segments int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.segs {
		bytes += s.size
	}
	return bytes, len(l.segs)
}

// Read reads the records from `from` on, stopping at limit or once take
// accepted max of them. take gets each line (without its newline; valid
// only until take returns) and the position after it, and reports
// whether the line is a record: lines it rejects (a torn write before a
// crash) are passed over and do not count towards max. Read returns the
// position after the last line it passed to take, or from: always a
// position some line ends at (or from), never the start of a segment,
// so that positions compare alike however they were reached.
func (l *Log) Read(from, limit Pos, max int, take func(line []byte, end Pos) bool) (Pos, error) {
	l.mu.Lock()
	segs := make([]segment, len(l.segs))
	for i, s := range l.segs {
		segs[i] = *s
	}
	l.mu.Unlock()
	ret, got := from, 0
	for _, s := range segs {
		if got >= max || !ret.Less(limit) {
			break
		}
		off := int64(0)
		switch {
		case s.seq < ret.Seq:
			continue
		case s.seq == ret.Seq:
			off = ret.Off
		case s.seq > limit.Seq || s.seq == limit.Seq && limit.Off == 0:
			return ret, nil // the limit is the end of an earlier segment
		}
		stop := s.size
		if s.seq == limit.Seq {
			stop = min(stop, limit.Off)
		}
		if off >= stop {
			continue
		}
		f, err := os.Open(l.path(s.seq))
		if err != nil {
			return ret, err
		}
		r := readers.Get().(*bufio.Reader)
		r.Reset(io.NewSectionReader(f, off, stop-off))
		for got < max {
			line, err := r.ReadSlice('\n')
			if err == bufio.ErrBufferFull { // a line longer than the buffer
				long := append([]byte(nil), line...)
				for err == bufio.ErrBufferFull {
					line, err = r.ReadSlice('\n')
					long = append(long, line...)
				}
				line = long
			}
			if len(line) == 0 || line[len(line)-1] != '\n' {
				break // the end (a torn tail was cut off by Open)
			}
			off += int64(len(line))
			ret = Pos{Seq: s.seq, Off: off}
			if take(line[:len(line)-1], ret) {
				got++
			}
		}
		r.Reset(nil)
		readers.Put(r)
		f.Close()
	}
	return ret, nil
}

// Close fsyncs and closes the segments and the cursor file;
// what is left is read by the next Open.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	err := l.rotate()
	if serr := syncFiles(l.unsynced, nil, nil); err == nil {
		err = serr
	}
	l.unsynced = nil
	if l.cursors != nil {
		if serr := l.saveCursors(); err == nil {
			err = serr
		}
		if serr := l.cursors.Sync(); err == nil {
			err = serr
		}
		if cerr := l.cursors.Close(); err == nil {
			err = cerr
		}
		l.cursors = nil
	}
	return err
}
