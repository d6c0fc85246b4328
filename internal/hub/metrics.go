package hub

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metricsHandler serves the hub's Prometheus series at GET /metrics: the
// ingest counters of Stats, and the Go runtime's and the process's usual
// series. They hold no tenant names or keys, so they need no key, like
// the health check.
func (s *Server) metricsHandler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	counter := func(name, help string, v func() int64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help},
			func() float64 { return float64(v()) }))
	}
	counter("hub_batches_ingested_total", "Batches accepted and stored (answered 200).", s.batches.Load)
	counter("hub_records_ingested_total", "Records in accepted batches, already stored ones included.", s.records.Load)
	counter("hub_records_new_total", "Records of accepted batches that were not stored before.", s.fresh.Load)
	counter("hub_batches_rejected_total", "Batches refused as malformed (4xx but 401, 403, 429).", s.rejected.Load)
	counter("hub_requests_unauthorized_total", "Requests with a missing, wrong or revoked key, or a key of the wrong role.", s.unauthorized.Load)
	counter("hub_batches_busy_total", "Batches refused because too many were in flight, or the hub was stopping (429, 503).", s.busy.Load)
	counter("hub_batches_store_errors_total", "Batches the store failed to take (503).", s.storeErrors.Load)
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}
