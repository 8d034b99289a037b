package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/store"
)

// Customer keys share the customer's hash tag, so one customer's update is
// one slot on a cluster:
//
//	refgate:customer:{C}            hash v (version), s (Customer JSON), e (erasure unfinished)
//	refgate:orders:{C}              hash order id → Order JSON
//	refgate:decisions:{C}:PROGRAM   list of Decision JSON, newest first, capped
//	refgate:decisionlogs:{C}        set of the programs C has a decision log in
//	refgate:order:{ORDER}           the customer an order belongs to
//	refgate:clickuse:{CLICK}        hash customer → id of the claim that bound it
func customerKey(id string) string { return "refgate:customer:{" + id + "}" }
func ordersKey(id string) string   { return "refgate:orders:{" + id + "}" }
func decisionsKey(id, program string) string {
	return "refgate:decisions:{" + id + "}:" + program
}
func decisionLogsKey(id string) string { return "refgate:decisionlogs:{" + id + "}" }
func orderIdxKey(order string) string  { return "refgate:order:{" + order + "}" }
func clickUseKey(click string) string  { return "refgate:clickuse:{" + click + "}" }

// casCustomer writes a customer update if the version is still the one read.
// Why compare-and-set with a version rather than WATCH/MULTI or a Redis
// Function: the rules stay in Go, in one place (attribution), and run
// between the read and this write; WATCH would pin a connection per update
// for that time, and a script holding the rules would duplicate them in Lua.
// The script only checks the version and writes.
//
// An erasure marks the customer and bumps its version first, so that an
// update that read it before fails here, and one that reads it after sees
// the mark (ErrErasing): the script needs no check of its own.
//
// The customer, its decision logs and the set of their programs share one
// lifetime, set with every update (customerTTL): for ever once the customer
// paid or is agent-served (attribution.Customer.KeepUntil), else until its
// latest association expires plus customerGrace. Orders (and the order
// index) have no TTL: they are money records, and a retried order must find
// its decision however late it comes.
//
// KEYS: customer, orders, decision-log programs, then one decisions key per
// decision. ARGV: version read ("" if none), new version, customer JSON (""
// to keep), order id, order JSON ("" for none), decisions to keep, the TTL
// in ms (-1: none; "": keep the customer's and give it to the others), then
// the decisions' JSON, oldest first, then their programs in the same order.
var casCustomer = redis.NewScript(`
local v = redis.call('HGET', KEYS[1], 'v') or ''
if v ~= ARGV[1] then return 0 end
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'v', ARGV[2], 's', ARGV[3]) else redis.call('HSET', KEYS[1], 'v', ARGV[2]) end
if ARGV[5] ~= '' then redis.call('HSET', KEYS[2], ARGV[4], ARGV[5]) end
local ttl = tonumber(ARGV[7]) or redis.call('PTTL', KEYS[1])
local function keep(k)
  if ttl > 0 then redis.call('PEXPIRE', k, ttl) elseif ttl == -1 then redis.call('PERSIST', k) end
end
keep(KEYS[1])
local n = #KEYS - 3
for i = 4, #KEYS do
  redis.call('LPUSH', KEYS[i], ARGV[i + 4])
  redis.call('LTRIM', KEYS[i], 0, tonumber(ARGV[6]) - 1)
  redis.call('SADD', KEYS[3], ARGV[i + 4 + n])
  keep(KEYS[i])
end
if n > 0 then keep(KEYS[3]) end
return 1`)

// customerGrace is how long a customer no longer needed (a never-paid
// customer whose associations expired) is kept: a week to look up why an
// association ended or explain a decision disputed after its window.
const customerGrace = 7 * 24 * time.Hour

// maxWindow is the longest window any record serves: cookie_days,
// protect_days and associate_days are at most 365, and a token expiring
// more than 365 days after its issue does not bind.
const maxWindow = 365 * 24 * time.Hour

// customerTTL is the TTL argument of casCustomer for u: "" when u does not
// say (no customer, or no time), "-1" for a customer kept for ever.
func customerTTL(u *store.CustomerUpdate) string {
	if u.Customer == nil || u.Now.IsZero() {
		return ""
	}
	until, forever := u.Customer.KeepUntil(u.Now)
	if forever {
		return "-1"
	}
	return strconv.FormatInt((min(max(until.Sub(u.Now), 0), maxWindow) + customerGrace).Milliseconds(), 10)
}

// Customer answers ErrNotFound for a customer whose erasure is unfinished:
// it was asked to be forgotten.
func (s *Store) Customer(ctx context.Context, id string) (*attribution.Customer, error) {
	vals, err := s.rdb.HMGet(ctx, customerKey(id), "s", "e").Result()
	if err != nil {
		return nil, translate("hmget", err)
	}
	js, ok := vals[0].(string)
	if !ok || vals[1] != nil {
		return nil, store.ErrNotFound
	}
	var c attribution.Customer
	if err := json.Unmarshal([]byte(js), &c); err != nil {
		return nil, fmt.Errorf("corrupt customer %s: %w", id, err)
	}
	return &c, nil
}

// maxAttempts bounds the optimistic loop; with jittered backoff, 50
// concurrent writers to one customer finish well within it.
const maxAttempts = 200

// UpdateCustomer reads, calls fn and compares-and-sets, again on a lost
// race. A write whose outcome is unknown (a timeout or a dropped connection
// after the script was sent: Redis may have run it) is not reported as a
// failure while the caller's context has time left: the loop reads again,
// and fn, finding its own write there by the request's identity, writes
// nothing. Only once that is settled, or the context runs out, does it
// return.
func (s *Store) UpdateCustomer(ctx context.Context, id, order string, fn store.UpdateFunc) error {
	uncertain := false // a write was sent whose reply never came
	var lastErr error
	for attempt := 0; attempt < maxAttempts; attempt++ {
		if attempt > 0 {
			// Someone else wrote first, or the last reply was lost: read
			// again. Jitter keeps contending writers out of lockstep.
			wait := time.Duration(rand.IntN(100*(min(attempt, 20)+1))) * time.Microsecond
			if uncertain {
				wait += 20 * time.Millisecond
			}
			select {
			case <-ctx.Done():
				return errors.Join(ctx.Err(), lastErr)
			case <-time.After(wait):
			}
		}
		pipe := s.rdb.Pipeline()
		state := pipe.HMGet(ctx, customerKey(id), "v", "s", "e")
		var ord *redis.StringCmd
		if order != "" {
			ord = pipe.HGet(ctx, ordersKey(id), order)
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			if lastErr = translate("read customer", err); uncertain && retryable(ctx, err) {
				continue
			}
			return lastErr
		}
		vals := state.Val()
		if vals[2] != nil {
			return store.ErrErasing
		}
		version, _ := vals[0].(string)
		c := &attribution.Customer{ID: id}
		if js, ok := vals[1].(string); ok {
			if err := json.Unmarshal([]byte(js), c); err != nil {
				return fmt.Errorf("corrupt customer %s: %w", id, err)
			}
		}
		var o *attribution.Order
		if ord != nil && ord.Err() == nil {
			o = new(attribution.Order)
			if err := json.Unmarshal([]byte(ord.Val()), o); err != nil {
				return fmt.Errorf("corrupt order %s: %w", order, err)
			}
		}
		held := store.Holdings(c) // before fn, which may change c in place
		u, err := fn(c, o)
		if err != nil || u == nil {
			return err
		}
		keys, args, err := casArgs(id, version, u)
		if err != nil {
			return err
		}
		ok, err := casCustomer.Run(ctx, s.rdb, keys, args...).Int()
		if err != nil {
			if lastErr = translate("write customer", err); retryable(ctx, err) {
				uncertain = true
				continue
			}
			return lastErr
		}
		if ok == 1 {
			if u.Customer == nil {
				return nil
			}
			// The index of holders is on other slots: written after the
			// customer, as a hint that Holders checks (holders.go).
			add, remove := store.HoldingChanges(held, store.Holdings(u.Customer))
			return s.indexHoldingsAfter(ctx, add, remove, u.Now)
		}
	}
	return store.ErrConflict
}

// retryable reports whether err left a write's outcome unknown and there is
// time to find out: anything but an error reply from Redis itself (which
// means the script did not run) or the caller's own deadline.
func retryable(ctx context.Context, err error) bool {
	var re redis.Error
	if errors.As(err, &re) || errors.Is(err, redis.ErrClosed) || ctx.Err() != nil {
		return false
	}
	return true
}

func casArgs(id, version string, u *store.CustomerUpdate) (keys []string, args []any, err error) {
	n, _ := strconv.ParseInt(version, 10, 64)
	var cj, oj []byte
	var oid string
	if u.Customer != nil {
		if cj, err = json.Marshal(u.Customer); err != nil {
			return nil, nil, err
		}
	}
	if u.Order != nil {
		oid = u.Order.ID
		if oj, err = json.Marshal(u.Order); err != nil {
			return nil, nil, err
		}
	}
	keys = append(make([]string, 0, 3+len(u.Decisions)), customerKey(id), ordersKey(id), decisionLogsKey(id))
	args = append(make([]any, 0, 7+2*len(u.Decisions)), version, n+1, cj, oid, oj, attribution.MaxDecisions, customerTTL(u))
	for i := range u.Decisions {
		dj, err := json.Marshal(&u.Decisions[i])
		if err != nil {
			return nil, nil, err
		}
		keys = append(keys, decisionsKey(id, u.Decisions[i].Program))
		args = append(args, dj)
	}
	for i := range u.Decisions {
		args = append(args, u.Decisions[i].Program)
	}
	return keys, args, nil
}

func (s *Store) Decisions(ctx context.Context, program, customer string) ([]attribution.Decision, error) {
	raw, err := s.rdb.LRange(ctx, decisionsKey(customer, program), 0, attribution.MaxDecisions-1).Result()
	if err != nil {
		return nil, translate("lrange", err)
	}
	out := make([]attribution.Decision, 0, len(raw))
	for _, r := range raw {
		var d attribution.Decision
		if err := json.Unmarshal([]byte(r), &d); err != nil {
			return nil, fmt.Errorf("corrupt decision of %s: %w", customer, err)
		}
		out = append(out, d)
	}
	return out, nil
}

func (s *Store) ClaimOrder(ctx context.Context, order, customer string) (string, error) {
	// SET NX GET: one round trip, and the current owner when it is taken.
	owner, err := s.rdb.SetArgs(ctx, orderIdxKey(order), customer, redis.SetArgs{Mode: "NX", Get: true}).Result()
	if errors.Is(err, redis.Nil) {
		return customer, nil
	}
	if err != nil {
		return "", translate("claim order", err)
	}
	return owner, nil
}

// ClaimOrderAndMark sends the claim and the mark in one pipeline: one
// round trip on one server, two in parallel on a Cluster.
func (s *Store) ClaimOrderAndMark(ctx context.Context, order, customer, program, mark string, at time.Time) (string, error) {
	if err := store.CheckMark(mark); err != nil {
		return "", err
	}
	pipe := s.rdb.Pipeline()
	claim := pipe.SetArgs(ctx, orderIdxKey(order), customer, redis.SetArgs{Mode: "NX", Get: true})
	marked := pipe.ZAddGT(ctx, lk(program, "m"), redis.Z{Score: float64(at.UnixMicro()), Member: mark})
	pipe.Exec(ctx) // each command's own error is read below
	if err := marked.Err(); err != nil {
		return "", translate("mark ledger", err)
	}
	owner, err := claim.Result()
	if errors.Is(err, redis.Nil) {
		return customer, nil
	}
	if err != nil {
		return "", translate("claim order", err)
	}
	return owner, nil
}

func (s *Store) OrderOwner(ctx context.Context, order string) (string, error) {
	owner, err := s.rdb.Get(ctx, orderIdxKey(order)).Result()
	return owner, translate("get", err)
}

// claimClick: KEYS click use. ARGV customer, claim, limit, TTL ms. Returns
// a store.ClickClaim.
var claimClick = redis.NewScript(`
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur then
  if cur == ARGV[2] then return 2 end
  return 1
end
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[4]) then redis.call('PEXPIRE', KEYS[1], ARGV[4]) end
return 2`)

var releaseClick = redis.NewScript(`
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then redis.call('HDEL', KEYS[1], ARGV[1]) end
return 1`)

// ClaimClick keeps the claim keep (at most maxWindow: the token's life)
// plus a day: the TTL is garbage collection, relative to the write, so a
// server clock ahead of or behind Redis's cannot drop a live claim.
func (s *Store) ClaimClick(ctx context.Context, click, customer, claim string, limit int, keep time.Duration) (store.ClickClaim, error) {
	ttl := min(max(keep, 0), maxWindow) + gcGrace
	n, err := claimClick.Run(ctx, s.rdb, []string{clickUseKey(click)}, customer, claim, limit, ttl.Milliseconds()).Int()
	if err != nil {
		return store.ClickUsed, translate("claim click", err)
	}
	return store.ClickClaim(n), nil
}

func (s *Store) ReleaseClick(ctx context.Context, click, customer, claim string) error {
	return translate("release click", releaseClick.Run(ctx, s.rdb, []string{clickUseKey(click)}, customer, claim).Err())
}
