package redisstore

import (
	"context"
	"encoding/binary"
	"hash/fnv"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/refgate/refgate/store"
)

// Reports live under the ledger's hash tag {lg:PROGRAM}: one script per
// program per click batch updates the program's, its promoters' and its
// links' buckets and visitors together, on one node, and PostEntry's
// script adds an entry's commission in the step that creates it.
//
//	refgate:{lg:P}:rp:YYYYMMDD:p         hash field → count: the program's day
//	refgate:{lg:P}:rp:YYYYMMDD:a:PROMOTER  the same, of one promoter
//	refgate:{lg:P}:rp:YYYYMMDD:l:LINK      the same, of one link
//	refgate:{lg:P}:rv:YYYYMMDD:SCOPE     HyperLogLog of the day's visitors (p, a:PROMOTER, l:LINK)
//	refgate:{lg:P}:rp:b:BATCH            marker: click batch BATCH was counted (PX store.BatchKeep)
//	refgate:{lg:P}:rp:o:ID               marker: CountReport ID was counted (PX store.BatchKeep)
//
// Fields are store.ClickField, BindField, ConversionField and the sums
// cash, commission, refunded. A day's keys expire (PEXPIRE, set by the
// write that creates the key) at the day's end plus the retention, counted
// from the time of the write's data as the server's clock gave it
// (store.ReportTTL), so a test clock ahead of Redis's cannot make Redis
// drop a live day.

func reportKey(program, day string, s store.ReportScope) string {
	return lk(program, "rp:"+day+":"+s.Key())
}

func visitorsKey(program, day string, s store.ReportScope) string {
	return lk(program, "rv:"+day+":"+s.Key())
}

// reportAdd adds counts to day hashes and visitors to day HyperLogLogs,
// unless the marker says it was done: marker and counts are written
// together or not at all. The marker's SET is the first write, so a
// refusal (OOM) writes nothing. KEYS marker, then the keys to add to, in
// the order of ARGV's records: ARGV marker TTL ms, then per day
//
//	TTL ms, h, x                     the day's keys' TTL; h hashes, x HyperLogLogs follow
//	n, n field, count pairs          a hash: HINCRBY each (h of them)
//	u, u indexes, visitors           a HyperLogLog (x of them)
//
// A HyperLogLog's visitors are one argument, each visitor its 8-byte hash
// (visitorHash), and are added to its key and to those of the u others at
// the KEYS indexes given (a link's visitors are also its promoter's and
// its program's), so each is sent once. Each HyperLogLog gets one PFADD
// per thousand visitors, at the end. A key's TTL is set when the write
// creates it: when a HINCRBY answers its own increment (every field of a
// new hash does) or a PFADD changes the HyperLogLog (a new one's does).
// It is the deadline every write of the day computes, so setting it again
// would change nothing. Few arguments per bucket keep the batch cheap to
// send: refgate's CPU per click is what the script must not raise.
var reportAdd = redis.NewScript(reportAddSrc)

const reportAddSrc = `
if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then return 0 end
local a, k, hll, ttls = 2, 2, {}, {}
while a <= #ARGV do
  local ttl, nh, nx = ARGV[a], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  a = a + 3
  for _ = 1, nh do
    local n, new = tonumber(ARGV[a]), false
    for j = a + 1, a + 2 * n, 2 do
      if redis.call('HINCRBY', KEYS[k], ARGV[j], ARGV[j + 1]) == tonumber(ARGV[j + 1]) then new = true end
    end
    if new then redis.call('PEXPIRE', KEYS[k], ttl) end
    a, k = a + 1 + 2 * n, k + 1
  end
  for _ = 1, nx do
    ttls[k] = ttl
    hll[k] = hll[k] or {}
    local to, u = {hll[k]}, tonumber(ARGV[a])
    for j = a + 1, a + u do
      local t = tonumber(ARGV[j])
      hll[t] = hll[t] or {}
      to[#to + 1] = hll[t]
    end
    local vs = ARGV[a + u + 1]
    for j = 1, #vs, 8 do
      local v = string.sub(vs, j, j + 7)
      for _, t in ipairs(to) do t[#t + 1] = v end
    end
    a, k = a + u + 2, k + 1
  end
end
for key, vs in pairs(hll) do
  local changed = 0
  for j = 1, #vs, 1000 do changed = changed + redis.call('PFADD', KEYS[key], unpack(vs, j, math.min(j + 999, #vs))) end
  if changed > 0 then redis.call('PEXPIRE', KEYS[key], ttls[key]) end
end
return 1`

// reportArgs builds reportAdd's keys and arguments.
type reportArgs struct {
	keys []string
	args []any
}

func newReportArgs(marker string) *reportArgs {
	return &reportArgs{keys: []string{marker}, args: []any{store.BatchKeep.Milliseconds()}}
}

// day starts a day's records: h hashes, then x HyperLogLogs.
func (r *reportArgs) day(ttl time.Duration, h, x int) {
	r.args = append(r.args, ttlMs(ttl), h, x)
}

func (r *reportArgs) hash(key string, counts store.ReportCounts) {
	r.keys = append(r.keys, key)
	r.args = append(r.args, len(counts))
	for f, n := range counts {
		r.args = append(r.args, f, n)
	}
}

// visitors adds a HyperLogLog record of key, whose visitors vs are also
// those of the keys at the KEYS indexes to.
func (r *reportArgs) visitors(key string, to []int, vs []string) {
	r.keys = append(r.keys, key)
	r.args = append(r.args, len(to))
	for _, t := range to {
		r.args = append(r.args, t)
	}
	b := make([]byte, 0, 8*len(vs))
	for _, v := range vs {
		b = binary.BigEndian.AppendUint64(b, visitorHash(v))
	}
	r.args = append(r.args, b)
}

// visitorHash is what a HyperLogLog is given of a visitor: 64 bits of
// FNV-1a, which PFADD hashes again, so eight bytes stand for any id.
func visitorHash(v string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(v))
	return h.Sum64()
}

func ttlMs(d time.Duration) int64 { return max(d.Milliseconds(), 1) }

// queueClickReports adds to pipe one reportAdd per program of the batch.
func (s *Store) queueClickReports(ctx context.Context, pipe redis.Pipeliner, batch string, days []store.ClickDay) {
	var hlls []int // a day's bucket → the KEYS index of its HyperLogLog, 0: none
	var to []int
	for i := 0; i < len(days); {
		p := days[i].Program
		r := newReportArgs(lk(p, "rp:b:"+batch))
		for ; i < len(days) && days[i].Program == p; i++ {
			d := &days[i]
			day := store.DayKey(d.Day)
			// The HyperLogLogs the day's visitors go to, marked, then
			// numbered in bucket order (1-based, as Lua's KEYS) after the
			// day's hashes.
			hlls = slices.Grow(hlls[:0], len(d.Buckets))[:len(d.Buckets)]
			clear(hlls)
			for j, b := range d.Buckets {
				if len(b.Visitors) > 0 {
					d.VisitorsOf(j, func(t int) { hlls[t] = 1 })
				}
			}
			x := 0
			for j, marked := range hlls {
				if marked != 0 {
					x++
					hlls[j] = len(r.keys) + len(d.Buckets) + x
				}
			}
			r.day(store.ReportTTL(d.Latest, s.retention), len(d.Buckets), x)
			for _, b := range d.Buckets {
				r.hash(reportKey(p, day, b.Scope), b.Counts)
			}
			for j := range d.Buckets {
				if hlls[j] == 0 {
					continue
				}
				b := &d.Buckets[j]
				to = to[:0]
				if len(b.Visitors) > 0 {
					d.VisitorsOf(j, func(t int) {
						if t != j {
							to = append(to, hlls[t])
						}
					})
				}
				r.visitors(visitorsKey(p, day, b.Scope), to, b.Visitors)
			}
		}
		reportAdd.EvalSha(ctx, pipe, r.keys, r.args...)
	}
}

func (s *Store) CountReport(ctx context.Context, id, program, promoter, link string, at time.Time, counts store.ReportCounts) error {
	if err := store.CheckReportID(id); err != nil {
		return err
	}
	if len(counts) == 0 {
		return nil
	}
	r := newReportArgs(lk(program, "rp:o:"+id))
	day, scopes := store.DayKey(at), store.Scopes(promoter, link)
	r.day(store.ReportTTL(at, s.retention), len(scopes), 0)
	for _, sc := range scopes {
		r.hash(reportKey(program, day, sc), counts)
	}
	_, err := s.runAgain(ctx, "count report", reportAdd, r.keys, r.args...)
	return err
}

// Report reads every day's hash and each period's visitors (PFCOUNT over
// the period's days: their union) in one pipeline, to the one node that
// holds the program's reports.
func (s *Store) Report(ctx context.Context, q store.ReportQuery) ([]store.ReportPeriod, error) {
	periods, err := store.ReportPeriods(q)
	if err != nil {
		return nil, err
	}
	sc := q.Scope()
	pipe := s.rdb.Pipeline()
	days := make([][]*redis.MapStringStringCmd, len(periods))
	visitors := make([]*redis.IntCmd, len(periods))
	for i, p := range periods {
		vkeys := make([]string, len(p.Days))
		for j, d := range p.Days {
			day := store.DayKey(d)
			days[i] = append(days[i], pipe.HGetAll(ctx, reportKey(q.Program, day, sc)))
			vkeys[j] = visitorsKey(q.Program, day, sc)
		}
		visitors[i] = pipe.PFCount(ctx, vkeys...)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, translate("report", err)
	}
	out := make([]store.ReportPeriod, len(periods))
	for i, p := range periods {
		counts := store.ReportCounts{}
		for _, c := range days[i] {
			for f, v := range c.Val() {
				n, _ := strconv.ParseInt(v, 10, 64)
				counts[f] += n
			}
		}
		out[i] = store.ReportPeriod{Date: p.Date, Counts: counts, Visitors: visitors[i].Val()}
	}
	return out, nil
}
