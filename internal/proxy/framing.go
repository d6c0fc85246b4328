package proxy

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"

	"golang.org/x/net/http/httpguts"
)

// DefaultMaxHeaderBytes bounds a request's line and headers together when
// Options leaves MaxHeaderBytes zero.
const DefaultMaxHeaderBytes = 64 << 10

// maxChunkLine bounds a chunk-size line with its extensions, as net/http
// does.
const maxChunkLine = 4096

// framingError is a request whose framing goproxy refuses: the status the
// client gets and why. Before the request was handed on it is answered by
// the guard itself; in the middle of a body it is the body's read error.
type framingError struct {
	status int // 400 or 431
	reason string
}

func (e *framingError) Error() string { return "malformed request: " + e.reason }

func refuse(status int, format string, args ...any) *framingError {
	return &framingError{status: status, reason: fmt.Sprintf(format, args...)}
}

// headInfo is what the framing of one request head says about the bytes
// that follow it.
type headInfo struct {
	length    int64 // body length when not chunked
	chunked   bool
	expect100 bool
	// opaque: what follows is not HTTP/1 requests (CONNECT, an upgrade,
	// the HTTP/2 preface) or net/http refuses the head on its own and
	// closes (a transfer coding other than chunked).
	opaque bool
}

// parseHead checks the framing of a request head: the request line and
// header lines up to and including the blank line that ends them (LF or
// CRLF line ends, as net/http reads them). It refuses what RFC 9112 §6.3
// says is an error or makes the body length ambiguous: Content-Length with
// Transfer-Encoding, Content-Lengths that differ or are not a number, and
// Transfer-Encoding in an HTTP/1.0 request. It is fuzzed: it must never
// panic on any input.
func parseHead(h []byte) (headInfo, *framingError) {
	var hi headInfo
	line, rest := cutLine(h)
	if len(line) == 0 {
		return hi, refuse(http.StatusBadRequest, "empty request line")
	}
	if string(line) == "PRI * HTTP/2.0" {
		hi.opaque = true
		return hi, nil
	}
	method, _, _ := bytes.Cut(line, []byte(" "))
	version := line[bytes.LastIndexByte(line, ' ')+1:]
	var cls, tes [][]byte
	var last *[]byte // the field value a continuation line extends
	var upgrade bool
	for len(rest) > 0 {
		line, rest = cutLine(rest)
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			if last == nil {
				return hi, refuse(http.StatusBadRequest, "header block starts with whitespace")
			}
			// obs-fold: textproto joins the line to the field before.
			*last = append(append(append([]byte(nil), *last...), ' '), bytes.TrimLeft(line, " \t")...)
			continue
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return hi, refuse(http.StatusBadRequest, "header line without a colon: %.40q", line)
		}
		value = bytes.Trim(value, " \t")
		last = nil
		switch {
		case asciiEqualFold(name, "Content-Length"):
			cls = append(cls, value)
			last = &cls[len(cls)-1]
		case asciiEqualFold(name, "Transfer-Encoding"):
			tes = append(tes, value)
			last = &tes[len(tes)-1]
		case asciiEqualFold(name, "Upgrade"):
			upgrade = len(value) > 0
		case asciiEqualFold(name, "Expect"):
			hi.expect100 = asciiEqualFold(value, "100-continue")
		}
	}
	if string(method) == http.MethodConnect || upgrade {
		hi.opaque = true
	}
	if len(tes) > 0 {
		if len(cls) > 0 {
			return hi, refuse(http.StatusBadRequest, "both Content-Length and Transfer-Encoding")
		}
		if string(version) == "HTTP/1.0" {
			return hi, refuse(http.StatusBadRequest, "Transfer-Encoding in an HTTP/1.0 request")
		}
		if len(tes) == 1 && asciiEqualFold(bytes.Trim(tes[0], " \t"), "chunked") {
			hi.chunked = true
		} else {
			hi.opaque = true // net/http answers 501 and closes
		}
		return hi, nil
	}
	for i, v := range cls {
		v = bytes.Trim(v, " \t")
		if i > 0 && !bytes.Equal(v, bytes.Trim(cls[0], " \t")) {
			return hi, refuse(http.StatusBadRequest, "Content-Length headers differ: %.20q and %.20q", cls[0], v)
		}
		n, ok := parseDecimal(v)
		if !ok {
			return hi, refuse(http.StatusBadRequest, "invalid Content-Length %.20q", v)
		}
		hi.length = n
	}
	return hi, nil
}

// badStart reports whether b, the start of a request head that is not
// whole yet, can no longer become a request line: its method holds a byte
// that is not a token character, or its first line a control byte. Such a
// client (binary sent to an HTTP port) is answered at once instead of when
// it has sent the header limit or timed out.
func badStart(b []byte) bool {
	line := b
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		line = b[:i]
	}
	line = bytes.TrimSuffix(line, []byte("\r"))
	method := line
	if sp := bytes.IndexByte(line, ' '); sp >= 0 {
		method = line[:sp]
	}
	for _, c := range method {
		if !httpguts.IsTokenRune(rune(c)) {
			return true
		}
	}
	for _, c := range line {
		if c < 0x20 && c != '\t' || c == 0x7f {
			return true
		}
	}
	return false
}

// cutLine splits b after its first LF and returns the line without its
// line end (LF or CRLF).
func cutLine(b []byte) (line, rest []byte) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return b, nil
	}
	line, rest = b[:i], b[i+1:]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, rest
}

// headEnd returns the length of the head at the start of b (through the
// blank line that ends it), or -1 when b does not hold a whole head yet.
func headEnd(b []byte) int {
	for i := 0; ; {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return -1
		}
		line := b[i : i+j]
		i += j + 1
		if len(line) == 0 || (len(line) == 1 && line[0] == '\r') {
			return i
		}
	}
}

// parseDecimal parses 1*DIGIT that fits an int64.
func parseDecimal(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 19 {
		return 0, false
	}
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(string(v), 10, 64)
	return n, err == nil
}

// parseChunkLine checks one chunk-size line (RFC 9112 §7.1), line end
// included: 1 to 16 hex digits that fit an int64, optional extensions
// after ";" (no control bytes), and a CRLF, never a bare LF or CR. It
// refuses what net/http's chunked reader refuses, so that a body it passes
// does not fail later. It is fuzzed.
func parseChunkLine(line []byte) (int64, *framingError) {
	n := len(line)
	if n < 2 || line[n-2] != '\r' || line[n-1] != '\n' {
		return 0, refuse(http.StatusBadRequest, "chunk-size line %.20q does not end in CRLF", line)
	}
	line = line[:n-2]
	i := 0
	var size uint64
	for i < len(line) {
		d, ok := unhex(line[i])
		if !ok {
			break
		}
		if i == 16 {
			return 0, refuse(http.StatusBadRequest, "chunk size %.20q overflows", line)
		}
		size = size<<4 | uint64(d)
		i++
	}
	if i == 0 {
		return 0, refuse(http.StatusBadRequest, "chunk size %.20q is not hexadecimal", line)
	}
	if size > math.MaxInt64 {
		return 0, refuse(http.StatusBadRequest, "chunk size %.20q overflows", line)
	}
	// Whitespace may end the line (net/http trims it); an extension
	// follows ";" at once (net/http refuses whitespace before it).
	ext := line[i:]
	if len(bytes.TrimRight(ext, " \t")) == 0 {
		return int64(size), nil
	}
	if ext[0] != ';' {
		return 0, refuse(http.StatusBadRequest, "chunk size %.20q is not hexadecimal", line)
	}
	for _, c := range ext {
		if c < ' ' && c != '\t' || c == 0x7f {
			return 0, refuse(http.StatusBadRequest, "control byte in chunk extension %.20q", line)
		}
	}
	return int64(size), nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		x, y := b[i], s[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// The guard's place in the stream.
const (
	stHead      = iota // a request head
	stBody             // remain bytes of a Content-Length body
	stChunkLine        // a chunk-size line
	stChunkData        // remain bytes of chunk data
	stChunkCRLF        // the CRLF after chunk data
	stTrailer          // trailer lines, up to the blank line
	stOpaque           // not HTTP/1 requests any more: bytes pass
)

// guardConn sits between a client's HTTP/1 connection and net/http's
// server and checks the framing of every request before the server reads
// it. A head is held until it is whole and checked (and, for a chunked
// body, until its first chunk-size line is: unless the client waits for
// 100 Continue); a refused head is answered here (400, or 431 beyond the
// header limit), the connection closed, and the server never sees it, so
// nothing reaches the app. A framing error inside a body that is already
// on its way is the body's read error: the client's fault.
//
// net/http reads the connection from one goroutine at a time; the server's
// ConnState hook tells the guard whether a handler runs (setState).
type guardConn struct {
	net.Conn
	limit   int                          // bytes of request line and headers
	refused func(status int, why string) // counts and logs a refusal

	buf    []byte // read from the client, not yet given to the server
	ready  int    // buf[:ready] is checked and may be given out
	parsed int    // buf[:parsed] is parsed; parsed > ready while a head is held
	st     int
	remain int64 // of stBody, stChunkData
	hold   bool  // the head before buf[parsed:] waits for its first chunk line
	trail  int   // trailer bytes so far
	err    *framingError
	broken error // after an error in a body: what reads return

	opaque atomic.Bool
	active atomic.Bool // a handler runs: a read now is the server's background read
}

func newGuardConn(c net.Conn, limit int, refused func(int, string)) *guardConn {
	return &guardConn{Conn: c, limit: limit, refused: refused}
}

// setState follows the server's view of the connection.
func (g *guardConn) setState(s http.ConnState) {
	switch s {
	case http.StateActive:
		g.active.Store(true)
	case http.StateIdle:
		g.active.Store(false)
	case http.StateHijacked:
		g.opaque.Store(true)
	}
}

func (g *guardConn) Read(p []byte) (int, error) {
	for {
		if g.ready > 0 {
			n := copy(p, g.buf[:g.ready])
			g.consume(n)
			return n, nil
		}
		if g.opaque.Load() || g.st == stOpaque {
			if len(g.buf) > 0 {
				n := copy(p, g.buf)
				g.consume(n)
				return n, nil
			}
			return g.Conn.Read(p)
		}
		if g.broken != nil {
			err := g.broken
			g.broken = io.EOF
			return 0, err
		}
		if g.err != nil {
			return g.answer()
		}
		// A body that is not held passes straight through.
		if len(g.buf) == 0 && g.remain > 0 && (g.st == stBody || g.st == stChunkData) {
			q := p
			if int64(len(q)) > g.remain {
				q = q[:g.remain]
			}
			n, err := g.Conn.Read(q)
			g.remain -= int64(n)
			if g.remain == 0 {
				g.next()
			}
			return n, err
		}
		if len(g.buf) == cap(g.buf) {
			g.buf = append(g.buf, make([]byte, max(4096, len(g.buf)))...)[:len(g.buf)]
		}
		n, err := g.Conn.Read(g.buf[len(g.buf):cap(g.buf)])
		g.buf = g.buf[:len(g.buf)+n]
		g.scan()
		if err != nil && g.ready == 0 && g.err == nil && g.broken == nil {
			return 0, err
		}
	}
}

func (g *guardConn) consume(n int) {
	m := copy(g.buf, g.buf[n:])
	g.buf = g.buf[:m]
	g.ready -= n
	g.parsed -= n
}

// next moves past a finished Content-Length body or chunk data.
func (g *guardConn) next() {
	if g.st == stBody {
		g.st = stHead
	} else {
		g.st = stChunkCRLF
	}
}

// scan parses what arrived and moves ready as far as it is checked.
func (g *guardConn) scan() {
	for g.err == nil && g.broken == nil && g.st != stOpaque {
		b := g.buf[g.parsed:]
		if len(b) == 0 {
			return
		}
		switch g.st {
		case stHead:
			end := headEnd(b)
			if end < 0 && len(b) > g.limit || end > g.limit {
				g.err = refuse(http.StatusRequestHeaderFieldsTooLarge, "request line and headers exceed %d bytes", g.limit)
				return
			}
			if end < 0 {
				if badStart(b) { // binary or garbage: answer now, not at the header limit
					g.err = refuse(http.StatusBadRequest, "not an HTTP request line")
				}
				return
			}
			hi, err := parseHead(b[:end])
			if err != nil {
				g.err = err
				return
			}
			g.parsed += end
			switch {
			case hi.opaque:
				g.st = stOpaque
			case hi.chunked:
				g.st = stChunkLine
				g.hold = !hi.expect100
			case hi.length > 0:
				g.st, g.remain = stBody, hi.length
			}
		case stBody, stChunkData:
			n := int(min(int64(len(b)), g.remain))
			g.parsed += n
			g.remain -= int64(n)
			if g.remain == 0 {
				g.next()
			}
		case stChunkLine:
			i := bytes.IndexByte(b, '\n')
			if i < 0 && len(b) >= maxChunkLine || i >= maxChunkLine {
				g.fail(refuse(http.StatusBadRequest, "chunk-size line longer than %d bytes", maxChunkLine))
				return
			}
			if i < 0 {
				return
			}
			n, err := parseChunkLine(b[:i+1])
			if err != nil {
				g.fail(err)
				return
			}
			g.parsed += i + 1
			g.hold = false
			if n == 0 {
				g.st, g.trail = stTrailer, 0
			} else {
				g.st, g.remain = stChunkData, n
			}
		case stChunkCRLF:
			if len(b) < 2 {
				if b[0] != '\r' {
					g.fail(refuse(http.StatusBadRequest, "chunk data not followed by CRLF"))
				}
				return
			}
			if b[0] != '\r' || b[1] != '\n' {
				g.fail(refuse(http.StatusBadRequest, "chunk data not followed by CRLF"))
				return
			}
			g.parsed += 2
			g.st = stChunkLine
		case stTrailer:
			i := bytes.IndexByte(b, '\n')
			if i < 0 && g.trail+len(b) > g.limit || i >= 0 && g.trail+i+1 > g.limit {
				g.fail(refuse(http.StatusBadRequest, "trailer section exceeds %d bytes", g.limit))
				return
			}
			if i < 0 {
				return
			}
			if i == 0 || b[i-1] != '\r' || bytes.IndexByte(b[:i-1], '\r') >= 0 {
				g.fail(refuse(http.StatusBadRequest, "trailer line does not end in CRLF"))
				return
			}
			g.parsed += i + 1
			g.trail += i + 1
			if i == 1 {
				g.st = stHead
			}
		}
		if !g.hold {
			g.ready = g.parsed
		}
	}
}

// fail records a framing error found after a head: when the head is still
// held it is refused whole; otherwise the body is broken.
func (g *guardConn) fail(e *framingError) {
	if g.hold {
		g.err = e
		return
	}
	g.ready = g.parsed
	g.broken = e
	g.refused(e.status, e.reason)
}

// answer refuses the held head: when the server is reading a request it
// gets the answer and then EOF; during a handler (the server's background
// read after a pipelined head) the read waits, as a read of a silent client
// would, for the server to abort it and come back for the next request.
func (g *guardConn) answer() (int, error) {
	if g.active.Load() {
		var scratch [512]byte
		for {
			if _, err := g.Conn.Read(scratch[:]); err != nil {
				return 0, err
			}
		}
	}
	e := g.err
	g.refused(e.status, e.reason)
	text := http.StatusText(e.status)
	body := fmt.Sprintf("%d %s: %s\n", e.status, text, e.reason)
	fmt.Fprintf(g.Conn, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s", e.status, text, len(body), body)
	g.lingerClose()
	g.buf, g.ready, g.parsed = nil, 0, 0
	g.broken = io.EOF
	return 0, io.EOF
}

// lingerClose closes the guarded connection gently (lingerClose in h1.go).
func (g *guardConn) lingerClose() { lingerClose(g.Conn) }

// CloseWrite half-closes when the client connection can.
func (g *guardConn) CloseWrite() error {
	if cw, ok := g.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// guardTLSConn is a guarded *tls.Conn: it still gives net/http the TLS
// state for Request.TLS.
type guardTLSConn struct {
	*guardConn
	tc *tls.Conn
}

func (g *guardTLSConn) ConnectionState() tls.ConnectionState { return g.tc.ConnectionState() }

// guardOf finds the guard of a connection the HTTP servers were given.
func guardOf(c net.Conn) *guardConn {
	switch v := c.(type) {
	case *guardConn:
		return v
	case *guardTLSConn:
		return v.guardConn
	}
	return nil
}

// guard wraps a client connection that is about to be served as HTTP/1.
func (c *core) guard(conn net.Conn) net.Conn {
	g := newGuardConn(conn, c.opt.MaxHeaderBytes, func(status int, why string) {
		c.m.badRequests.Inc()
		c.log.Info("request refused", "status", status, "reason", why, "client", conn.RemoteAddr().String())
	})
	if tc, ok := conn.(*tls.Conn); ok {
		return &guardTLSConn{guardConn: g, tc: tc}
	}
	return g
}

// guardListener guards every connection it accepts.
type guardListener struct {
	net.Listener
	c *core
}

func (l guardListener) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return l.c.guard(conn), nil
}
