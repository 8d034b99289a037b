package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/store"
)

// The lists are served from sorted sets written with each create or put,
// never from SCAN or KEYS. Every member has score 0, so a set sorts by
// bytes (ZRANGEBYLEX); each index is one key, hence one slot on a cluster:
//
//	refgate:index:programs              program ids
//	refgate:index:promoters             promoter ids
//	refgate:index:links                 link page keys (store.LinkPageKey: created_at, code)
//	refgate:index:links:program:P       the same, of program P's links
//	refgate:index:links:promoter:A      of promoter A's links
//	refgate:index:links:pair:P:A        of P's links of A (program ids hold no ':')
//
// An entry is written before its object, so an object that exists is
// listed; an entry whose object is missing (its write failed after the
// entry's) or does not match it (a create that found its code taken) is
// skipped when read. A deleted link's entries are removed, and a deleted
// link is skipped anyway. Objects are read back with one pipelined GET
// per page (a cluster pipeline goes to each node once): an MGET could not
// span slots.
//
// Objects written before the indexes existed have no entry: they appear
// in the lists once they are written again (a PUT; for a link, a PATCH).
const (
	programIndex  = "refgate:index:programs"
	promoterIndex = "refgate:index:promoters"
	linkIndex     = "refgate:index:links"
)

// linkIndexKey is the index Links reads for a program and a promoter (""
// for any).
func linkIndexKey(program, promoter string) string {
	switch {
	case program != "" && promoter != "":
		return linkIndex + ":pair:" + program + ":" + promoter
	case program != "":
		return linkIndex + ":program:" + program
	case promoter != "":
		return linkIndex + ":promoter:" + promoter
	}
	return linkIndex
}

// linkIndexKeys are the four indexes a link is in.
func linkIndexKeys(l *attribution.Link) []string {
	return []string{linkIndex, linkIndexKey(l.Program, ""), linkIndexKey("", l.Promoter), linkIndexKey(l.Program, l.Promoter)}
}

// index adds member to every key, in one pipeline.
func (s *Store) index(ctx context.Context, member string, keys ...string) error {
	pipe := s.rdb.Pipeline()
	for _, k := range keys {
		pipe.ZAdd(ctx, k, redis.Z{Member: member})
	}
	_, err := pipe.Exec(ctx)
	return translate("index", err)
}

// unindex removes member from every key, in one pipeline.
func (s *Store) unindex(ctx context.Context, member string, keys ...string) error {
	pipe := s.rdb.Pipeline()
	for _, k := range keys {
		pipe.ZRem(ctx, k, member)
	}
	_, err := pipe.Exec(ctx)
	return translate("unindex", err)
}

// getMany reads keys with one pipeline of GETs; a missing key is nil.
func (s *Store) getMany(ctx context.Context, keys []string) ([][]byte, error) {
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, len(keys))
	for i, k := range keys {
		cmds[i] = pipe.Get(ctx, k)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, translate("list", err)
	}
	out := make([][]byte, len(keys))
	for i, c := range cmds {
		b, err := c.Bytes()
		switch {
		case errors.Is(err, redis.Nil):
		case err != nil:
			return nil, translate("list", err)
		default:
			out[i] = b
		}
	}
	return out, nil
}

// listIndex reads the members of the sorted set key after cursor
// (exclusive; "" from the start), ascending or (rev) descending, and their
// objects (objKey of each member), and keeps the objects keep accepts,
// until limit are kept or the set ends. It returns them and the next
// cursor: the member of the last object kept when more may follow.
func listIndex[T any](ctx context.Context, s *Store, key, cursor string, limit int, rev bool,
	objKey func(member string) string, keep func(v *T, member string) bool) ([]T, string, error) {
	out := make([]T, 0, min(limit, 128))
	last := ""
	for {
		by := &redis.ZRangeBy{Min: "-", Max: "+", Count: int64(limit - len(out) + 1)}
		var members []string
		var err error
		if rev {
			if cursor != "" {
				by.Max = "(" + cursor
			}
			members, err = s.rdb.ZRevRangeByLex(ctx, key, by).Result()
		} else {
			if cursor != "" {
				by.Min = "(" + cursor
			}
			members, err = s.rdb.ZRangeByLex(ctx, key, by).Result()
		}
		if err != nil {
			return nil, "", translate("list", err)
		}
		if len(members) == 0 {
			return out, "", nil
		}
		keys := make([]string, len(members))
		for i, m := range members {
			keys[i] = objKey(m)
		}
		vals, err := s.getMany(ctx, keys)
		if err != nil {
			return nil, "", err
		}
		for i, b := range vals {
			if len(out) == limit {
				// One more member than the page holds: there may be more.
				return out, last, nil
			}
			if b == nil {
				continue
			}
			v := new(T)
			if err := json.Unmarshal(b, v); err != nil {
				return nil, "", fmt.Errorf("corrupt value at %s: %w", keys[i], err)
			}
			if keep(v, members[i]) {
				out = append(out, *v)
				last = members[i]
			}
		}
		if int64(len(members)) < by.Count {
			return out, "", nil
		}
		cursor = members[len(members)-1]
	}
}

func (s *Store) Programs(ctx context.Context, cursor string, limit int) ([]attribution.Program, string, error) {
	if err := store.CheckListLimit(limit); err != nil {
		return nil, "", err
	}
	if err := store.IDCursor(cursor); err != nil {
		return nil, "", err
	}
	return listIndex(ctx, s, programIndex, cursor, limit, false, programKey,
		func(p *attribution.Program, id string) bool { return p.ID == id })
}

func (s *Store) Promoters(ctx context.Context, cursor string, limit int) ([]attribution.Promoter, string, error) {
	if err := store.CheckListLimit(limit); err != nil {
		return nil, "", err
	}
	if err := store.IDCursor(cursor); err != nil {
		return nil, "", err
	}
	return listIndex(ctx, s, promoterIndex, cursor, limit, false, promoterKey,
		func(p *attribution.Promoter, id string) bool { return p.ID == id })
}

func (s *Store) Links(ctx context.Context, q store.LinkQuery) ([]attribution.Link, string, error) {
	if _, _, err := store.PageRange(q.Cursor, q.Limit, time.Time{}, time.Time{}); err != nil {
		return nil, "", err
	}
	return listIndex(ctx, s, linkIndexKey(q.Program, q.Promoter), q.Cursor, q.Limit, true,
		func(pk string) string { return linkKey(store.PageID(pk)) },
		func(l *attribution.Link, pk string) bool { return store.LinkMatches(l, q, pk) })
}

// casLink replaces a link's value with ARGV[1] only if it still is
// ARGV[2], and publishes its invalidation first, as setAndPublish does.
// ARGV: new value, expected value, channel, message. It answers 1 when
// written, 0 when the value changed since it was read, -1 when the link is
// gone.
var casLink = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if not v then return -1 end
if v ~= ARGV[2] then return 0 end
redis.call('PUBLISH', ARGV[3], ARGV[4])
redis.call('SET', KEYS[1], ARGV[1])
return 1`)

// updateAttempts bounds UpdateLink's compare-and-set rounds: each loses
// only to another write of the same link, which admins make by hand.
const updateAttempts = 16

// UpdateLink reads the link, applies fn and writes the result only if the
// link is unchanged since it was read (trying again otherwise), so that
// two concurrent updates of different fields both stay.
func (s *Store) UpdateLink(ctx context.Context, code string, fn func(l *attribution.Link) error) (*attribution.Link, error) {
	key := linkKey(code)
	inv := store.Invalidation{Kind: store.Link, ID: code}
	for range updateAttempts {
		old, err := s.rdb.Get(ctx, key).Bytes()
		if err != nil {
			return nil, translate("get", err)
		}
		l := new(attribution.Link)
		if err := json.Unmarshal(old, l); err != nil {
			return nil, fmt.Errorf("corrupt value at %s: %w", key, err)
		}
		if l.Deleted {
			return nil, store.ErrNotFound
		}
		if err := fn(l); err != nil {
			return nil, err
		}
		b, err := json.Marshal(l)
		if err != nil {
			return nil, err
		}
		// Its index entries first, as CreateLink's: a link written before
		// the indexes existed is listed from its first update on.
		if err := s.index(ctx, store.LinkPageKey(l), linkIndexKeys(l)...); err != nil {
			return nil, err
		}
		n, err := casLink.Run(ctx, s.rdb, []string{key}, b, old, Channel, inv.String()).Int()
		switch {
		case err != nil:
			return nil, translate("update link", err)
		case n == 1:
			return l, nil
		case n < 0:
			return nil, store.ErrNotFound
		}
	}
	return nil, store.ErrConflict
}
