package store

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/refgate/refgate/attribution"
)

// Reports (docs/design.md "Reports"): counts per UTC day for every program,
// promoter and link, kept ReportRetention past the day's end. A day bucket
// holds ReportCounts, named by the fields below, and the distinct visitors
// of the day's attributed clicks (a HyperLogLog). Clicks are counted by
// RecordClicks, commission by PostEntry, the rest by CountReport.

// Report counter names. Every outcome, bind outcome and conversion key
// has its own field; cash, commission and refunded are sums in minor
// units.
const (
	FieldCash       = "cash"
	FieldCommission = "commission"
	FieldRefunded   = "refunded"
)

// ClickField is the counter of clicks of outcome o.
func ClickField(o attribution.Outcome) string { return "c:" + string(o) }

// BindField is the counter of binds of outcome (attribution.DecisionCreated,
// ...).
func BindField(outcome string) string { return "b:" + outcome }

// ConversionField is the counter of conversions of key: "attributed" or a
// rejection reason.
func ConversionField(key string) string { return "v:" + key }

// BindOutcomes are the outcomes binds are counted by.
var BindOutcomes = []string{attribution.DecisionCreated, attribution.DecisionRenewed,
	attribution.DecisionOverridden, attribution.DecisionKept, attribution.DecisionRejected}

// ConversionKeys are the keys conversions are counted by: attributed, then
// every reason attribution.Convert rejects an order for, in its order.
var ConversionKeys = []string{attribution.DecisionAttributed, attribution.ReasonZeroAmount,
	attribution.ReasonAgentServed, attribution.ReasonNoAssociation, attribution.ReasonSamePerson,
	attribution.ReasonPromoterSuspended, attribution.ReasonRepeatPurchase, attribution.ReasonNotPrepaid,
	attribution.ReasonProductIneligible}

// ReportCounts are counters of one day bucket by field name. A field not
// there is 0.
type ReportCounts map[string]int64

// Add adds o into c.
func (c ReportCounts) Add(o ReportCounts) {
	for k, v := range o {
		c[k] += v
	}
}

// DefaultReportRetention is how long a day bucket is kept past the day's
// end unless a store is told otherwise (--report-retention).
const DefaultReportRetention = 400 * 24 * time.Hour

// MaxReportDays bounds the days one Report reads.
const MaxReportDays = 1000

// ReportQuery is a Report read: the series of a program, of one promoter
// or one link of it, or of the program as a whole when both are empty.
type ReportQuery struct {
	Program  string
	Promoter string // at most one of Promoter and Link
	Link     string
	// From and To are the first and last day, both included: UTC
	// midnights, From not after To, at most MaxReportDays apart.
	From, To time.Time
	Month    bool // one period per calendar month, else per day
}

// ReportPeriod is one element of a report: a day or the days of one month
// inside the query's range.
type ReportPeriod struct {
	Date     string       // YYYY-MM-DD, or YYYY-MM for a month
	Counts   ReportCounts // summed over the period's days
	Visitors int64        // distinct visitors over the period (a union, not a sum)
}

// Period is a span of days of a report.
type Period struct {
	Date string      // YYYY-MM-DD or YYYY-MM
	Days []time.Time // UTC midnights, oldest first
}

// ReportPeriods checks q and splits its range into periods, every day of
// the range in one.
func ReportPeriods(q ReportQuery) ([]Period, error) {
	from, to := q.From.UTC(), q.To.UTC()
	switch {
	case q.Promoter != "" && q.Link != "":
		return nil, fmt.Errorf("report of a promoter or of a link, not both")
	case !from.Equal(DayStart(from)) || !to.Equal(DayStart(to)):
		return nil, fmt.Errorf("report days must be UTC midnights")
	case from.After(to):
		return nil, fmt.Errorf("report from %s is after to %s", from.Format(time.DateOnly), to.Format(time.DateOnly))
	case int(to.Sub(from)/(24*time.Hour))+1 > MaxReportDays:
		return nil, fmt.Errorf("report of more than %d days", MaxReportDays)
	}
	var out []Period
	for d := from; !d.After(to); d = d.AddDate(0, 0, 1) {
		label := d.Format(time.DateOnly)
		if q.Month {
			label = d.Format("2006-01")
		}
		if n := len(out); n > 0 && out[n-1].Date == label {
			out[n-1].Days = append(out[n-1].Days, d)
			continue
		}
		out = append(out, Period{Date: label, Days: []time.Time{d}})
	}
	return out, nil
}

// DayStart is the UTC midnight starting t's day.
func DayStart(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// DayKey is t's UTC day as YYYYMMDD, as stores key day buckets.
func DayKey(t time.Time) string { return t.UTC().Format("20060102") }

// ReportTTL is how long from at a day bucket of at's day is still to be
// kept: to the day's end plus retention. It is at least retention, for a
// bucket written late (a ledger repair) as for one written that day.
func ReportTTL(at time.Time, retention time.Duration) time.Duration {
	return DayStart(at).Add(24*time.Hour + retention).Sub(at)
}

// CheckReportID returns an error for a CountReport id the store must
// refuse.
func CheckReportID(id string) error {
	if id == "" || len(id) > MaxMark {
		return fmt.Errorf("bad report count id %q: want 1 to %d bytes", id, MaxMark)
	}
	return nil
}

// ReportScope is whose bucket: the program's ('p'), a promoter's ('a') or
// a link's ('l').
type ReportScope struct {
	Kind byte
	ID   string
}

// Key is the scope as stores key it: "p", "a:PROMOTER" or "l:LINK".
func (s ReportScope) Key() string {
	if s.Kind == 'p' {
		return "p"
	}
	return string(s.Kind) + ":" + s.ID
}

// Scope is the scope q reads.
func (q ReportQuery) Scope() ReportScope {
	switch {
	case q.Promoter != "":
		return ReportScope{'a', q.Promoter}
	case q.Link != "":
		return ReportScope{'l', q.Link}
	}
	return ReportScope{Kind: 'p'}
}

// Scopes are the buckets a count goes to: the program's, and the
// promoter's and the link's when not empty.
func Scopes(promoter, link string) []ReportScope {
	out := []ReportScope{{Kind: 'p'}}
	if promoter != "" {
		out = append(out, ReportScope{'a', promoter})
	}
	if link != "" {
		out = append(out, ReportScope{'l', link})
	}
	return out
}

// LinkOutcome names one link counter: the clicks of one outcome on one
// link (Store.LinkStats).
type LinkOutcome struct {
	Link    string
	Outcome attribution.Outcome
}

// LinkCounts is what a batch adds to its links' counters: one count per
// link and outcome, not per click, so a store writes each counter once.
func LinkCounts(clicks []attribution.Click) map[LinkOutcome]int64 {
	n := make(map[LinkOutcome]int64, 64)
	for i := range clicks {
		n[LinkOutcome{clicks[i].Link, clicks[i].Outcome}]++
	}
	return n
}

// ClickDay is what one batch of clicks adds to one program's day.
type ClickDay struct {
	Program string
	Day     time.Time // UTC midnight
	Latest  time.Time // the latest click's time, for the buckets' TTL
	// Buckets are the program's first, then its promoters' and its
	// links' in the order the batch first has them, each scope once (a
	// link whose promoter changed within the batch has one bucket per
	// promoter).
	Buckets []ClickBucket
}

// ClickBucket is what one batch of clicks adds to one day bucket.
type ClickBucket struct {
	Scope  ReportScope
	Counts ReportCounts
	// Visitors are those of the bucket's attributed clicks, repeats
	// included, that no bucket below it holds: a link's on its bucket,
	// and on a promoter's or the program's only those of clicks with no
	// link. A bucket's visitors are also those of Buckets[Of] and of
	// Buckets[0], the program's, so a store sends each visitor once.
	Visitors []string
	Of       int // a link's bucket: its promoter's; 0 for the others
}

// VisitorsOf calls fn with each bucket whose visitors are also Buckets[i]'s
// own, i itself first: i, its promoter's, the program's.
func (d *ClickDay) VisitorsOf(i int, fn func(j int)) {
	fn(i)
	if of := d.Buckets[i].Of; of != 0 && of != i {
		fn(of)
	}
	if i != 0 {
		fn(0)
	}
}

// clickSlots is how many outcomes a clickSource counts in its array.
const clickSlots = 8

// clickIndex is the index of o in attribution.RecordedOutcomes, -1 for
// an outcome not there or past clickSlots. Attributed, the most frequent,
// comes first.
func clickIndex(o attribution.Outcome) int {
	for i, r := range clickOutcomes {
		if r == o {
			return i
		}
	}
	return -1
}

var (
	clickOutcomes = attribution.RecordedOutcomes[:min(len(attribution.RecordedOutcomes), clickSlots)]
	clickFields   = func() []string {
		out := make([]string, len(clickOutcomes))
		for i, o := range clickOutcomes {
			out[i] = ClickField(o)
		}
		return out
	}()
)

// clickSource is what a batch adds from one link (with one promoter) on
// one day: per click one map lookup, an array increment and, for an
// attributed click, an append.
type clickSource struct {
	program, promoter, link string
	day                     int64
	counts                  [clickSlots]int64
	other                   map[attribution.Outcome]int64 // outcomes RecordedOutcomes lacks
	visitors                []string
	nv                      int // len(visitors) once filled
	latest                  time.Time
}

func (c *clickSource) addTo(counts ReportCounts) {
	for i, n := range c.counts[:len(clickFields)] {
		if n != 0 {
			counts[clickFields[i]] += n
		}
	}
	for o, n := range c.other {
		counts[ClickField(o)] += n
	}
}

// ClickBuckets groups a batch of clicks by program and day, and each
// day's by scope: the program, the clicks' promoters, their links. Days
// are ordered by program, then day. Per click the work is one map lookup
// and no allocation but the visitor's append; the rest is per bucket.
func ClickBuckets(clicks []attribution.Click) []ClickDay {
	type key struct {
		program, promoter, link string
		day                     int64
	}
	m := make(map[key]int, 64)
	var all []clickSource
	srcOf := make([]int32, len(clicks)) // each click's source
	nv := 0                             // attributed clicks' visitors
	for i := range clicks {
		c := &clicks[i]
		day := c.At.Unix()
		if day < 0 {
			day = 0 // before 1970: no day a report reads
		}
		day /= 86400
		k := key{c.Program, c.Promoter, c.Link, day}
		j, ok := m[k]
		if !ok {
			j = len(all)
			all = append(all, clickSource{program: c.Program, promoter: c.Promoter, link: c.Link, day: day})
			m[k] = j
		}
		srcOf[i] = int32(j)
		src := &all[j]
		if o := clickIndex(c.Outcome); o >= 0 {
			src.counts[o]++
		} else {
			if src.other == nil {
				src.other = map[attribution.Outcome]int64{}
			}
			src.other[c.Outcome]++
		}
		if c.Outcome == attribution.OutcomeAttributed && c.Visitor != "" {
			src.nv++
			nv++
		}
		if c.At.After(src.latest) {
			src.latest = c.At
		}
	}
	// The visitors: one array, each source's a window of it.
	vs := make([]string, nv)
	for j := range all {
		if n := all[j].nv; n > 0 {
			all[j].visitors, vs = vs[:0:n], vs[n:]
		}
	}
	for i := range clicks {
		if c := &clicks[i]; c.Outcome == attribution.OutcomeAttributed && c.Visitor != "" {
			src := &all[srcOf[i]]
			src.visitors = append(src.visitors, c.Visitor)
		}
	}
	sources := make([]*clickSource, len(all))
	for j := range all {
		sources[j] = &all[j]
	}
	slices.SortStableFunc(sources, func(a, b *clickSource) int {
		if c := strings.Compare(a.program, b.program); c != 0 {
			return c
		}
		return cmp.Compare(a.day, b.day)
	})
	type bucketKey struct {
		s  ReportScope
		of int
	}
	var out []ClickDay
	var index map[bucketKey]int // of the current day's buckets
	bucket := func(d *ClickDay, s ReportScope, of int) int {
		k := bucketKey{s, of}
		j, ok := index[k]
		if !ok {
			j = len(d.Buckets)
			d.Buckets = append(d.Buckets, ClickBucket{Scope: s, Counts: ReportCounts{}, Of: of})
			index[k] = j
		}
		return j
	}
	for _, src := range sources {
		n := len(out)
		if n == 0 || out[n-1].Program != src.program || out[n-1].Day.Unix() != src.day*86400 {
			out = append(out, ClickDay{Program: src.program, Day: time.Unix(src.day*86400, 0).UTC(),
				Buckets: []ClickBucket{{Scope: ReportScope{Kind: 'p'}, Counts: ReportCounts{}}}})
			n++
			index = map[bucketKey]int{{s: ReportScope{Kind: 'p'}}: 0}
		}
		d := &out[n-1]
		if src.latest.After(d.Latest) {
			d.Latest = src.latest
		}
		own := 0 // the bucket the source's visitors go to
		src.addTo(d.Buckets[0].Counts)
		if src.promoter != "" {
			own = bucket(d, ReportScope{'a', src.promoter}, 0)
			src.addTo(d.Buckets[own].Counts)
		}
		if src.link != "" {
			own = bucket(d, ReportScope{'l', src.link}, own)
			src.addTo(d.Buckets[own].Counts)
		}
		if b := &d.Buckets[own]; b.Visitors == nil {
			b.Visitors = src.visitors
		} else {
			b.Visitors = append(b.Visitors, src.visitors...)
		}
	}
	return out
}
