package embedded

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	"github.com/axiomhq/hyperloglog"
	bolt "go.etcd.io/bbolt"

	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/store"
)

// Reports are one bucket, bReports, of day buckets keyed
//
//	program 0x00 YYYYMMDD 0x00 scope   (scope "p", "a:PROMOTER" or "l:LINK")
//
// each holding the length of the counts' JSON (a uvarint), that JSON
// (field → count) and the day's visitors as a marshalled HyperLogLog
// sketch (axiomhq/hyperloglog, precision 14: sparse, tens of bytes to a
// few KiB, while the day has a few thousand visitors or fewer, then 16
// KiB, which every batch counting clicks of that scope rewrites). They are written in the transaction
// of what they count: RecordClicks's, PostEntry's, CountReport's (whose id
// is remembered as a click batch id is, store.BatchKeep). The sweeper
// deletes a day ReportRetention after its end.
var bReports = []byte("reports")

type reportDay struct {
	Counts   store.ReportCounts
	Visitors []byte // a marshalled sketch; none without visitors
}

func reportKey(program string, day time.Time, s store.ReportScope) []byte {
	return []byte(program + "\x00" + store.DayKey(day) + "\x00" + s.Key())
}

// reportKeyDay is the day of a report key, false for a key that is none.
func reportKeyDay(k []byte) (time.Time, bool) {
	i := bytes.IndexByte(k, 0)
	if i < 0 || len(k) < i+10 || k[i+9] != 0 {
		return time.Time{}, false
	}
	d, err := time.Parse("20060102", string(k[i+1:i+9]))
	return d, err == nil
}

func readDay(v []byte) (*reportDay, error) {
	d := &reportDay{}
	if v == nil {
		return d, nil
	}
	n, k := binary.Uvarint(v)
	if k <= 0 || uint64(len(v)-k) < n {
		return nil, fmt.Errorf("corrupt report day")
	}
	if err := json.Unmarshal(v[k:k+int(n)], &d.Counts); err != nil {
		return nil, fmt.Errorf("corrupt report day: %w", err)
	}
	d.Visitors = v[k+int(n):]
	return d, nil
}

func (d *reportDay) encode() ([]byte, error) {
	js, err := json.Marshal(d.Counts)
	if err != nil {
		return nil, err
	}
	b := binary.AppendUvarint(make([]byte, 0, binary.MaxVarintLen64+len(js)+len(d.Visitors)), uint64(len(js)))
	return append(append(b, js...), d.Visitors...), nil
}

func (d *reportDay) sketch() (*hyperloglog.Sketch, error) {
	sk := hyperloglog.New14()
	if len(d.Visitors) > 0 {
		if err := sk.UnmarshalBinary(d.Visitors); err != nil {
			return nil, fmt.Errorf("corrupt report visitors: %w", err)
		}
	}
	return sk, nil
}

// addReport adds counts and visitors to one day bucket.
func addReport(tx *bolt.Tx, program string, day time.Time, s store.ReportScope, counts store.ReportCounts, visitors []string) error {
	b := tx.Bucket(bReports)
	k := reportKey(program, day, s)
	d, err := readDay(b.Get(k))
	if err != nil {
		return err
	}
	if d.Counts == nil {
		d.Counts = store.ReportCounts{}
	}
	d.Counts.Add(counts)
	if len(visitors) > 0 {
		sk, err := d.sketch()
		if err != nil {
			return err
		}
		for _, v := range visitors {
			sk.Insert([]byte(v))
		}
		if d.Visitors, err = sk.MarshalBinary(); err != nil {
			return err
		}
	}
	v, err := d.encode()
	if err != nil {
		return err
	}
	return b.Put(k, v)
}

// addClickReports counts a batch's clicks, in its transaction.
func addClickReports(tx *bolt.Tx, clicks []attribution.Click) error {
	for _, b := range store.ClickBuckets(clicks) {
		if err := addReport(tx, b.Program, b.Day, b.Scope, b.Counts, b.Visitors); err != nil {
			return err
		}
	}
	return nil
}

// addCommission adds a new entry's amount to its day's commission.
func addCommission(tx *bolt.Tx, e *attribution.Entry) error {
	counts := store.ReportCounts{store.FieldCommission: e.Amount}
	for _, sc := range store.Scopes(e.Promoter, e.Link) {
		if err := addReport(tx, e.Program, store.DayStart(e.At), sc, counts, nil); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) CountReport(_ context.Context, id, program, promoter, link string, at time.Time, counts store.ReportCounts) error {
	if err := store.CheckReportID(id); err != nil {
		return err
	}
	if len(counts) == 0 {
		return nil
	}
	now := s.now()
	err := s.db.Update(func(tx *bolt.Tx) error {
		// Kept with the click batch ids, under a name no batch id has
		// (they are printable).
		written, err := rememberBatch(tx, "\x00r\x00"+program+"\x00"+id, now)
		if err != nil || written {
			return err
		}
		for _, sc := range store.Scopes(promoter, link) {
			if err := addReport(tx, program, store.DayStart(at), sc, counts, nil); err != nil {
				return err
			}
		}
		return nil
	})
	return translate(err)
}

func (s *Store) Report(_ context.Context, q store.ReportQuery) ([]store.ReportPeriod, error) {
	periods, err := store.ReportPeriods(q)
	if err != nil {
		return nil, err
	}
	sc := q.Scope()
	out := make([]store.ReportPeriod, len(periods))
	err = s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bReports)
		for i, p := range periods {
			counts := store.ReportCounts{}
			var union *hyperloglog.Sketch
			for _, day := range p.Days {
				v := b.Get(reportKey(q.Program, day, sc))
				if v == nil {
					continue
				}
				d, err := readDay(v)
				if err != nil {
					return err
				}
				counts.Add(d.Counts)
				if len(d.Visitors) == 0 {
					continue
				}
				sk, err := d.sketch()
				if err != nil {
					return err
				}
				if union == nil {
					union = sk
				} else if err := union.Merge(sk); err != nil {
					return err
				}
			}
			out[i] = store.ReportPeriod{Date: p.Date, Counts: counts}
			if union != nil {
				out[i].Visitors = int64(union.Estimate())
			}
		}
		return nil
	})
	if err != nil {
		return nil, translate(err)
	}
	return out, nil
}
