package redisstore

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/redis/go-redis/v9"

	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/store"
)

// An erasure touches the customer's slot, the alias's (where its orders
// go), each order's index and each claimed click's: on a cluster, several
// nodes, so no one script can do it. It goes in steps that can each be done
// again, and the customer is marked first, so that a crash between them
// leaves nothing half-updated behind the mark:
//
//  1. mark the customer (e) and bump its version, and read its record,
//     orders and decision-log programs, in one script: from then on no
//     update of it lands (ErrErasing), so what was read stays all there is;
//  2. copy each order to the alias's orders with HSETNX, never over a copy
//     that is there already: a refund since a first, failed attempt has
//     changed that copy, and the customer's is older;
//  3. point each order's index at the alias, where it named the customer
//     (after 2: the index never names an alias without the order);
//  4. name the alias instead of the customer in the orders' ledger
//     entries, one script per program (rewriteCustomer);
//  5. move the customer's claims of clicks to store.ErasedClaim names;
//  6. delete the customer's keys, mark included, in one command.
//
// A call that fails part-way returns the error and leaves the mark; the
// next call finds it and goes through all the steps again.

// markErasing: KEYS customer, orders, decision-log programs. It returns 0
// when none of them exists, else {customer JSON or "", orders as HGETALL,
// programs}.
var markErasing = redis.NewScript(`
if redis.call('EXISTS', KEYS[1], KEYS[2], KEYS[3]) == 0 then return 0 end
local v = tonumber(redis.call('HGET', KEYS[1], 'v') or '0') + 1
redis.call('HSET', KEYS[1], 'e', '1', 'v', v)
return {redis.call('HGET', KEYS[1], 's') or '', redis.call('HGETALL', KEYS[2]), redis.call('SMEMBERS', KEYS[3])}`)

// repointOrder: KEYS order index. ARGV customer, alias. The index names
// the alias unless it names someone else.
var repointOrder = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if not cur or cur == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2]) end
return 1`)

// rewriteCustomer names the alias instead of the customer in ledger
// entries, by replacing "customer":"ID" in their JSON: customer ids and
// aliases need no escaping in JSON, and inside a JSON string a quote is
// escaped, so the text can only be the field itself. Nothing is decoded:
// Lua would not keep an amount exact. KEYS the program's entries (e).
// ARGV customer, alias, then entry ids. It returns how many it rewrote.
var rewriteCustomer = redis.NewScript(`
local from, to = '"customer":"' .. ARGV[1] .. '"', '"customer":"' .. ARGV[2] .. '"'
local n = 0
for i = 3, #ARGV do
  local v = redis.call('HGET', KEYS[1], ARGV[i])
  local s, e = string.find(v or '', from, 1, true)
  if s then
    redis.call('HSET', KEYS[1], ARGV[i], string.sub(v, 1, s - 1) .. to .. string.sub(v, e + 1))
    n = n + 1
  end
end
return n`)

// moveClaim: KEYS click use. ARGV customer, the claim's new name
// (store.ErasedClaim), its new id. 1 if the customer had a claim.
var moveClaim = redis.NewScript(`
if not redis.call('HGET', KEYS[1], ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
redis.call('HDEL', KEYS[1], ARGV[1])
return 1`)

func (s *Store) EraseCustomer(ctx context.Context, id, alias string) (store.Erasure, error) {
	var e store.Erasure
	keys := []string{customerKey(id), ordersKey(id), decisionLogsKey(id)}
	res, err := markErasing.Run(ctx, s.rdb, keys).Result()
	if err != nil {
		return e, translate("erase customer", err)
	}
	parts, ok := res.([]any)
	if !ok || len(parts) != 3 {
		return e, nil // nothing of it is stored
	}
	clicks := map[string]bool{}
	programs := map[string]bool{}
	var c attribution.Customer
	if js, _ := parts[0].(string); js != "" {
		if err := json.Unmarshal([]byte(js), &c); err != nil {
			return e, fmt.Errorf("corrupt customer %s: %w", id, err)
		}
		for _, k := range c.ClickIDs() {
			clicks[k] = true
		}
		for p := range c.Programs {
			programs[p] = true
		}
		e.Customer = true
	}
	for _, p := range parts[2].([]any) {
		programs[p.(string)] = true
	}
	var orders []*attribution.Order
	fields := parts[1].([]any)
	for i := 1; i < len(fields); i += 2 {
		o := new(attribution.Order)
		if err := json.Unmarshal([]byte(fields[i].(string)), o); err != nil {
			return e, fmt.Errorf("corrupt order %v of %s: %w", fields[i-1], id, err)
		}
		programs[o.Program] = true
		orders = append(orders, o)
	}

	// The decision logs, for the clicks they name.
	pipe := s.rdb.Pipeline()
	logs := map[string]*redis.StringSliceCmd{}
	for p := range programs {
		logs[p] = pipe.LRange(ctx, decisionsKey(id, p), 0, -1)
	}
	if _, err := pipe.Exec(ctx); err != nil && len(logs) > 0 {
		return e, translate("read decisions", err)
	}
	dkeys := make([]string, 0, len(logs))
	for p, cmd := range logs {
		if len(cmd.Val()) > 0 {
			e.DecisionLogs++
		}
		dkeys = append(dkeys, decisionsKey(id, p))
		for _, raw := range cmd.Val() {
			var d attribution.Decision
			if json.Unmarshal([]byte(raw), &d) == nil && d.Click != "" {
				clicks[d.Click] = true
			}
		}
	}

	if len(orders) > 0 {
		pipe = s.rdb.Pipeline()
		for _, o := range orders {
			o.Customer, o.Erased = alias, true
			b, err := json.Marshal(o)
			if err != nil {
				return e, err
			}
			pipe.HSetNX(ctx, ordersKey(alias), o.ID, b)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return e, translate("copy orders", err)
		}
		pipe = s.rdb.Pipeline()
		for _, o := range orders {
			repointOrder.Eval(ctx, pipe, []string{orderIdxKey(o.ID)}, id, alias)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return e, translate("repoint orders", err)
		}
		e.Orders = len(orders)

		entries := map[string][]any{} // program → customer, alias, entry ids
		for _, o := range orders {
			ids := entries[o.Program]
			if ids == nil {
				ids = []any{id, alias}
			}
			ids = append(ids, attribution.AccrualID(o.ID))
			for _, r := range o.Refunds {
				ids = append(ids, attribution.ReversalID(o.ID, r.ID))
			}
			entries[o.Program] = ids
		}
		pipe = s.rdb.Pipeline()
		var rewrites []*redis.Cmd
		for program, args := range entries {
			rewrites = append(rewrites, rewriteCustomer.Eval(ctx, pipe, []string{lk(program, "e")}, args...))
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return e, translate("rewrite ledger entries", err)
		}
		for _, r := range rewrites {
			n, _ := r.Int()
			e.Entries += n
		}
	}

	if len(clicks) > 0 {
		pipe = s.rdb.Pipeline()
		var moves []*redis.Cmd
		for k := range clicks {
			moves = append(moves, moveClaim.Eval(ctx, pipe, []string{clickUseKey(k)}, id, store.ErasedClaim(alias), store.ErasedClaimID))
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return e, translate("move click claims", err)
		}
		for _, m := range moves {
			if n, _ := m.Int(); n == 1 {
				e.ClickClaims++
			}
		}
	}

	decided := map[string][]string{}
	for p, cmd := range logs {
		decided[p] = cmd.Val()
	}
	c.ID = id
	if err := s.eraseHoldings(ctx, &c, id, decided); err != nil {
		return e, err
	}

	slices.Sort(dkeys)
	if err := s.rdb.Del(ctx, append(keys, dkeys...)...).Err(); err != nil {
		return e, translate("delete customer", err)
	}
	return e, nil
}
