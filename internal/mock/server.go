package mock

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/mitm"
)

// proxyOriginForm is why the proxy listener refuses a request in origin form.
const proxyOriginForm = "this is speedctl mock, a forward proxy: send absolute-form requests (http://host/path) or CONNECT host:port, for example by setting HTTP_PROXY and HTTPS_PROXY; or use --reverse HOST=ADDR"

// MissHeader names the header of a miss's answer: the closest recorded request and what differed.
const MissHeader = "X-Tapwire-Mock-Miss"

// OnMiss is what the server does with a request that no recording matches.
type OnMiss string

// The answers to a miss.
const (
	Miss404         OnMiss = "404"         // answer 404 (gRPC: NOT_FOUND), explained
	Miss502         OnMiss = "502"         // answer 502 (gRPC: UNAVAILABLE), explained
	MissPassthrough OnMiss = "passthrough" // forward to the real upstream, its TLS verified
)

// ParseOnMiss reads --on-miss.
func ParseOnMiss(s string) (OnMiss, error) {
	switch m := OnMiss(s); m {
	case Miss404, Miss502, MissPassthrough:
		return m, nil
	}
	return "", fmt.Errorf("on-miss %q: want 404, 502 or passthrough", s)
}

// ParseTiming reads --timing: none (answer at once: 0), recorded (the recorded latency: 1) or xN (the
// recorded latency times N, e.g. x0.5 or x2).
func ParseTiming(s string) (float64, error) {
	switch s {
	case "", "none":
		return 0, nil
	case "recorded":
		return 1, nil
	}
	if n, ok := strings.CutPrefix(s, "x"); ok {
		if f, err := strconv.ParseFloat(n, 64); err == nil && f >= 0 && f <= 1000 {
			return f, nil
		}
	}
	return 0, fmt.Errorf("timing %q: want none, recorded or xN (x0.5, x2)", s)
}

// Options configure a Server.
type Options struct {
	Index  *Index
	Minter *mitm.Minter // unwraps TLS in CONNECT tunnels; if nil, TLS tunnels are refused
	OnMiss OnMiss       // if zero, Miss404
	// Timing scales the recorded latency of an answer (time to the first byte, then each gRPC message at
	// its recorded time); if zero, answers are sent at once.
	Timing float64
	// Upstream forwards misses when OnMiss is MissPassthrough; if nil, a transport that verifies the
	// upstream's certificate with the system's roots and uses no proxy.
	Upstream http.RoundTripper
	// RecordMisses, if set, receives what passthrough got: one record per exchange, JSONL.
	RecordMisses io.Writer
	// MaxBody bounds the bytes of a request body read to match it (the rest is not compared); if zero, 16 MiB.
	MaxBody int64
	Logger  *slog.Logger // if nil, nothing is logged
}

// Server answers an app's outbound calls from an Index: as an HTTP forward proxy (absolute-form requests,
// CONNECT with TLS unwrap, HTTP/1.1 and HTTP/2) and on reverse listeners that stand for one host.
type Server struct {
	opt    Options
	log    *slog.Logger
	report *Report
	srv    *http.Server // the proxy listener and reverse listeners
	inner  *http.Server // HTTP/1 inside tunnels
	h2     *http2.Server
	innerL *chanListener
	once   sync.Once

	mu      sync.Mutex
	closing bool
	tunnels map[net.Conn]*atomic.Bool // connections not owned by an http.Server; an HTTP/1.1 one's flag is set while it is idle
	answers sync.Map                  // *capture.Record -> *h1Answer
	ctx     context.Context           // done when Shutdown starts (stopping)
	cancel  context.CancelFunc
	wg      sync.WaitGroup // tunnel goroutines
	lns     []net.Listener
	misses  *missWriter
}

// New makes a Server; it listens on nothing until Serve.
func New(opt Options) (*Server, error) {
	if opt.Index == nil {
		return nil, errors.New("mock: no index")
	}
	if opt.OnMiss == "" {
		opt.OnMiss = Miss404
	}
	if _, err := ParseOnMiss(string(opt.OnMiss)); err != nil {
		return nil, err
	}
	if opt.MaxBody == 0 {
		opt.MaxBody = 16 << 20
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	if opt.Upstream == nil {
		opt.Upstream = &http.Transport{Proxy: nil, ForceAttemptHTTP2: true, MaxIdleConnsPerHost: 64,
			TLSHandshakeTimeout: 10 * time.Second, IdleConnTimeout: 90 * time.Second}
	}
	s := &Server{opt: opt, log: opt.Logger, report: newReport(opt.Index), tunnels: map[net.Conn]*atomic.Bool{}}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if opt.RecordMisses != nil {
		s.misses = &missWriter{w: opt.RecordMisses}
	}
	errLog := slog.NewLogLogger(opt.Logger.Handler(), slog.LevelDebug)
	s.h2 = &http2.Server{IdleTimeout: 5 * time.Minute}
	s.srv = &http.Server{Handler: h2c.NewHandler(http.HandlerFunc(s.serveProxy), s.h2), ReadHeaderTimeout: 30 * time.Second, ErrorLog: errLog}
	s.inner = &http.Server{Handler: http.HandlerFunc(s.serveTunnel), ReadHeaderTimeout: 30 * time.Second, ErrorLog: errLog,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if t, ok := c.(*tunnelConn); ok {
				return context.WithValue(ctx, targetKey{}, t)
			}
			return ctx
		}}
	if err := http2.ConfigureServer(s.inner, s.h2); err != nil {
		return nil, fmt.Errorf("configure HTTP/2: %w", err)
	}
	return s, nil
}

// Report returns the counts so far.
func (s *Server) Report() *Report { return s.report }

// Serve accepts proxy clients on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	s.once.Do(func() {
		s.innerL = newChanListener(ln.Addr())
		s.wg.Add(1)
		go func() { defer s.wg.Done(); s.inner.Serve(s.innerL) }()
	})
	if !s.track(ln) {
		return nil
	}
	if s.opt.OnMiss == MissPassthrough {
		return s.ended(s.srv.Serve(ln))
	}
	return s.ended(s.acceptH1(ln, &h1Mode{proxy: true, handOff: s.fallbackTo(s.srv, ln.Addr())}))
}

// ended is the error of a Serve: none when Shutdown ended it.
func (s *Server) ended(err error) error {
	s.mu.Lock()
	closing := s.closing
	s.mu.Unlock()
	if closing || errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// ServeReverse accepts clients on ln that address host directly (an app configured with a base URL):
// every request is matched as a request to host, over HTTP/1.1 or HTTP/2 without TLS (h2c).
func (s *Server) ServeReverse(ln net.Listener, host string) error {
	if !s.track(ln) {
		return nil
	}
	srv := &http.Server{ReadHeaderTimeout: 30 * time.Second, ErrorLog: s.srv.ErrorLog,
		Handler: h2c.NewHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s.serve(w, r, "http", host)
		}), s.h2)}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		<-s.stopping()
		srv.Close()
	}()
	if s.opt.OnMiss == MissPassthrough {
		return s.ended(srv.Serve(ln))
	}
	return s.ended(s.acceptH1(ln, &h1Mode{scheme: "http", host: host, fixed: true, handOff: s.fallbackTo(srv, ln.Addr())}))
}

// fallbackTo serves the connections that the HTTP/1.1 loop hands off with
// srv, until Shutdown; it returns the hand-off.
func (s *Server) fallbackTo(srv *http.Server, addr net.Addr) func(net.Conn) {
	l := newChanListener(addr)
	s.wg.Add(1)
	go func() { defer s.wg.Done(); srv.Serve(l) }()
	go func() { <-s.stopping(); l.Close() }()
	return l.push
}

// isClosing reports whether Shutdown has started.
func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// addConn registers a connection served by serveH1 (idle is its idle
// flag); it reports false when the server is shutting down.
func (s *Server) addConn(c net.Conn, idle *atomic.Bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.tunnels[c] = idle
	s.wg.Add(1)
	return true
}

func (s *Server) track(ln net.Listener) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		ln.Close()
		return false
	}
	s.lns = append(s.lns, ln)
	return true
}

// stopping returns a channel closed when Shutdown starts.
func (s *Server) stopping() <-chan struct{} { return s.ctx.Done() }

// Shutdown stops accepting, lets requests in flight finish until ctx is done, then closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if !s.closing {
		s.closing = true
		s.cancel()
	}
	lns := s.lns
	// Idle HTTP/1.1 connections stop waiting for a next request; busy ones
	// close after their answer.
	for c, idle := range s.tunnels {
		if idle != nil && idle.Load() {
			c.SetReadDeadline(time.Now())
		}
	}
	s.mu.Unlock()
	for _, ln := range lns {
		ln.Close()
	}
	// The listeners are closed above, so that no new connection comes in
	// while the servers drain: their own close of them is not an error.
	err := s.srv.Shutdown(ctx)
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	if e := s.inner.Shutdown(ctx); err == nil && !errors.Is(e, net.ErrClosed) {
		err = e
	}
	if s.innerL != nil {
		s.innerL.Close()
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		s.mu.Lock()
		for c := range s.tunnels {
			c.Close()
		}
		s.mu.Unlock()
		s.srv.Close()
		s.inner.Close()
		<-done
	}
	if t, ok := s.opt.Upstream.(interface{ CloseIdleConnections() }); ok {
		t.CloseIdleConnections()
	}
	return err
}

type targetKey struct{}

// serveProxy handles a request to the proxy: CONNECT, or an absolute-form request.
func (s *Server) serveProxy(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodConnect {
		s.connect(w, r)
		return
	}
	if !r.URL.IsAbs() || r.URL.Host == "" {
		http.Error(w, "400 Bad Request: "+proxyOriginForm, http.StatusBadRequest)
		return
	}
	s.serve(w, r, r.URL.Scheme, r.URL.Host)
}

// connect answers CONNECT host:port and serves the tunnel: TLS is unwrapped with a leaf for host, and the
// requests inside (HTTP/1.1 or HTTP/2 by ALPN; plain HTTP when the client sends no TLS) are answered.
func (s *Server) connect(w http.ResponseWriter, r *http.Request) {
	target := r.Host
	if _, _, err := net.SplitHostPort(target); err != nil {
		http.Error(w, "400 Bad Request: CONNECT needs host:port", http.StatusBadRequest)
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, "500 Internal Server Error", http.StatusInternalServerError)
		return
	}
	if !s.addTunnel(conn) {
		conn.Close()
		return
	}
	defer s.removeTunnel(conn)
	if _, err := conn.Write([]byte("HTTP/1.1 200 Connection Established\r\n\r\n")); err != nil {
		conn.Close()
		return
	}
	pc := &peekConn{Conn: conn, r: brw.Reader}
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	first, err := pc.r.Peek(1)
	conn.SetReadDeadline(time.Time{})
	if err != nil {
		conn.Close()
		return
	}
	if first[0] != 0x16 { // not a TLS handshake: plain HTTP in the tunnel
		s.serveTunnelH1(pc, target, "http")
		return
	}
	if s.opt.Minter == nil {
		s.log.Warn("TLS in a CONNECT tunnel, but no CA to unwrap it", "target", target)
		conn.Close()
		return
	}
	host, _, _ := net.SplitHostPort(target)
	cfg := s.opt.Minter.ServerConfig(host)
	cfg.NextProtos = []string{"h2", "http/1.1"}
	tc := tls.Server(pc, cfg)
	tc.SetDeadline(time.Now().Add(30 * time.Second))
	if err := tc.Handshake(); err != nil {
		s.log.Warn("TLS handshake with the app failed; does it trust the mock's CA (SSL_CERT_FILE)?", "target", target, "err", err)
		tc.Close()
		return
	}
	tc.SetDeadline(time.Time{})
	if tc.ConnectionState().NegotiatedProtocol == "h2" {
		ctx := context.WithValue(r.Context(), targetKey{}, &tunnelConn{target: target, scheme: "https"})
		s.h2.ServeConn(tc, &http2.ServeConnOpts{Context: ctx, BaseConfig: s.inner, Handler: http.HandlerFunc(s.serveTunnel)})
		tc.Close()
		return
	}
	s.serveTunnelH1(tc, target, "https")
}

// serveTunnelH1 serves the HTTP/1.1 inside a tunnel to target; with
// --on-miss passthrough, and for what serveH1 hands off, the inner
// net/http server does.
func (s *Server) serveTunnelH1(c net.Conn, target, scheme string) {
	handOff := func(c net.Conn) { s.innerL.push(&tunnelConn{Conn: c, target: target, scheme: scheme}) }
	if s.opt.OnMiss == MissPassthrough {
		handOff(c)
		return
	}
	s.serveH1(c, &h1Mode{scheme: scheme, host: target, handOff: handOff})
}

func (s *Server) addTunnel(c net.Conn) bool { return s.addConn(c, nil) }

func (s *Server) removeTunnel(c net.Conn) {
	s.mu.Lock()
	delete(s.tunnels, c)
	s.mu.Unlock()
	s.wg.Done()
}

// serveTunnel handles one request inside a CONNECT tunnel.
func (s *Server) serveTunnel(w http.ResponseWriter, r *http.Request) {
	t, _ := r.Context().Value(targetKey{}).(*tunnelConn)
	if t == nil {
		http.Error(w, "500 Internal Server Error", http.StatusInternalServerError)
		return
	}
	host := r.Host
	if host == "" {
		host = t.target
	}
	s.serve(w, r, t.scheme, host)
}

// serve answers one request addressed to scheme://host.
func (s *Server) serve(w http.ResponseWriter, r *http.Request, scheme, host string) {
	body, err := io.ReadAll(io.LimitReader(r.Body, s.opt.MaxBody))
	if err != nil {
		http.Error(w, "400 Bad Request: reading the body: "+err.Error(), http.StatusBadRequest)
		return
	}
	req := &Request{Method: r.Method, Scheme: scheme, Host: host, Path: r.URL.EscapedPath(), RawQuery: r.URL.RawQuery,
		Headers: headersOf(r.Header), Body: body}
	if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		req.ClientIP = ip
	}
	res := s.opt.Index.Match(req)
	if res.Matched() {
		s.report.matched(res.Endpoint)
		if s.log.Enabled(r.Context(), slog.LevelDebug) { // req.URL() builds a string: not for every request
			s.log.Debug("matched", "method", r.Method, "url", req.URL(), "recording", res.Nth, "endpoint", res.Endpoint)
		}
		s.answer(w, r, res.Record)
		return
	}
	s.report.miss(req, res)
	if s.log.Enabled(r.Context(), slog.LevelDebug) {
		s.log.Debug("miss", "method", r.Method, "url", req.URL(), "closest", res.Closest, "why", res.Why)
	}
	if s.opt.OnMiss == MissPassthrough {
		s.passthrough(w, r, req)
		return
	}
	s.explain(w, req, res)
}

// headersOf turns a request's header map into a list, sorted by name for determinism.
func headersOf(h http.Header) capture.Headers {
	names := make([]string, 0, len(h))
	for k := range h {
		names = append(names, k)
	}
	slices.Sort(names)
	out := make(capture.Headers, 0, len(h))
	for _, k := range names {
		for _, v := range h[k] {
			out = append(out, capture.Header{Name: k, Value: v})
		}
	}
	return out
}

// hopHeaders are response headers the server sets itself.
var hopHeaders = map[string]bool{"connection": true, "keep-alive": true, "transfer-encoding": true, "content-length": true,
	"proxy-connection": true, "upgrade": true, "trailer": true, "te": true, "alt-svc": true}

// answer writes a recorded response: its status, headers and body, or for gRPC its messages and trailers.
func (s *Server) answer(w http.ResponseWriter, r *http.Request, rec *capture.Record) {
	res := rec.HTTP.Res
	h := w.Header()
	grpc := strings.HasPrefix(res.Headers.Get("Content-Type"), "application/grpc") || rec.HTTP.GRPC != nil
	for _, f := range res.Headers {
		if hopHeaders[strings.ToLower(f.Name)] {
			continue
		}
		h.Add(f.Name, f.Value)
	}
	body := res.Body.Data
	if strings.EqualFold(h.Get("Content-Encoding"), "gzip") && !bytes.HasPrefix(body, []byte{0x1f, 0x8b}) {
		h.Del("Content-Encoding") // a recording stored decoded
	}
	if !s.wait(r.Context(), rec.TTFBMicros) {
		return
	}
	if grpc {
		s.answerGRPC(w, r, rec)
		return
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	for _, t := range res.Trailers {
		h.Add(http.TrailerPrefix+t.Name, t.Value)
	}
	status := res.Status
	if status < 200 || status > 999 {
		status = http.StatusOK
	}
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		w.Write(body)
	}
}

// answerGRPC writes a recorded gRPC response: each message sent by the server (at its recorded time,
// scaled, with --timing), then the recorded trailers.
func (s *Server) answerGRPC(w http.ResponseWriter, r *http.Request, rec *capture.Record) {
	h := w.Header()
	if h.Get("Content-Type") == "" {
		h.Set("Content-Type", "application/grpc")
	}
	w.WriteHeader(http.StatusOK)
	fl, _ := w.(http.Flusher)
	var frame []byte
	sent := false
	for _, m := range rec.HTTP.Messages {
		if m.Up {
			continue
		}
		if !s.wait(r.Context(), m.AtMicros-rec.TTFBMicros) {
			return
		}
		frame = appendFrame(frame[:0], m.Data, m.Compressed)
		if _, err := w.Write(frame); err != nil {
			return
		}
		if fl != nil {
			fl.Flush()
		}
		sent = true
	}
	if !sent && len(rec.HTTP.Res.Body.Data) > 0 {
		w.Write(rec.HTTP.Res.Body.Data) // the framed body, as recorded
	}
	status := false
	for _, t := range rec.HTTP.Res.Trailers {
		h.Set(http.TrailerPrefix+t.Name, t.Value)
		status = status || strings.EqualFold(t.Name, "Grpc-Status")
	}
	if !status {
		code := 0
		if g := rec.HTTP.GRPC; g != nil && g.Status != nil {
			code = *g.Status
		}
		h.Set(http.TrailerPrefix+"Grpc-Status", strconv.Itoa(code))
	}
}

// wait sleeps for a recorded time in µs, scaled by --timing; it reports false when the client went away.
func (s *Server) wait(ctx context.Context, us int64) bool {
	if s.opt.Timing <= 0 || us <= 0 {
		return true
	}
	t := time.NewTimer(time.Duration(float64(us) * s.opt.Timing * float64(time.Microsecond)))
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// explain answers a miss with a short body and MissHeader: the closest recording and what differed.
func (s *Server) explain(w http.ResponseWriter, req *Request, res Result) {
	status, hv, body := s.missAnswer(req, res)
	h := w.Header()
	h.Set(MissHeader, hv)
	if strings.HasPrefix(req.Headers.Get("Content-Type"), "application/grpc") {
		grpcCode := "5" // NOT_FOUND
		if s.opt.OnMiss == Miss502 {
			grpcCode = "14" // UNAVAILABLE
		}
		h.Set("Content-Type", "application/grpc")
		h.Set("Grpc-Status", grpcCode)
		h.Set("Grpc-Message", grpcEscape("tapwire mock: "+hv))
		w.WriteHeader(http.StatusOK)
		return
	}
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(body)
}

// missAnswer is the answer to a miss: its status, the value of MissHeader
// (the closest recording and what differed, on one line) and a short body.
func (s *Server) missAnswer(req *Request, res Result) (int, string, []byte) {
	why := strings.Join(res.Why, "; ")
	hv := "no recording matches"
	if res.Closest != "" {
		hv += "; closest: " + res.Closest
	}
	if why != "" {
		hv += "; differs: " + why
	}
	hv = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, hv)
	status := http.StatusNotFound
	if s.opt.OnMiss == Miss502 {
		status = http.StatusBadGateway
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "tapwire mock: no recording matches %s %s\n", req.Method, req.URL())
	if res.Closest != "" {
		fmt.Fprintf(&b, "closest: %s\n", res.Closest)
	}
	for _, y := range res.Why {
		fmt.Fprintf(&b, "  %s\n", y)
	}
	return status, hv, b.Bytes()
}

// grpcEscape percent-encodes a grpc-message value.
func grpcEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < ' ' || c > '~' || c == '%' {
			fmt.Fprintf(&b, "%%%02X", c)
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// peekConn is a connection whose first bytes were read ahead; reads return them first.
type peekConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *peekConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// tunnelConn is a connection inside a CONNECT tunnel, handed to the inner server.
type tunnelConn struct {
	net.Conn
	target string
	scheme string
}

// chanListener hands connections accepted elsewhere (inside tunnels) to an http.Server.
type chanListener struct {
	addr net.Addr
	ch   chan net.Conn
	once sync.Once
	done chan struct{}
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// push hands c to the server, or closes it when the listener is closed.
func (l *chanListener) push(c net.Conn) {
	select {
	case l.ch <- c:
	case <-l.done:
		c.Close()
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }
