package api

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/refgate/refgate/attribution"
)

// DecisionMetrics counts attribution decisions in
// refgate_decisions_total{event,outcome,reason}. All three labels come from
// fixed sets (attribution's events, outcomes and reason codes); every valid
// combination is created up front so that dashboards see zeros, not gaps.
type DecisionMetrics struct {
	vec     *prometheus.CounterVec
	replays *prometheus.CounterVec
}

// NewDecisionMetrics registers the decision counter on reg.
func NewDecisionMetrics(reg prometheus.Registerer) *DecisionMetrics {
	vec := promauto.With(reg).NewCounterVec(prometheus.CounterOpts{
		Name: "refgate_decisions_total",
		Help: "Attribution decisions by event (register, login, conversion, refund, customer), outcome and reason.",
	}, []string{"event", "outcome", "reason"})
	bindReasons := []string{attribution.ReasonTokenInvalid, attribution.ReasonTokenExpired, attribution.ReasonNoClick,
		attribution.ReasonAgentServed, attribution.ReasonPromoterSuspended, attribution.ReasonSamePerson,
		attribution.ReasonOldCustomer, attribution.ReasonProtectedByOther, attribution.ReasonClickUsed}
	convReasons := []string{attribution.ReasonZeroAmount, attribution.ReasonAgentServed, attribution.ReasonNoAssociation,
		attribution.ReasonSamePerson, attribution.ReasonPromoterSuspended, attribution.ReasonRepeatPurchase,
		attribution.ReasonNotPrepaid, attribution.ReasonProductIneligible}
	for _, ev := range []string{attribution.EventRegister, attribution.EventLogin} {
		for _, o := range []string{attribution.DecisionCreated, attribution.DecisionRenewed, attribution.DecisionOverridden, attribution.DecisionKept} {
			vec.WithLabelValues(ev, o, "")
		}
		for _, r := range bindReasons {
			vec.WithLabelValues(ev, attribution.DecisionRejected, r)
		}
	}
	vec.WithLabelValues(attribution.EventConversion, attribution.DecisionAttributed, "")
	for _, r := range convReasons {
		vec.WithLabelValues(attribution.EventConversion, attribution.DecisionRejected, r)
	}
	vec.WithLabelValues(attribution.EventRefund, attribution.DecisionRefunded, "")
	for _, ev := range []string{attribution.EventRegister, attribution.EventLogin, attribution.EventConversion, attribution.EventCustomer} {
		vec.WithLabelValues(ev, attribution.DecisionEnded, attribution.ReasonAgentServed)
	}
	for _, ev := range []string{attribution.EventRegister, attribution.EventLogin, attribution.EventConversion} {
		vec.WithLabelValues(ev, attribution.DecisionEnded, attribution.ReasonSamePerson)
	}
	replays := promauto.With(reg).NewCounterVec(prometheus.CounterOpts{
		Name: "refgate_decision_replays_total",
		Help: "Requests answered from a decision already stored (a retried order, refund, bind or customer update), by event; their events are emitted again under the same ids.",
	}, []string{"event"})
	for _, ev := range []string{attribution.EventRegister, attribution.EventLogin, attribution.EventConversion, attribution.EventRefund, attribution.EventCustomer} {
		replays.WithLabelValues(ev)
	}
	return &DecisionMetrics{vec: vec, replays: replays}
}

func (m *DecisionMetrics) replayed(event string) {
	if m != nil {
		m.replays.WithLabelValues(event).Inc()
	}
}

func (m *DecisionMetrics) count(d *attribution.Decision) {
	if m != nil {
		m.vec.WithLabelValues(d.Event, d.Outcome, d.Reason).Inc()
	}
}

// LedgerMetrics counts what the ledger writes and what its repair does.
type LedgerMetrics struct {
	entries  map[attribution.EntryKind]prometheus.Counter
	repaired prometheus.Counter
	left     prometheus.Counter
}

// NewLedgerMetrics registers the ledger's counters on reg.
func NewLedgerMetrics(reg prometheus.Registerer) *LedgerMetrics {
	f := promauto.With(reg)
	entries := f.NewCounterVec(prometheus.CounterOpts{
		Name: "refgate_ledger_entries_total",
		Help: "Ledger entries written, by kind: accrual, reversal, adjustment.",
	}, []string{"kind"})
	m := &LedgerMetrics{entries: map[attribution.EntryKind]prometheus.Counter{},
		repaired: f.NewCounter(prometheus.CounterOpts{
			Name: "refgate_ledger_repaired_total",
			Help: "Ledger entries written by the repair: their request stopped between storing the decision and writing the entry.",
		}),
		left: f.NewCounter(prometheus.CounterOpts{
			Name: "refgate_ledger_repair_failures_total",
			Help: "Ledger marks the repair could not resolve and left for its next run (the log line says why).",
		})}
	for _, k := range []attribution.EntryKind{attribution.Accrual, attribution.Reversal, attribution.Adjustment} {
		m.entries[k] = entries.WithLabelValues(string(k))
	}
	return m
}

func (m *LedgerMetrics) entry(k attribution.EntryKind) {
	if m != nil && m.entries[k] != nil {
		m.entries[k].Inc()
	}
}

func (m *LedgerMetrics) repair(written bool) {
	if m == nil {
		return
	}
	if written {
		m.repaired.Inc()
	} else {
		m.left.Inc()
	}
}

// unmatched is the route label of requests no route's path matched.
const unmatched = "unmatched"

// methods are the method label's values; any other method is "other".
var methods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}

// requestMetrics counts and times API requests by route template, method
// and status class: a bounded set of series whatever the paths asked for.
type requestMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newRequestMetrics(reg prometheus.Registerer) *requestMetrics {
	f := promauto.With(reg)
	m := &requestMetrics{
		requests: f.NewCounterVec(prometheus.CounterOpts{
			Name: "refgate_api_requests_total",
			Help: "API requests answered, by route template (unmatched: no route's path), method and status class (2xx, 4xx, 5xx).",
		}, []string{"route", "method", "status"}),
		duration: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "refgate_api_request_duration_seconds",
			Help:    "API request latency in the handler, by route template and method.",
			Buckets: []float64{250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3, 1, 2.5, 5},
		}, []string{"route", "method"}),
	}
	// Every route's series from the start, so that rates and alerts see a
	// zero before the first request.
	for _, r := range routes {
		for _, class := range []string{"2xx", "4xx", "5xx"} {
			m.requests.WithLabelValues(r.pattern, r.method, class)
		}
		m.duration.WithLabelValues(r.pattern, r.method)
	}
	return m
}

func (m *requestMetrics) observe(pattern string, method []byte, status int, took time.Duration) {
	if pattern == "" {
		pattern = unmatched
	}
	meth := "other"
	for _, k := range methods {
		if string(method) == k {
			meth = k
			break
		}
	}
	m.requests.WithLabelValues(pattern, meth, strconv.Itoa(status/100)+"xx").Inc()
	m.duration.WithLabelValues(pattern, meth).Observe(took.Seconds())
}
