package embedded

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/axiomhq/hyperloglog"
	bolt "go.etcd.io/bbolt"

	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/store"
)

// Reports are one bucket, bReports, of day buckets. A day's counts are
// under
//
//	program 0x00 YYYYMMDD 0x00 scope   (scope "p", "a:PROMOTER" or "l:LINK")
//
// as (uvarint name length, name, varint count) triples, and its visitors
// under the same key and "\x00v", as a marshalled HyperLogLog sketch
// (axiomhq/hyperloglog, precision 14: tens of bytes to a few KiB while the
// day has a few thousand visitors or fewer, then 16 KiB). The counts are
// written in the transaction of what they count: RecordClicks's,
// PostEntry's, CountReport's (whose id is remembered as a click batch id
// is, store.BatchKeep).
//
// A click batch touches a day bucket of every link, promoter and program
// it has clicks of: rewriting each in every batch's commit cost the store
// a tenth of its time per click. So a batch writes its counts as one
// delta, appended to bReportDeltas under the bucket's next sequence
// number:
//
//	(uvarint key length, key, uvarint field count, (name, count)...)...
//
// and a batch at most foldEvery after the last fold, or with maxDeltas
// waiting, folds them all into the day buckets and deletes them, in its
// own transaction; so do the sweeper and Close. Report reads the deltas
// in the same transaction as the day buckets, so a delta is counted
// exactly once, folded or not.
//
// A sketch is not rewritten with every batch: decoding and rewriting 16
// KiB per scope per batch doubled the store's time per click. The sketches
// being written are kept in memory (sketchCache), which reads and writes
// use, and each is written to the file in a click batch's transaction at
// most once every sketchWriteEvery, when it leaves the cache, and at
// Close. Inserting a visitor twice changes nothing, so a batch whose
// transaction failed and is tried again counts its visitors once, and a
// sketch written late is still right; a crash loses the visitors added to
// a sketch since it was last written (at most sketchWriteEvery's), never a
// count. The sweeper deletes a day ReportRetention after its end.
var (
	bReports      = []byte("reports")
	bReportDeltas = []byte("report_deltas")
)

// foldEvery and maxDeltas bound the deltas waiting: a second's batches,
// and a fold's work.
const (
	foldEvery = time.Second
	maxDeltas = 256
)

const sketchWriteEvery = time.Second

// maxCachedSketches bounds the sketches in memory: 32 MiB if every one is
// dense. Past it, the least recently used quarter is written and dropped.
var maxCachedSketches = 2048

func reportKey(program string, day time.Time, s store.ReportScope) []byte {
	return []byte(program + "\x00" + store.DayKey(day) + "\x00" + s.Key())
}

// visitorsKey is the key of the sketch of the day whose counts are at k.
func visitorsKey(k []byte) []byte { return append(k[:len(k):len(k)], 0, 'v') }

// reportKeyDay is the day of a report key, false for a key that is none.
func reportKeyDay(k []byte) (time.Time, bool) {
	i := bytes.IndexByte(k, 0)
	if i < 0 || len(k) < i+10 || k[i+9] != 0 {
		return time.Time{}, false
	}
	d, err := time.Parse("20060102", string(k[i+1:i+9]))
	return d, err == nil
}

func readCounts(v []byte) (store.ReportCounts, error) {
	c := store.ReportCounts{}
	for len(v) > 0 {
		var err error
		if v, err = readCount(v, c); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// readCount adds the (name, count) pair v starts with to c and returns
// the rest of v.
func readCount(v []byte, c store.ReportCounts) ([]byte, error) {
	n, k := binary.Uvarint(v)
	if k <= 0 || uint64(len(v)-k) < n {
		return nil, fmt.Errorf("corrupt report day")
	}
	name := string(v[k : k+int(n)])
	v = v[k+int(n):]
	x, k := binary.Varint(v)
	if k <= 0 {
		return nil, fmt.Errorf("corrupt report day")
	}
	c[name] += x
	return v[k:], nil
}

func appendCounts(b []byte, c store.ReportCounts) []byte {
	for name, x := range c {
		b = binary.AppendUvarint(b, uint64(len(name)))
		b = binary.AppendVarint(append(b, name...), x)
	}
	return b
}

func decodeSketch(v []byte) (*hyperloglog.Sketch, error) {
	sk := hyperloglog.New14()
	if len(v) > 0 {
		if err := sk.UnmarshalBinary(v); err != nil {
			return nil, fmt.Errorf("corrupt report visitors: %w", err)
		}
	}
	return sk, nil
}

// sketchCache holds the visitor sketches of the report days being
// written, by visitors key. Writes come from write transactions, which
// bbolt runs one at a time; reads from any number of read transactions.
type sketchCache struct {
	mu sync.Mutex
	m  map[string]*cachedSketch
}

type cachedSketch struct {
	sk      *hyperloglog.Sketch
	written time.Time // when it was last written to the file; zero: never
	dirty   bool      // it has visitors the file's copy lacks
	used    time.Time
}

// insert adds visitors to the sketch at key k, read from b when not
// cached.
func (c *sketchCache) insert(b *bolt.Bucket, k []byte, visitors []string, now time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.m[string(k)]
	if e == nil {
		sk, err := decodeSketch(b.Get(k))
		if err != nil {
			return err
		}
		if len(c.m) >= maxCachedSketches {
			if err := c.evict(b, now); err != nil {
				return err
			}
		}
		e = &cachedSketch{sk: sk, written: now}
		c.m[string(k)] = e
	}
	for _, v := range visitors {
		e.sk.Insert([]byte(v))
	}
	e.dirty, e.used = true, now
	return nil
}

// writeDue writes to b every dirty sketch last written sketchWriteEvery
// ago or more.
func (c *sketchCache) writeDue(b *bolt.Bucket, now time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, e := range c.m {
		if e.dirty && now.Sub(e.written) >= sketchWriteEvery {
			if err := e.write(b, k, now); err != nil {
				return err
			}
		}
	}
	return nil
}

// evict writes and drops the least recently used quarter of the cache.
// c.mu is held.
func (c *sketchCache) evict(b *bolt.Bucket, now time.Time) error {
	keys := make([]string, 0, len(c.m))
	for k := range c.m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(x, y string) int { return c.m[x].used.Compare(c.m[y].used) })
	for _, k := range keys[:len(keys)/4+1] {
		if e := c.m[k]; e.dirty {
			if err := e.write(b, k, now); err != nil {
				return err
			}
		}
		delete(c.m, k)
	}
	return nil
}

func (e *cachedSketch) write(b *bolt.Bucket, k string, now time.Time) error {
	v, err := e.sk.MarshalBinary()
	if err == nil {
		err = b.Put([]byte(k), v)
	}
	if err != nil {
		return err
	}
	// A transaction that fails after this leaves the sketch dirty in
	// effect: the next write of it is due at once, and Close writes it.
	e.dirty, e.written = false, now
	return nil
}

// writeAll writes every dirty sketch to b, at Close.
func (c *sketchCache) writeAll(b *bolt.Bucket, now time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, e := range c.m {
		if e.dirty {
			if err := e.write(b, k, now); err != nil {
				return err
			}
		}
	}
	return nil
}

// merge adds the visitors of the sketch at k to union: the cached one,
// else the file's.
func (c *sketchCache) merge(b *bolt.Bucket, k []byte, union **hyperloglog.Sketch) error {
	c.mu.Lock()
	var sk *hyperloglog.Sketch
	if e := c.m[string(k)]; e != nil {
		sk = e.sk.Clone()
	}
	c.mu.Unlock()
	if sk == nil {
		v := b.Get(k)
		if v == nil {
			return nil
		}
		var err error
		if sk, err = decodeSketch(v); err != nil {
			return err
		}
	}
	if *union == nil {
		*union = sk
		return nil
	}
	return (*union).Merge(sk)
}

// forget drops the cached sketch at k (the sweeper deleted its day).
func (c *sketchCache) forget(k []byte) {
	c.mu.Lock()
	delete(c.m, string(k))
	c.mu.Unlock()
}

// appendDelta appends a day bucket's key and counts to a delta.
func appendDelta(b, k []byte, counts store.ReportCounts) []byte {
	b = append(binary.AppendUvarint(b, uint64(len(k))), k...)
	return appendCounts(binary.AppendUvarint(b, uint64(len(counts))), counts)
}

// eachDelta calls fn with each day bucket's key and counts in delta v.
func eachDelta(v []byte, fn func(k []byte, counts store.ReportCounts)) error {
	for len(v) > 0 {
		kl, n := binary.Uvarint(v)
		if n <= 0 || uint64(len(v)-n) < kl {
			return fmt.Errorf("corrupt report delta")
		}
		k := v[n : n+int(kl)]
		v = v[n+int(kl):]
		fields, n := binary.Uvarint(v)
		if n <= 0 {
			return fmt.Errorf("corrupt report delta")
		}
		v = v[n:]
		counts := make(store.ReportCounts, fields)
		for range fields {
			var err error
			if v, err = readCount(v, counts); err != nil {
				return err
			}
		}
		fn(k, counts)
	}
	return nil
}

// eachWaiting calls fn with each day bucket's key and counts of the
// deltas not folded yet, oldest first.
func eachWaiting(tx *bolt.Tx, fn func(k []byte, counts store.ReportCounts)) error {
	return tx.Bucket(bReportDeltas).ForEach(func(_, v []byte) error { return eachDelta(v, fn) })
}

// addDelta appends a batch's delta, or folds it with those waiting when
// a fold is due. Write transactions run one at a time, so s.folded and
// s.deltas need no lock; a transaction that fails after changing them
// only makes the next fold come sooner or later.
func (s *Store) addDelta(tx *bolt.Tx, delta []byte, now time.Time) error {
	if len(delta) == 0 {
		return nil
	}
	d := tx.Bucket(bReportDeltas)
	if s.deltas < maxDeltas && now.Sub(s.folded) < foldEvery && !now.Before(s.folded) {
		seq, err := d.NextSequence()
		if err != nil {
			return err
		}
		s.deltas++
		return d.Put(binary.BigEndian.AppendUint64(nil, seq), delta)
	}
	return s.foldReports(tx, delta, now)
}

// foldReports adds every delta waiting, and then delta, into its day
// buckets, in key order, and deletes them.
func (s *Store) foldReports(tx *bolt.Tx, delta []byte, now time.Time) error {
	sum := map[string]store.ReportCounts{}
	add := func(k []byte, counts store.ReportCounts) {
		if c := sum[string(k)]; c != nil {
			c.Add(counts)
		} else {
			sum[string(k)] = counts
		}
	}
	if err := eachWaiting(tx, add); err != nil {
		return err
	}
	if err := eachDelta(delta, add); err != nil {
		return err
	}
	b := tx.Bucket(bReports)
	for _, k := range slices.Sorted(maps.Keys(sum)) {
		if err := addCounts(b, []byte(k), sum[k]); err != nil {
			return err
		}
	}
	if err := tx.DeleteBucket(bReportDeltas); err != nil {
		return err
	}
	if _, err := tx.CreateBucket(bReportDeltas); err != nil {
		return err
	}
	s.folded, s.deltas = now, 0
	return nil
}

// addCounts adds counts to the day bucket at k.
func addCounts(b *bolt.Bucket, k []byte, counts store.ReportCounts) error {
	old, err := readCounts(b.Get(k))
	if err != nil {
		return err
	}
	old.Add(counts)
	return b.Put(k, appendCounts(nil, old))
}

// addClickReports counts a batch's clicks, in its transaction: its
// visitors into the cached sketches, its counts as one delta (or, when a
// fold is due, into the day buckets with the deltas before it), and
// writes the sketches due.
func (s *Store) addClickReports(tx *bolt.Tx, clicks []attribution.Click) error {
	b, now := tx.Bucket(bReports), s.now()
	days := store.ClickBuckets(clicks)
	var delta []byte
	var keys [][]byte
	for i := range days {
		d := &days[i]
		keys = keys[:0]
		for _, bk := range d.Buckets {
			k := reportKey(d.Program, d.Day, bk.Scope)
			keys = append(keys, k)
			delta = appendDelta(delta, k, bk.Counts)
		}
		for j, bk := range d.Buckets {
			if len(bk.Visitors) == 0 {
				continue
			}
			var err error
			d.VisitorsOf(j, func(t int) {
				if err == nil {
					err = s.sketches.insert(b, visitorsKey(keys[t]), bk.Visitors, now)
				}
			})
			if err != nil {
				return err
			}
		}
	}
	if err := s.addDelta(tx, delta, now); err != nil {
		return err
	}
	return s.sketches.writeDue(b, now)
}

// addCommission adds a new entry's amount to its day's commission.
func (s *Store) addCommission(tx *bolt.Tx, e *attribution.Entry) error {
	counts := store.ReportCounts{store.FieldCommission: e.Amount}
	for _, sc := range store.Scopes(e.Promoter, e.Link) {
		if err := addCounts(tx.Bucket(bReports), reportKey(e.Program, store.DayStart(e.At), sc), counts); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) CountReport(_ context.Context, id, program, promoter, link string, at time.Time, counts store.ReportCounts) error {
	if err := store.CheckReportID(id); err != nil {
		return err
	}
	if len(counts) == 0 {
		return nil
	}
	now := s.now()
	err := s.db.Update(func(tx *bolt.Tx) error {
		// Kept with the click batch ids, under a name no batch id has
		// (they are printable).
		written, err := rememberBatch(tx, "\x00r\x00"+program+"\x00"+id, now)
		if err != nil || written {
			return err
		}
		for _, sc := range store.Scopes(promoter, link) {
			if err := addCounts(tx.Bucket(bReports), reportKey(program, store.DayStart(at), sc), counts); err != nil {
				return err
			}
		}
		return nil
	})
	return translate(err)
}

func (s *Store) Report(_ context.Context, q store.ReportQuery) ([]store.ReportPeriod, error) {
	periods, err := store.ReportPeriods(q)
	if err != nil {
		return nil, err
	}
	sc := q.Scope()
	out := make([]store.ReportPeriod, len(periods))
	err = s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bReports)
		want := map[string]int{} // a day's key → its period
		for i, p := range periods {
			counts := store.ReportCounts{}
			var union *hyperloglog.Sketch
			for _, day := range p.Days {
				k := reportKey(q.Program, day, sc)
				want[string(k)] = i
				if v := b.Get(k); v != nil {
					c, err := readCounts(v)
					if err != nil {
						return err
					}
					counts.Add(c)
				}
				if err := s.sketches.merge(b, visitorsKey(k), &union); err != nil {
					return err
				}
			}
			out[i] = store.ReportPeriod{Date: p.Date, Counts: counts}
			if union != nil {
				out[i].Visitors = int64(union.Estimate())
			}
		}
		// The deltas not folded yet, read in the same transaction.
		return eachWaiting(tx, func(k []byte, counts store.ReportCounts) {
			if i, ok := want[string(k)]; ok {
				out[i].Counts.Add(counts)
			}
		})
	})
	if err != nil {
		return nil, translate(err)
	}
	return out, nil
}
