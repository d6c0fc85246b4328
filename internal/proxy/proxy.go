// Package proxy is goproxy's capturing engine: the inbound reverse proxy in
// front of the app, the outbound forward proxy (absolute-form requests and
// CONNECT, with TLS unwrap), protocol sniffing on TCP listeners, and the
// bounded tee that turns every exchange into a capture.Record beside the
// stream, never in its way.
package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/h1"
	"github.com/tapwire/tapwire/internal/mitm"
)

// DefaultBodyLimit is the body capture cap of each side when Options
// leaves it zero.
const DefaultBodyLimit = 1 << 20

// Options configure the proxy engine shared by both directions.
type Options struct {
	Labels capture.Labels
	Tags   capture.Tags // copied onto every record (capture mode, proxy type...)

	// Emitter receives every finished record. If nil, nothing is captured
	// and the proxy only forwards (the "capture off" baseline).
	Emitter capture.Emitter

	// BodyLimit caps the captured bytes of each body; the full size is
	// still counted. If zero, DefaultBodyLimit; if negative, bodies are
	// not captured at all.
	BodyLimit int64

	// Minter mints leaf certificates for TLS unwrap of CONNECT tunnels.
	// If nil, tunnels pass through untouched.
	Minter *mitm.Minter

	// InboundTLS, when set, terminates TLS on the inbound listener with
	// the app's certificate (TLS_IN_UNWRAP); plaintext is still served.
	InboundTLS *tls.Config

	// NoSocks makes the outbound listener speak HTTP only; by default it
	// also accepts SOCKS4, 4a and 5 clients (ALL_PROXY=socks5://...).
	NoSocks bool
	// NoHTTPProxy makes the outbound listener speak SOCKS only.
	NoHTTPProxy bool
	// SocksAuth, if set, requires SOCKS5 username/password.
	SocksAuth *SocksAuth

	// RootCAs verify upstream TLS. If nil, the system roots.
	RootCAs *x509.CertPool

	// ClientCert is presented to upstreams that ask for one (mTLS).
	ClientCert *tls.Certificate

	// DialTimeout bounds connecting to an upstream; if zero, 10s.
	DialTimeout time.Duration

	// HeaderTimeout bounds reading a client's request headers; if zero,
	// 10s. A slower client is cut off.
	HeaderTimeout time.Duration

	// IdleTimeout closes idle client keep-alive connections; if zero, 120s.
	IdleTimeout time.Duration

	// MaxHeaderBytes bounds a request's line and headers together (and an
	// HTTP/1 chunked body's trailers); a larger one is answered 431 and
	// its connection closed. If zero, DefaultMaxHeaderBytes (64 KiB).
	MaxHeaderBytes int

	Logger  *slog.Logger // if nil, slog.Default()
	Metrics *Metrics     // if nil, nothing is counted
	Conns   *ConnTable   // if nil, connections are not listed
}

func (o *Options) setDefaults() {
	if o.BodyLimit == 0 {
		o.BodyLimit = DefaultBodyLimit
	}
	if o.BodyLimit < 0 {
		o.BodyLimit = 0
	}
	if o.DialTimeout == 0 {
		o.DialTimeout = 10 * time.Second
	}
	if o.HeaderTimeout == 0 {
		o.HeaderTimeout = 10 * time.Second
	}
	if o.IdleTimeout == 0 {
		o.IdleTimeout = 120 * time.Second
	}
	if o.MaxHeaderBytes == 0 {
		o.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics(nil)
	}
}

// exchange is the per-request state shared between the capturing handler
// and the reverse proxy's hooks, carried in the request's context.
type exchange struct {
	res      *http.Response // the upstream's response, once headers arrived
	resHdr   capture.Headers
	err      error
	client   bool // err is the client's doing: its body failed or it went away
	reqBody  *bodyTee
	upstream string // the address dialled
}

type exchangeKey struct{}

// bodyErr reports whether reading the client's request body failed.
func (ex *exchange) bodyErr() bool {
	if ex.reqBody == nil {
		return false
	}
	return ex.reqBody.readErr() != nil
}

// core holds what both directions share.
type core struct {
	opt    Options
	log    *slog.Logger
	m      *Metrics
	nextID atomic.Uint64
}

// serveCaptured runs h for one request and emits its record.
func (c *core) serveCaptured(w http.ResponseWriter, r *http.Request, dir capture.Direction, proxyName, url string, tinfo *tunnelInfo, h http.Handler) {
	if r.ProtoMajor == 2 && isGRPC(r.Header.Get("Content-Type")) {
		w = &holdFlush{ResponseWriter: w}
	}
	if c.opt.Emitter == nil {
		h.ServeHTTP(w, r)
		return
	}
	start := time.Now()
	ex := &exchange{}
	r = r.WithContext(context.WithValue(r.Context(), exchangeKey{}, ex))
	var reqTee *bodyTee
	if r.Body != nil && r.Body != http.NoBody {
		reqTee = newBodyTee(r.Body, c.opt.BodyLimit)
		r.Body = reqTee
		ex.reqBody = reqTee
	}
	reqHdr := headers(r.Header)
	cw := &captureWriter{ResponseWriter: w, limit: c.opt.BodyLimit}
	if r.ProtoMajor == 1 && strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		cw.wsStart = start
	}
	grpc := r.ProtoMajor == 2 && isGRPC(r.Header.Get("Content-Type"))
	if grpc {
		if reqTee != nil {
			reqTee.frames = newGRPCFramer(true, start, c.opt.BodyLimit)
		}
		cw.frames = newGRPCFramer(false, start, c.opt.BodyLimit)
	}

	h.ServeHTTP(cw, r)

	end := time.Now()
	rec := &capture.Record{
		Schema:    capture.SchemaVersion,
		ID:        capture.NewID(),
		Kind:      capture.KindHTTP,
		Direction: dir,
		Start:     start.UTC(),
		DurMicros: micros(end.Sub(start)),
		Labels:    c.opt.Labels,
		Tags:      c.opt.Tags,
		Net: capture.Net{
			ClientAddr: r.RemoteAddr,
			ServerAddr: ex.upstream,
			Proxy:      proxyName,
		},
		HTTP: &capture.HTTP{Req: capture.Request{
			Method:  r.Method,
			URL:     url,
			Proto:   r.Proto,
			Host:    r.Host,
			Headers: reqHdr,
		}},
	}
	if !cw.first.IsZero() {
		rec.TTFBMicros = micros(cw.first.Sub(start))
	}
	var upMsgs []capture.Message
	if reqTee != nil {
		var trunc bool
		rec.HTTP.Req.Body, upMsgs, trunc = reqTee.body()
		rec.HTTP.MessagesTruncated = trunc
	}
	if tinfo != nil {
		rec.Net.ServerHost = tinfo.host
		rec.Net.ConnID = tinfo.connID
		rec.Net.TLS = tinfo.tls
	} else {
		rec.Net.ServerHost = hostOnly(r.URL.Host)
		if rec.Net.ServerHost == "" {
			rec.Net.ServerHost = hostOnly(r.Host)
		}
		if r.TLS != nil {
			rec.Net.TLS = tlsFacts(r.TLS)
		}
	}
	if res := ex.res; res != nil {
		rec.HTTP.Res = &capture.Response{
			Status:     cw.status,
			StatusText: statusText(res),
			Proto:      res.Proto,
			Headers:    ex.resHdr,
			Body:       cw.body(),
			Trailers:   trailers(res.Trailer),
		}
		if res.TLS != nil {
			up := tlsFacts(res.TLS)
			if rec.Net.TLS == nil {
				rec.Net.TLS = &capture.TLS{}
			} else {
				t := *rec.Net.TLS
				rec.Net.TLS = &t
			}
			rec.Net.TLS.Upstream = up
		}
	}
	if grpc {
		rec.HTTP.GRPC = grpcInfo(r.URL.Path, ex.res)
		rec.HTTP.Messages = mergeByTime(upMsgs, cw.frames.msgs)
		decodeProtobuf(rec.HTTP.Messages)
		rec.HTTP.MessagesTruncated = rec.HTTP.MessagesTruncated || cw.frames.truncated
	}
	if cw.ws != nil {
		rec.HTTP.Messages, rec.HTTP.MessagesTruncated = cw.ws.messages()
	}
	var bodyErr error
	if reqTee != nil {
		bodyErr = reqTee.readErr()
	}
	switch {
	case bodyErr != nil:
		rec.Error = "client: read request body: " + bodyErr.Error()
	case ex.err != nil && ex.client:
		rec.Error = "client: " + ex.err.Error()
	case ex.err != nil:
		rec.Error = ex.err.Error()
	}
	c.opt.Emitter.Emit(rec)
}

func statusText(res *http.Response) string {
	if i := strings.IndexByte(res.Status, ' '); i >= 0 {
		return res.Status[i+1:]
	}
	return http.StatusText(res.StatusCode)
}

// modifyResponse is the reverse proxies' hook: it keeps the upstream's
// response for the record.
func modifyResponse(res *http.Response) error {
	if ex, ok := res.Request.Context().Value(exchangeKey{}).(*exchange); ok {
		ex.res = res
		ex.resHdr = headers(res.Header)
	}
	return nil
}

// errorHandler is the one place where a failed exchange becomes the
// client's response: 502 (504 on a timeout), the detail in the record and
// the log, never the upstream's internals in the body. A failure of the
// client's side (its request body was malformed or cut short, or it went
// away) is its own fault: 400 and the connection closed.
func (c *core) errorHandler(dir capture.Direction) func(http.ResponseWriter, *http.Request, error) {
	return func(w http.ResponseWriter, r *http.Request, err error) {
		ex, _ := r.Context().Value(exchangeKey{}).(*exchange)
		if ex != nil {
			ex.err = err
		}
		var fe *h1.FramingError
		if r.Context().Err() != nil || errors.As(err, &fe) || (ex != nil && ex.bodyErr()) {
			// The server cancels the request when reading the client's
			// connection fails, mid-body included.
			if ex != nil {
				ex.client = true
			}
			c.m.badRequests.Inc()
			c.log.Info("client failed", "direction", dir, "url", r.URL.String(), "err", err)
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Header().Set("Connection", "close")
			w.Header().Set("X-Tapwire-Error", "client")
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, "400 Bad Request: goproxy could not read the whole request from the client\n")
			return
		}
		c.m.upstreamErrors(dir).Inc()
		c.log.Warn("upstream failed", "direction", dir, "host", r.Host, "url", r.URL.String(), "err", err)
		code := http.StatusBadGateway
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			code = http.StatusGatewayTimeout
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Tapwire-Error", "upstream")
		w.WriteHeader(code)
		fmt.Fprintf(w, "%d %s: goproxy could not reach the upstream %s\n", code, http.StatusText(code), r.URL.Host)
	}
}

func tlsFacts(cs *tls.ConnectionState) *capture.TLS {
	return &capture.TLS{
		SNI:         cs.ServerName,
		Version:     tls.VersionName(cs.Version),
		ALPN:        cs.NegotiatedProtocol,
		CipherSuite: tls.CipherSuiteName(cs.CipherSuite),
	}
}

// hostOnly strips the port from a host:port (keeping IPv6 literals bare).
func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return strings.Trim(hostport, "[]")
}

func (c *core) newServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: c.opt.HeaderTimeout,
		IdleTimeout:       c.opt.IdleTimeout,
		MaxHeaderBytes:    c.opt.MaxHeaderBytes, // HTTP/1 is the engine's (431 beyond it); this bounds HTTP/2's
		ErrorLog:          slog.NewLogLogger(c.log.Handler(), slog.LevelDebug),
		ConnContext: func(ctx context.Context, conn net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, conn)
		},
	}
}

// holdFlush keeps a gRPC response's headers until its first body byte. The
// reverse proxy flushes at once (FlushInterval -1), from a timer of its
// own; a flush of the headers before the handler has seen that the
// upstream answered trailers-only (HEADERS with END_STREAM: an error
// status and no message) would split that answer into headers and an empty
// end, which gRPC clients read as "server closed the stream without
// sending trailers" (seen once in CI). Messages still go out as they come:
// after the first byte, a flush is a flush.
type holdFlush struct {
	http.ResponseWriter
	wrote atomic.Bool
}

func (w *holdFlush) Write(p []byte) (int, error) {
	if len(p) > 0 {
		w.wrote.Store(true)
	}
	return w.ResponseWriter.Write(p)
}

func (w *holdFlush) Flush() {
	if !w.wrote.Load() {
		return
	}
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap gives http.ResponseController the writer underneath (for what
// holdFlush does not do itself).
func (w *holdFlush) Unwrap() http.ResponseWriter { return w.ResponseWriter }
