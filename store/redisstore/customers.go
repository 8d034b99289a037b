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
//	refgate:customer:{C}            hash v (version), s (Customer JSON)
//	refgate:orders:{C}              hash order id → Order JSON
//	refgate:decisions:{C}:PROGRAM   list of Decision JSON, newest first, capped
//	refgate:order:{ORDER}           the customer an order belongs to
func customerKey(id string) string { return "refgate:customer:{" + id + "}" }
func ordersKey(id string) string   { return "refgate:orders:{" + id + "}" }
func decisionsKey(id, program string) string {
	return "refgate:decisions:{" + id + "}:" + program
}
func orderIdxKey(order string) string { return "refgate:order:{" + order + "}" }

// casCustomer writes a customer update if the version is still the one read.
// Why compare-and-set with a version rather than WATCH/MULTI or a Redis
// Function: the rules stay in Go, in one place (attribution), and run
// between the read and this write; WATCH would pin a connection per update
// for that time, and a script holding the rules would duplicate them in Lua.
// The script only checks the version and writes.
//
// KEYS: customer, orders, decisions. ARGV: version read ("" if none), new
// version, customer JSON ("" to keep), order id, order JSON, decision JSON
// ("" for none), decisions to keep.
var casCustomer = redis.NewScript(`
local v = redis.call('HGET', KEYS[1], 'v') or ''
if v ~= ARGV[1] then return 0 end
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'v', ARGV[2], 's', ARGV[3]) else redis.call('HSET', KEYS[1], 'v', ARGV[2]) end
if ARGV[5] ~= '' then redis.call('HSET', KEYS[2], ARGV[4], ARGV[5]) end
if ARGV[6] ~= '' then
  redis.call('LPUSH', KEYS[3], ARGV[6])
  redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[7]) - 1)
end
return 1`)

func (s *Store) Customer(ctx context.Context, id string) (*attribution.Customer, error) {
	b, err := s.rdb.HGet(ctx, customerKey(id), "s").Bytes()
	if err != nil {
		return nil, translate("hget", err)
	}
	var c attribution.Customer
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("corrupt customer %s: %w", id, err)
	}
	return &c, nil
}

// maxAttempts bounds the optimistic loop; with jittered backoff, 50
// concurrent writers to one customer finish well within it.
const maxAttempts = 200

func (s *Store) UpdateCustomer(ctx context.Context, id, order string, fn store.UpdateFunc) error {
	for attempt := 0; attempt < maxAttempts; attempt++ {
		pipe := s.rdb.Pipeline()
		state := pipe.HMGet(ctx, customerKey(id), "v", "s")
		var ord *redis.StringCmd
		if order != "" {
			ord = pipe.HGet(ctx, ordersKey(id), order)
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return translate("read customer", err)
		}
		vals := state.Val()
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
		u, err := fn(c, o)
		if err != nil || u == nil {
			return err
		}
		args, err := casArgs(version, u)
		if err != nil {
			return err
		}
		ok, err := casCustomer.Run(ctx, s.rdb, []string{customerKey(id), ordersKey(id), decisionsKey(id, u.Program)}, args...).Int()
		if err != nil {
			return translate("write customer", err)
		}
		if ok == 1 {
			return nil
		}
		// Someone else wrote first: read again and recompute. Jitter keeps
		// many contending writers from retrying in lockstep.
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(rand.IntN(100*(min(attempt, 20)+1))) * time.Microsecond):
		}
	}
	return store.ErrConflict
}

func casArgs(version string, u *store.CustomerUpdate) ([]any, error) {
	n, _ := strconv.ParseInt(version, 10, 64)
	var cj, oj, dj []byte
	var oid string
	var err error
	if u.Customer != nil {
		if cj, err = json.Marshal(u.Customer); err != nil {
			return nil, err
		}
	}
	if u.Order != nil {
		oid = u.Order.ID
		if oj, err = json.Marshal(u.Order); err != nil {
			return nil, err
		}
	}
	if u.Decision != nil {
		if dj, err = json.Marshal(u.Decision); err != nil {
			return nil, err
		}
	}
	return []any{version, n + 1, cj, oid, oj, dj, attribution.MaxDecisions}, nil
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

func (s *Store) OrderOwner(ctx context.Context, order string) (string, error) {
	owner, err := s.rdb.Get(ctx, orderIdxKey(order)).Result()
	return owner, translate("get", err)
}
