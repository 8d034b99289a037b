package events

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// TailOptions choose what Tail prints.
type TailOptions struct {
	// Types keeps events whose type is one of these or starts with one of
	// them and a dot ("refgate.association" keeps all four association
	// types); empty keeps all.
	Types []string
	// From is where to start: "new" (only what arrives from now on),
	// "start" (everything kept), an RFC 3339 time, or on Redis a stream
	// entry id. With Group, it applies only when the group is created.
	From string
	// Group reads as a consumer group: on Redis a stream consumer group
	// (entries are acknowledged after they are printed, and entries this
	// consumer was given but never acknowledged are printed again first);
	// on files a saved position per group name.
	Group, Consumer string
	Follow          bool // wait for new events instead of stopping at the end
	Count           int  // stop after this many events; 0 = no limit
	Poll            time.Duration
}

// Printer receives each event kept, as stored. An error stops the tail
// before the event is acknowledged.
type Printer func(raw []byte) error

// errDone stops a tail once Count events were printed.
var errDone = errors.New("done")

type tailer struct {
	o       TailOptions
	out     Printer
	printed int
}

func (t *tailer) keep(raw []byte) bool {
	if len(t.o.Types) == 0 {
		return true
	}
	var h struct {
		Type string `json:"type"`
	}
	if json.Unmarshal(raw, &h) != nil {
		return false
	}
	for _, want := range t.o.Types {
		if h.Type == want || strings.HasPrefix(h.Type, want+".") {
			return true
		}
	}
	return false
}

// emit prints raw if it is kept and reports errDone once Count is reached.
func (t *tailer) emit(raw []byte) error {
	if !t.keep(raw) {
		return nil
	}
	if err := t.out(raw); err != nil {
		return err
	}
	t.printed++
	if t.o.Count > 0 && t.printed >= t.o.Count {
		return errDone
	}
	return nil
}

func finish(err error) error {
	if errors.Is(err, errDone) || errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// fromTime parses From as a time, if it is one.
func fromTime(from string) (time.Time, bool) {
	t, err := time.Parse(time.RFC3339Nano, from)
	return t, err == nil
}

// TailRedis prints the events of the stream keys.
func TailRedis(ctx context.Context, rdb redis.UniversalClient, keys []string, o TailOptions, out Printer) error {
	if o.Poll == 0 {
		o.Poll = 200 * time.Millisecond
	}
	t := &tailer{o: o, out: out}
	if o.Group != "" {
		return finish(t.redisGroup(ctx, rdb, keys))
	}
	last := make([]string, len(keys))
	for i, k := range keys {
		id, err := startID(ctx, rdb, k, o.From)
		if err != nil {
			return err
		}
		last[i] = id
	}
	for {
		got := 0
		for i, k := range keys {
			res, err := rdb.XRead(ctx, &redis.XReadArgs{Streams: []string{k, last[i]}, Count: 500, Block: -1}).Result()
			if err != nil && !errors.Is(err, redis.Nil) {
				return finish(err)
			}
			for _, s := range res {
				for _, m := range s.Messages {
					last[i] = m.ID
					got++
					if err := t.emit(entryBytes(m)); err != nil {
						return finish(err)
					}
				}
			}
		}
		if got == 0 {
			if !o.Follow {
				return nil
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(o.Poll):
			}
		}
	}
}

func entryBytes(m redis.XMessage) []byte {
	s, _ := m.Values["event"].(string)
	return []byte(s)
}

// startID turns From into the stream id to read after.
func startID(ctx context.Context, rdb redis.UniversalClient, key, from string) (string, error) {
	switch from {
	case "", "new":
		msgs, err := rdb.XRevRangeN(ctx, key, "+", "-", 1).Result()
		if err != nil {
			return "", err
		}
		if len(msgs) == 0 {
			return "0-0", nil
		}
		return msgs[0].ID, nil
	case "start":
		return "0-0", nil
	}
	if t, ok := fromTime(from); ok {
		ms := t.UnixMilli() - 1
		return strconv.FormatInt(ms, 10) + "-" + strconv.FormatUint(math.MaxUint64, 10), nil
	}
	return from, nil
}

func (t *tailer) redisGroup(ctx context.Context, rdb redis.UniversalClient, keys []string) error {
	consumer := t.o.Consumer
	if consumer == "" {
		host, _ := os.Hostname()
		consumer = host + "-" + strconv.Itoa(os.Getpid())
	}
	for _, k := range keys {
		start := "$"
		if t.o.From != "" && t.o.From != "new" {
			id, err := startID(ctx, rdb, k, t.o.From)
			if err != nil {
				return err
			}
			start = id
		}
		err := rdb.XGroupCreateMkStream(ctx, k, t.o.Group, start).Err()
		if err != nil && !redis.HasErrorPrefix(err, "BUSYGROUP") {
			return fmt.Errorf("create consumer group %s on %s: %w", t.o.Group, k, err)
		}
	}
	// "0" first: entries given to this consumer earlier and never
	// acknowledged (it stopped before printing them); then ">" for new ones.
	pending := make([]bool, len(keys))
	for i := range pending {
		pending[i] = true
	}
	for {
		got, wasPending := 0, false
		for i, k := range keys {
			id := ">"
			wasPending = wasPending || pending[i]
			if pending[i] {
				id = "0"
			}
			res, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: t.o.Group, Consumer: consumer,
				Streams: []string{k, id}, Count: 500, Block: -1}).Result()
			if err != nil && !errors.Is(err, redis.Nil) {
				return err
			}
			n := 0
			for _, s := range res {
				for _, m := range s.Messages {
					n++
					if err := t.emit(entryBytes(m)); err != nil {
						if errors.Is(err, errDone) {
							rdb.XAck(ctx, k, t.o.Group, m.ID)
						}
						return err
					}
					if err := rdb.XAck(ctx, k, t.o.Group, m.ID).Err(); err != nil {
						return err
					}
				}
			}
			if pending[i] && n == 0 {
				pending[i] = false
			}
			got += n
		}
		if got == 0 && !wasPending {
			if !t.o.Follow {
				return nil
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(t.o.Poll):
			}
		}
	}
}

// TailFiles prints the events of the JSON Lines files in dir, following
// them across rotation.
func TailFiles(ctx context.Context, dir string, o TailOptions, out Printer) error {
	if o.Poll == 0 {
		o.Poll = 200 * time.Millisecond
	}
	t := &tailer{o: o, out: out}
	after, hasTime := fromTime(o.From)
	var pos filePos
	files, err := EventFiles(dir)
	if err != nil {
		return err
	}
	switch {
	case o.Group != "" && readPos(dir, o.Group, &pos):
	case o.From == "" || o.From == "new":
		if n := len(files); n > 0 {
			st, err := os.Stat(files[n-1].Path)
			if err != nil {
				return err
			}
			pos = filePos{Seq: files[n-1].Seq, Off: st.Size()}
		}
	case o.From == "start" || hasTime:
		if len(files) > 0 {
			pos = filePos{Seq: files[0].Seq}
		}
	default:
		return fmt.Errorf("--from %q: want new, start or an RFC 3339 time for event files", o.From)
	}
	for {
		files, err := EventFiles(dir)
		if err != nil {
			return err
		}
		progressed := false
		for _, f := range files {
			if f.Seq < pos.Seq {
				continue
			}
			if f.Seq > pos.Seq {
				pos = filePos{Seq: f.Seq}
			}
			n, err := t.readFile(f.Path, &pos, after)
			if n > 0 {
				progressed = true
				if o.Group != "" {
					if werr := writePos(dir, o.Group, pos); werr != nil {
						return werr
					}
				}
			}
			if err != nil {
				return finish(err)
			}
		}
		if !progressed {
			if !o.Follow {
				return nil
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(o.Poll):
			}
		}
	}
}

type filePos struct {
	Seq int   `json:"seq"`
	Off int64 `json:"offset"`
}

// readFile prints the complete lines of path from pos.Off on and advances
// pos past them; a line still being written is left for the next round.
func (t *tailer) readFile(path string, pos *filePos, after time.Time) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		if os.IsNotExist(err) { // deleted by --events-file-keep
			return 0, nil
		}
		return 0, err
	}
	defer f.Close()
	if _, err := f.Seek(pos.Off, io.SeekStart); err != nil {
		return 0, err
	}
	r := bufio.NewReaderSize(f, 64<<10)
	n := 0
	for {
		line, err := r.ReadBytes('\n')
		if err != nil { // EOF, possibly mid-line
			return n, nil
		}
		raw := line[:len(line)-1]
		if !after.IsZero() {
			var h struct {
				Time time.Time `json:"time"`
			}
			if json.Unmarshal(raw, &h) == nil && h.Time.Before(after) {
				pos.Off += int64(len(line))
				n++
				continue
			}
		}
		err = t.emit(raw)
		if err != nil && !errors.Is(err, errDone) {
			return n, err // not printed: not passed
		}
		pos.Off += int64(len(line))
		n++
		if err != nil {
			return n, err
		}
	}
}

func posPath(dir, group string) string {
	return filepath.Join(dir, "groups", group+".json")
}

func readPos(dir, group string, pos *filePos) bool {
	b, err := os.ReadFile(posPath(dir, group))
	return err == nil && json.Unmarshal(b, pos) == nil
}

// writePos saves a group's position: write a temporary file, rename it.
func writePos(dir, group string, pos filePos) error {
	p := posPath(dir, group)
	if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
		return err
	}
	b, _ := json.Marshal(pos)
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, b, 0o640); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}
