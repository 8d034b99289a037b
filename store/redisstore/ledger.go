package redisstore

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/store"
)

// The ledger's keys share the program's hash tag {lg:PROGRAM}: all of a
// program's ledger is one slot on a cluster, so every ledger call is one
// command or script on one node, and atomic. Page keys are store.PageKey
// (time and id), kept as members of equal score so that they sort by
// bytes (ZRANGEBYLEX):
//
//	refgate:{lg:P}:e             hash entry id → TOKEN:Entry JSON
//	refgate:{lg:P}:a:PROMOTER    sorted set of page keys (At, id): the promoter's entries
//	refgate:{lg:P}:u:PROMOTER    sorted set of unsettled entry ids, scored by AvailableAt (Unix µs)
//	refgate:{lg:P}:p             set of the promoters with unsettled entries
//	refgate:{lg:P}:m             sorted set of marks, scored by time (Unix µs)
//	refgate:{lg:P}:s             hash statement id → Statement JSON
//	refgate:{lg:P}:sl            sorted set of page keys (CreatedAt, id): the statements
//	refgate:{lg:P}:sl:PROMOTER   the same, of one promoter
//	refgate:{lg:P}:se:STATEMENT  list of the statement's entry ids, oldest first
//
// None has a TTL: they are money records. The program's reports share the
// tag (report.go: rp:…, rv:…, kept for the retention), so that creating an
// entry adds its commission to them in the same script. Nothing here is ever scanned:
// every read goes by a promoter's or a statement's own keys.
//
// TOKEN is 16 hex digits, new for each PostEntry call: the call, trying
// again after a reply it never got, tells its own write from someone
// else's by it (created). Settle appends ,"statement":"ID" to the JSON, as
// encoding/json would write the field (Entry.Statement is its last field,
// omitted while empty), so the script never decodes JSON: Lua's numbers
// are doubles, and an amount must stay exact.
//
// Scores are doubles too, exact for integers below 2^53: Unix µs are (to
// the year 2255), Unix ns are not. So order comes from page keys, and µs
// scores serve as a filter that Go checks again exactly (Settle compares
// each entry's AvailableAt with through).
func lk(program, part string) string { return "refgate:{lg:" + program + "}:" + part }

const tokenLen = 16

func newToken() string {
	var b [tokenLen / 2]byte
	crand.Read(b[:]) // never fails
	return hex.EncodeToString(b[:])
}

// decodeEntry reads an entry value: the entry and the token of the call
// that wrote it.
func decodeEntry(v string) (*attribution.Entry, string, error) {
	if len(v) < tokenLen+2 || v[tokenLen] != ':' {
		return nil, "", fmt.Errorf("corrupt ledger entry %.40q", v)
	}
	e := new(attribution.Entry)
	if err := json.Unmarshal([]byte(v[tokenLen+1:]), e); err != nil {
		return nil, "", fmt.Errorf("corrupt ledger entry %.40q: %w", v, err)
	}
	return e, v[:tokenLen], nil
}

// decodeEntries decodes the values an HMGET returned; a missing one is a
// corrupt index.
func decodeEntries(vals []any, what string) ([]attribution.Entry, error) {
	out := make([]attribution.Entry, 0, len(vals))
	for _, v := range vals {
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("%s names a ledger entry that is not there", what)
		}
		e, _, err := decodeEntry(s)
		if err != nil {
			return nil, err
		}
		out = append(out, *e)
	}
	return out, nil
}

func decodeStatements(vals []any, what string) ([]attribution.Statement, error) {
	out := make([]attribution.Statement, 0, len(vals))
	for _, v := range vals {
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("%s names a statement that is not there", what)
		}
		var st attribution.Statement
		if err := json.Unmarshal([]byte(s), &st); err != nil {
			return nil, fmt.Errorf("corrupt statement %.40q: %w", s, err)
		}
		out = append(out, st)
	}
	return out, nil
}

// ceilMicro is t in Unix µs, rounded up.
func ceilMicro(t time.Time) int64 {
	us := t.UnixMicro()
	if time.UnixMicro(us).Before(t) {
		us++
	}
	return us
}

// hmgetLua is a Lua helper for the scripts: HMGET of any number of fields,
// in chunks (Lua's unpack takes a few thousand values at most).
const hmgetLua = `
local function hmget(key, ids)
  local out = {}
  for i = 1, #ids, 1000 do
    local vals = redis.call('HMGET', key, unpack(ids, i, math.min(i + 999, #ids)))
    for j = 1, #vals do out[#out + 1] = vals[j] end
  end
  return out
end
`

// runAgain runs an idempotent write script, and runs it again while its
// outcome is unknown (a reply that never came: Redis may have run it) and
// the caller's context has time, as UpdateCustomer does: the script
// recognises its own earlier run. An error reply, or the caller's deadline,
// ends it.
func (s *Store) runAgain(ctx context.Context, op string, sc *redis.Script, keys []string, args ...any) (any, error) {
	var err error
	for attempt := 0; attempt < againAttempts; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return nil, errors.Join(ctx.Err(), translate(op, err))
			case <-time.After(time.Duration(attempt) * 20 * time.Millisecond):
			}
		}
		var res any
		if res, err = sc.Run(ctx, s.rdb, keys, args...).Result(); err == nil {
			return res, nil
		}
		if !retryable(ctx, err) {
			break
		}
	}
	return nil, translate(op, err)
}

// againAttempts bounds runAgain for a caller without a deadline.
const againAttempts = 6

func (s *Store) MarkLedger(ctx context.Context, program, mark string, at time.Time) error {
	if err := store.CheckMark(mark); err != nil {
		return err
	}
	// GT: a mark set again keeps its latest time, so that a repair that
	// read it earlier and found no decision does not remove it
	// (UnmarkLedger with before).
	err := s.rdb.ZAddGT(ctx, lk(program, "m"), redis.Z{Score: float64(at.UnixMicro()), Member: mark}).Err()
	return translate("mark ledger", err)
}

func (s *Store) LedgerMarks(ctx context.Context, program string, before time.Time, n int) ([]string, error) {
	if n < 1 {
		return nil, fmt.Errorf("ledger marks: want n ≥ 1, not %d", n)
	}
	marks, err := s.rdb.ZRangeByScore(ctx, lk(program, "m"), &redis.ZRangeBy{Min: "-inf",
		Max: "(" + strconv.FormatInt(ceilMicro(before), 10), Count: int64(n)}).Result()
	if err != nil {
		return nil, translate("ledger marks", err)
	}
	return marks, nil
}

func (s *Store) UnmarkLedger(ctx context.Context, program, mark string, before time.Time) error {
	if before.IsZero() {
		return translate("unmark ledger", s.rdb.ZRem(ctx, lk(program, "m"), mark).Err())
	}
	_, err := s.runAgain(ctx, "unmark ledger", unmarkBefore, []string{lk(program, "m")}, mark, ceilMicro(before))
	return err
}

// unmarkBefore removes a mark set before ARGV[2] (µs). KEYS m. ARGV mark,
// before.
var unmarkBefore = redis.NewScript(`
local at = redis.call('ZSCORE', KEYS[1], ARGV[1])
if at and tonumber(at) < tonumber(ARGV[2]) then redis.call('ZREM', KEYS[1], ARGV[1]) end
return 1`)

// postEntry writes an entry unless its id is taken and removes a mark,
// either way; an entry it writes adds its amount to the commission of the
// report days that follow m in KEYS (report.go). HSET, which Redis refuses
// when full, is the first write, so a refusal writes nothing. KEYS e,
// a:PROMOTER, u:PROMOTER, p, m, then the report days. ARGV id, value
// (TOKEN:JSON), page key, AvailableAt µs, promoter, mark (or ""), amount,
// the report days' TTL ms.
// It returns 1 when it wrote the entry, else the value stored (a run again
// of a call whose reply was lost finds its own TOKEN in it).
var postEntry = redis.NewScript(`
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if not cur then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  redis.call('ZADD', KEYS[2], 0, ARGV[3])
  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
  redis.call('SADD', KEYS[4], ARGV[5])
  for k = 6, #KEYS do
    redis.call('HINCRBY', KEYS[k], 'commission', ARGV[7])
    redis.call('PEXPIRE', KEYS[k], ARGV[8])
  end
end
if ARGV[6] ~= '' then redis.call('ZREM', KEYS[5], ARGV[6]) end
if not cur then return 1 end
return cur`)

func (s *Store) PostEntry(ctx context.Context, e *attribution.Entry, mark string) (*attribution.Entry, bool, error) {
	if err := store.CheckPost(e, mark); err != nil {
		return nil, false, err
	}
	js, err := json.Marshal(e)
	if err != nil {
		return nil, false, err
	}
	token := newToken()
	p := e.Program
	keys := []string{lk(p, "e"), lk(p, "a:"+e.Promoter), lk(p, "u:"+e.Promoter), lk(p, "p"), lk(p, "m")}
	day := store.DayKey(e.At)
	for _, sc := range store.Scopes(e.Promoter, e.Link) {
		keys = append(keys, reportKey(p, day, sc))
	}
	res, err := s.runAgain(ctx, "post entry", postEntry, keys,
		e.ID, token+":"+string(js), store.PageKey(e.At, e.ID), e.AvailableAt.UnixMicro(), e.Promoter, mark,
		e.Amount, ttlMs(store.ReportTTL(e.At, s.retention)))
	if err != nil {
		return nil, false, err
	}
	if n, ok := res.(int64); ok && n == 1 {
		// Written now: the entry is e (the answer leaves out what the
		// caller has).
		stored := *e
		return &stored, true, nil
	}
	v, _ := res.(string)
	stored, by, err := decodeEntry(v)
	if err != nil {
		return nil, false, err
	}
	created := by == token
	if !created && !e.SameMoney(stored) {
		return stored, false, fmt.Errorf("ledger entry %s of %s is %s %d %s to %s: %w", e.ID, p,
			stored.Kind, stored.Amount, stored.Currency, stored.Promoter, store.ErrEntryConflict)
	}
	return stored, created, nil
}

func (s *Store) Entry(ctx context.Context, program, id string) (*attribution.Entry, error) {
	v, err := s.rdb.HGet(ctx, lk(program, "e"), id).Result()
	if err != nil {
		return nil, translate("entry", err)
	}
	e, _, err := decodeEntry(v)
	return e, err
}

// lexRange is a page range as ZREVRANGEBYLEX's max and min.
func lexRange(lo, hi string) (max, min string) {
	max, min = "+", "-"
	if hi != "" {
		max = "(" + hi
	}
	if lo != "" {
		min = "[" + lo
	}
	return max, min
}

// pageKeys reads up to limit page keys of the sorted set key from the
// newest, and the next page's cursor.
func (s *Store) pageKeys(ctx context.Context, key, cursor string, limit int, from, to time.Time) (ids []string, next string, err error) {
	keys, next, err := s.pageMembers(ctx, key, cursor, limit, from, to)
	if err != nil {
		return nil, "", err
	}
	ids = make([]string, len(keys))
	for i, k := range keys {
		ids[i] = store.PageID(k)
	}
	return ids, next, nil
}

// pageMembers is pageKeys answering the page keys themselves.
func (s *Store) pageMembers(ctx context.Context, key, cursor string, limit int, from, to time.Time) (keys []string, next string, err error) {
	lo, hi, err := store.PageRange(cursor, limit, from, to)
	if err != nil {
		return nil, "", err
	}
	max, min := lexRange(lo, hi)
	keys, err = s.rdb.ZRevRangeByLex(ctx, key, &redis.ZRangeBy{Max: max, Min: min, Count: int64(limit + 1)}).Result()
	if err != nil {
		return nil, "", translate("list", err)
	}
	if len(keys) > limit {
		keys, next = keys[:limit], keys[limit-1]
	}
	return keys, next, nil
}

// Entries reads the page's keys, then the entries: two round trips, but
// entries are never deleted, so every key read names one.
func (s *Store) Entries(ctx context.Context, program, promoter string, q store.EntryQuery) ([]attribution.Entry, string, error) {
	ids, next, err := s.pageKeys(ctx, lk(program, "a:"+promoter), q.Cursor, q.Limit, q.From, q.To)
	if err != nil || len(ids) == 0 {
		return nil, "", err
	}
	vals, err := s.rdb.HMGet(ctx, lk(program, "e"), ids...).Result()
	if err != nil {
		return nil, "", translate("entries", err)
	}
	out, err := decodeEntries(vals, "the ledger index of "+promoter)
	if err != nil {
		return nil, "", err
	}
	return out, next, nil
}

func (s *Store) LedgerPromoters(ctx context.Context, program string) ([]string, error) {
	ps, err := s.rdb.SMembers(ctx, lk(program, "p")).Result()
	if err != nil {
		return nil, translate("ledger promoters", err)
	}
	slices.Sort(ps)
	return ps, nil
}

// settleRead reads a promoter's unsettled entries due by a time, in one
// step. KEYS e, u:PROMOTER. ARGV the latest AvailableAt, Unix µs.
var settleRead = redis.NewScript(hmgetLua + `
return hmget(KEYS[1], redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1]))`)

// settleApply writes what a settlement plan makes, unless one of its
// entries was settled since it was read (then 0: plan again). It returns 1
// once written, and 2 when the plan's first statement is there already:
// this plan, written by an earlier run of the same call whose reply was
// lost (statement ids are random, so no other plan has it). Every check
// comes before the first write (HSET, which Redis refuses when full), so a
// failed run writes nothing.
//
// KEYS e, u:PROMOTER, p, s, sl, sl:PROMOTER, then se:STATEMENT for each
// statement. ARGV promoter, then for each statement its id, JSON, page
// key, number of entries and their ids.
var settleApply = redis.NewScript(`
local stmts, i = {}, 2
while i <= #ARGV do
  local n = tonumber(ARGV[i + 3])
  stmts[#stmts + 1] = {id = ARGV[i], json = ARGV[i + 1], key = ARGV[i + 2], first = i + 4, last = i + 3 + n}
  i = i + 4 + n
end
if redis.call('HEXISTS', KEYS[4], stmts[1].id) == 1 then return 2 end
local vals = {}
for _, st in ipairs(stmts) do
  for x = st.first, st.last do
    if not redis.call('ZSCORE', KEYS[2], ARGV[x]) then return 0 end
    local v = redis.call('HGET', KEYS[1], ARGV[x])
    if not v or string.sub(v, -1) ~= '}' then return redis.error_reply('corrupt ledger entry ' .. ARGV[x]) end
    vals[x] = v
  end
end
for j, st in ipairs(stmts) do
  redis.call('HSET', KEYS[4], st.id, st.json)
  redis.call('ZADD', KEYS[5], 0, st.key)
  redis.call('ZADD', KEYS[6], 0, st.key)
  local suffix = ',"statement":"' .. st.id .. '"}'
  for x = st.first, st.last do
    redis.call('HSET', KEYS[1], ARGV[x], string.sub(vals[x], 1, -2) .. suffix)
    redis.call('RPUSH', KEYS[6 + j], ARGV[x])
    redis.call('ZREM', KEYS[2], ARGV[x])
  end
end
if redis.call('ZCARD', KEYS[2]) == 0 then redis.call('SREM', KEYS[3], ARGV[1]) end
return 1`)

// Settle plans in Go (attribution.PlanSettlement: the rules and exact
// sums stay there) from one consistent read, then writes the plan in one
// script that checks every entry is still unsettled: two instances
// settling the same promoter at once both plan, one writes, and the other
// finds an entry gone, reads again and finds nothing left to settle. A
// write whose reply was lost is run again, and recognises itself (2).
func (s *Store) Settle(ctx context.Context, program, promoter string, through time.Time, minPayout int64, now time.Time) ([]attribution.Statement, error) {
	read := []string{lk(program, "e"), lk(program, "u:"+promoter)}
	for attempt := 0; attempt < maxAttempts; attempt++ {
		if attempt > 0 {
			wait := time.Duration(rand.IntN(100*(min(attempt, 20)+1))) * time.Microsecond
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(wait):
			}
		}
		vals, err := settleRead.Run(ctx, s.rdb, read, through.UnixMicro()).Slice()
		if err != nil {
			return nil, translate("read unsettled entries", err)
		}
		due, err := decodeEntries(vals, "the unsettled index of "+promoter)
		if err != nil {
			return nil, err
		}
		plan, err := attribution.PlanSettlement(program, promoter, due, through, minPayout, now)
		if err != nil {
			return nil, err
		}
		if len(plan) == 0 {
			return []attribution.Statement{}, nil
		}
		keys := []string{read[0], read[1], lk(program, "p"), lk(program, "s"), lk(program, "sl"), lk(program, "sl:"+promoter)}
		args := []any{promoter}
		out := make([]attribution.Statement, len(plan))
		for i, st := range plan {
			js, err := json.Marshal(&st.Statement)
			if err != nil {
				return nil, err
			}
			keys = append(keys, lk(program, "se:"+st.Statement.ID))
			args = append(args, st.Statement.ID, js, store.PageKey(st.Statement.CreatedAt, st.Statement.ID), len(st.Entries))
			for _, id := range st.Entries {
				args = append(args, id)
			}
			out[i] = st.Statement
		}
		res, err := s.runAgain(ctx, "settle", settleApply, keys, args...)
		if err != nil {
			return nil, err
		}
		if n, _ := res.(int64); n != 0 {
			return out, nil
		}
	}
	return nil, store.ErrConflict
}

func (s *Store) Statement(ctx context.Context, id string) (*attribution.Statement, error) {
	program, ok := attribution.StatementProgram(id)
	if !ok {
		return nil, store.ErrNotFound
	}
	v, err := s.rdb.HGet(ctx, lk(program, "s"), id).Result()
	if err != nil {
		return nil, translate("statement", err)
	}
	out, err := decodeStatements([]any{v}, "")
	if err != nil {
		return nil, err
	}
	return &out[0], nil
}

func (s *Store) Statements(ctx context.Context, program, promoter, cursor string, limit int) ([]attribution.Statement, string, error) {
	key := lk(program, "sl")
	if promoter != "" {
		key = lk(program, "sl:"+promoter)
	}
	ids, next, err := s.pageKeys(ctx, key, cursor, limit, time.Time{}, time.Time{})
	if err != nil || len(ids) == 0 {
		return nil, "", err
	}
	vals, err := s.rdb.HMGet(ctx, lk(program, "s"), ids...).Result()
	if err != nil {
		return nil, "", translate("statements", err)
	}
	out, err := decodeStatements(vals, "the statement list of "+program)
	if err != nil {
		return nil, "", err
	}
	return out, next, nil
}

// StatementEntries reads the statement's list, then its entries, a
// thousand per HMGET, in one pipeline.
func (s *Store) StatementEntries(ctx context.Context, id string) ([]attribution.Entry, error) {
	program, ok := attribution.StatementProgram(id)
	if !ok {
		return nil, store.ErrNotFound
	}
	pipe := s.rdb.Pipeline()
	exists := pipe.HExists(ctx, lk(program, "s"), id)
	list := pipe.LRange(ctx, lk(program, "se:"+id), 0, -1)
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, translate("statement entries", err)
	}
	if !exists.Val() {
		return nil, store.ErrNotFound
	}
	ids := list.Val()
	pipe = s.rdb.Pipeline()
	var gets []*redis.SliceCmd
	for i := 0; i < len(ids); i += 1000 {
		gets = append(gets, pipe.HMGet(ctx, lk(program, "e"), ids[i:min(i+1000, len(ids))]...))
	}
	if len(gets) > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, translate("statement entries", err)
		}
	}
	out := make([]attribution.Entry, 0, len(ids))
	for _, g := range gets {
		es, err := decodeEntries(g.Val(), "statement "+id)
		if err != nil {
			return nil, err
		}
		out = append(out, es...)
	}
	return out, nil
}

// markPaid writes a statement's paid form over the one read, unless it
// changed since (0). KEYS s. ARGV id, JSON read, paid JSON. The paid JSON
// there already is this call's own earlier write: 1.
var markPaid = redis.NewScript(`
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur == ARGV[3] then return 1 end
if cur ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1`)

// MarkPaid decides in Go (store.Pay) and compares-and-sets: a statement's
// JSON is never decoded in Lua, whose numbers would not keep its amount
// exact.
func (s *Store) MarkPaid(ctx context.Context, id, reference string, at time.Time) (*attribution.Statement, error) {
	if err := store.CheckReference(reference); err != nil {
		return nil, err
	}
	program, ok := attribution.StatementProgram(id)
	if !ok {
		return nil, store.ErrNotFound
	}
	key := lk(program, "s")
	for attempt := 0; attempt < maxAttempts; attempt++ {
		v, err := s.rdb.HGet(ctx, key, id).Result()
		if err != nil {
			return nil, translate("statement", err)
		}
		sts, err := decodeStatements([]any{v}, "")
		if err != nil {
			return nil, err
		}
		st := &sts[0]
		changed, err := store.Pay(st, reference, at)
		if !changed {
			return st, err
		}
		js, err := json.Marshal(st)
		if err != nil {
			return nil, err
		}
		res, err := s.runAgain(ctx, "mark paid", markPaid, []string{key}, id, v, js)
		if err != nil {
			return nil, err
		}
		if n, _ := res.(int64); n == 1 {
			return st, nil
		}
	}
	return nil, store.ErrConflict
}

// balanceRead reads a promoter's unsettled entries and statements in one
// step, so that a settlement between the two cannot count an entry twice
// or not at all. KEYS e, u:PROMOTER, s, sl:PROMOTER.
var balanceRead = redis.NewScript(hmgetLua + `
local sids = {}
for i, k in ipairs(redis.call('ZRANGE', KEYS[4], 0, -1)) do sids[i] = string.sub(k, 22) end
return {hmget(KEYS[1], redis.call('ZRANGE', KEYS[2], 0, -1)), hmget(KEYS[3], sids)}`)

func (s *Store) Balance(ctx context.Context, program, promoter string, now time.Time) (map[string]attribution.Balance, error) {
	keys := []string{lk(program, "e"), lk(program, "u:"+promoter), lk(program, "s"), lk(program, "sl:"+promoter)}
	res, err := balanceRead.Run(ctx, s.rdb, keys).Slice()
	if err != nil {
		return nil, translate("balance", err)
	}
	if len(res) != 2 {
		return nil, fmt.Errorf("balance: a reply of %d parts", len(res))
	}
	ev, _ := res[0].([]any)
	sv, _ := res[1].([]any)
	entries, err := decodeEntries(ev, "the unsettled index of "+promoter)
	if err != nil {
		return nil, err
	}
	statements, err := decodeStatements(sv, "the statement list of "+promoter)
	if err != nil {
		return nil, err
	}
	return attribution.Balances(entries, statements, now)
}
