package forwarder

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tapwire/tapwire/internal/wire"
)

// metrics are the forwarder's Prometheus series, served at GET /metrics.
// docs/forwarder.md lists them.
type metrics struct {
	batches  prometheus.Counter
	encoding *prometheus.CounterVec // accepted batches by Content-Encoding
	received prometheus.Counter
	rejected *prometheus.CounterVec // by reason: bad, unauthorized, busy, spool, shutdown
	filtered prometheus.Counter
	redacted prometheus.Counter     // records changed by redaction
	rules    *prometheus.CounterVec // redactions by rule id
}

func newMetrics(reg prometheus.Registerer, s *Server) *metrics {
	m := &metrics{
		batches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "forwarder_batches_received_total", Help: "Batches accepted from goproxies (answered 200)."}),
		encoding: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "forwarder_batches_encoding_total", Help: "Batches accepted, by Content-Encoding: zstd, s2 (goproxy once it has seen this forwarder list it), gzip, identity."},
			[]string{"encoding"}),
		received: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "forwarder_records_received_total", Help: "Records in accepted batches, before filters."}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "forwarder_batches_rejected_total", Help: "Batches refused, by reason: bad (4xx), unauthorized, busy (429), spool (503), shutdown (503)."},
			[]string{"reason"}),
		filtered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "forwarder_records_filtered_total", Help: "Records dropped by the filter (SPEEDSCALE_FILTER_RULE)."}),
		redacted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "forwarder_records_redacted_total", Help: "Records changed by at least one redaction rule."}),
		rules: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "forwarder_redactions_total", Help: "Records changed, by redaction rule id."}, []string{"rule"}),
	}
	for _, r := range []string{"bad", "unauthorized", "busy", "spool", "shutdown"} {
		m.rejected.WithLabelValues(r)
	}
	for _, e := range []string{wire.EncodingZstd, wire.EncodingS2, wire.EncodingGzip, wire.EncodingIdentity} {
		m.encoding.WithLabelValues(e)
	}
	reg.MustRegister(m.batches, m.encoding, m.received, m.rejected, m.filtered, m.redacted, m.rules)

	sp := s.spool
	unauth := 0.0
	if s.cfg.Token == "" {
		unauth = 1
	}
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "forwarder_unauthenticated",
			Help: "1 when FORWARDER_TOKEN is not set: batches are accepted from anyone who can reach the port."},
			func() float64 { return unauth }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "forwarder_spool_bytes", Help: "Bytes of the spool on disk."},
			func() float64 { return float64(sp.Stats().Bytes) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "forwarder_spool_records_total", Help: "Records written to the spool."},
			func() float64 { return float64(s.spooled.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "forwarder_batches_pre_redacted_total",
			Help: "Accepted batches whose sender applied this forwarder's own redaction (same rules, same code): not redacted again."},
			func() float64 { return float64(s.preRedacted.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "forwarder_batches_staged_total",
			Help: "Accepted batches of more than one spool frame (1 MiB of lines): staged on disk, then copied into the spool."},
			func() float64 { return float64(s.staged.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "forwarder_spool_fsyncs_total", Help: "fsyncs of the spool; batches arriving together share one."},
			func() float64 { return float64(sp.Stats().Syncs) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "forwarder_spool_max_bytes", Help: "The spool's byte bound (FORWARDER_SPOOL_BYTES)."},
			func() float64 { return float64(sp.Stats().MaxBytes) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "forwarder_spool_full_ratio",
			Help: "How full the spool is: its bytes over FORWARDER_SPOOL_BYTES, and 1 while its disk is full (batches refused)."},
			func() float64 { return spoolFullness(sp.Stats()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "forwarder_spool_no_space_errors_total",
			Help: "Batches the spool refused because its disk was full (ENOSPC)."},
			func() float64 { return float64(sp.Stats().NoSpaceErrors) }),
	)
	for _, d := range s.dests {
		labels := prometheus.Labels{"sink": d.name}
		reg.MustRegister(
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "forwarder_sink_records_delivered_total",
				Help: "Records the sink accepted.", ConstLabels: labels},
				func() float64 { return float64(d.delivered.Load()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "forwarder_sink_records_failed_total",
				Help: "Records the sink refused for good; they are dropped.", ConstLabels: labels},
				func() float64 { return float64(d.failed.Load()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "forwarder_sink_delivery_failures_total",
				Help: "Failed delivery attempts (each is retried unless the refusal is for good).", ConstLabels: labels},
				func() float64 { return float64(d.failures.Load()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "forwarder_sink_records_dropped_total",
				Help: "Records the spool's byte bound deleted before the sink had them.", ConstLabels: labels},
				func() float64 { return float64(sp.Stats().DroppedRecords[d.name]) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "forwarder_sink_pending_bytes",
				Help: "Spooled bytes the sink has not had yet.", ConstLabels: labels},
				func() float64 { return float64(d.rd.Pending()) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "forwarder_sink_lag_seconds",
				Help: "Age of the oldest spooled batch the sink is working on; 0 when it is caught up.", ConstLabels: labels},
				func() float64 {
					at := d.lagNanos.Load()
					if at == 0 {
						return 0
					}
					return time.Since(time.Unix(0, at)).Seconds()
				}),
		)
	}
	return m
}
