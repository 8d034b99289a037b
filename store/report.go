package store

import (
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

// ClickBucket is what one batch of clicks adds to one day bucket.
type ClickBucket struct {
	Program  string
	Day      time.Time // UTC midnight
	Scope    ReportScope
	Counts   ReportCounts
	Visitors []string  // of attributed clicks, repeats included
	Latest   time.Time // the latest click's time, for the bucket's TTL
}

var clickFields = func() map[attribution.Outcome]string {
	m := map[attribution.Outcome]string{}
	for _, o := range attribution.RecordedOutcomes {
		m[o] = ClickField(o)
	}
	return m
}()

// ClickBuckets groups a batch of clicks by program, day and scope (the
// program, the click's promoter, its link), ordered by program. Work is
// per batch and bucket; per click it is map lookups only, no allocation
// for the outcomes RecordedOutcomes lists.
func ClickBuckets(clicks []attribution.Click) []*ClickBucket {
	type key struct {
		program string
		day     int64
		scope   ReportScope
	}
	m := make(map[key]*ClickBucket, 16)
	var out []*ClickBucket
	add := func(c *attribution.Click, day int64, s ReportScope, field string) {
		k := key{c.Program, day, s}
		b := m[k]
		if b == nil {
			b = &ClickBucket{Program: c.Program, Day: time.Unix(day*86400, 0).UTC(), Scope: s, Counts: ReportCounts{}}
			m[k] = b
			out = append(out, b)
		}
		b.Counts[field]++
		if c.Outcome == attribution.OutcomeAttributed && c.Visitor != "" {
			b.Visitors = append(b.Visitors, c.Visitor)
		}
		if c.At.After(b.Latest) {
			b.Latest = c.At
		}
	}
	for i := range clicks {
		c := &clicks[i]
		field, ok := clickFields[c.Outcome]
		if !ok {
			field = ClickField(c.Outcome)
		}
		day := c.At.Unix()
		if day < 0 {
			day = 0 // before 1970: no day a report reads
		}
		day /= 86400
		add(c, day, ReportScope{Kind: 'p'}, field)
		if c.Promoter != "" {
			add(c, day, ReportScope{'a', c.Promoter}, field)
		}
		if c.Link != "" {
			add(c, day, ReportScope{'l', c.Link}, field)
		}
	}
	// Stable by program: a store writes one program's buckets together.
	sortByProgram(out)
	return out
}

func sortByProgram(bs []*ClickBucket) {
	slices.SortStableFunc(bs, func(a, b *ClickBucket) int { return strings.Compare(a.Program, b.Program) })
}
