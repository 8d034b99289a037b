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

// The index of holders, one sorted set per program and promoter, in a slot
// of its own (the pair's hash tag):
//
//	refgate:holders:{PROGRAM:PROMOTER}   sorted set of page keys
//	                                     (store.Holding.Key: Since, customer), equal scores
//
// A customer's update cannot write it in its own script, which runs on the
// customer's slot: UpdateCustomer writes it right after, when the update
// changed the customer's associations (store.HoldingChanges). So it is a
// hint, not the truth: a process that stops between the two writes leaves
// it behind, and a customer outlives nothing here (its record may expire or
// be erased first). Holders therefore reads every customer it lists back,
// pipelined, and lists only those it truly holds, removing the members it
// finds stale. Program ids hold no ':' (attribution.ValidProgramID), so the
// tag names one pair.
//
// The set's TTL is the latest expiry of the associations added to it plus
// customerGrace, only ever extended: a promoter whose customers all expired
// leaves nothing behind for long.
func holdersKey(program, promoter string) string {
	return "refgate:holders:{" + program + ":" + promoter + "}"
}

// addHolding: KEYS the index. ARGV the member, its TTL in ms. The TTL is
// extended, never shortened.
var addHolding = redis.NewScript(`
redis.call('ZADD', KEYS[1], 0, ARGV[1])
local t = redis.call('PTTL', KEYS[1])
if t >= 0 and t < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if t == -1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1`)

// holdingTTL is how long the index keeps a holding added at now.
func holdingTTL(h store.Holding, now time.Time) time.Duration {
	return min(max(h.ExpiresAt.Sub(now), 0), maxWindow) + customerGrace
}

// indexHoldings applies holding changes in one pipeline: a round trip on
// one server, one per node it touches on a cluster.
func (s *Store) indexHoldings(ctx context.Context, add, remove []store.Holding, now time.Time) error {
	return translate("index holders", s.writeHoldings(ctx, add, remove, now))
}

// writeHoldings is indexHoldings answering the driver's error.
func (s *Store) writeHoldings(ctx context.Context, add, remove []store.Holding, now time.Time) error {
	if len(add) == 0 && len(remove) == 0 {
		return nil
	}
	if now.IsZero() {
		now = time.Now()
	}
	pipe := s.rdb.Pipeline()
	for _, h := range remove {
		pipe.ZRem(ctx, holdersKey(h.Program, h.Promoter), h.Key())
	}
	for _, h := range add {
		addHolding.Eval(ctx, pipe, []string{holdersKey(h.Program, h.Promoter)}, h.Key(), holdingTTL(h, now).Milliseconds())
	}
	_, err := pipe.Exec(ctx)
	return err
}

// indexHoldingsAfter is indexHoldings right after the customer's write,
// tried again while the failure may be passing and ctx has time: ZADD and
// ZREM are idempotent, and a retried request would not write the index
// again (its update, finding its own write, writes nothing). A failure it
// returns is the update's error, though the customer's write stands.
func (s *Store) indexHoldingsAfter(ctx context.Context, add, remove []store.Holding, now time.Time) error {
	for {
		err := s.writeHoldings(ctx, add, remove, now)
		if err == nil || !retryable(ctx, err) {
			return translate("index holders", err)
		}
		select {
		case <-ctx.Done():
			return errors.Join(ctx.Err(), translate("index holders", err))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Holders reads pages of the index and the customers they name, until it
// has limit customers truly held or the index ends.
func (s *Store) Holders(ctx context.Context, program, promoter string, now time.Time, cursor string, limit int) ([]store.Holder, string, error) {
	key := holdersKey(program, promoter)
	var out []store.Holder
	var stale []any
	defer func() {
		if len(stale) > 0 {
			// Stale for good (store.Holds): removing it now loses
			// nothing, and a failure here only leaves it for the next
			// read.
			s.rdb.ZRem(ctx, key, stale...)
		}
	}()
	for {
		members, next, err := s.pageMembers(ctx, key, cursor, limit, time.Time{}, time.Time{})
		if err != nil || len(members) == 0 {
			return out, "", err
		}
		pipe := s.rdb.Pipeline()
		reads := make([]*redis.SliceCmd, len(members))
		for i, m := range members {
			reads[i] = pipe.HMGet(ctx, customerKey(store.PageID(m)), "s", "e")
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return nil, "", translate("read holders", err)
		}
		for i, m := range members {
			id := store.PageID(m)
			c := attribution.Customer{ID: id}
			vals := reads[i].Val()
			if js, ok := vals[0].(string); ok && vals[1] == nil {
				if err := json.Unmarshal([]byte(js), &c); err != nil {
					return nil, "", fmt.Errorf("corrupt customer in the holders of %s: %w", promoter, err)
				}
			}
			a, ok := store.Holds(&c, program, promoter, m, now)
			if !ok {
				stale = append(stale, m)
				continue
			}
			if len(out) == limit {
				last := out[limit-1]
				return out, store.PageKey(last.Assoc.Since, last.Customer), nil
			}
			out = append(out, store.Holder{Customer: id, Assoc: a})
		}
		if next == "" {
			return out, "", nil
		}
		if len(out) == limit {
			last := out[limit-1]
			return out, store.PageKey(last.Assoc.Since, last.Customer), nil
		}
		cursor = next
	}
}

// eraseHoldings removes customer id from the holders' indexes of c's
// associations and of the binds its decision logs name: with the index a
// hint, an earlier holder's may still name it.
func (s *Store) eraseHoldings(ctx context.Context, c *attribution.Customer, id string, logs map[string][]string) error {
	var hs []store.Holding
	if c != nil {
		for _, h := range store.Holdings(c) {
			hs = append(hs, h)
		}
	}
	for program, raw := range logs {
		for _, r := range raw {
			var d attribution.Decision
			if json.Unmarshal([]byte(r), &d) == nil && d.Promoter != "" &&
				(d.Outcome == attribution.DecisionCreated || d.Outcome == attribution.DecisionOverridden) {
				hs = append(hs, store.Holding{Program: program, Promoter: d.Promoter, Customer: id, Since: d.At})
			}
		}
	}
	return s.indexHoldings(ctx, nil, hs, time.Time{})
}
