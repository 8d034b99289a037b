package embedded

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	bolt "go.etcd.io/bbolt"

	"github.com/refgate/refgate/attribution"
)

// Swept record kinds, the values of refgate_store_swept_total's record
// label.
const (
	sweptVisitor     = "visitor"     // a visitor's click record
	sweptClickClaim  = "click_claim" // a customer's use of a click
	sweptCustomer    = "customer"    // a customer record left with nothing a rule reads
	sweptAssociation = "association" // an expired association, pruned from a customer that stays
	sweptReportDay   = "report_day"  // a report's day bucket past the retention
)

type sweepMetrics struct {
	swept          map[string]prometheus.Counter
	passOK, passKO prometheus.Counter
}

func newSweepMetrics(reg prometheus.Registerer) sweepMetrics {
	f := promauto.With(reg)
	swept := f.NewCounterVec(prometheus.CounterOpts{Name: "refgate_store_swept_total",
		Help: "Expired records the embedded store deleted, by record: visitor, click_claim, customer, report_day; association counts expired associations pruned from customers that stay."},
		[]string{"record"})
	passes := f.NewCounterVec(prometheus.CounterOpts{Name: "refgate_store_sweeps_total",
		Help: "Sweeps of the embedded store, by result: ok, error."}, []string{"result"})
	m := sweepMetrics{swept: map[string]prometheus.Counter{}, passOK: passes.WithLabelValues("ok"),
		passKO: passes.WithLabelValues("error")}
	for _, k := range []string{sweptVisitor, sweptClickClaim, sweptCustomer, sweptAssociation, sweptReportDay} {
		m.swept[k] = swept.WithLabelValues(k)
	}
	return m
}

// sweeper sweeps every SweepInterval until Close.
func (s *Store) sweeper() {
	defer close(s.swept)
	if s.cfg.SweepInterval < 0 {
		<-s.stop
		return
	}
	t := time.NewTicker(s.cfg.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		start := time.Now()
		n, err := s.sweep()
		switch {
		case err != nil:
			s.m.passKO.Inc()
			s.cfg.Logger.Error("cannot sweep expired records", "err", err, "swept", n)
		default:
			s.m.passOK.Inc()
			if len(n) > 0 {
				s.cfg.Logger.Info("swept expired records", "swept", n, "took", time.Since(start).Round(time.Millisecond))
			}
		}
	}
}

// sweepFunc decides, for one key and value of a bucket, whether the record
// goes (del) or is rewritten (put non-nil), and what to count; nothing to
// do is neither. It must decide from the value alone: it runs once to
// choose candidates and again, on the value then current, to act.
type sweepFunc func(k, v []byte, now time.Time) (del bool, put []byte, counts []string)

// sweep goes once through every bucket that holds expiring records and
// returns how many records of each kind went. It stops early, without an
// error, when the store is closing.
func (s *Store) sweep() (map[string]int, error) {
	n := map[string]int{}
	// The report deltas waiting are folded first, so none is left of a
	// day the sweep deletes.
	if err := s.db.Update(func(tx *bolt.Tx) error { return s.foldReports(tx, nil, s.now()) }); err != nil {
		return n, err
	}
	grace := s.cfg.SweepGrace
	for _, b := range []struct {
		bucket []byte
		fn     sweepFunc
	}{
		{bVisitors, func(_, v []byte, now time.Time) (bool, []byte, []string) {
			var c struct {
				ExpiresAt time.Time `json:"expires_at"`
			}
			if json.Unmarshal(v, &c) != nil || now.Sub(c.ExpiresAt) <= grace {
				return false, nil, nil
			}
			return true, nil, []string{sweptVisitor}
		}},
		{bClickUse, func(_, v []byte, now time.Time) (bool, []byte, []string) {
			_, exp, ok := parseClaim(v)
			if !ok || now.Sub(exp) <= grace {
				return false, nil, nil // a claim written before claims had an expiry is kept
			}
			return true, nil, []string{sweptClickClaim}
		}},
		{bHolders, func(_, v []byte, now time.Time) (bool, []byte, []string) {
			// A member of the index of holders whose association
			// expired: Holders lists it no more.
			exp, err := time.Parse(time.RFC3339Nano, string(v))
			return err == nil && now.Sub(exp) > grace, nil, nil
		}},
		{bCustomers, func(_, v []byte, now time.Time) (bool, []byte, []string) {
			var c attribution.Customer
			if json.Unmarshal(v, &c) != nil {
				return false, nil, nil
			}
			before := associations(&c)
			if !c.Prune(now, grace) {
				return false, nil, nil
			}
			var counts []string
			for range before - associations(&c) {
				counts = append(counts, sweptAssociation)
			}
			if c.Empty() {
				return true, nil, append(counts, sweptCustomer)
			}
			b, err := json.Marshal(&c)
			if err != nil {
				return false, nil, nil
			}
			return false, b, counts
		}},
		{bReports, func(k, _ []byte, now time.Time) (bool, []byte, []string) {
			day, ok := reportKeyDay(k)
			if !ok || !now.After(day.Add(24*time.Hour+s.cfg.ReportRetention)) {
				return false, nil, nil
			}
			s.sketches.forget(k)
			if bytes.HasSuffix(k, []byte{0, 'v'}) {
				return true, nil, nil // the day's visitors: its counts are the report day
			}
			return true, nil, []string{sweptReportDay}
		}},
	} {
		if err := s.sweepBucket(b.bucket, b.fn, n); err != nil {
			return n, err
		}
	}
	return n, nil
}

// sweepBucket looks at SweepBatch keys at a time in a read transaction and
// acts on those that need it in a write transaction of their own, deciding
// again on the value it finds there: between the two a write may have
// replaced the record.
func (s *Store) sweepBucket(bucket []byte, fn sweepFunc, n map[string]int) error {
	var from []byte
	for {
		select {
		case <-s.stop:
			return nil
		default:
		}
		now := s.clock()
		var todo [][]byte
		var next []byte
		err := s.db.View(func(tx *bolt.Tx) error {
			c := tx.Bucket(bucket).Cursor()
			k, v := c.First()
			if from != nil {
				k, v = c.Seek(from)
			}
			for i := 0; k != nil && i < s.cfg.SweepBatch; i++ {
				if del, put, _ := fn(k, v, now); del || put != nil {
					todo = append(todo, bytes.Clone(k))
				}
				k, v = c.Next()
			}
			next = bytes.Clone(k) // nil at the end
			return nil
		})
		if err != nil {
			return translate(err)
		}
		if len(todo) > 0 {
			var counted []string
			err = s.db.Update(func(tx *bolt.Tx) error {
				counted = counted[:0]
				b := tx.Bucket(bucket)
				for _, k := range todo {
					v := b.Get(k)
					if v == nil {
						continue
					}
					del, put, counts := fn(k, v, now)
					switch {
					case del:
						if err := b.Delete(k); err != nil {
							return err
						}
					case put != nil:
						if err := b.Put(k, put); err != nil {
							return err
						}
					}
					counted = append(counted, counts...)
				}
				return nil
			})
			if err != nil {
				return translate(err)
			}
			for _, kind := range counted {
				n[kind]++
				s.m.swept[kind].Inc()
			}
		}
		if next == nil {
			return nil
		}
		from = next
	}
}

// A click claim's value: 0x00, its expiry (unix ms, 8 bytes big-endian),
// the claim id. Claims written before they had an expiry are the claim id
// alone (never starting with 0x00) and are kept.
func claimValue(claim string, exp time.Time) []byte {
	b := binary.BigEndian.AppendUint64([]byte{0}, uint64(exp.UnixMilli()))
	return append(b, claim...)
}

func parseClaim(v []byte) (claim string, exp time.Time, ok bool) {
	if len(v) < 9 || v[0] != 0 {
		return string(v), time.Time{}, false
	}
	return string(v[9:]), time.UnixMilli(int64(binary.BigEndian.Uint64(v[1:9]))), true
}

// associations counts c's associations, expired or not.
func associations(c *attribution.Customer) int {
	n := 0
	for _, st := range c.Programs {
		if st.Assoc != nil {
			n++
		}
	}
	return n
}
