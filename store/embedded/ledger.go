package embedded

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/store"
)

// The ledger is one bucket per program inside bLedger, each holding these
// buckets (page keys are store.PageKey: time and id, sorted):
//
//	e    entry id → Entry JSON (its Statement set when settled)
//	a    promoter 0x00 page key (At, id) → empty: a promoter's entries by time
//	u    promoter 0x00 page key (AvailableAt, id) → empty: the unsettled ones
//	p    promoter → empty: promoters with unsettled entries
//	m    mark → time (8 bytes)
//	mt   time (8 bytes) mark → empty: the marks, oldest first
//	s    statement id → Statement JSON
//	sl   page key (CreatedAt, id) → empty: the program's statements
//	sp   promoter 0x00 page key (CreatedAt, id) → empty: a promoter's
//	se   statement id 0x00 page key (At, entry id) → empty: its entries
//
// Every method is one transaction: bbolt has one writer at a time, so a
// settlement run cannot interleave with another, nor with a post.
var bLedger = []byte("ledger")

var (
	lEntries    = []byte("e")
	lByTime     = []byte("a")
	lUnsettled  = []byte("u")
	lPromoters  = []byte("p")
	lMarks      = []byte("m")
	lMarkTimes  = []byte("mt")
	lStatements = []byte("s")
	lStmtList   = []byte("sl")
	lStmtByProm = []byte("sp")
	lStmtItems  = []byte("se")
)

// ledger is one program's ledger buckets in a transaction.
type ledger struct {
	e, a, u, p, m, mt, s, sl, sp, se *bolt.Bucket
}

// ledgerOf returns program's ledger; nil when it has none and create is
// false (a read), created on the way otherwise.
func ledgerOf(tx *bolt.Tx, program string, create bool) (*ledger, error) {
	root := tx.Bucket(bLedger)
	b := root.Bucket([]byte(program))
	if b == nil {
		if !create {
			return nil, nil
		}
		var err error
		if b, err = root.CreateBucket([]byte(program)); err != nil {
			return nil, err
		}
		for _, name := range [][]byte{lEntries, lByTime, lUnsettled, lPromoters, lMarks, lMarkTimes, lStatements, lStmtList, lStmtByProm, lStmtItems} {
			if _, err := b.CreateBucket(name); err != nil {
				return nil, err
			}
		}
	}
	return &ledger{e: b.Bucket(lEntries), a: b.Bucket(lByTime), u: b.Bucket(lUnsettled), p: b.Bucket(lPromoters),
		m: b.Bucket(lMarks), mt: b.Bucket(lMarkTimes), s: b.Bucket(lStatements), sl: b.Bucket(lStmtList),
		sp: b.Bucket(lStmtByProm), se: b.Bucket(lStmtItems)}, nil
}

// under is prefix 0x00 key, a new slice (bbolt keeps keys until the
// transaction ends).
func under(prefix, key string) []byte {
	return []byte(prefix + "\x00" + key)
}

// markTime is t as 8 bytes that sort as the times do.
func markTime(t time.Time) []byte {
	return binary.BigEndian.AppendUint64(nil, uint64(t.UnixNano())^1<<63)
}

func (s *Store) MarkLedger(_ context.Context, program, mark string, at time.Time) error {
	if err := store.CheckMark(mark); err != nil {
		return err
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		l, err := ledgerOf(tx, program, true)
		if err != nil {
			return err
		}
		t := markTime(at)
		if old := l.m.Get([]byte(mark)); old != nil {
			if bytes.Compare(old, t) >= 0 {
				return nil // the latest stays: see store.Store.UnmarkLedger
			}
			if err := l.mt.Delete(append(bytes.Clone(old), mark...)); err != nil {
				return err
			}
		}
		if err := l.m.Put([]byte(mark), t); err != nil {
			return err
		}
		return l.mt.Put(append(bytes.Clone(t), mark...), []byte{})
	})
	return translate(err)
}

func (s *Store) LedgerMarks(_ context.Context, program string, before time.Time, n int) ([]string, error) {
	if n < 1 {
		return nil, fmt.Errorf("ledger marks: want n ≥ 1, not %d", n)
	}
	var out []string
	err := s.db.View(func(tx *bolt.Tx) error {
		l, err := ledgerOf(tx, program, false)
		if l == nil || err != nil {
			return err
		}
		end := markTime(before)
		c := l.mt.Cursor()
		for k, _ := c.First(); k != nil && len(out) < n && bytes.Compare(k[:8], end) < 0; k, _ = c.Next() {
			out = append(out, string(k[8:]))
		}
		return nil
	})
	return out, translate(err)
}

func (s *Store) UnmarkLedger(_ context.Context, program, mark string, before time.Time) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		l, err := ledgerOf(tx, program, false)
		if l == nil || err != nil {
			return err
		}
		if t := l.m.Get([]byte(mark)); !before.IsZero() && t != nil && bytes.Compare(t, markTime(before)) >= 0 {
			return nil // set again since the caller read it
		}
		return l.unmark(mark)
	})
	return translate(err)
}

func (l *ledger) unmark(mark string) error {
	t := l.m.Get([]byte(mark))
	if t == nil {
		return nil
	}
	if err := l.mt.Delete(append(bytes.Clone(t), mark...)); err != nil {
		return err
	}
	return l.m.Delete([]byte(mark))
}

func (l *ledger) entry(id string) (*attribution.Entry, error) {
	v := l.e.Get([]byte(id))
	if v == nil {
		return nil, store.ErrNotFound
	}
	e := new(attribution.Entry)
	if err := json.Unmarshal(v, e); err != nil {
		return nil, fmt.Errorf("corrupt ledger entry %s: %w", id, err)
	}
	return e, nil
}

func (s *Store) PostEntry(_ context.Context, e *attribution.Entry, mark string) (*attribution.Entry, bool, error) {
	if err := store.CheckPost(e, mark); err != nil {
		return nil, false, err
	}
	js, err := json.Marshal(e)
	if err != nil {
		return nil, false, err
	}
	var stored *attribution.Entry
	created := false
	err = s.db.Update(func(tx *bolt.Tx) error {
		stored, created = nil, false
		l, err := ledgerOf(tx, e.Program, true)
		if err != nil {
			return err
		}
		if mark != "" {
			if err := l.unmark(mark); err != nil {
				return err
			}
		}
		if stored, err = l.entry(e.ID); err != store.ErrNotFound {
			return err
		}
		if err := l.e.Put([]byte(e.ID), js); err != nil {
			return err
		}
		if err := l.a.Put(under(e.Promoter, store.PageKey(e.At, e.ID)), []byte{}); err != nil {
			return err
		}
		if err := l.u.Put(under(e.Promoter, store.PageKey(e.AvailableAt, e.ID)), []byte{}); err != nil {
			return err
		}
		if err := l.p.Put([]byte(e.Promoter), []byte{}); err != nil {
			return err
		}
		if err := s.addCommission(tx, e); err != nil {
			return err
		}
		c := *e
		stored, created = &c, true
		return nil
	})
	if err != nil {
		return nil, false, translate(err)
	}
	if !created && !e.SameMoney(stored) {
		return stored, false, fmt.Errorf("ledger entry %s of %s is %s %d %s to %s: %w", e.ID, e.Program,
			stored.Kind, stored.Amount, stored.Currency, stored.Promoter, store.ErrEntryConflict)
	}
	return stored, created, nil
}

func (s *Store) Entry(_ context.Context, program, id string) (*attribution.Entry, error) {
	var e *attribution.Entry
	err := s.db.View(func(tx *bolt.Tx) error {
		l, err := ledgerOf(tx, program, false)
		if err != nil {
			return err
		}
		if l == nil {
			return store.ErrNotFound
		}
		e, err = l.entry(id)
		return err
	})
	return e, translate(err)
}

// revRange returns up to n page keys under prefix of b, newest first, from
// below hi (exclusive; "" for no bound) down to lo (inclusive; "" for none).
func revRange(b *bolt.Bucket, prefix string, lo, hi string, n int) []string {
	var out []string
	p := []byte(prefix)
	upper := append(bytes.Clone(p), hi...)
	if hi == "" {
		upper = append(upper, 0xff) // beyond every page key: they are ASCII
	}
	c := b.Cursor()
	k, _ := c.Seek(upper)
	if k == nil {
		k, _ = c.Last()
	} else {
		k, _ = c.Prev() // Seek found the first key ≥ upper
	}
	for ; k != nil && bytes.HasPrefix(k, p) && len(out) < n; k, _ = c.Prev() {
		pk := string(k[len(p):])
		if pk < lo {
			break
		}
		out = append(out, pk)
	}
	return out
}

// page cuts keys (up to limit+1 of them) to a page and its next cursor.
func page(keys []string, limit int) ([]string, string) {
	if len(keys) > limit {
		return keys[:limit], keys[limit-1]
	}
	return keys, ""
}

func (s *Store) Entries(_ context.Context, program, promoter string, q store.EntryQuery) ([]attribution.Entry, string, error) {
	lo, hi, err := store.PageRange(q.Cursor, q.Limit, q.From, q.To)
	if err != nil {
		return nil, "", err
	}
	var out []attribution.Entry
	var next string
	err = s.db.View(func(tx *bolt.Tx) error {
		l, err := ledgerOf(tx, program, false)
		if l == nil || err != nil {
			return err
		}
		var keys []string
		keys, next = page(revRange(l.a, promoter+"\x00", lo, hi, q.Limit+1), q.Limit)
		for _, k := range keys {
			e, err := l.entry(store.PageID(k))
			if err != nil {
				return fmt.Errorf("ledger index of %s names %s: %w", promoter, k, err)
			}
			out = append(out, *e)
		}
		return nil
	})
	if err != nil {
		return nil, "", translate(err)
	}
	return out, next, nil
}

func (s *Store) LedgerPromoters(_ context.Context, program string) ([]string, error) {
	var out []string
	err := s.db.View(func(tx *bolt.Tx) error {
		l, err := ledgerOf(tx, program, false)
		if l == nil || err != nil {
			return err
		}
		return l.p.ForEach(func(k, _ []byte) error {
			out = append(out, string(k))
			return nil
		})
	})
	return out, translate(err)
}

// unsettled returns promoter's unsettled entries, those with AvailableAt
// up to through only unless through is zero.
func (l *ledger) unsettled(promoter string, through time.Time) ([]attribution.Entry, error) {
	var out []attribution.Entry
	prefix := []byte(promoter + "\x00")
	end := ""
	if !through.IsZero() {
		end = store.TimeKey(through)
	}
	c := l.u.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		pk := string(k[len(prefix):])
		if end != "" && pk[:20] > end {
			break
		}
		e, err := l.entry(store.PageID(pk))
		if err != nil {
			return nil, fmt.Errorf("unsettled index of %s names %s: %w", promoter, pk, err)
		}
		out = append(out, *e)
	}
	return out, nil
}

func (s *Store) Settle(_ context.Context, program, promoter string, through time.Time, minPayout int64, now time.Time) ([]attribution.Statement, error) {
	out := []attribution.Statement{}
	err := s.db.Update(func(tx *bolt.Tx) error {
		out = out[:0]
		l, err := ledgerOf(tx, program, false)
		if l == nil || err != nil {
			return err
		}
		due, err := l.unsettled(promoter, through)
		if err != nil {
			return err
		}
		plan, err := attribution.PlanSettlement(program, promoter, due, through, minPayout, now)
		if err != nil || len(plan) == 0 {
			return err
		}
		byID := make(map[string]*attribution.Entry, len(due))
		for i := range due {
			byID[due[i].ID] = &due[i]
		}
		for _, st := range plan {
			sid := st.Statement.ID
			if err := putJSON(l.s, []byte(sid), &st.Statement); err != nil {
				return err
			}
			pk := store.PageKey(st.Statement.CreatedAt, sid)
			if err := l.sl.Put([]byte(pk), []byte{}); err != nil {
				return err
			}
			if err := l.sp.Put(under(promoter, pk), []byte{}); err != nil {
				return err
			}
			for _, id := range st.Entries {
				e := byID[id]
				e.Statement = sid
				if err := putJSON(l.e, []byte(id), e); err != nil {
					return err
				}
				if err := l.u.Delete(under(promoter, store.PageKey(e.AvailableAt, id))); err != nil {
					return err
				}
				if err := l.se.Put(under(sid, store.PageKey(e.At, id)), []byte{}); err != nil {
					return err
				}
			}
			out = append(out, st.Statement)
		}
		prefix := []byte(promoter + "\x00")
		if k, _ := l.u.Cursor().Seek(prefix); k == nil || !bytes.HasPrefix(k, prefix) {
			return l.p.Delete([]byte(promoter))
		}
		return nil
	})
	if err != nil {
		return nil, translate(err)
	}
	return out, nil
}

func (l *ledger) statement(id string) (*attribution.Statement, error) {
	v := l.s.Get([]byte(id))
	if v == nil {
		return nil, store.ErrNotFound
	}
	st := new(attribution.Statement)
	if err := json.Unmarshal(v, st); err != nil {
		return nil, fmt.Errorf("corrupt statement %s: %w", id, err)
	}
	return st, nil
}

// viewStatement runs fn on the ledger of statement id's program; an id
// that names none is ErrNotFound.
func (s *Store) viewStatement(id string, fn func(l *ledger) error) error {
	program, ok := attribution.StatementProgram(id)
	if !ok {
		return store.ErrNotFound
	}
	return translate(s.db.View(func(tx *bolt.Tx) error {
		l, err := ledgerOf(tx, program, false)
		if err != nil {
			return err
		}
		if l == nil {
			return store.ErrNotFound
		}
		return fn(l)
	}))
}

func (s *Store) Statement(_ context.Context, id string) (*attribution.Statement, error) {
	var st *attribution.Statement
	err := s.viewStatement(id, func(l *ledger) (err error) {
		st, err = l.statement(id)
		return err
	})
	return st, err
}

func (s *Store) Statements(_ context.Context, program, promoter, cursor string, limit int) ([]attribution.Statement, string, error) {
	lo, hi, err := store.PageRange(cursor, limit, time.Time{}, time.Time{})
	if err != nil {
		return nil, "", err
	}
	var out []attribution.Statement
	var next string
	err = s.db.View(func(tx *bolt.Tx) error {
		l, err := ledgerOf(tx, program, false)
		if l == nil || err != nil {
			return err
		}
		b, prefix := l.sl, ""
		if promoter != "" {
			b, prefix = l.sp, promoter+"\x00"
		}
		var keys []string
		keys, next = page(revRange(b, prefix, lo, hi, limit+1), limit)
		for _, k := range keys {
			st, err := l.statement(store.PageID(k))
			if err != nil {
				return fmt.Errorf("statement list names %s: %w", k, err)
			}
			out = append(out, *st)
		}
		return nil
	})
	if err != nil {
		return nil, "", translate(err)
	}
	return out, next, nil
}

func (s *Store) StatementEntries(_ context.Context, id string) ([]attribution.Entry, error) {
	var out []attribution.Entry
	err := s.viewStatement(id, func(l *ledger) error {
		if l.s.Get([]byte(id)) == nil {
			return store.ErrNotFound
		}
		prefix := []byte(id + "\x00")
		c := l.se.Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			e, err := l.entry(store.PageID(string(k[len(prefix):])))
			if err != nil {
				return fmt.Errorf("statement %s names %s: %w", id, k, err)
			}
			out = append(out, *e)
		}
		return nil
	})
	return out, err
}

func (s *Store) MarkPaid(_ context.Context, id, reference string, at time.Time) (*attribution.Statement, error) {
	if err := store.CheckReference(reference); err != nil {
		return nil, err
	}
	program, ok := attribution.StatementProgram(id)
	if !ok {
		return nil, store.ErrNotFound
	}
	var st *attribution.Statement
	var payErr error
	err := s.db.Update(func(tx *bolt.Tx) error {
		l, err := ledgerOf(tx, program, false)
		if err != nil {
			return err
		}
		if l == nil {
			return store.ErrNotFound
		}
		if st, err = l.statement(id); err != nil {
			return err
		}
		changed, err := store.Pay(st, reference, at)
		if !changed {
			payErr = err
			return nil
		}
		return putJSON(l.s, []byte(id), st)
	})
	if err != nil {
		return nil, translate(err)
	}
	return st, payErr
}

func (s *Store) Balance(_ context.Context, program, promoter string, now time.Time) (map[string]attribution.Balance, error) {
	var entries []attribution.Entry
	var statements []attribution.Statement
	err := s.db.View(func(tx *bolt.Tx) error {
		l, err := ledgerOf(tx, program, false)
		if l == nil || err != nil {
			return err
		}
		if entries, err = l.unsettled(promoter, time.Time{}); err != nil {
			return err
		}
		prefix := []byte(promoter + "\x00")
		c := l.sp.Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			st, err := l.statement(store.PageID(string(k[len(prefix):])))
			if err != nil {
				return fmt.Errorf("statement list of %s names %s: %w", promoter, k, err)
			}
			statements = append(statements, *st)
		}
		return nil
	})
	if err != nil {
		return nil, translate(err)
	}
	return attribution.Balances(entries, statements, now)
}
