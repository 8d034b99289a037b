package events

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	delivered     prometheus.Counter
	retried       prometheus.Counter
	spooled       prometheus.Counter
	dropped       *prometheus.CounterVec
	writeErrors   prometheus.Counter
	writeDuration prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer, p *Pipeline) *metrics {
	m := &metrics{
		delivered: prometheus.NewCounter(prometheus.CounterOpts{Name: "refgate_events_delivered_total",
			Help: "Events the sink took, directly or replayed from the spool."}),
		retried: prometheus.NewCounter(prometheus.CounterOpts{Name: "refgate_events_retried_total",
			Help: "Events sent to the sink again from the spool after a failed or stalled write."}),
		spooled: prometheus.NewCounter(prometheus.CounterOpts{Name: "refgate_events_spooled_total",
			Help: "Events written to the disk spool because the sink failed or the spool was being replayed."}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "refgate_events_dropped_total",
			Help: "Events lost, by reason: queue_full, spool_full, spool_error, encode."}, []string{"reason"}),
		writeErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "refgate_events_sink_write_errors_total",
			Help: "Sink writes that failed or timed out."}),
		writeDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "refgate_events_sink_write_duration_seconds",
			Help: "Time of one batched sink write.", Buckets: prometheus.ExponentialBuckets(0.0001, 4, 9)}),
	}
	for _, r := range []string{"queue_full", "spool_full", "spool_error", "encode"} {
		m.dropped.WithLabelValues(r)
	}
	reg.MustRegister(m.delivered, m.retried, m.spooled, m.dropped, m.writeErrors, m.writeDuration,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "refgate_events_queue_depth",
			Help: "Events waiting in memory for the sink."}, func() float64 { return float64(p.Depth()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "refgate_events_spool_bytes",
			Help: "Bytes of events in the disk spool waiting for replay."}, func() float64 { return float64(p.SpoolBytes()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "refgate_events_sink_up",
			Help: "1 while the last write to the event sink succeeded, 0 while it is failing (degraded)."},
			func() float64 {
				if p.healthy.Load() {
					return 1
				}
				return 0
			}),
	)
	return m
}
