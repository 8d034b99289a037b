package redisstore

import (
	"context"
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
// cash, commission, refunded. A day's keys expire (PEXPIRE, set again by
// every write) at the day's end plus the retention, counted from the time
// of the write's data as the server's clock gave it (store.ReportTTL), so
// a test clock ahead of Redis's cannot make Redis drop a live day.

func reportKey(program, day string, s store.ReportScope) string {
	return lk(program, "rp:"+day+":"+s.Key())
}

func visitorsKey(program, day string, s store.ReportScope) string {
	return lk(program, "rv:"+day+":"+s.Key())
}

// reportAdd adds counts to day hashes and visitors to day HyperLogLogs,
// unless the marker says it was done: marker and counts are written
// together or not at all. The marker's SET is the first write, so a
// refusal (OOM) writes nothing. KEYS marker, then the keys to add to.
// ARGV marker TTL ms, then per key: 'h' (hash) or 'x' (HyperLogLog), its
// TTL ms, n, then n field, count pairs or n visitors.
var reportAdd = redis.NewScript(reportAddSrc)

const reportAddSrc = `
if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then return 0 end
local a = 2
for k = 2, #KEYS do
  local kind, ttl, n = ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2])
  a = a + 3
  if kind == 'h' then
    for j = a, a + 2 * n - 1, 2 do redis.call('HINCRBY', KEYS[k], ARGV[j], ARGV[j + 1]) end
    a = a + 2 * n
  else
    for j = a, a + n - 1, 1000 do redis.call('PFADD', KEYS[k], unpack(ARGV, j, math.min(j + 999, a + n - 1))) end
    a = a + n
  end
  redis.call('PEXPIRE', KEYS[k], ttl)
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

func (r *reportArgs) hash(key string, ttl time.Duration, counts store.ReportCounts) {
	r.keys = append(r.keys, key)
	r.args = append(r.args, "h", ttlMs(ttl), len(counts))
	for f, n := range counts {
		r.args = append(r.args, f, n)
	}
}

func (r *reportArgs) visitors(key string, ttl time.Duration, vs []string) {
	r.keys = append(r.keys, key)
	r.args = append(r.args, "x", ttlMs(ttl), len(vs))
	for _, v := range vs {
		r.args = append(r.args, v)
	}
}

func ttlMs(d time.Duration) int64 { return max(d.Milliseconds(), 1) }

// queueClickReports adds to pipe one reportAdd per program of the batch.
func (s *Store) queueClickReports(ctx context.Context, pipe redis.Pipeliner, batch string, buckets []*store.ClickBucket) {
	for i := 0; i < len(buckets); {
		p := buckets[i].Program
		r := newReportArgs(lk(p, "rp:b:"+batch))
		for ; i < len(buckets) && buckets[i].Program == p; i++ {
			b := buckets[i]
			day := store.DayKey(b.Day)
			ttl := store.ReportTTL(b.Latest, s.retention)
			r.hash(reportKey(p, day, b.Scope), ttl, b.Counts)
			if len(b.Visitors) > 0 {
				r.visitors(visitorsKey(p, day, b.Scope), ttl, b.Visitors)
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
	day, ttl := store.DayKey(at), store.ReportTTL(at, s.retention)
	for _, sc := range store.Scopes(promoter, link) {
		r.hash(reportKey(program, day, sc), ttl, counts)
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
