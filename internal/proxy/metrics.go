package proxy

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tapwire/tapwire/internal/capture"
)

// Metrics are the proxy's Prometheus counters. The label values are
// resolved once, so counting on the hot path is an atomic add.
type Metrics struct {
	reqIn, reqOut     prometheus.Counter
	tunnels           *prometheus.CounterVec
	bytesIn, bytesOut prometheus.Counter
	upErrIn, upErrOut prometheus.Counter
	badRequests       prometheus.Counter
	handshakeFailures prometheus.Counter
	deniedForward     prometheus.Counter
}

// NewMetrics makes the counters and registers them with reg (if not nil).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "goproxy_requests_total",
		Help: "HTTP exchanges proxied, by direction (in: to the app, out: from the app).",
	}, []string{"direction"})
	tunnels := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "goproxy_tcp_streams_total",
		Help: "Byte streams proxied without HTTP understanding, by direction and reason (passthrough, not_http, tls_no_unwrap, server_first).",
	}, []string{"direction", "reason"})
	bytes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "goproxy_bytes_total",
		Help: "Bytes read from and written to clients of goproxy's listeners, by listener direction.",
	}, []string{"direction"})
	upErr := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "goproxy_upstream_errors_total",
		Help: "Exchanges that failed because the upstream could not be reached or broke off, by direction.",
	}, []string{"direction"})
	bad := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "goproxy_bad_requests_total",
		Help: "Requests refused as malformed or not meant for a proxy.",
	})
	hs := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "goproxy_tls_handshake_failures_total",
		Help: "TLS handshakes with the app that failed during unwrap (often: the app does not trust the CA).",
	})
	denied := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "goproxy_forward_denied_total",
		Help: "Outbound requests refused (for example, a loop back into goproxy).",
	})
	if reg != nil {
		reg.MustRegister(requests, tunnels, bytes, upErr, bad, hs, denied)
	}
	return &Metrics{
		reqIn:             requests.WithLabelValues("in"),
		reqOut:            requests.WithLabelValues("out"),
		tunnels:           tunnels,
		bytesIn:           bytes.WithLabelValues("in"),
		bytesOut:          bytes.WithLabelValues("out"),
		upErrIn:           upErr.WithLabelValues("in"),
		upErrOut:          upErr.WithLabelValues("out"),
		badRequests:       bad,
		handshakeFailures: hs,
		deniedForward:     denied,
	}
}

func (m *Metrics) requests(d capture.Direction) prometheus.Counter {
	if d == capture.DirIn {
		return m.reqIn
	}
	return m.reqOut
}

func (m *Metrics) upstreamErrors(d capture.Direction) prometheus.Counter {
	if d == capture.DirIn {
		return m.upErrIn
	}
	return m.upErrOut
}

func (m *Metrics) bytes(d capture.Direction) prometheus.Counter {
	if d == capture.DirIn {
		return m.bytesIn
	}
	return m.bytesOut
}
