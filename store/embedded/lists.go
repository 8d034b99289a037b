package embedded

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/store"
)

// bLinkIndex holds the links' page keys (store.LinkPageKey), written in
// the link's own transaction, under four prefixes:
//
//	a 0x00 PAGEKEY                          every link
//	p 0x00 PROGRAM 0x00 PAGEKEY             a program's
//	m 0x00 PROMOTER 0x00 PAGEKEY            a promoter's
//	b 0x00 PROGRAM 0x00 PROMOTER 0x00 PAGEKEY  a program's of one promoter
//
// Programs and promoters need none: their buckets are keyed by id, which is
// the lists' order. A deleted link's keys are removed with the deletion.
var bLinkIndex = []byte("linkindex")

// linkIndexPrefix is the prefix Links reads for a program and a promoter
// ("" for any).
func linkIndexPrefix(program, promoter string) string {
	switch {
	case program != "" && promoter != "":
		return "b\x00" + program + "\x00" + promoter + "\x00"
	case program != "":
		return "p\x00" + program + "\x00"
	case promoter != "":
		return "m\x00" + promoter + "\x00"
	}
	return "a\x00"
}

// indexLink writes (or, with del, removes) l's index keys.
func indexLink(tx *bolt.Tx, l *attribution.Link, del bool) error {
	b := tx.Bucket(bLinkIndex)
	pk := store.LinkPageKey(l)
	for _, p := range []string{linkIndexPrefix("", ""), linkIndexPrefix(l.Program, ""), linkIndexPrefix("", l.Promoter), linkIndexPrefix(l.Program, l.Promoter)} {
		var err error
		if del {
			err = b.Delete([]byte(p + pk))
		} else {
			err = b.Put([]byte(p+pk), []byte{})
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// indexLinks indexes every link not deleted: what a file written before
// the index existed needs, once, when it is opened.
func indexLinks(tx *bolt.Tx) error {
	return tx.Bucket(bLinks).ForEach(func(k, v []byte) error {
		var l attribution.Link
		if err := json.Unmarshal(v, &l); err != nil {
			return fmt.Errorf("corrupt link %q: %w", k, err)
		}
		if l.Deleted {
			return nil
		}
		return indexLink(tx, &l, false)
	})
}

// listByID lists up to limit values of bucket after cursor, by key.
func listByID[T any](s *Store, bucket []byte, cursor string, limit int) ([]T, string, error) {
	if err := store.CheckListLimit(limit); err != nil {
		return nil, "", err
	}
	if err := store.IDCursor(cursor); err != nil {
		return nil, "", err
	}
	out := make([]T, 0, min(limit, 128))
	next := ""
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucket).Cursor()
		k, v := c.First()
		if cursor != "" {
			k, v = c.Seek([]byte(cursor))
			if k != nil && string(k) == cursor {
				k, v = c.Next()
			}
		}
		for ; k != nil; k, v = c.Next() {
			if len(out) == limit {
				next = cursor
				return nil
			}
			var x T
			if err := json.Unmarshal(v, &x); err != nil {
				return fmt.Errorf("corrupt value at %q: %w", k, err)
			}
			out = append(out, x)
			cursor = string(k)
		}
		return nil
	})
	if err != nil {
		return nil, "", translate(err)
	}
	return out, next, nil
}

func (s *Store) Programs(_ context.Context, cursor string, limit int) ([]attribution.Program, string, error) {
	return listByID[attribution.Program](s, bPrograms, cursor, limit)
}

func (s *Store) Promoters(_ context.Context, cursor string, limit int) ([]attribution.Promoter, string, error) {
	return listByID[attribution.Promoter](s, bPromoters, cursor, limit)
}

func (s *Store) Links(_ context.Context, q store.LinkQuery) ([]attribution.Link, string, error) {
	lo, hi, err := store.PageRange(q.Cursor, q.Limit, time.Time{}, time.Time{})
	if err != nil {
		return nil, "", err
	}
	out := make([]attribution.Link, 0, min(q.Limit, 128))
	var next string
	err = s.db.View(func(tx *bolt.Tx) error {
		links := tx.Bucket(bLinks)
		var keys []string
		keys, next = page(revRange(tx.Bucket(bLinkIndex), linkIndexPrefix(q.Program, q.Promoter), lo, hi, q.Limit+1), q.Limit)
		for _, pk := range keys {
			v := links.Get([]byte(store.PageID(pk)))
			if v == nil {
				return fmt.Errorf("link index names %s, which is not there", pk)
			}
			var l attribution.Link
			if err := json.Unmarshal(v, &l); err != nil {
				return fmt.Errorf("corrupt link %q: %w", pk, err)
			}
			out = append(out, l)
		}
		return nil
	})
	if err != nil {
		return nil, "", translate(err)
	}
	return out, next, nil
}

// UpdateLink runs fn in the write transaction: no other write comes in
// between, so fn is called once.
func (s *Store) UpdateLink(_ context.Context, code string, fn func(l *attribution.Link) error) (*attribution.Link, error) {
	var out *attribution.Link
	err := s.db.Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bLinks)
		b := bk.Get([]byte(code))
		if b == nil {
			return store.ErrNotFound
		}
		l := new(attribution.Link)
		if err := json.Unmarshal(b, l); err != nil {
			return err
		}
		if l.Deleted {
			return store.ErrNotFound
		}
		if err := fn(l); err != nil {
			return err
		}
		nb, err := json.Marshal(l)
		if err != nil {
			return err
		}
		out = l
		return bk.Put([]byte(code), nb)
	})
	if err != nil {
		return nil, translate(err)
	}
	s.notify(store.Invalidation{Kind: store.Link, ID: code})
	return out, nil
}
