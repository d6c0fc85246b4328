package mock

import (
	"bytes"
	"errors"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/h1"
)

// This file serves the mock's plaintext HTTP/1.1 connections (the proxy
// listener, --reverse listeners, and the HTTP/1.1 inside CONNECT tunnels)
// with the strict parser of internal/h1 instead of net/http's server, whose
// per-request cost alone kept the mock under half of nginx's rate
// (bench/RESULTS.md). A recorded answer's head is serialised once per
// recording and written with its body in one system call; pipelined
// requests are answered in one write. What this loop does not answer
// itself it hands, with the bytes it has read, to the net/http server
// that served the connection before: HTTP/2 with prior knowledge, Upgrade
// (h2c), CONNECT, gRPC, and every request when misses are passed through.

const (
	h1MaxHead     = 64 << 10         // a request line and its fields, as goproxy's default
	h1HeadTimeout = 30 * time.Second // from the first byte of a head to its end
)

// h1Mode says how a connection's requests are addressed.
type h1Mode struct {
	proxy  bool   // the forward-proxy listener: absolute-form requests; CONNECT is handed off
	scheme string // of a request in origin form
	host   string // a reverse listener's host, or a tunnel's target
	fixed  bool   // host is every request's host (a reverse listener); else the Host field wins
	// handOff serves the connection with net/http from here on; its first
	// bytes are the request that could not be answered here.
	handOff func(net.Conn)
}

// h1Conn is the state of one connection: its read buffer (bytes read,
// from off on not yet used) and what it reuses between requests.
type h1Conn struct {
	s        *Server
	c        net.Conn
	m        *h1Mode
	idle     *atomic.Bool
	clientIP string
	buf      []byte
	off      int
	out      []byte
	head     h1.Head
	scan     h1.BodyScan
	body     h1.BodyCap
	hdrs     capture.Headers
}

// serveH1 serves c until the client closes it, the server shuts down, or
// the connection is handed off.
func (s *Server) serveH1(c net.Conn, m *h1Mode) {
	idle := new(atomic.Bool)
	if !s.addConn(c, idle) {
		c.Close()
		return
	}
	hc := &h1Conn{s: s, c: c, m: m, idle: idle, buf: make([]byte, 0, 4096)}
	hc.body.Limit = s.opt.MaxBody
	if ip, _, err := net.SplitHostPort(c.RemoteAddr().String()); err == nil {
		hc.clientIP = ip
	}
	handed := hc.loop()
	s.removeTunnel(c)
	if !handed {
		c.Close()
	}
}

// loop answers requests; it reports whether the connection was handed off.
func (hc *h1Conn) loop() bool {
	for {
		end, ok := hc.readHead()
		if !ok {
			return false
		}
		raw := hc.buf[hc.off : hc.off+end]
		if bytes.HasPrefix(raw, []byte("PRI * HTTP/2.0\r\n")) {
			return hc.handOff()
		}
		if err := h1.ParseRequest(raw, &hc.head); err != nil {
			hc.refuse(err.Status, err.Reason)
			return false
		}
		h := &hc.head
		if hc.m.proxy && string(h.Method) == http.MethodConnect || len(h.Upgrade) > 0 || hc.grpc() {
			return hc.handOff()
		}
		req, msg := hc.request()
		if msg != "" {
			hc.refuse(http.StatusBadRequest, msg)
			return false
		}
		hc.off += end
		if !hc.readBody(req) {
			return false
		}
		keep := h.KeepAlive()
		hc.answer(req, keep)
		if !keep {
			hc.flush()
			return false
		}
		if hc.s.isClosing() {
			hc.flush()
			return false
		}
		// Pipelined requests already read are answered before one write.
		if h1.HeadEnd(hc.buf[hc.off:]) < 0 && !hc.flush() {
			return false
		}
	}
}

// readHead reads until the buffer holds a whole head from off on, and
// returns its length. On a client that goes away or a head that is too
// long or cannot be a request, it answers as fits and reports false.
func (hc *h1Conn) readHead() (int, bool) {
	deadline := false
	for {
		if end := h1.HeadEnd(hc.buf[hc.off:]); end >= 0 {
			if end > h1MaxHead {
				hc.refuse(http.StatusRequestHeaderFieldsTooLarge, "request line and header fields exceed "+strconv.Itoa(h1MaxHead)+" bytes")
				return 0, false
			}
			if deadline {
				hc.c.SetReadDeadline(time.Time{})
			}
			return end, true
		}
		pending := hc.buf[hc.off:]
		if len(pending) >= h1MaxHead {
			hc.refuse(http.StatusRequestHeaderFieldsTooLarge, "request line and header fields exceed "+strconv.Itoa(h1MaxHead)+" bytes")
			return 0, false
		}
		if h1.BadStart(pending) {
			hc.refuse(http.StatusBadRequest, "not an HTTP/1.1 request")
			return 0, false
		}
		if len(pending) == 0 {
			// Between requests: the connection is idle, and Shutdown may
			// end the wait (it sets a past deadline on idle connections).
			if !hc.flush() {
				return 0, false
			}
			hc.idle.Store(true)
			if hc.s.isClosing() {
				return 0, false
			}
		} else if !deadline {
			hc.c.SetReadDeadline(time.Now().Add(h1HeadTimeout))
			deadline = true
		}
		n, err := hc.read()
		hc.idle.Store(false)
		if n == 0 && err != nil {
			return 0, false
		}
	}
}

// read appends what the connection has to the buffer, moving the unused
// bytes to its start first when it is full.
func (hc *h1Conn) read() (int, error) {
	if hc.off > 0 && (len(hc.buf) == cap(hc.buf) || hc.off == len(hc.buf)) {
		n := copy(hc.buf, hc.buf[hc.off:])
		hc.buf, hc.off = hc.buf[:n], 0
	}
	if len(hc.buf) == cap(hc.buf) {
		hc.buf = slices.Grow(hc.buf, cap(hc.buf))
	}
	n, err := hc.c.Read(hc.buf[len(hc.buf):cap(hc.buf)])
	hc.buf = hc.buf[:len(hc.buf)+n]
	return n, err
}

// handOff gives the connection, the request at off and whatever follows
// it, to net/http.
func (hc *h1Conn) handOff() bool {
	if !hc.flush() {
		return false
	}
	// The buffer is the connection's no more: no copy.
	hc.m.handOff(&h1.ReplayConn{Conn: hc.c, Pending: hc.buf[hc.off:]})
	return true
}

// grpc reports whether the request is a gRPC call (answered by net/http,
// which writes its trailers).
func (hc *h1Conn) grpc() bool {
	for _, f := range hc.head.Fields {
		if h1.EqualFold(f.Name, "Content-Type") && bytes.HasPrefix(f.Value, []byte("application/grpc")) {
			return true
		}
	}
	return false
}

// request builds the Request of the head as net/http's server would read
// it: the target's escaped path and query, the header fields but Host
// under canonical names in name order. It returns a reason to refuse the
// request instead.
func (hc *h1Conn) request() (*Request, string) {
	h := &hc.head
	target := string(h.Target)
	req := &Request{Method: string(h.Method), Scheme: hc.m.scheme, ClientIP: hc.clientIP}
	absolute := target[0] != '/' && target != "*"
	if absolute {
		u, err := url.ParseRequestURI(target)
		if err != nil || u.Host == "" {
			return nil, "invalid request target " + strconv.QuoteToASCII(target)
		}
		req.Scheme, req.Host, req.Path, req.RawQuery = u.Scheme, u.Host, u.EscapedPath(), u.RawQuery
	} else {
		path, query, _ := strings.Cut(target, "?")
		p, ok := escapedPath(path)
		if !ok {
			return nil, "invalid request target " + strconv.QuoteToASCII(target)
		}
		req.Path, req.RawQuery = p, query
	}
	switch {
	case hc.m.proxy && !absolute:
		return nil, proxyOriginForm
	case hc.m.proxy:
	case hc.m.fixed:
		req.Scheme, req.Host = hc.m.scheme, hc.m.host
	default: // in a tunnel: as net/http's r.Host, the URL's host, else the Host field, else the target
		req.Scheme = hc.m.scheme
		if !absolute {
			req.Host = string(h.Host)
		}
		if req.Host == "" {
			req.Host = hc.m.host
		}
	}
	hs := hc.hdrs[:0]
	for _, f := range h.Fields {
		if h1.EqualFold(f.Name, "Host") {
			continue
		}
		hs = append(hs, capture.Header{Name: textproto.CanonicalMIMEHeaderKey(string(f.Name)), Value: string(f.Value)})
	}
	slices.SortStableFunc(hs, func(a, b capture.Header) int { return strings.Compare(a.Name, b.Name) })
	hc.hdrs = hs
	req.Headers = hs
	return req, ""
}

// escapedPath is url.URL.EscapedPath of a request's path as sent: the path
// itself when it is validly escaped already (nearly always), or else what
// net/http makes of it. It reports false for a path net/http refuses (a
// bad escape).
func escapedPath(p string) (string, bool) {
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("-._~!$&'()*+,;=:@[]/", c) >= 0:
		case c == '%' && i+2 < len(p) && isHex(p[i+1]) && isHex(p[i+2]):
			i += 2
		default:
			u, err := url.ParseRequestURI(p)
			if err != nil {
				return "", false
			}
			return u.EscapedPath(), true
		}
	}
	return p, true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// readBody reads the request's body (the first MaxBody bytes are kept in
// req.Body, the rest read and dropped), answering 100 Continue first when
// the client waits for it.
func (hc *h1Conn) readBody(req *Request) bool {
	hc.scan.Start(&hc.head, h1MaxHead, false)
	hc.body.Reset()
	if hc.head.Expect100 && !hc.scan.Done && hc.off == len(hc.buf) {
		hc.out = append(hc.out, "HTTP/1.1 100 Continue\r\n\r\n"...)
		if !hc.flush() {
			return false
		}
	}
	for !hc.scan.Done {
		if hc.off == len(hc.buf) {
			if n, err := hc.read(); n == 0 && err != nil {
				return false
			}
		}
		n, ferr := hc.scan.Scan(hc.buf[hc.off:], &hc.body)
		hc.off += n
		if ferr != nil {
			hc.refuse(ferr.Status, ferr.Reason)
			return false
		}
	}
	req.Body = hc.body.Buf
	return true
}

// answer writes the answer to req into out: the recording that matches,
// or the explanation of a miss.
func (hc *h1Conn) answer(req *Request, keep bool) {
	s := hc.s
	res := s.opt.Index.Match(req)
	if !res.Matched() {
		s.report.miss(req, res)
		status, hv, body := s.missAnswer(req, res)
		hc.out = appendStatus(hc.out, status)
		hc.out = appendField(hc.out, MissHeader, hv)
		hc.out = append(hc.out, "Content-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\n"...)
		hc.out = appendField(hc.out, "Content-Length", strconv.Itoa(len(body)))
		hc.endHead(keep)
		if string(hc.head.Method) != http.MethodHead {
			hc.out = append(hc.out, body...)
		}
		return
	}
	s.report.matched(res.Endpoint)
	rec := res.Record
	if s.opt.Timing > 0 && rec.TTFBMicros > 0 {
		if !hc.flush() || !s.wait(s.ctx, rec.TTFBMicros) {
			return
		}
	}
	a := s.answerOf(rec)
	hc.out = append(hc.out, a.head...)
	if !a.date {
		hc.out = append(hc.out, "Date: "...)
		hc.out = append(hc.out, httpDate()...)
		hc.out = append(hc.out, "\r\n"...)
	}
	hc.endHead(keep)
	if string(hc.head.Method) != http.MethodHead {
		hc.out = append(hc.out, a.body...)
	}
}

// endHead ends a response head, saying whether the connection stays open.
func (hc *h1Conn) endHead(keep bool) {
	switch {
	case !keep:
		hc.out = append(hc.out, "Connection: close\r\n"...)
	case hc.head.Minor == 0:
		hc.out = append(hc.out, "Connection: keep-alive\r\n"...)
	}
	hc.out = append(hc.out, "\r\n"...)
}

// flush writes out; it reports false when the client is gone.
func (hc *h1Conn) flush() bool {
	if len(hc.out) == 0 {
		return true
	}
	_, err := hc.c.Write(hc.out)
	hc.out = hc.out[:0]
	return err == nil
}

// refuse answers a request that cannot be served with status and why, and
// the connection is closed after it.
func (hc *h1Conn) refuse(status int, why string) {
	body := strconv.Itoa(status) + " " + http.StatusText(status) + ": tapwire mock: " + why + "\n"
	hc.out = appendStatus(hc.out, status)
	hc.out = append(hc.out, "Content-Type: text/plain; charset=utf-8\r\nConnection: close\r\n"...)
	hc.out = appendField(hc.out, "Content-Length", strconv.Itoa(len(body)))
	hc.out = append(hc.out, "\r\n"...)
	hc.out = append(hc.out, body...)
	hc.flush()
}

// h1Answer is a recording's answer serialised for HTTP/1.1, made once.
type h1Answer struct {
	head []byte // the status line and fields, without the line that ends the head
	date bool   // head has a Date field
	body []byte // the body as sent: with chunked framing and trailers when the recording has trailers
}

// answerOf returns rec's serialised answer, making it the first time.
func (s *Server) answerOf(rec *capture.Record) *h1Answer {
	if a, ok := s.answers.Load(rec); ok {
		return a.(*h1Answer)
	}
	a := makeAnswer(rec)
	s.answers.Store(rec, a)
	return a
}

// makeAnswer serialises rec's response as Server.answer writes it through
// net/http: its status and fields without the hop-by-hop ones, a
// Content-Length, or chunked framing when it has trailers; the
// Content-Type sniffed when it has none, as net/http does.
func makeAnswer(rec *capture.Record) *h1Answer {
	res := rec.HTTP.Res
	status := res.Status
	if status < 200 || status > 999 {
		status = http.StatusOK
	}
	body := res.Body.Data
	dropGzip := false
	if strings.EqualFold(res.Headers.Get("Content-Encoding"), "gzip") && !bytes.HasPrefix(body, []byte{0x1f, 0x8b}) {
		dropGzip = true // a recording stored decoded
	}
	a := &h1Answer{}
	b := appendStatus(nil, status)
	ctype := false
	for _, f := range res.Headers {
		if hopHeaders[strings.ToLower(f.Name)] || !httpguts.ValidHeaderFieldName(f.Name) ||
			dropGzip && strings.EqualFold(f.Name, "Content-Encoding") {
			continue
		}
		ctype = ctype || strings.EqualFold(f.Name, "Content-Type")
		a.date = a.date || strings.EqualFold(f.Name, "Date")
		b = appendField(b, textproto.CanonicalMIMEHeaderKey(f.Name), f.Value)
	}
	if !ctype && len(body) > 0 && status != http.StatusNoContent && status != http.StatusNotModified {
		b = appendField(b, "Content-Type", http.DetectContentType(body))
	}
	if len(res.Trailers) == 0 {
		b = appendField(b, "Content-Length", strconv.Itoa(len(body)))
		a.head, a.body = b, body
		return a
	}
	b = append(b, "Transfer-Encoding: chunked\r\n"...)
	var t []byte
	if len(body) > 0 {
		t = strconv.AppendInt(t, int64(len(body)), 16)
		t = append(t, "\r\n"...)
		t = append(t, body...)
		t = append(t, "\r\n"...)
	}
	t = append(t, "0\r\n"...)
	for _, f := range res.Trailers {
		if httpguts.ValidHeaderFieldName(f.Name) {
			t = appendField(t, textproto.CanonicalMIMEHeaderKey(f.Name), f.Value)
		}
	}
	t = append(t, "\r\n"...)
	a.head, a.body = b, t
	return a
}

// appendStatus appends a status line as net/http writes it.
func appendStatus(b []byte, status int) []byte {
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, ' ')
	if text := http.StatusText(status); text != "" {
		b = append(b, text...)
	} else {
		b = append(b, "status code "...)
		b = strconv.AppendInt(b, int64(status), 10)
	}
	return append(b, "\r\n"...)
}

// appendField appends a field line; line breaks in the value become
// spaces, as net/http writes them.
func appendField(b []byte, name, value string) []byte {
	b = append(b, name...)
	b = append(b, ": "...)
	for i := 0; i < len(value); i++ {
		c := value[i]
		if c == '\r' || c == '\n' {
			c = ' '
		}
		b = append(b, c)
	}
	return append(b, "\r\n"...)
}

// httpDate is the time now as a Date field's value, made once a second.
func httpDate() string {
	now := time.Now().Unix()
	if d := dateCache.Load(); d != nil && d.at == now {
		return d.s
	}
	d := &cachedDate{at: now, s: time.Unix(now, 0).UTC().Format(http.TimeFormat)}
	dateCache.Store(d)
	return d.s
}

type cachedDate struct {
	at int64
	s  string
}

var dateCache atomic.Pointer[cachedDate]

// acceptH1 accepts connections on ln and serves each with serveH1, until
// the listener is closed.
func (s *Server) acceptH1(ln net.Listener, m *h1Mode) error {
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.isClosing() {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) {
				// As net/http: out of descriptors or a transient error, retry after a pause.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.log.Warn("accept failed; retrying", "err", err, "in", delay)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		go s.serveH1(c, m)
	}
}
