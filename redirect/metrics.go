package redirect

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/refgate/refgate/attribution"
)

// Metrics are the edge's Prometheus metrics. Every label comes from a fixed
// set; link codes, promoters, hosts and paths are never labels.
type Metrics struct {
	clicks      map[attribution.Outcome]prometheus.Counter
	unavailable prometheus.Counter
	latency     prometheus.Observer
	cacheHit    prometheus.Counter
	cacheMiss   prometheus.Counter
	cacheNegHit prometheus.Counter
	cacheStale  prometheus.Counter
	clickErrors *prometheus.CounterVec
}

// NewMetrics registers the edge metrics on reg. Pass a fresh registry in
// tests.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	clicks := f.NewCounterVec(prometheus.CounterOpts{
		Name: "refgate_clicks_total",
		Help: "Clicks on /r/{code} by outcome.",
	}, []string{"outcome"})
	m := &Metrics{clicks: map[attribution.Outcome]prometheus.Counter{}}
	for _, o := range append(attribution.RecordedOutcomes, attribution.OutcomeNotFound) {
		m.clicks[o] = clicks.WithLabelValues(string(o))
	}
	m.unavailable = clicks.WithLabelValues("unavailable")
	m.latency = f.NewHistogram(prometheus.HistogramOpts{
		Name:    "refgate_click_duration_seconds",
		Help:    "Time to answer a click, from request parsed to response ready.",
		Buckets: []float64{10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 50e-3, 250e-3},
	})
	cache := f.NewCounterVec(prometheus.CounterOpts{
		Name: "refgate_link_cache_requests_total",
		Help: "Link cache lookups: hit, miss (read from the store), negative_hit (known unknown code), stale (served while it is read again: after a program or promoter change, or when the store failed).",
	}, []string{"result"})
	m.cacheHit = cache.WithLabelValues("hit")
	m.cacheMiss = cache.WithLabelValues("miss")
	m.cacheNegHit = cache.WithLabelValues("negative_hit")
	m.cacheStale = cache.WithLabelValues("stale")
	m.clickErrors = f.NewCounterVec(prometheus.CounterOpts{
		Name: "refgate_click_errors_total",
		Help: "Failures on the click path, by operation: link_lookup (answered 503), sign (answered without a cookie).",
	}, []string{"op"})
	for _, op := range []string{"link_lookup", "sign"} {
		m.clickErrors.WithLabelValues(op) // exported as 0 from the start
	}
	return m
}
