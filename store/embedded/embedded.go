// Package embedded is the Store on a bbolt file: one command, no server to
// install, nothing lost on restart. It serves one refgate process; several
// instances share a Redis store instead.
//
// Records that expire are swept in the background (see Config): visitors'
// click records, click claims and what of customers no rule reads any more,
// each SweepGrace after its expiry by the server's clock; report days
// ReportRetention after their end. Money records
// (orders and their refunds, the ledger) and decision logs are never
// swept.
package embedded

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	gojson "github.com/goccy/go-json"
	"github.com/prometheus/client_golang/prometheus"
	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/store"
)

var _ store.Store = (*Store)(nil)

var (
	bPrograms  = []byte("programs")
	bPromoters = []byte("promoters")
	bLinks     = []byte("links")
	bLinkStats = []byte("linkstats") // code 0x00 outcome → uint64
	bVisitors  = []byte("visitors")  // program 0x00 visitor → Click JSON
	bBatches   = []byte("batches")   // click batch id → unix ms it was written
	bBatchAge  = []byte("batchage")  // unix ms (8 bytes) batch id → empty, oldest first
)

// FileName is the database file's name inside the data dir.
const FileName = "refgate.db"

// Config says where the store lives and how it sweeps. Only Dir is
// required; the zero value of every other field takes the default in
// brackets.
type Config struct {
	Dir string
	// Now is the server's clock, the one the rules read (with
	// --test-clock, the test clock): a record expires when its stored
	// expiry is before it [time.Now].
	Now func() time.Time
	// SweepInterval is how long one sweep waits for the next [1h]; a
	// negative one turns sweeping off. The first sweep runs one interval
	// after Open.
	SweepInterval time.Duration
	// SweepGrace is how long past its expiry a record is kept [7 days],
	// as Redis's TTLs keep records a while past theirs.
	SweepGrace time.Duration
	// SweepBatch is how many keys one sweep transaction looks at [2000]:
	// a sweep holds the writer's lock only for that many deletions, so
	// click batches and API writes never wait long behind it.
	SweepBatch int
	// ReportRetention is how long a report's day is kept past its end
	// [store.DefaultReportRetention]; the sweeper deletes older days.
	ReportRetention time.Duration
	Registerer      prometheus.Registerer // [a private registry]
	Logger          *slog.Logger          // [none]
}

// Store is the bbolt-backed store.
type Store struct {
	db    *bolt.DB
	cfg   Config
	now   func() time.Time // when click batch ids are written, to forget them: the wall clock
	clock func() time.Time // the server's clock, for expiries (Config.Now)
	m     sweepMetrics

	mu       sync.Mutex
	watchers map[int]func(store.Invalidation)
	nextW    int
	closed   bool

	stop  chan struct{} // closed by Close: the sweeper stops
	swept chan struct{} // closed when the sweeper has stopped

	sketches sketchCache // the report days' visitors being written (report.go)
	folded   time.Time   // when report deltas were last folded (report.go)
	deltas   int         // report deltas written since
}

// ErrLocked is what Open and New return (wrapped: errors.Is) when another
// process, or another Store in this one, holds the database file.
var ErrLocked = errors.New("locked by another process")

// lockedError names the data dir; it is ErrLocked to errors.Is.
type lockedError struct{ dir string }

func (e lockedError) Error() string {
	return "data dir " + e.dir + " is locked by another process (another refgate serve?)"
}

func (e lockedError) Is(target error) bool { return target == ErrLocked }

// Open opens (creating if needed) dir/refgate.db with the default Config.
// It fails with ErrLocked after a second if another process holds the file.
func Open(dir string) (*Store, error) { return New(Config{Dir: dir}) }

// New opens (creating if needed) cfg.Dir/refgate.db and starts sweeping;
// Close stops it. It fails with ErrLocked after a second if another
// process holds the file.
func New(cfg Config) (*Store, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.SweepInterval == 0 {
		cfg.SweepInterval = time.Hour
	}
	if cfg.SweepGrace == 0 {
		cfg.SweepGrace = 7 * 24 * time.Hour
	}
	if cfg.SweepBatch <= 0 {
		cfg.SweepBatch = 2000
	}
	if cfg.ReportRetention <= 0 {
		cfg.ReportRetention = store.DefaultReportRetention
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	dir := cfg.Dir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("cannot create data dir: %w", err)
	}
	path := filepath.Join(dir, FileName)
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if errors.Is(err, bolterrors.ErrTimeout) {
		// bbolt waited for the file's lock: bbolt's own "timeout" says
		// nothing of who holds it.
		return nil, lockedError{dir}
	}
	if err != nil {
		return nil, fmt.Errorf("cannot open %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bPrograms, bPromoters, bLinks, bLinkStats, bVisitors, bCustomers, bOrders, bDecisions, bOrderIdx, bClickUse, bBatches, bBatchAge, bDecisionLogs, bLedger, bReports, bReportDeltas, bHolders} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		if tx.Bucket(bLinkIndex) != nil {
			return nil
		}
		// A file from before the link lists: index its links, once.
		if _, err := tx.CreateBucket(bLinkIndex); err != nil {
			return err
		}
		return indexLinks(tx)
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("cannot initialise %s: %w", path, err)
	}
	s := &Store{db: db, cfg: cfg, now: time.Now, clock: cfg.Now, m: newSweepMetrics(cfg.Registerer),
		sketches: sketchCache{m: map[string]*cachedSketch{}},
		watchers: map[int]func(store.Invalidation){}, stop: make(chan struct{}), swept: make(chan struct{})}
	go s.sweeper()
	return s, nil
}

func (s *Store) put(bucket []byte, key string, v any, inv store.Invalidation) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucket).Put([]byte(key), b)
	})
	if err != nil {
		return translate(err)
	}
	s.notify(inv)
	return nil
}

func get[T any](s *Store, bucket []byte, key string) (*T, error) {
	var v *T
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket).Get([]byte(key))
		if b == nil {
			return store.ErrNotFound
		}
		v = new(T)
		return json.Unmarshal(b, v)
	})
	if err != nil {
		return nil, translate(err)
	}
	return v, nil
}

func translate(err error) error {
	if errors.Is(err, bolt.ErrDatabaseNotOpen) {
		return store.ErrClosed
	}
	return err
}

func (s *Store) PutProgram(_ context.Context, p *attribution.Program) error {
	return s.put(bPrograms, p.ID, p, store.Invalidation{Kind: store.Program, ID: p.ID})
}

func (s *Store) Program(_ context.Context, id string) (*attribution.Program, error) {
	return get[attribution.Program](s, bPrograms, id)
}

func (s *Store) PutPromoter(_ context.Context, p *attribution.Promoter) error {
	return s.put(bPromoters, p.ID, p, store.Invalidation{Kind: store.Promoter, ID: p.ID})
}

func (s *Store) Promoter(_ context.Context, id string) (*attribution.Promoter, error) {
	return get[attribution.Promoter](s, bPromoters, id)
}

// UpdatePromoter runs fn inside one write transaction: bbolt has a single
// writer, so fn runs once.
func (s *Store) UpdatePromoter(_ context.Context, id string, fn func(*attribution.Promoter) (*attribution.Promoter, error)) error {
	wrote := false
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bPromoters)
		var old *attribution.Promoter
		if v := b.Get([]byte(id)); v != nil {
			old = new(attribution.Promoter)
			if err := json.Unmarshal(v, old); err != nil {
				return err
			}
		}
		p, err := fn(old)
		if err != nil || p == nil {
			return err
		}
		wrote = true
		return putJSON(b, []byte(id), p)
	})
	if err != nil {
		return translate(err)
	}
	if wrote {
		s.notify(store.Invalidation{Kind: store.Promoter, ID: id})
	}
	return nil
}

func (s *Store) CreateLink(_ context.Context, l *attribution.Link) error {
	b, err := json.Marshal(l)
	if err != nil {
		return err
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bLinks)
		if bk.Get([]byte(l.Code)) != nil {
			return store.ErrExists
		}
		if err := indexLink(tx, l, false); err != nil {
			return err
		}
		return bk.Put([]byte(l.Code), b)
	})
	if err != nil {
		return translate(err)
	}
	// A negative cache entry for this code may exist.
	s.notify(store.Invalidation{Kind: store.Link, ID: l.Code})
	return nil
}

func (s *Store) Link(_ context.Context, code string) (*attribution.Link, error) {
	l, err := get[attribution.Link](s, bLinks, code)
	if err == nil && l.Deleted {
		return nil, store.ErrNotFound
	}
	return l, err
}

func (s *Store) DeleteLink(_ context.Context, code string) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bLinks)
		b := bk.Get([]byte(code))
		if b == nil {
			return store.ErrNotFound
		}
		var l attribution.Link
		if err := json.Unmarshal(b, &l); err != nil {
			return err
		}
		if l.Deleted {
			return store.ErrNotFound
		}
		if err := indexLink(tx, &l, true); err != nil {
			return err
		}
		l.Deleted = true
		nb, err := json.Marshal(&l)
		if err != nil {
			return err
		}
		return bk.Put([]byte(code), nb)
	})
	if err != nil {
		return translate(err)
	}
	s.notify(store.Invalidation{Kind: store.Link, ID: code})
	return nil
}

func statKey(code string, o attribution.Outcome) []byte {
	return []byte(code + "\x00" + string(o))
}

func (s *Store) LinkStats(_ context.Context, code string) (map[attribution.Outcome]int64, error) {
	m := map[attribution.Outcome]int64{}
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bLinkStats)
		for _, o := range attribution.RecordedOutcomes {
			if v := b.Get(statKey(code, o)); len(v) == 8 {
				m[o] = int64(binary.BigEndian.Uint64(v))
			}
		}
		return nil
	})
	return m, translate(err)
}

func visitorKey(program, visitor string) []byte {
	return []byte(program + "\x00" + visitor)
}

// RecordClicks writes the whole batch in one transaction, so one fsync covers
// many clicks, its report days included (report.go), and with it the batch
// id: a batch whose id is there was
// written whole and is skipped whole (its visitor records too, which a later
// batch may have replaced since). Ids older than store.BatchKeep are
// forgotten on the way.
func (s *Store) RecordClicks(_ context.Context, batch string, clicks []attribution.Click) error {
	if err := store.CheckBatchID(batch); err != nil {
		return err
	}
	now := s.now()
	err := s.db.Update(func(tx *bolt.Tx) error {
		written, err := rememberBatch(tx, batch, now)
		if err != nil || written {
			return err
		}
		if err := s.addClickReports(tx, clicks); err != nil {
			return err
		}
		if err := addLinkStats(tx.Bucket(bLinkStats), clicks); err != nil {
			return err
		}
		visitors := tx.Bucket(bVisitors)
		for i := range clicks {
			c := &clicks[i]
			if c.Outcome != attribution.OutcomeAttributed || c.Visitor == "" {
				continue
			}
			vk := visitorKey(c.Program, c.Visitor)
			// Only a first-click program's click may leave the stored
			// one in place (Click.Replaces): the others need not read it.
			if c.Model == attribution.FirstClick {
				if old := visitors.Get(vk); old != nil {
					var existing attribution.Click
					if gojson.Unmarshal(old, &existing) == nil && !c.Replaces(&existing) {
						continue
					}
				}
			}
			// goccy/go-json writes the bytes encoding/json does (as the
			// event encoder and the Redis store rely on), in less time.
			b, err := gojson.Marshal(c)
			if err != nil {
				return err
			}
			if err := visitors.Put(vk, b); err != nil {
				return err
			}
		}
		return nil
	})
	return translate(err)
}

// addLinkStats adds a batch's clicks to their links' counters, each
// counter read and written once, in key order.
func addLinkStats(stats *bolt.Bucket, clicks []attribution.Click) error {
	n := store.LinkCounts(clicks)
	keys := slices.SortedFunc(maps.Keys(n), func(a, b store.LinkOutcome) int {
		return cmp.Or(strings.Compare(a.Link, b.Link), strings.Compare(string(a.Outcome), string(b.Outcome)))
	})
	for _, k := range keys {
		sk := statKey(k.Link, k.Outcome)
		var cur uint64
		if v := stats.Get(sk); len(v) == 8 {
			cur = binary.BigEndian.Uint64(v)
		}
		// bbolt keeps a reference to the value until the transaction
		// ends, so each Put gets its own slice.
		if err := stats.Put(sk, binary.BigEndian.AppendUint64(nil, cur+uint64(n[k]))); err != nil {
			return err
		}
	}
	return nil
}

// rememberBatch forgets the batch ids written before now - store.BatchKeep,
// then reports whether batch was written already and, if not, records it
// as written now.
func rememberBatch(tx *bolt.Tx, batch string, now time.Time) (written bool, err error) {
	ids, age := tx.Bucket(bBatches), tx.Bucket(bBatchAge)
	cutoff := binary.BigEndian.AppendUint64(nil, uint64(now.Add(-store.BatchKeep).UnixMilli()))
	c := age.Cursor()
	for k, _ := c.First(); k != nil && bytes.Compare(k[:8], cutoff) < 0; k, _ = c.First() {
		if err := ids.Delete(k[8:]); err != nil {
			return false, err
		}
		if err := c.Delete(); err != nil {
			return false, err
		}
	}
	if ids.Get([]byte(batch)) != nil {
		return true, nil
	}
	at := binary.BigEndian.AppendUint64(nil, uint64(now.UnixMilli()))
	if err := ids.Put([]byte(batch), at); err != nil {
		return false, err
	}
	return false, age.Put(append(at[:8:8], batch...), []byte{})
}

func (s *Store) VisitorClick(_ context.Context, program, visitor string) (*attribution.Click, error) {
	return get[attribution.Click](s, bVisitors, string(visitorKey(program, visitor)))
}

// WatchInvalidations delivers this process's own changes: nobody else can
// write the file while it is open.
func (s *Store) WatchInvalidations(ctx context.Context, fn func(store.Invalidation)) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return store.ErrClosed
	}
	id := s.nextW
	s.nextW++
	s.watchers[id] = fn
	s.mu.Unlock()
	fn(store.Invalidation{Kind: store.All})
	<-ctx.Done()
	s.mu.Lock()
	delete(s.watchers, id)
	s.mu.Unlock()
	return ctx.Err()
}

func (s *Store) notify(inv store.Invalidation) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, fn := range s.watchers {
		fn(inv)
	}
}

func (s *Store) Ping(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return store.ErrClosed
	}
	return nil
}

// Close stops the sweeper (a sweep under way stops after its current
// transaction), then syncs and closes the file.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	close(s.stop)
	<-s.swept
	err := s.db.Update(func(tx *bolt.Tx) error {
		if err := s.foldReports(tx, nil, s.now()); err != nil {
			return err
		}
		return s.sketches.writeAll(tx.Bucket(bReports), s.now())
	})
	return errors.Join(err, s.db.Close())
}
