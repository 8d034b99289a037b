package events

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	appended     prometheus.Counter
	dropped      *prometheus.CounterVec
	logErrors    prometheus.Counter
	syncDuration prometheus.Histogram
	consumers    map[string]*consumerMetrics
	filesBytes   prometheus.GaugeFunc // with Files only
}

// consumerMetrics are one consumer's series, labelled to="store" or "sink".
type consumerMetrics struct {
	delivered, replayed, errors prometheus.Counter
	duration, batchSize         prometheus.Observer
	up                          prometheus.Gauge
}

// DropReasons are the values of refgate_log_dropped_total's reason label.
var DropReasons = []string{"queue_full", "log_full", "log_error", "encode"}

func newMetrics(reg prometheus.Registerer, p *Pipeline) *metrics {
	to := []string{"to"}
	delivered := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "refgate_delivered_total",
		Help: "Records a consumer of the log took: to=store click records, to=sink events."}, to)
	replayed := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "refgate_delivery_replayed_total",
		Help: "Records a consumer read back from the log (after an outage or a restart) rather than from memory."}, to)
	errs := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "refgate_delivery_errors_total",
		Help: "Failed delivery attempts (each batch is retried under its id until taken)."}, to)
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "refgate_delivery_duration_seconds",
		Help: "Time of one delivery attempt.", Buckets: prometheus.ExponentialBuckets(0.0001, 4, 9)}, to)
	size := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "refgate_delivery_batch_size",
		Help: "Records per delivered batch.", Buckets: prometheus.ExponentialBuckets(1, 4, 7)}, to)
	up := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "refgate_delivery_up",
		Help: "1 while a consumer's last delivery succeeded, 0 while it is failing."}, to)
	m := &metrics{
		appended: prometheus.NewCounter(prometheus.CounterOpts{Name: "refgate_log_appended_total",
			Help: "Records (clicks and decision events) written to the local log."}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "refgate_log_dropped_total",
			Help: "Clicks and events lost, by reason: queue_full (the in-memory queue before the log), log_full (--spool-max-bytes), log_error (the disk failed), encode."}, []string{"reason"}),
		logErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "refgate_log_errors_total",
			Help: "Failed fsyncs, reads and cursor writes of the local log."}),
		syncDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "refgate_log_fsync_duration_seconds",
			Help: "Time of one fsync of the local log.", Buckets: prometheus.ExponentialBuckets(0.0001, 4, 9)}),
		consumers: map[string]*consumerMetrics{},
	}
	for _, r := range DropReasons {
		m.dropped.WithLabelValues(r)
	}
	for _, c := range []string{ToStore, ToSink} {
		m.consumers[c] = &consumerMetrics{delivered: delivered.WithLabelValues(c), replayed: replayed.WithLabelValues(c),
			errors: errs.WithLabelValues(c), duration: duration.WithLabelValues(c), batchSize: size.WithLabelValues(c),
			up: up.WithLabelValues(c)}
	}
	if p.cfg.Sink == nil {
		for _, v := range []interface{ DeleteLabelValues(...string) bool }{delivered, replayed, errs, duration, size, up} {
			v.DeleteLabelValues(ToSink)
		}
	}
	reg.MustRegister(m.appended, m.dropped, m.logErrors, m.syncDuration, delivered, replayed, errs, duration, size, up,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "refgate_queue_depth",
			Help: "Clicks and events waiting in memory to be written to the local log."}, func() float64 { return float64(p.Depth()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "refgate_log_bytes",
			Help: "Bytes of the local log that the store or the sink has not taken."}, func() float64 { return float64(p.LogBytes()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "refgate_log_max_bytes",
			Help: "The local log's bound (--spool-max-bytes): past it, clicks and events are dropped."}, func() float64 { return float64(p.cfg.MaxBytes) }),
	)
	if p.cfg.Files {
		m.filesBytes = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "refgate_event_files_bytes",
			Help: "Bytes of the JSON Lines event files kept on disk (embedded store), taken by the store or not."},
			func() float64 { n, _ := p.log.Size(); return float64(n) })
		reg.MustRegister(m.filesBytes, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "refgate_event_files",
			Help: "JSON Lines event files kept on disk (embedded store)."},
			func() float64 { _, n := p.log.Size(); return float64(n) }))
	}
	lag := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "refgate_delivery_lag_bytes",
		Help: "Bytes of the local log a consumer has not taken."}, to)
	reg.MustRegister(lagCollector{p, lag})
	return m
}

// lagCollector reports each consumer's lag when scraped.
type lagCollector struct {
	p   *Pipeline
	vec *prometheus.GaugeVec
}

func (l lagCollector) Describe(ch chan<- *prometheus.Desc) { l.vec.Describe(ch) }

func (l lagCollector) Collect(ch chan<- prometheus.Metric) {
	for _, c := range l.p.consumers {
		l.vec.WithLabelValues(c.name).Set(float64(l.p.log.Lag(c.name)))
	}
	l.vec.Collect(ch)
}
