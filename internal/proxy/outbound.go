package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/http2"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/h1"
)

// viaToken marks requests that went through goproxy, so that a request
// that loops back into it is refused instead of recursing.
const viaToken = "1.1 tapwire-goproxy"

// Outbound is the forward proxy the app sends its calls through
// (HTTP_PROXY / HTTPS_PROXY): absolute-form HTTP requests, and CONNECT
// tunnels, unwrapped when they carry TLS and a Minter is configured.
type Outbound struct {
	c       *core
	rp      *httputil.ReverseProxy // unwrapped tunnels that chose HTTP/2
	mitmSrv *http.Server           // the settings of unwrapped HTTP/2 tunnels' server
	ln      listenerRef            // the sniffing listener, closed by Shutdown
	h2      *http2.Server          // serves unwrapped tunnels that chose h2
	h1      *h1Engine              // serves unwrapped tunnels that chose HTTP/1.1
	fwd     *h1Engine              // serves the listener's HTTP/1 clients: absolute-form requests and CONNECT
	upsMu   sync.Mutex
	ups     map[string]*h1Upstream // absolute-form targets ("http://host:port") and their pools
	ss      streams
	live    liveConns
}

// NewOutbound makes the outbound proxy.
func NewOutbound(opt Options) (*Outbound, error) {
	opt.setDefaults()
	c := &core{opt: opt, log: opt.Logger.With("listener", "outbound"), m: opt.Metrics}
	p := &Outbound{c: c}
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			// Forward the app's request as it is: Rewrite strips the
			// X-Forwarded headers, which belong to the app here.
			for _, k := range []string{"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"} {
				if v, ok := pr.In.Header[k]; ok {
					pr.Out.Header[k] = v
				}
			}
			pr.Out.Header["Via"] = append(pr.In.Header["Via"], viaToken)
		},
		Transport:      c.transport(""),
		ModifyResponse: modifyResponse,
		ErrorHandler:   c.errorHandler(capture.DirOut),
		BufferPool:     bufPool{},
		FlushInterval:  -1, // bytes reach the client as each upstream read returns, Content-Length or not
		ErrorLog:       c.newServer(nil).ErrorLog,
	}
	p.mitmSrv = c.newServer(http.HandlerFunc(p.serveTunnel))
	p.h2 = &http2.Server{IdleTimeout: opt.IdleTimeout}
	p.h1 = newH1Engine(c, capture.DirOut, "connect", nil)
	p.fwd = newH1Engine(c, capture.DirOut, "forward", nil)
	p.fwd.forward = p.route
	p.ups = map[string]*h1Upstream{}
	return p, nil
}

type tunnelKey struct{}

// Serve accepts proxy clients on ln until Shutdown.
func (p *Outbound) Serve(ln net.Listener) error {
	ln = &trackListener{Listener: ln, name: "outbound", dir: capture.DirOut, table: p.c.opt.Conns, m: p.c.m, live: &p.live}
	p.ln.set(ln)
	if p.c.opt.NoSocks {
		return acceptLoop(ln, func(conn net.Conn) { p.fwd.serve(conn, nil) })
	}
	// SOCKS and HTTP share the port: the first byte tells them apart.
	return acceptLoop(ln, p.dispatch)
}

// dispatch sends a SOCKS client to the SOCKS handshake and anything else
// to the HTTP proxy.
func (p *Outbound) dispatch(conn net.Conn) {
	br := bufio.NewReaderSize(conn, 512)
	conn.SetReadDeadline(time.Now().Add(p.c.opt.HeaderTimeout))
	b, err := br.Peek(1)
	if err != nil {
		conn.Close()
		return
	}
	if b[0] != socks4 && b[0] != socks5 {
		conn.SetReadDeadline(time.Time{})
		if p.c.opt.NoHTTPProxy {
			p.c.m.badRequests.Inc()
			conn.Close()
			return
		}
		p.fwd.serve((&peekConn{Conn: conn, r: br}).unwrap(), nil)
		return
	}
	target, err := socksHandshake(br, conn, p.c.opt.SocksAuth)
	conn.SetReadDeadline(time.Time{})
	if err != nil {
		p.c.m.badRequests.Inc()
		p.c.log.Info("SOCKS handshake refused", "client", conn.RemoteAddr().String(), "err", err)
		conn.Close()
		return
	}
	p.c.m.requests(capture.DirOut).Inc()
	p.tunnel(conn, &peekConn{Conn: conn, r: br}, target, "socks")
}

// tunnel serves an established tunnel to target (after CONNECT or a SOCKS
// handshake): TLS is unwrapped when a Minter is set, anything else is
// relayed untouched and recorded as a TCP stream. conn is the client's
// connection as accepted; c reads it with any bytes already buffered.
func (p *Outbound) tunnel(conn, c net.Conn, target, proxyName string) {
	pc, kind := sniff(c, sniffTimeout)
	if kind == sniffClosed {
		conn.Close()
		return
	}
	info := infoOf(conn)
	t := &tunnelInfo{target: target, host: hostOnly(target), info: info}
	if info != nil {
		t.connID = strconv.FormatUint(info.id, 10)
	}
	if kind != sniffTLS || p.c.opt.Minter == nil {
		reason := "passthrough"
		if kind == sniffTLS {
			reason = "tls_no_unwrap"
		}
		if info != nil {
			info.set(target, "tcp", nil)
		}
		p.c.relayTCP(pc, target, capture.DirOut, proxyName, reason, &p.ss, t)
		return
	}
	cfg := p.c.opt.Minter.ServerConfig(t.host)
	// ALPN with the app is negotiated on its own; goproxy's transport
	// negotiates with the upstream separately.
	cfg.NextProtos = []string{"h2", "http/1.1"}
	tc := tls.Server(pc, cfg)
	tc.SetDeadline(time.Now().Add(p.c.opt.HeaderTimeout))
	if err := tc.Handshake(); err != nil {
		p.c.m.handshakeFailures.Inc()
		p.c.log.Warn("TLS handshake with the app failed; does the app trust the CA in TLS_CERT_DIR (SSL_CERT_FILE)?", "target", target, "err", err)
		tc.Close()
		return
	}
	tc.SetDeadline(time.Time{})
	cs := tc.ConnectionState()
	t.tls = tlsFacts(&cs)
	if t.tls.SNI != "" {
		t.host = t.tls.SNI
	}
	if info != nil {
		info.set(target, "tls", t.tls)
	}
	if cs.NegotiatedProtocol == "h2" {
		p.serveH2(tc, t)
		return
	}
	// HTTP/1.1 in the engine, to the CONNECT target over TLS verified
	// for its host, ALPN http/1.1 as the app chose.
	ucfg := &tls.Config{RootCAs: p.c.opt.RootCAs, ServerName: hostOnly(target), MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
	if cc := p.c.opt.ClientCert; cc != nil {
		ucfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cc, nil }
	}
	up := p.h1.newUpstream(target, ucfg, t)
	defer up.pool.closeAll()
	p.h1.serveTo(tc, &cs, up)
}

// serveH2 serves an unwrapped tunnel in which the app chose HTTP/2: each
// stream is one exchange and one record.
func (p *Outbound) serveH2(tc *tls.Conn, t *tunnelInfo) {
	ctx := context.WithValue(context.Background(), tunnelKey{}, t)
	ctx = context.WithValue(ctx, connKey{}, net.Conn(tc))
	p.ss.add(tc)
	defer p.ss.remove(tc)
	p.h2.ServeConn(tc, &http2.ServeConnOpts{
		Context:    ctx,
		BaseConfig: p.mitmSrv,
		Handler:    http.HandlerFunc(p.serveTunnel),
	})
}

// serveTunnel handles one request inside an unwrapped tunnel.
func (p *Outbound) serveTunnel(w http.ResponseWriter, r *http.Request) {
	t, _ := r.Context().Value(tunnelKey{}).(*tunnelInfo)
	if t == nil {
		http.Error(w, "500 Internal Server Error", http.StatusInternalServerError)
		return
	}
	p.c.m.requests(capture.DirOut).Inc()
	// Dial the CONNECT target; verify the upstream's certificate for it.
	r.URL.Scheme = "https"
	r.URL.Host = t.target
	if r.Host == "" {
		r.Host = t.host
	}
	url := "https://" + r.Host + r.URL.RequestURI()
	p.c.serveCaptured(w, r, capture.DirOut, "connect", url, t, withUpstream(p.rp, t.target))
}

// Shutdown stops accepting, lets in-flight exchanges and tunnels finish
// until ctx is done, then closes what is left.
func (p *Outbound) Shutdown(ctx context.Context) error {
	p.h1.shutdown()
	p.fwd.shutdown()
	p.closeUpstreams()
	return drain(ctx, &p.ln, &p.ss, &p.live, p.mitmSrv)
}

// Close closes every connection at once.
func (p *Outbound) Close() error {
	p.h1.shutdown()
	p.fwd.shutdown()
	p.closeUpstreams()
	return closeNow(&p.ln, &p.ss, &p.live, p.mitmSrv)
}

type connKey struct{}

// connOf returns the client connection of r, when the server recorded it.
func connOf(r *http.Request) net.Conn {
	c, _ := r.Context().Value(connKey{}).(net.Conn)
	return c
}

func containsToken(v, tok string) bool {
	for len(v) > 0 {
		i := 0
		for i < len(v) && v[i] != ',' {
			i++
		}
		f := v[:i]
		for len(f) > 0 && (f[0] == ' ' || f[0] == '\t') {
			f = f[1:]
		}
		if len(f) >= len(tok) && f[:len(tok)] == tok {
			return true
		}
		if i == len(v) {
			break
		}
		v = v[i+1:]
	}
	return false
}

// transport is the http.Transport to upstreams. serverName, when set, is
// the SNI for an https target that is an address.
func (c *core) transport(serverName string) *http.Transport {
	d := &net.Dialer{Timeout: c.opt.DialTimeout, KeepAlive: 30 * time.Second}
	tcfg := &tls.Config{RootCAs: c.opt.RootCAs, ServerName: serverName, MinVersion: tls.VersionTLS12}
	if cc := c.opt.ClientCert; cc != nil {
		tcfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cc, nil }
	}
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &upstreamConn{Conn: conn}, nil
	}
	return &http.Transport{
		Proxy:                 nil, // never follow HTTP_PROXY from goproxy's own environment
		DialContext:           dial,
		TLSClientConfig:       tcfg,
		TLSHandshakeTimeout:   10 * time.Second,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true, // never add Accept-Encoding the app did not ask for
	}
}

// upstreamConn is a connection to an upstream. An app may answer before it
// has read the whole request body (413 to a large upload) and close; the
// next write of the body then fails with a reset or a broken pipe, and the
// transport, seeing that write error first, would drop the answer already
// on its way and give the client a 502. Once the upstream has closed, writes
// report success and go nowhere: the transport reads the answer (or, when
// there is none, the read error) as it would from an app that read the body.
type upstreamConn struct {
	net.Conn
	peerClosed atomic.Bool
}

func (c *upstreamConn) Write(p []byte) (int, error) {
	if c.peerClosed.Load() {
		return len(p), nil
	}
	n, err := c.Conn.Write(p)
	if err != nil && (errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)) {
		c.peerClosed.Store(true)
		return len(p), nil
	}
	return n, err
}

// WriteAwait is Write, then a wait until the app's answer can be read (see
// rawtcp.Conn.WriteAwait); a plain Write where the connection cannot.
func (c *upstreamConn) WriteAwait(p []byte) (int, error) {
	wa, ok := c.Conn.(interface{ WriteAwait([]byte) (int, error) })
	if !ok || c.peerClosed.Load() {
		return c.Write(p)
	}
	n, err := wa.WriteAwait(p)
	if err != nil && (errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)) {
		c.peerClosed.Store(true) // as Write: what the app sent before it closed is still to be read
		return len(p), nil
	}
	return n, err
}

// Pending reports whether the app wrote to or closed the connection while
// it was idle (see rawtcp.Conn.Pending); false where that cannot be told.
func (c *upstreamConn) Pending() bool {
	p, ok := c.Conn.(interface{ Pending() bool })
	return ok && p.Pending()
}

// CloseWrite half-closes when the connection can.
func (c *upstreamConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// h2cTransport speaks HTTP/2 with prior knowledge to a cleartext app.
func (c *core) h2cTransport() *http.Transport {
	t := c.transport("")
	t.Protocols = new(http.Protocols)
	t.Protocols.SetUnencryptedHTTP2(true)
	return t
}

// bufPool lends the reverse proxies their copy buffers.
type bufPool struct{}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (bufPool) Get() []byte  { return *(copyBufs.Get().(*[]byte)) }
func (bufPool) Put(b []byte) { copyBufs.Put(&b) }

// maxForwardUpstreams bounds the upstreams whose kept-alive connections
// the forward proxy pools; beyond it one is let go (its idle connections
// closed) for each new one.
const maxForwardUpstreams = 1024

// route is the forward proxy's router (h1Engine.forward): CONNECT takes
// the connection for a tunnel; an absolute-form http:// or https:// request
// goes to its host; anything else is refused with what to do instead.
func (p *Outbound) route(hc *h1Conn, end int) (*h1Upstream, []byte, bool) {
	h := &hc.head
	// A well-formed request refused keeps its connection when it has no
	// body to skip; the others are answered and closed.
	refuse := func(status int, format string, args ...any) (*h1Upstream, []byte, bool) {
		e := &h1.FramingError{Status: status, Reason: fmt.Sprintf(format, args...)}
		if string(h.Method) == http.MethodConnect || h.Chunked || h.Length > 0 || !h.KeepAlive() {
			hc.refuse(e)
			return nil, nil, false
		}
		p.c.m.badRequests.Inc()
		text := http.StatusText(status)
		body := fmt.Sprintf("%d %s: %s\n", status, text, e.Reason)
		if _, err := fmt.Fprintf(hc.conn, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n\r\n%s", status, text, len(body), body); err != nil {
			return nil, nil, false
		}
		hc.r += end
		return nil, nil, true
	}
	if string(h.Method) == http.MethodConnect {
		target := string(h.Target)
		_, port, err := net.SplitHostPort(target)
		if n, perr := strconv.Atoi(port); err != nil || perr != nil || n <= 0 || n > 65535 {
			return refuse(http.StatusBadRequest, "CONNECT needs host:port with a port from 1 to 65535, not %.60q", target)
		}
		if _, err := hc.conn.Write([]byte("HTTP/1.1 200 Connection Established\r\n\r\n")); err != nil {
			return nil, nil, false
		}
		// The client may have sent its first bytes along with the CONNECT.
		pending := append([]byte(nil), hc.buf[hc.r+end:hc.w]...)
		hc.r, hc.w = 0, 0
		hc.gone = true
		p.tunnel(hc.conn, &h1.ReplayConn{Conn: hc.conn, Pending: pending}, target, "connect")
		return nil, nil, false
	}
	t := h.Target
	sep := bytes.Index(t, []byte("://"))
	if sep <= 0 || t[0] == '/' {
		return refuse(http.StatusBadRequest, "this is goproxy's outbound forward proxy; send absolute-form requests (http://host/path) or CONNECT host:port, for example by setting HTTP_PROXY and HTTPS_PROXY")
	}
	// scheme://authority, and the origin-form target that follows it.
	cut := len(t)
	if i := bytes.IndexAny(t[sep+3:], "/?"); i >= 0 {
		cut = sep + 3 + i
	}
	prefix, path := t[:cut], t[cut:]
	switch {
	case len(path) == 0:
		path = rootPath
	case path[0] == '?':
		path = append([]byte("/"), path...)
	}
	for _, f := range h.Fields {
		if h1.EqualFold(f.Name, "Via") && containsToken(string(f.Value), viaToken) {
			p.c.m.deniedForward.Inc()
			return refuse(http.StatusLoopDetected, "this request already went through goproxy")
		}
	}
	// A connection sends its requests to the same host, as a rule: the
	// upstream of the last one is kept on the connection.
	if hc.fwdUp != nil && bytes.Equal(prefix, hc.fwdKey) {
		return hc.fwdUp, path, true
	}
	scheme, authority := strings.ToLower(string(t[:sep])), string(prefix[sep+3:])
	if scheme != "http" && scheme != "https" {
		return refuse(http.StatusBadRequest, "goproxy forwards http and https URLs, not %q", scheme)
	}
	if strings.Contains(authority, "@") {
		return refuse(http.StatusBadRequest, "credentials in the URL are not forwarded; send them in a header")
	}
	host, port, err := net.SplitHostPort(authority)
	if err != nil {
		host, port = strings.Trim(authority, "[]"), map[string]string{"http": "80", "https": "443"}[scheme]
	}
	if host == "" {
		return refuse(http.StatusBadRequest, "no host in %.60q", h.Target)
	}
	target := net.JoinHostPort(host, port)
	if info := infoOf(hc.conn); info != nil {
		info.set(target, "http/1.1", nil)
	}
	hc.fwdKey, hc.fwdUp = append(hc.fwdKey[:0], prefix...), p.upstream(scheme, host, target)
	return hc.fwdUp, path, true
}

var rootPath = []byte("/")

// upstream returns the pool of an absolute-form target.
func (p *Outbound) upstream(scheme, host, target string) *h1Upstream {
	key := scheme + "://" + target
	p.upsMu.Lock()
	defer p.upsMu.Unlock()
	if u := p.ups[key]; u != nil {
		return u
	}
	if len(p.ups) >= maxForwardUpstreams {
		for k, u := range p.ups {
			delete(p.ups, k)
			u.evicted.Store(true) // connections still out come back to be closed
			u.pool.closeAll()
			break
		}
	}
	var cfg *tls.Config
	if scheme == "https" {
		cfg = &tls.Config{RootCAs: p.c.opt.RootCAs, ServerName: host, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
		if cc := p.c.opt.ClientCert; cc != nil {
			cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cc, nil }
		}
	}
	u := p.fwd.newUpstream(target, cfg, nil)
	u.proxy = "forward"
	p.ups[key] = u
	return u
}

// closeUpstreams closes the forward proxy's idle upstream connections.
func (p *Outbound) closeUpstreams() {
	p.upsMu.Lock()
	defer p.upsMu.Unlock()
	for _, u := range p.ups {
		u.pool.closeAll()
	}
}
