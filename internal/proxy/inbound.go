package proxy

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/h1"
)

// appTransport picks how to reach the app for one request. The app gets
// HTTP/1.1 (or whatever TLS negotiates for an https:// app), except gRPC
// over cleartext HTTP/2, which only works as HTTP/2: it goes to the app as
// h2c with prior knowledge.
type appTransport struct {
	h1, h2c http.RoundTripper
	tls     bool
}

func (t *appTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if !t.tls && r.ProtoMajor == 2 && isGRPC(r.Header.Get("Content-Type")) {
		return t.h2c.RoundTrip(r)
	}
	return t.h1.RoundTrip(r)
}

func isGRPC(ct string) bool {
	return len(ct) >= 16 && ct[:16] == "application/grpc"
}

// Inbound is the reverse proxy in front of the app: clients (the load
// balancer) reach it on PROXY_IN_PORT and it forwards to the app at
// REVERSE_PROXY_HOST:REVERSE_PROXY_PORT.
type Inbound struct {
	c      *core
	target *url.URL
	rp     *httputil.ReverseProxy
	srv    *http.Server
	mode   InboundMode
	ss     streams
	live   liveConns
	h1     *h1Engine
	httpLn *chanListener // connections the HTTP/2 server takes over

	ln listenerRef // the sniffing listener, closed by Shutdown
}

// InboundMode says what the inbound listener expects from clients.
type InboundMode int

const (
	// InboundHTTP serves HTTP/1.x and cleartext HTTP/2 only
	// (PROXY_PROTOCOL=http).
	InboundHTTP InboundMode = iota
	// InboundSniff serves HTTP, and relays anything else to the app as a
	// captured byte stream (PROXY_PROTOCOL=tcp:http).
	InboundSniff
	// InboundTCP relays every connection as a captured byte stream
	// (PROXY_PROTOCOL=tcp).
	InboundTCP
)

// NewInbound makes the inbound proxy to target ("http://host:port").
func NewInbound(target string, mode InboundMode, opt Options) (*Inbound, error) {
	opt.setDefaults()
	u, err := url.Parse(target)
	if err != nil {
		return nil, fmt.Errorf("inbound target %q: %w", target, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("inbound target %q: want http://host:port or https://host:port", target)
	}
	c := &core{opt: opt, log: opt.Logger.With("listener", "inbound"), m: opt.Metrics}
	p := &Inbound{c: c, target: u, mode: mode}
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			pr.Out.Host = pr.In.Host // the app sees the Host the client asked for
			// Append to the client's X-Forwarded-For rather than replace it.
			if v, ok := pr.In.Header["X-Forwarded-For"]; ok {
				pr.Out.Header["X-Forwarded-For"] = v
			}
			pr.SetXForwarded()
		},
		Transport:      &appTransport{h1: c.transport(u.Hostname()), h2c: c.h2cTransport(), tls: u.Scheme == "https"},
		ModifyResponse: modifyResponse,
		ErrorHandler:   c.errorHandler(capture.DirIn),
		BufferPool:     bufPool{},
		FlushInterval:  -1, // bytes reach the client as each upstream read returns, Content-Length or not
		ErrorLog:       c.newServer(nil).ErrorLog,
	}
	// HTTP/2 without TLS: prior knowledge natively, and the (deprecated)
	// HTTP/1.1 Upgrade: h2c through x/net's handler.
	p.srv = c.newServer(h2c.NewHandler(http.HandlerFunc(p.serveHTTP), &http2.Server{}))
	p.srv.Protocols = new(http.Protocols)
	p.srv.Protocols.SetHTTP1(true)
	p.srv.Protocols.SetUnencryptedHTTP2(true)
	p.srv.Protocols.SetHTTP2(true)
	var appTLS *tls.Config
	if u.Scheme == "https" {
		appTLS = &tls.Config{RootCAs: opt.RootCAs, ServerName: u.Hostname(), MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
		if cc := opt.ClientCert; cc != nil {
			appTLS.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cc, nil }
		}
	}
	p.httpLn = newChanListener(nil)
	p.h1 = newH1Engine(c, capture.DirIn, "reverse", func(conn net.Conn) { p.httpLn.push(conn) })
	p.h1.up = p.h1.newUpstream(u.Host, appTLS, nil)
	return p, nil
}

func (p *Inbound) serveHTTP(w http.ResponseWriter, r *http.Request) {
	p.c.m.requests(capture.DirIn).Inc()
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	url := scheme + "://" + r.Host + r.URL.RequestURI()
	p.c.serveCaptured(w, r, capture.DirIn, "reverse", url, nil, withUpstream(p.rp, p.target.Host))
}

// withUpstream notes the dialled address in the exchange before h runs.
func withUpstream(h http.Handler, addr string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ex, ok := r.Context().Value(exchangeKey{}).(*exchange); ok {
			ex.upstream = addr
		}
		h.ServeHTTP(w, r)
	})
}

// Serve accepts connections on ln until Shutdown.
func (p *Inbound) Serve(ln net.Listener) error {
	ln = &trackListener{Listener: ln, name: "inbound", dir: capture.DirIn, table: p.c.opt.Conns, m: p.c.m, live: &p.live}
	p.ln.set(ln)
	httpLn := p.httpLn
	httpLn.addr = ln.Addr()
	go p.srv.Serve(httpLn)
	defer httpLn.Close()
	return acceptLoop(ln, func(conn net.Conn) {
		if p.mode == InboundHTTP && p.c.opt.InboundTLS == nil {
			// HTTP/1 in the engine, which hands the HTTP/2 preface and
			// h2c upgrades to the HTTP/2 server.
			if info := infoOf(conn); info != nil {
				info.set(p.target.Host, "http/1.1", nil)
			}
			p.h1.serve(conn, nil)
			return
		}
		if p.mode == InboundTCP {
			p.c.relayTCP(conn, p.target.Host, capture.DirIn, "reverse", "tcp", &p.ss, nil)
			return
		}
		p.dispatch(conn, httpLn)
	})
}

// dispatch sniffs one connection and hands it to the HTTP server or relays
// it as raw TCP to the app.
func (p *Inbound) dispatch(conn net.Conn, httpLn *chanListener) {
	pc, kind := sniff(conn, sniffTimeout)
	info := infoOf(conn)
	if kind == sniffSilent {
		var server net.Conn
		start := time.Now().Add(-sniffTimeout)
		if kind, server = p.awaitFirst(pc); server != nil {
			if info != nil {
				info.set(p.target.Host, "tcp", nil)
			}
			p.c.relayTCPTo(pc, server, start, p.target.Host, capture.DirIn, "reverse", "server_first", &p.ss, nil)
			return
		}
	}
	if kind == sniffHTTP2 && !fullPreface(pc) {
		// RFC 9113 §3.4: an invalid preface is a connection error.
		conn.Close()
		return
	}
	if kind == sniffTLS && p.c.opt.InboundTLS != nil {
		p.serveTLS(conn, pc, httpLn)
		return
	}
	switch kind {
	case sniffHTTP1, sniffHTTP2:
		if info != nil {
			proto := "http/1.1"
			if kind == sniffHTTP2 {
				proto = "h2c"
			}
			info.set(p.target.Host, proto, nil)
		}
		if kind == sniffHTTP1 {
			p.h1.serve(pc.unwrap(), nil)
			return
		}
		httpLn.push(pc)
	case sniffClosed:
		// Connected and closed without a byte: a load balancer's TCP
		// health check. Nothing to relay or record.
		conn.Close()
	default:
		if info != nil {
			info.set(p.target.Host, "tcp", nil)
		}
		reason := "not_http"
		if kind == sniffTLS {
			reason = "tls_no_unwrap"
		}
		p.c.relayTCP(pc, p.target.Host, capture.DirIn, "reverse", reason, &p.ss, nil)
	}
}

// awaitFirst serves a client that stayed silent past the sniff timeout: a
// pooled, pre-opened HTTP connection, or the client of a protocol where the
// server speaks first (SMTP, MySQL...). Silence alone is no reason to go
// raw: goproxy connects to the app and waits, up to the idle timeout, for
// either side's first bytes. When the app speaks first, the connection to it
// is returned (its first bytes still to be read) to be relayed as a byte
// stream; when the client does, its bytes are classified as on arrival.
// Neither: sniffClosed.
func (p *Inbound) awaitFirst(pc *peekConn) (sniffKind, net.Conn) {
	idle := p.c.opt.IdleTimeout
	client := make(chan error, 1)
	go func() {
		pc.SetReadDeadline(time.Now().Add(idle))
		_, err := pc.r.Peek(1)
		client <- err
	}()
	appFirst := make(chan []byte, 1)
	d := net.Dialer{Timeout: p.c.opt.DialTimeout}
	app, err := d.Dial("tcp", p.target.Host)
	if err != nil {
		appFirst <- nil // the app is not there: only the client can speak
	} else {
		go func() {
			b := make([]byte, 4096)
			app.SetReadDeadline(time.Now().Add(idle))
			n, _ := app.Read(b)
			appFirst <- b[:n]
		}()
	}
	var spoke []byte
	var cerr error
	select {
	case spoke = <-appFirst:
		if len(spoke) == 0 {
			cerr = <-client
			break
		}
		pc.SetReadDeadline(time.Now())
		<-client
	case cerr = <-client:
		if app != nil {
			app.SetReadDeadline(time.Now())
		}
		spoke = <-appFirst
	}
	pc.SetReadDeadline(time.Time{})
	if len(spoke) > 0 {
		app.SetReadDeadline(time.Time{})
		return sniffUnknown, &h1.ReplayConn{Conn: app, Pending: spoke}
	}
	if app != nil {
		app.Close()
	}
	if cerr != nil {
		return sniffClosed, nil
	}
	return pc.sniff(sniffTimeout), nil
}

// serveTLS terminates inbound TLS with the app's own certificate
// (TLS_IN_UNWRAP) and serves HTTP/1.1 or HTTP/2, as ALPN decides, inside.
func (p *Inbound) serveTLS(conn net.Conn, pc *peekConn, httpLn *chanListener) {
	cfg := p.c.opt.InboundTLS.Clone()
	if len(cfg.NextProtos) == 0 {
		cfg.NextProtos = []string{"h2", "http/1.1"}
	}
	tc := tls.Server(pc, cfg)
	tc.SetDeadline(time.Now().Add(p.c.opt.HeaderTimeout))
	if err := tc.Handshake(); err != nil {
		p.c.m.handshakeFailures.Inc()
		p.c.log.Info("inbound TLS handshake failed", "client", conn.RemoteAddr().String(), "err", err)
		tc.Close()
		return
	}
	tc.SetDeadline(time.Time{})
	if info := infoOf(conn); info != nil {
		cs := tc.ConnectionState()
		info.set(p.target.Host, "tls", tlsFacts(&cs))
	}
	// h2 goes to the HTTP/2 server as a *tls.Conn (it fills r.TLS);
	// HTTP/1.1 to the engine, with the TLS state for the record.
	cs := tc.ConnectionState()
	if cs.NegotiatedProtocol == "h2" {
		httpLn.push(tc)
		return
	}
	p.h1.serve(tc, &cs)
}

// fullPreface waits for the whole HTTP/2 client preface and checks it.
func fullPreface(pc *peekConn) bool {
	pc.SetReadDeadline(time.Now().Add(sniffTimeout))
	defer pc.SetReadDeadline(time.Time{})
	b, err := pc.r.Peek(len(http2.ClientPreface))
	return err == nil && string(b) == http2.ClientPreface
}

// Shutdown stops accepting, lets in-flight exchanges finish until ctx is
// done, then closes what is left.
func (p *Inbound) Shutdown(ctx context.Context) error {
	p.h1.shutdown()
	return drain(ctx, &p.ln, &p.ss, &p.live, p.srv)
}

// Close closes every connection at once.
func (p *Inbound) Close() error {
	p.h1.shutdown()
	return closeNow(&p.ln, &p.ss, &p.live, p.srv)
}
