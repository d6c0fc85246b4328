package proxy

// This file is goproxy's own HTTP/1.1 proxy engine for the inbound
// listener. It is hand-written because no library is both fast and
// transparent: net/http's server and transport canonicalise header names,
// lose their order, re-frame bodies and cost several times nginx's CPU per
// request (bench/RESULTS.md). Here a request is parsed in place by the
// strict parser of internal/h1, its head re-serialised from the client's
// own field lines (minus the hop-by-hop fields RFC 9110 §7.6.1 removes,
// plus X-Forwarded-*), its body bytes passed as they arrive with their
// chunks untouched, and the response likewise; capture is a tee of bytes
// already in memory. HTTP/2 (prior knowledge, h2c upgrade, ALPN h2) stays on
// net/http and x/net/http2. FuzzH1AgainstNetHTTP checks the parser's
// decisions against net/http's.

import (
	"bytes"
	"cmp"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/h1"
	"github.com/tapwire/tapwire/internal/rawtcp"
)

// DefaultMaxHeaderBytes bounds a request's line and headers together when
// Options leaves MaxHeaderBytes zero.
const DefaultMaxHeaderBytes = 64 << 10

const (
	h1BufSize        = 4 << 10  // a client connection's read buffer to start with
	appBufSize       = 32 << 10 // an app connection's read buffer
	maxResponseHead  = 1 << 20  // as net/http's transport
	appIdleTimeout   = 55 * time.Second
	maxIdleAppConns  = 256
	lingerBytesLimit = 4 << 20
)

// h1Engine serves HTTP/1.x client connections: the inbound listener's,
// to the app, and the outbound proxy's unwrapped CONNECT tunnels, each to
// its own upstream.
type h1Engine struct {
	c         *core
	dir       capture.Direction
	proxyName string
	handoff   func(net.Conn) // HTTP/2 by preface or upgrade; nil: refused
	up        *h1Upstream    // the app, for the inbound engine
	// forward, for the outbound proxy's own listener, routes each request:
	// the upstream of its absolute URL and the origin-form target to send;
	// or it answers the request itself (a refusal, a CONNECT it takes the
	// connection for) and says whether the connection goes on.
	forward func(hc *h1Conn, end int) (up *h1Upstream, target []byte, next bool)

	// rel is the emitter when it says when it is done with a record:
	// then records and their body buffers are used again (h1Record).
	rel capture.ReleasingEmitter

	mu       sync.Mutex
	conns    map[*h1Conn]struct{}
	draining atomic.Bool
}

// h1Upstream is where an engine's connection sends its requests, with its
// pool of kept-alive connections.
type h1Upstream struct {
	e     *h1Engine
	proxy string // the record's net.proxy when not the engine's
	// evicted: no longer among the forward proxy's pools; connections put
	// back are closed
	evicted atomic.Bool
	target  string      // host:port to dial
	tls     *tls.Config // when the upstream speaks TLS
	tunnel  *tunnelInfo // for a CONNECT tunnel: its target, host, connection id and app-side TLS
	pool    appPool
}

func newH1Engine(c *core, dir capture.Direction, proxyName string, handoff func(net.Conn)) *h1Engine {
	e := &h1Engine{c: c, dir: dir, proxyName: proxyName, handoff: handoff, conns: map[*h1Conn]struct{}{}}
	e.rel, _ = c.opt.Emitter.(capture.ReleasingEmitter)
	return e
}

// newUpstream makes an upstream of e.
func (e *h1Engine) newUpstream(target string, cfg *tls.Config, t *tunnelInfo) *h1Upstream {
	u := &h1Upstream{e: e, target: target, tls: cfg, tunnel: t}
	u.pool.up = u
	return u
}

// h1Conn is one client connection.
type h1Conn struct {
	e    *h1Engine
	up   *h1Upstream
	conn net.Conn
	tls  *tls.ConnectionState
	// clientAddr and tlsFacts are the records' Net.ClientAddr and Net.TLS, the same for every request of
	// the connection (tlsFacts made with its first record)
	clientAddr string
	tlsFacts   *capture.TLS
	scheme     string
	ip         string // the client's IP, for X-Forwarded-For
	buf        []byte
	r, w       int
	head       h1.Head
	out        []byte
	idle       atomic.Bool
	served     int         // requests served on this connection
	target     []byte      // the request target to send, when not the client's (a forward proxy's origin-form)
	fwdKey     []byte      // the forward proxy's last scheme://authority on this connection
	fwdUp      *h1Upstream // and its upstream
	gone       bool        // the connection was taken over (a CONNECT tunnel): not closed here
	ex         *h1Exchange // the exchange in flight, made with the first and reused (see exchange)
	// hostKey is the host of the last record, hostVal its hostOnly.
	hostKey, hostVal string
	// awaiter is conn when it can write and then wait for the next
	// request without reading first (rawtcp.Conn.WriteAwaitThen); nil
	// otherwise (TLS). held: out holds the end of the last response,
	// which the wait for the next request writes (see holdEnd), and
	// heldRec its record, completed and emitted once that is written
	// (writtenHeld, made once as heldDone).
	awaiter  writeAwaiter
	held     bool
	heldRec  *capture.Record
	heldDone func(int, error)
	// idleArmed is the read deadline an idle wait set, as time since
	// clockBase; 0 when none is or another deadline replaced it (see
	// setReadDeadline and idleDeadline).
	idleArmed time.Duration
}

// writeAwaiter writes p, then waits until the connection can be read,
// calling then in between (rawtcp.Conn.WriteAwaitThen).
type writeAwaiter interface {
	WriteAwaitThen(p []byte, then func(int, error)) (int, error)
}

// awaiterOf is c as a writeAwaiter when the connection under its wrappers
// (see wrapped) is one and each wrapper passes it through.
func awaiterOf(c net.Conn) writeAwaiter {
	for w := c; w != nil; w = wrapped(w) {
		if _, ok := w.(writeAwaiter); !ok {
			return nil // a layer that cannot pass it through, or a connection without it
		}
	}
	return c.(writeAwaiter)
}

// holdEnd reports whether the end of a response, in out, may be left for
// the wait for the next request to write (flushHeld): on a kept-alive
// connection that can wait without a read, with no request body being
// copied and no pipelined request read already. The wait then writes and
// waits in one step, with no read system call that would find nothing
// (the client sends its next request only once it has the answer): one
// system call a request fewer. The exchange ends, its app connection
// back in the pool, before the write; its record is completed and emitted
// right after it, before the wait.
func (hc *h1Conn) holdEnd(closeAfter bool) bool {
	return hc.awaiter != nil && !closeAfter && hc.ex.bodyDone == nil && hc.r == hc.w && !hc.e.draining.Load()
}

// flushHeld writes the held end of the last response; with await, it then
// waits until the next request can be read. The record is emitted once
// the write is over (writtenHeld).
func (hc *h1Conn) flushHeld(await bool) error {
	if !hc.held {
		return nil
	}
	hc.held = false
	var err error
	if await {
		_, err = hc.awaiter.WriteAwaitThen(hc.out, hc.heldDone)
	} else {
		var n int
		n, err = hc.conn.Write(hc.out)
		hc.writtenHeld(n, err)
	}
	hc.out = hc.out[:0]
	return err
}

// writtenHeld completes and emits the record of the exchange whose end
// flushHeld wrote, with the write's failure as the client's.
func (hc *h1Conn) writtenHeld(_ int, err error) {
	ex := hc.ex
	if err != nil {
		ex.err, ex.clientErr = fmt.Errorf("write response: %w", err), true
	}
	if rec := hc.heldRec; rec != nil {
		hc.heldRec = nil
		ex.finish(rec)
		ex.emit(rec)
	}
}

// clockBase is the origin of h1Conn.idleArmed: time.Since(clockBase)
// reads only the monotonic clock (30 ns here; time.Now takes 50).
var clockBase = time.Now()

// idleDeadline arms the idle timeout for a wait for the next request that
// begins now: the wait must not end before opt.IdleTimeout has passed. A
// deadline an earlier wait armed is kept while it falls within idleSlack
// after that: then a busy connection changes its timer about once a
// second, not once a request (SetReadDeadline with time.Now costs 185 ns
// here), and an idle one is closed at most idleSlack late, never early.
func (hc *h1Conn) idleDeadline(timeout time.Duration) {
	want := time.Since(clockBase) + timeout
	if a := hc.idleArmed; a >= want && a-want <= idleSlack(timeout) {
		return
	}
	hc.idleArmed = want + idleSlack(timeout)
	hc.conn.SetReadDeadline(clockBase.Add(hc.idleArmed))
}

// idleSlack is how late idleDeadline may close an idle connection: an
// eighth of the timeout, at most a second.
func idleSlack(timeout time.Duration) time.Duration { return min(timeout/8, time.Second) }

// setReadDeadline sets the client connection's read deadline for anything
// but the idle wait, which then arms its own again.
func (hc *h1Conn) setReadDeadline(t time.Time) {
	hc.idleArmed = 0
	hc.conn.SetReadDeadline(t)
}

var h1Bufs = sync.Pool{New: func() any { b := make([]byte, h1BufSize); return &b }}

// serve runs one client connection to the engine's upstream until it
// closes.
func (e *h1Engine) serve(conn net.Conn, cs *tls.ConnectionState) { e.serveTo(conn, cs, e.up) }

// serveTo runs one client connection to up until it closes.
func (e *h1Engine) serveTo(conn net.Conn, cs *tls.ConnectionState, up *h1Upstream) {
	hc := &h1Conn{e: e, up: up, conn: conn, tls: cs, scheme: "http"}
	if cs != nil {
		hc.scheme = "https"
	}
	hc.clientAddr = conn.RemoteAddr().String()
	if ra, ok := conn.RemoteAddr().(*net.TCPAddr); ok {
		hc.ip = ra.IP.String()
	} else {
		hc.ip = hostOnly(conn.RemoteAddr().String())
	}
	if hc.awaiter = awaiterOf(conn); hc.awaiter != nil {
		hc.heldDone = hc.writtenHeld
	}
	bp := h1Bufs.Get().(*[]byte)
	hc.buf = *bp
	e.mu.Lock()
	e.conns[hc] = struct{}{}
	e.mu.Unlock()
	handedOff := false
	defer func() {
		hc.flushHeld(false) // the last response's end, when the connection closes before another wait
		e.mu.Lock()
		delete(e.conns, hc)
		e.mu.Unlock()
		if !handedOff && !hc.gone {
			conn.Close()
		}
		// After the close: a read still in progress on the buffer (none
		// should be) ends with the connection rather than write into a
		// buffer another connection has taken.
		if len(hc.buf) == h1BufSize {
			*bp = hc.buf
			h1Bufs.Put(bp)
		}
	}()
	for {
		end, ferr, err := hc.readHead()
		if err != nil {
			return
		}
		if ferr != nil {
			hc.refuse(ferr)
			return
		}
		if hc.served == 0 && hc.r == 0 && e.handoff != nil && bytes.HasPrefix(hc.buf[:hc.w], []byte("PRI * HTTP/2.0")) {
			handedOff = true
			e.handoff(&h1.ReplayConn{Conn: conn, Pending: append([]byte(nil), hc.buf[hc.r:hc.w]...)})
			return
		}
		if ferr := h1.ParseRequest(hc.buf[hc.r:hc.r+end], &hc.head); ferr != nil {
			hc.refuse(ferr)
			return
		}
		if hc.served == 0 && hc.head.Upgrading() && h1.EqualFold(hc.head.Upgrade, "h2c") && e.handoff != nil {
			// HTTP/2 by upgrade (RFC 7540 §3.2): net/http's h2c handler.
			handedOff = true
			e.handoff(&h1.ReplayConn{Conn: conn, Pending: append([]byte(nil), hc.buf[hc.r:hc.w]...)})
			return
		}
		hc.target = nil
		if e.forward != nil {
			up, target, next := e.forward(hc, end)
			if up == nil {
				if !next {
					return
				}
				hc.served++
				continue
			}
			hc.up, hc.target = up, target
		} else if string(hc.head.Method) == http.MethodConnect {
			hc.refuse(h1.Refuse(http.StatusMethodNotAllowed, "CONNECT is for the outbound proxy, not the app's port"))
			return
		}
		hc.served++
		if !hc.exchange(end) || e.draining.Load() {
			return
		}
	}
}

// readHead reads until buf[r:] holds a whole request head and returns its
// length. A refusal (431, 400) comes back as ferr; err is the connection
// ending or timing out.
func (hc *h1Conn) readHead() (end int, ferr *h1.FramingError, err error) {
	opt := &hc.e.c.opt
	limit := opt.MaxHeaderBytes
	waiting := false // for the first byte of a new request: the idle timeout applies
	fresh := true    // no deadline set in this call yet (a pipelined head's start may be here already)
	for {
		if hc.r == hc.w {
			hc.r, hc.w = 0, 0
		}
		b := hc.buf[hc.r:hc.w]
		if len(b) > 0 {
			if end = h1.HeadEnd(b); end >= 0 {
				if end > limit {
					return 0, h1.Refuse(http.StatusRequestHeaderFieldsTooLarge, "request line and headers exceed %d bytes", limit), nil
				}
				return end, nil, nil
			}
			if len(b) > limit {
				return 0, h1.Refuse(http.StatusRequestHeaderFieldsTooLarge, "request line and headers exceed %d bytes", limit), nil
			}
			if h1.BadStart(b) {
				return 0, h1.Refuse(http.StatusBadRequest, "not an HTTP request line"), nil
			}
		}
		if hc.w == len(hc.buf) {
			if hc.r > 0 {
				hc.w = copy(hc.buf, hc.buf[hc.r:hc.w])
				hc.r = 0
			} else {
				nb := make([]byte, min(2*len(hc.buf), limit+1024))
				copy(nb, hc.buf[:hc.w])
				hc.buf = nb
			}
		}
		switch {
		case len(b) == 0 && hc.served > 0:
			hc.idle.Store(true)
			if hc.e.draining.Load() {
				return 0, nil, net.ErrClosed // serveTo writes a held response's end
			}
			hc.idleDeadline(opt.IdleTimeout)
			if err := hc.flushHeld(true); err != nil {
				return 0, nil, err
			}
			waiting = true
		case len(b) == 0 || waiting || fresh:
			hc.setReadDeadline(time.Now().Add(opt.HeaderTimeout))
			waiting = false
		}
		fresh = false
		n, rerr := hc.conn.Read(hc.buf[hc.w:])
		hc.idle.Store(false)
		hc.w += n
		if rerr != nil && n == 0 {
			return 0, nil, rerr
		}
		// A head that is still not whole after this read gets the header
		// timeout before the next (the switch above); one that is, as most
		// are, costs no second timer.
	}
}

// refuse answers a request that is not forwarded and closes.
func (hc *h1Conn) refuse(e *h1.FramingError) {
	c := hc.e.c
	c.m.badRequests.Inc()
	c.log.Info("request refused", "status", e.Status, "reason", e.Reason, "client", hc.conn.RemoteAddr().String())
	text := http.StatusText(e.Status)
	body := fmt.Sprintf("%d %s: %s\n", e.Status, text, e.Reason)
	hc.conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(hc.conn, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s", e.Status, text, len(body), body)
	lingerClose(hc.conn)
}

// lingerClose ends the sending side and reads what the client still sends
// (while it keeps sending, up to 4 MiB), so that closing with unread bytes
// does not reset the connection before the client read the answer.
func lingerClose(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	var scratch [4096]byte
	for total := 0; total < lingerBytesLimit; {
		c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		n, err := c.Read(scratch[:])
		total += n
		if err != nil {
			return
		}
	}
}

// h1Exchange is one request and its response in flight.
type h1Exchange struct {
	hc        *h1Conn
	start     time.Time
	first     time.Time // the response head arrived
	reqScan   h1.BodyScan
	resScan   h1.BodyScan
	reqBody   h1.BodyCap
	resBody   h1.BodyCap
	resHdr    capture.Headers
	status    int
	reason    string
	resProto  string
	err       error
	clientErr bool
	ws        *wsConn
	upTLS     *capture.TLS
	res       *capture.Response // the record's response, filled by finish (see h1Record)
	hrec      *h1Record         // the record, until it is emitted
	noRecord  bool              // refused before anything was forwarded: no record, as for a refused head
	isHead    bool
	websocket bool

	// the request body's copier, when the body outlasts the first read
	bodyDone   chan error
	bodySent   atomic.Bool // every body byte was written to the app
	bodyFailed atomic.Bool // the copier failed (set before it cuts the app connection)
	abort      atomic.Bool
}

// exchange forwards one request whose head is buf[r:r+end] and relays its
// response. It reports whether the connection may serve another request.
func (hc *h1Conn) exchange(end int) bool {
	e := hc.e
	c := e.c
	c.m.requests(e.dir).Inc()
	h := &hc.head
	capturing := c.opt.Emitter != nil
	// One exchange value serves the connection's requests one after
	// another: nothing holds it once exchange returns (the body's copier
	// has been waited for on every path, and the record took its slices,
	// which the next exchange does not reuse: it starts from zero).
	if hc.ex == nil {
		hc.ex = new(h1Exchange)
	}
	ex := hc.ex
	*ex = h1Exchange{hc: hc, start: time.Now(), isHead: string(h.Method) == http.MethodHead, websocket: h1.EqualFold(h.Upgrade, "websocket")}
	if capturing {
		ex.reqBody.Limit, ex.resBody.Limit = c.opt.BodyLimit, c.opt.BodyLimit
	}
	// The request's host: its Host field's bytes, or else the target's
	// (made a string only for the record).
	fallback := ""
	if len(h.Host) == 0 {
		fallback = hc.up.target
		if t := hc.up.tunnel; t != nil {
			fallback = t.host
		}
	}
	var rec *capture.Record
	if capturing {
		rec = ex.newRecord(fallback)
		defer func() {
			if !ex.noRecord {
				if hc.held {
					hc.heldRec = rec // emitted once the end of the response is written: writtenHeld
					return
				}
				ex.finish(rec)
				ex.emit(rec)
			} else {
				ex.res = nil // nor does a refused exchange keep its unsent record
				if r := ex.hrec; r != nil && e.rel != nil {
					ex.hrec = nil
					r.put() // never emitted: nothing else refers to it
				}
			}
		}()
	}
	clientKeep := h.KeepAlive() && !e.draining.Load()
	upgrading := h.Upgrading()
	if h.Chunked || h.Length > 0 || upgrading {
		// The body (or the upgraded stream) is read without a deadline; a
		// request without one leaves the wait's deadline, which the next
		// wait replaces, instead of paying for a timer change.
		hc.setReadDeadline(time.Time{})
	}

	// The request head as the app gets it.
	hc.out = hc.appendRequestHead(hc.out[:0], h.Host, fallback)
	hc.r += end
	ex.reqScan.Start(h, c.opt.MaxHeaderBytes, false)
	if capturing && h.Length > 0 {
		ex.reqBody.Buf = bodyBuf(&ex.hrec.reqBuf, min(h.Length, ex.reqBody.Limit))
	} else if capturing && h.Chunked {
		// Grown from the record's buffer as the chunks come; emit keeps it.
		ex.reqBody.Buf = ex.hrec.reqBuf[:0]
	}

	// A chunked body is checked up to its first chunk-size line before
	// anything is sent, unless the client waits for 100 Continue.
	if h.Chunked && !h.Expect100 {
		if ferr := hc.waitFirstChunkLine(); ferr != nil {
			hc.refuse(ferr)
			ex.noRecord = true
			return false
		} else if hc.r == hc.w && !ex.reqScan.Done {
			if _, err := hc.fill(); err != nil {
				ex.err, ex.clientErr = fmt.Errorf("read request body: %w", err), true
				return false
			}
		}
	}
	// What of the body has arrived goes with the head.
	if hc.r < hc.w && !ex.reqScan.Done {
		n, ferr := ex.reqScan.Scan(hc.buf[hc.r:hc.w], &ex.reqBody)
		if ferr != nil {
			hc.refuse(ferr)
			ex.noRecord = true
			return false
		}
		hc.out = append(hc.out, hc.buf[hc.r:hc.r+n]...)
		hc.r += n
	}
	replayable := ex.reqScan.Done // the whole request is in out: it can be sent again

	ac, err := hc.up.pool.get()
	if err != nil {
		ex.upstreamFailed(err)
		return !upgrading && ex.reqScan.Done && clientKeep
	}
	for attempt := 0; ; attempt++ {
		if _, err = ac.send(hc.out, ex.reqScan.Done); err == nil {
			if !ex.reqScan.Done {
				ex.bodyDone = make(chan error, 1)
				go ex.copyBody(ac)
			} else {
				ex.bodySent.Store(true)
			}
			err = ex.readResponseHead(ac)
		}
		// A kept-alive connection the app closed meanwhile fails before
		// any answer: send again on a new one, as net/http does.
		if err != nil && ac.reused && replayable && ex.first.IsZero() && attempt == 0 && isStale(err) {
			ac.Close()
			if ac, err = hc.up.pool.dial(); err != nil {
				break
			}
			continue
		}
		break
	}
	if err != nil {
		if ac != nil {
			ac.Close()
		}
		if ex.clientErr {
			ex.err = err
			ex.stopBody()
			return false
		}
		if ex.stopBody() {
			ex.clientFailed(ex.err)
			return false
		}
		ex.upstreamFailed(err)
		return false
	}

	if ex.bodyFailed.Load() {
		// An answer to a body the client broke: not the app's to give.
		ac.abort()
		ex.stopBody()
		ex.clientFailed(ex.err)
		return false
	}
	// The final response head: write it with what body bytes are here.
	res := &ac.head
	ex.upTLS = ac.tls
	if upgrading && ex.status == http.StatusSwitchingProtocols {
		return ex.switchProtocols(ac)
	}
	closeAfter := !clientKeep || !ex.bodySent.Load() || (res.Length < 0 && !res.Chunked) || upgrading
	dechunk := res.Chunked && h.Minor == 0
	hc.out = hc.appendResponseHead(hc.out[:0], res, closeAfter, dechunk)
	ex.resScan.Start(res, maxResponseHead, capturing)
	if capturing && res.Length > 0 {
		ex.resBody.Buf = bodyBuf(&ex.hrec.resBuf, min(res.Length, ex.resBody.Limit))
	} else if capturing && res.Length < 0 {
		// Chunked, or to the end of the stream: as for a chunked request.
		ex.resBody.Buf = ex.hrec.resBuf[:0]
	}
	appKeep := res.KeepAlive()
	var sink h1.PayloadSink = &ex.resBody
	var dw *dechunkWriter
	if dechunk {
		dw = &dechunkWriter{cap: &ex.resBody}
		sink = dw
	}
	wroteHead := false
	for {
		if ac.r < ac.w && !ex.resScan.Done {
			p := ac.buf[ac.r:ac.w]
			if dw != nil {
				dw.out = hc.out
			}
			n, ferr := ex.resScan.Scan(p, sink)
			if dw != nil {
				hc.out = dw.out
			} else {
				hc.out = append(hc.out, p[:n]...)
			}
			ac.r += n
			if ferr != nil {
				err = fmt.Errorf("read response body: %s", ferr.Reason)
				break
			}
		}
		if len(hc.out) > 0 || !wroteHead {
			if ex.resScan.Done && hc.holdEnd(closeAfter) {
				hc.held = true // written by the wait for the next request
				break
			}
			if _, werr := hc.conn.Write(hc.out); werr != nil {
				ex.err, ex.clientErr = fmt.Errorf("write response: %w", werr), true
				ac.Close()
				ex.stopBody()
				return false
			}
			wroteHead = true
			hc.out = hc.out[:0]
		}
		if ex.resScan.Done {
			break
		}
		ac.r, ac.w = 0, 0
		n, rerr := ac.Read(ac.buf)
		ac.w = n
		if rerr != nil && n == 0 {
			if rerr == io.EOF && ex.resScan.UntilClose {
				ex.resScan.Done = true
				break
			}
			if rerr == io.EOF {
				rerr = io.ErrUnexpectedEOF
			}
			err = fmt.Errorf("read response body: %w", rerr)
			break
		}
	}
	if err != nil {
		// Too late for an error status: the client sees the response cut.
		ex.err = err
		c.m.upstreamErrors(e.dir).Inc()
		ac.Close()
		ex.stopBody()
		return false
	}
	if ex.bodyDone != nil {
		if !ex.bodySent.Load() {
			ex.stopBody()
			ac.Close()
			lingerClose(hc.conn)
			return false
		}
		if berr := <-ex.bodyDone; berr != nil {
			ac.Close()
			return false
		}
	}
	if appKeep && ac.r == ac.w && !ex.resScan.UntilClose {
		hc.up.pool.put(ac)
	} else {
		ac.Close()
	}
	return !closeAfter
}

// waitFirstChunkLine reads until the body's first chunk-size line is here
// and checks it.
func (hc *h1Conn) waitFirstChunkLine() *h1.FramingError {
	for {
		b := hc.buf[hc.r:hc.w]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			if i >= h1.MaxChunkLine {
				return h1.Refuse(http.StatusBadRequest, "chunk-size line longer than %d bytes", h1.MaxChunkLine)
			}
			_, err := h1.ParseChunkLine(b[:i+1])
			return err
		}
		if len(b) >= h1.MaxChunkLine {
			return h1.Refuse(http.StatusBadRequest, "chunk-size line longer than %d bytes", h1.MaxChunkLine)
		}
		hc.setReadDeadline(time.Now().Add(hc.e.c.opt.HeaderTimeout))
		_, err := hc.fill()
		hc.setReadDeadline(time.Time{})
		if err != nil {
			return h1.Refuse(http.StatusBadRequest, "request body ended before its first chunk-size line")
		}
	}
}

// fill reads more of the client into buf, compacting it first.
func (hc *h1Conn) fill() (int, error) {
	if hc.r > 0 {
		hc.w = copy(hc.buf, hc.buf[hc.r:hc.w])
		hc.r = 0
	}
	if hc.w == len(hc.buf) {
		nb := make([]byte, 2*len(hc.buf))
		copy(nb, hc.buf)
		hc.buf = nb
	}
	n, err := hc.conn.Read(hc.buf[hc.w:])
	hc.w += n
	if n > 0 {
		err = nil
	}
	return n, err
}

// copyBody passes the rest of the request body to the app as it arrives.
// A Content-Length body is read no further than its end, so a pipelined
// request stays in the socket; a chunked one is read into the connection's
// buffer and what follows it stays there.
func (ex *h1Exchange) copyBody(ac *appConn) {
	hc := ex.hc
	var err error
	clientSide := false // err is the client's: its body broke off or is malformed
	defer func() {
		if clientSide && err != errAborted {
			// The app must not take a half body for a whole one: cut
			// the connection (no TLS close_notify, which would read as a
			// clean end), and let no answer to it through.
			ex.bodyFailed.Store(true)
			ac.abort()
		}
		ex.bodyDone <- err
	}()
	for !ex.reqScan.Done {
		var p []byte
		if !ex.reqScan.Chunked {
			// Straight from the socket, no further than the body's end.
			if hc.r == hc.w {
				hc.r, hc.w = 0, 0
			}
			room := hc.buf[hc.w:]
			if int64(len(room)) > ex.reqScan.Remain {
				room = room[:ex.reqScan.Remain]
			}
			if len(room) == 0 {
				hc.w = copy(hc.buf, hc.buf[hc.r:hc.w])
				hc.r = 0
				continue
			}
			n, rerr := hc.conn.Read(room)
			hc.w += n
			if n == 0 {
				err, clientSide = ex.bodyReadErr(rerr), true
				return
			}
		} else if hc.r == hc.w {
			if _, rerr := hc.fill(); rerr != nil {
				err, clientSide = ex.bodyReadErr(rerr), true
				return
			}
		}
		p = hc.buf[hc.r:hc.w]
		n, ferr := ex.reqScan.Scan(p, &ex.reqBody)
		if n > 0 {
			if _, werr := ac.Write(p[:n]); werr != nil {
				err = werr
				return
			}
		}
		hc.r += n
		if ferr != nil {
			err, clientSide = ferr, true
			ex.hc.e.c.m.badRequests.Inc()
			return
		}
	}
	ex.bodySent.Store(true)
}

// bodyReadErr is a failed read of the client's body: its own fault, unless
// the exchange stopped it.
func (ex *h1Exchange) bodyReadErr(err error) error {
	if err == nil {
		err = io.ErrUnexpectedEOF
	}
	if ex.abort.Load() {
		return errAborted
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

var errAborted = errors.New("aborted")

// stopBody ends the request body's copier, if one runs, and reports
// whether it had failed on the client's side (the exchange's error is then
// that failure).
func (ex *h1Exchange) stopBody() bool {
	if ex.bodyDone == nil {
		return false
	}
	ex.abort.Store(true)
	ex.hc.setReadDeadline(time.Now())
	err := <-ex.bodyDone
	ex.bodyDone = nil
	ex.hc.setReadDeadline(time.Time{})
	if ex.bodyFailed.Load() { // set by the copier for its own side's failures only
		ex.err, ex.clientErr = fmt.Errorf("read request body: %w", err), true
		return true
	}
	return false
}

// readResponseHead reads the app's response head, passing 1xx interim
// responses (100 Continue, 103 Early Hints) to the client as they come.
func (ex *h1Exchange) readResponseHead(ac *appConn) error {
	for {
		end, err := ac.readHead()
		if err != nil {
			return err
		}
		if ferr := h1.ParseResponse(ac.buf[ac.r:ac.r+end], &ac.head, ex.isHead); ferr != nil {
			return errors.New(ferr.Reason)
		}
		if ex.first.IsZero() {
			ex.first = time.Now()
		}
		h := &ac.head
		if h.Status >= 100 && h.Status < 200 && h.Status != http.StatusSwitchingProtocols {
			if _, err := ex.hc.conn.Write(ac.buf[ac.r : ac.r+end]); err != nil {
				ex.clientErr = true
				return fmt.Errorf("write interim response: %w", err)
			}
			ac.r += end
			continue
		}
		ex.status = h.Status
		ex.resProto = protoName(h.Minor)
		if ex.hc.e.c.opt.Emitter != nil { // for the record
			ex.reason = reasonText(h.Status, h.Reason)
			ex.resHdr = keepList(h.HeadersInto(ex.hrec.resHdr), &ex.hrec.resHdr)
		}
		ac.r += end
		return nil
	}
}

// switchProtocols relays a 101 answer and then both streams as they are.
func (ex *h1Exchange) switchProtocols(ac *appConn) bool {
	hc := ex.hc
	_, err := hc.conn.Write(ac.head.Raw)
	if err != nil {
		ac.Close()
	}
	// The request body's copier reads the client and writes the record's
	// body: it ends before the record does, and before the streams are
	// joined.
	ex.stopBody()
	if err != nil {
		if ex.err == nil {
			ex.err, ex.clientErr = fmt.Errorf("write response: %w", err), true
		}
		return false
	}
	var client net.Conn = &h1.ReplayConn{Conn: hc.conn, Pending: hc.buf[hc.r:hc.w]}
	server := net.Conn(&h1.ReplayConn{Conn: ac.Conn, Pending: ac.buf[ac.r:ac.w]})
	if hc.e.c.opt.Emitter != nil && ex.websocket {
		ex.ws = &wsConn{Conn: client, up: newWSFramer(true, ex.start, hc.e.c.opt.BodyLimit/2), down: newWSFramer(false, ex.start, hc.e.c.opt.BodyLimit/2)}
		client = ex.ws
	}
	pipe(client, server, nil)
	return false
}

// upstreamFailed answers 502 (504 on a timeout): the app could not be
// reached or broke off before its answer.
func (ex *h1Exchange) upstreamFailed(err error) {
	e := ex.hc.e
	ex.err = err
	e.c.m.upstreamErrors(e.dir).Inc()
	e.c.log.Warn("upstream failed", "direction", e.dir, "upstream", ex.hc.up.target, "err", err)
	code := http.StatusBadGateway
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		code = http.StatusGatewayTimeout
	}
	ex.status = code
	body := fmt.Sprintf("%d %s: goproxy could not reach the upstream %s\n", code, http.StatusText(code), ex.hc.up.target)
	fmt.Fprintf(ex.hc.conn, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nX-Tapwire-Error: upstream\r\nContent-Length: %d\r\n\r\n%s", code, http.StatusText(code), len(body), body)
}

// clientFailed answers 400: the client's body was malformed or cut short.
func (ex *h1Exchange) clientFailed(err error) {
	e := ex.hc.e
	e.c.m.badRequests.Inc()
	e.c.log.Info("client failed", "direction", e.dir, "client", ex.hc.conn.RemoteAddr().String(), "err", err)
	ex.status = http.StatusBadRequest
	const body = "400 Bad Request: goproxy could not read the whole request from the client\n"
	fmt.Fprintf(ex.hc.conn, "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nX-Tapwire-Error: client\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	lingerClose(ex.hc.conn)
}

// appendRequestHead serialises the request head for the upstream: the
// client's request line (as HTTP/1.1) and field lines in their order and
// case, without hop-by-hop fields (host is the request's Host, or fallback
// when it has none); then, inbound, X-Forwarded-For (the
// client's values with its address appended), X-Forwarded-Host and -Proto;
// outbound (the app's own call, whose X-Forwarded-* are the app's), Via.
func (hc *h1Conn) appendRequestHead(out, host []byte, fallback string) []byte {
	h := &hc.head
	inbound := hc.e.dir == capture.DirIn
	out = append(out, h.Method...)
	out = append(out, ' ')
	if hc.target != nil {
		out = append(out, hc.target...)
	} else {
		out = append(out, h.Target...)
	}
	out = append(out, " HTTP/1.1\r\n"...)
	var xff []byte
	hasHost := false
	for _, f := range h.Fields {
		switch {
		case h.HopByHop(f.Name):
			continue
		case inbound && len(f.Name) >= 15 && f.Name[0]|0x20 == 'x' && f.Name[1] == '-':
			if h1.EqualFold(f.Name, "X-Forwarded-For") {
				if len(xff) > 0 {
					xff = append(xff, ", "...)
				}
				xff = append(xff, f.Value...)
				continue
			}
			if h1.EqualFold(f.Name, "X-Forwarded-Host") || h1.EqualFold(f.Name, "X-Forwarded-Proto") {
				continue
			}
		case len(f.Name) == 4 && h1.EqualFold(f.Name, "Host"):
			hasHost = true
		}
		out = append(out, f.Line...)
		out = append(out, '\r', '\n')
	}
	if !hasHost {
		out = append(out, "Host: "...)
		out = appendHost(out, host, fallback)
		out = append(out, '\r', '\n')
	}
	if h.Upgrading() {
		out = append(out, "Connection: Upgrade\r\n"...)
	}
	if !inbound {
		out = append(out, "Via: "+viaToken+"\r\n\r\n"...)
		return out
	}
	out = append(out, "X-Forwarded-For: "...)
	if len(xff) > 0 {
		out = append(out, xff...)
		out = append(out, ", "...)
	}
	out = append(out, hc.ip...)
	out = append(out, "\r\nX-Forwarded-Host: "...)
	out = appendHost(out, host, fallback)
	out = append(out, "\r\nX-Forwarded-Proto: "...)
	out = append(out, hc.scheme...)
	return append(out, "\r\n\r\n"...)
}

// appendHost appends host, or fallback when host is empty.
func appendHost(out, host []byte, fallback string) []byte {
	if len(host) > 0 {
		return append(out, host...)
	}
	return append(out, fallback...)
}

// appendResponseHead serialises the app's response head for the client:
// its status line (as HTTP/1.1) and field lines without hop-by-hop ones,
// and Connection: close when the connection ends after it.
func (hc *h1Conn) appendResponseHead(out []byte, res *h1.Head, closeAfter, dechunk bool) []byte {
	line, _ := h1.CutLine(res.Raw)
	out = append(out, "HTTP/1.1"...)
	out = append(out, line[8:]...)
	out = append(out, '\r', '\n')
	for _, f := range res.Fields {
		if res.HopByHop(f.Name) || dechunk && h1.EqualFold(f.Name, "Transfer-Encoding") {
			continue
		}
		out = append(out, f.Line...)
		out = append(out, '\r', '\n')
	}
	switch {
	case closeAfter:
		out = append(out, "Connection: close\r\n"...)
	case hc.head.Minor == 0:
		out = append(out, "Connection: keep-alive\r\n"...)
	}
	return append(out, '\r', '\n')
}

// dechunkWriter passes a chunked body's content without its framing, for
// an HTTP/1.0 client, which cannot read chunks.
type dechunkWriter struct {
	out []byte
	cap *h1.BodyCap
}

func (d *dechunkWriter) Payload(p []byte) {
	d.out = append(d.out, p...)
	d.cap.Payload(p)
}

// h1Record is an exchange's record with its HTTP members: one allocation
// for the three, which live and die together. When the engine's emitter
// says when it is done with a record (goproxy's shipper, once the record
// is shipped), the record goes back to h1Records with the buffers its
// bodies were captured in, and a later exchange uses them again: a
// captured exchange then allocates its head strings and little else.
type h1Record struct {
	rec  capture.Record
	http capture.HTTP
	res  capture.Response // the response's, when there is one (finish)

	reqBuf, resBuf []byte          // the bodies' buffers, kept when the record is used again
	reqHdr, resHdr capture.Headers // the heads' field lists, likewise
	release        func()          // put, made once (get)
}

// h1Records holds the records their emitter is done with, for exchanges to
// use again: at most maxPooledRecords (one of the shipper's batches) and
// maxPooledBytes of body buffers, however many records a burst made; a
// sidecar's memory is its task's. (sync.Pool would keep what a burst
// released until two collections had passed, body buffers and all.)
var h1Records recordPool

const (
	maxPooledRecords = 512
	maxPooledBytes   = 1 << 20
)

type recordPool struct {
	mu    sync.Mutex
	free  []*h1Record
	bytes int // capacity of the free records' body buffers
}

// get returns a free record, or a new one.
func (p *recordPool) get() *h1Record {
	p.mu.Lock()
	if n := len(p.free); n > 0 {
		r := p.free[n-1]
		p.free[n-1] = nil
		p.free = p.free[:n-1]
		p.bytes -= cap(r.reqBuf) + cap(r.resBuf)
		p.mu.Unlock()
		return r
	}
	p.mu.Unlock()
	r := new(h1Record)
	r.release = r.put
	return r
}

// maxPooledFields is the longest field list a free record keeps.
const maxPooledFields = 64

// put empties r, but for its buffers, and gives it back to h1Records,
// which keeps it if there is room (the body buffers if there is room for
// them). It runs once the emitter is done with the record: nothing refers
// to it.
func (r *h1Record) put() {
	keep := func(hs capture.Headers) capture.Headers {
		if cap(hs) > maxPooledFields {
			return nil
		}
		clear(hs) // the strings of a head that is gone
		return hs[:0]
	}
	*r = h1Record{reqBuf: r.reqBuf[:0], resBuf: r.resBuf[:0], reqHdr: keep(r.reqHdr), resHdr: keep(r.resHdr), release: r.release}
	p := &h1Records
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.free) >= maxPooledRecords {
		return
	}
	if n := cap(r.reqBuf) + cap(r.resBuf); p.bytes+n > maxPooledBytes {
		r.reqBuf, r.resBuf = nil, nil
	} else {
		p.bytes += n
	}
	p.free = append(p.free, r)
}

// keepList returns a head's field list, made in *kept's array (or a new
// one), and keeps it in *kept for the record's next use.
func keepList(hs capture.Headers, kept *capture.Headers) capture.Headers {
	if hs != nil {
		*kept = hs
	}
	return hs
}

// bodyBuf returns *kept emptied when it holds n bytes, else a new buffer of
// n, which it keeps in *kept.
func bodyBuf(kept *[]byte, n int64) []byte {
	if int64(cap(*kept)) < n {
		*kept = make([]byte, 0, n)
	}
	return (*kept)[:0]
}

// emit hands the finished record to the emitter; one that says when it is
// done with it gets the record back into h1Records then.
func (ex *h1Exchange) emit(rec *capture.Record) {
	e := ex.hc.e
	r, reqBuf, resBuf := ex.hrec, ex.reqBody.Buf, ex.resBody.Buf
	// An idle connection keeps neither the record nor its bodies.
	ex.hrec, ex.reqBody.Buf, ex.resBody.Buf = nil, nil, nil
	if r == nil || e.rel == nil {
		e.c.opt.Emitter.Emit(rec)
		return
	}
	// The buffers as the bodies left them (a chunked body grows them);
	// an exchange without a body keeps the buffer the record had.
	if reqBuf != nil {
		r.reqBuf = reqBuf
	}
	if resBuf != nil {
		r.resBuf = resBuf
	}
	e.rel.EmitRelease(rec, r.release)
}

// newRecord starts the record of an exchange from its request head; host
// is the request's host when its head has no Host field.
func (ex *h1Exchange) newRecord(host string) *capture.Record {
	hc := ex.hc
	e := hc.e
	h := &hc.head
	// The record's id, its URL (absolute: the target with the scheme and
	// host before it, unless it is one already) and its head (the fields'
	// names and values, the Host field's among them), in one string: one
	// allocation for the three.
	target := h.Target
	origin := len(target) > 0 && target[0] == '/' || string(target) == "*"
	if len(h.Host) > 0 {
		host = "" // the Host field's bytes, below
	}
	n := capture.IDLen + len(target) + len(h.Raw)
	if origin {
		n += len(hc.scheme) + len("://") + len(host) + len(h.Host)
	}
	var sb strings.Builder
	sb.Grow(n)
	var id [capture.IDLen]byte
	sb.Write(capture.AppendNewID(id[:0], ex.start))
	if origin {
		sb.WriteString(hc.scheme)
		sb.WriteString("://")
		sb.WriteString(host)
		sb.Write(h.Host)
	}
	sb.Write(target)
	urlEnd := sb.Len()
	sb.Write(h.Raw)
	s := sb.String()
	raw := s[urlEnd:]
	reqHost := h.HostOf(raw)
	if len(h.Host) > 0 {
		host = reqHost
	}
	// Member by member, not from composite literals: those are built on
	// the stack first, and this frame is on the deepest path of an
	// exchange (a larger one grew every exchange goroutine's stack, a
	// peak of +10 MiB with 2,000 connections opening at once).
	var r *h1Record
	if e.rel != nil {
		r = h1Records.get()
	} else {
		r = &h1Record{}
	}
	ex.hrec, ex.res = r, &r.res
	reqHdr := keepList(h.HeadersOf(raw, r.reqHdr), &r.reqHdr)
	req := &r.http.Req
	req.Method, req.URL, req.Proto, req.Host, req.Headers = methodName(h.Method), s[capture.IDLen:urlEnd], protoName(h.Minor), reqHost, reqHdr
	rec := &r.rec
	rec.Schema, rec.ID, rec.Kind, rec.Direction = capture.SchemaVersion, s[:capture.IDLen], capture.KindHTTP, e.dir
	rec.Start, rec.Labels, rec.Tags = ex.start.UTC(), e.c.opt.Labels, e.c.opt.Tags
	rec.Net.ClientAddr, rec.Net.ServerAddr = hc.clientAddr, hc.up.target
	if host != hc.hostKey { // a connection's requests name one host, most often
		// A copy: host is a substring of the head's string, which the
		// connection must not keep (a head can be 64 KiB).
		hc.hostKey = strings.Clone(host)
		hc.hostVal = hostOnly(hc.hostKey)
	}
	rec.Net.Proxy, rec.Net.ServerHost = cmp.Or(hc.up.proxy, e.proxyName), hc.hostVal
	rec.HTTP = &r.http
	if hc.tls != nil {
		if hc.tlsFacts == nil {
			hc.tlsFacts = tlsFacts(hc.tls)
		}
		rec.Net.TLS = hc.tlsFacts
	}
	if t := hc.up.tunnel; t != nil {
		rec.Net.ConnID = t.connID
		rec.Net.ServerHost = t.host
		rec.Net.TLS = t.tls
	}
	return rec
}

// reasonText is a reason phrase as a string: the standard one for its
// status without an allocation.
func reasonText(status int, b []byte) string {
	if t := http.StatusText(status); string(b) == t {
		return t
	}
	return string(b)
}

// protoName is "HTTP/1.1" or "HTTP/1.0" without building the string for each message.
func protoName(minor int) string {
	switch minor {
	case 1:
		return "HTTP/1.1"
	case 0:
		return "HTTP/1.0"
	}
	return "HTTP/1." + strconv.Itoa(minor)
}

// commonMethods are the methods whose record strings are constants.
var commonMethods = [...]string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodHead,
	http.MethodPatch, http.MethodOptions}

// methodName is the method's string, the common ones without an allocation.
func methodName(m []byte) string {
	for _, c := range commonMethods {
		if string(m) == c {
			return c
		}
	}
	return string(m)
}

// finish completes the record when the exchange is over.
func (ex *h1Exchange) finish(rec *capture.Record) {
	end := time.Now()
	rec.DurMicros = micros(end.Sub(ex.start))
	if !ex.first.IsZero() {
		rec.TTFBMicros = micros(ex.first.Sub(ex.start))
	}
	rec.HTTP.Req.Body = ex.reqBody.Body()
	if ex.resProto != "" {
		*ex.res = capture.Response{
			Status:     ex.status,
			StatusText: ex.reason,
			Proto:      ex.resProto,
			Headers:    ex.resHdr,
			Body:       ex.resBody.Body(),
			Trailers:   ex.resScan.TrailerHeaders(),
		}
		rec.HTTP.Res = ex.res
	}
	ex.res = nil // the record is the shipper's now: an idle connection does not keep it
	if ex.upTLS != nil {
		t := capture.TLS{}
		if rec.Net.TLS != nil {
			t = *rec.Net.TLS
		}
		t.Upstream = ex.upTLS
		rec.Net.TLS = &t
	}
	if ex.ws != nil {
		rec.HTTP.Messages, rec.HTTP.MessagesTruncated = ex.ws.messages()
	}
	if ex.err != nil {
		if ex.clientErr {
			rec.Error = "client: " + ex.err.Error()
		} else {
			rec.Error = ex.err.Error()
		}
	}
}

// shutdown makes every connection close after its current exchange and
// closes the idle ones now.
func (e *h1Engine) shutdown() {
	e.draining.Store(true)
	e.mu.Lock()
	for hc := range e.conns {
		if hc.idle.Load() {
			hc.conn.SetReadDeadline(time.Now())
		}
	}
	e.mu.Unlock()
	if e.up != nil {
		e.up.pool.closeAll()
	}
}

// appConn is a kept-alive connection to the app with its read buffer.
type appConn struct {
	net.Conn
	buf    []byte
	r, w   int
	head   h1.Head
	idleAt time.Time
	reused bool
	tls    *capture.TLS // the TLS session with the app, if any
	raw    net.Conn     // the TCP connection under it
}

// abort closes the connection at once, without a TLS close_notify.
func (ac *appConn) abort() { ac.raw.Close() }

// readHead reads until buf[r:] holds a whole response head.
func (ac *appConn) readHead() (int, error) {
	for {
		if ac.r == ac.w {
			ac.r, ac.w = 0, 0
		}
		if ac.w > ac.r {
			if end := h1.HeadEnd(ac.buf[ac.r:ac.w]); end >= 0 {
				return end, nil
			}
			if ac.w-ac.r > maxResponseHead {
				return 0, fmt.Errorf("response head exceeds %d bytes", maxResponseHead)
			}
		}
		if ac.w == len(ac.buf) {
			if ac.r > 0 {
				ac.w = copy(ac.buf, ac.buf[ac.r:ac.w])
				ac.r = 0
			} else {
				nb := make([]byte, 2*len(ac.buf))
				copy(nb, ac.buf[:ac.w])
				ac.buf = nb
			}
		}
		n, err := ac.Read(ac.buf[ac.w:])
		ac.w += n
		if err != nil && n == 0 {
			if err == io.EOF {
				return 0, io.ErrUnexpectedEOF
			}
			return 0, err
		}
	}
}

// isStale reports whether an error on a reused connection means the app
// had closed it before the request went out.
func isStale(err error) bool {
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// appPool keeps idle connections to an upstream, newest first.
type appPool struct {
	up   *h1Upstream
	mu   sync.Mutex
	idle []*appConn
}

func (p *appPool) get() (*appConn, error) {
	for {
		p.mu.Lock()
		n := len(p.idle)
		if n == 0 {
			p.mu.Unlock()
			return p.dial()
		}
		ac := p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		// An app that wrote while the connection was idle (a 408 before
		// closing it) must not have those bytes read as its answer to the
		// next request, which it never saw: such a connection is closed,
		// as net/http's transport and nginx close theirs. One peek, no
		// read, and not under the pool's lock.
		if time.Since(ac.idleAt) < appIdleTimeout && !ac.pending() {
			ac.reused = true
			return ac, nil
		}
		ac.Close()
	}
}

// send writes p to the app; with whole, p ends the request, and on a
// plaintext connection send then waits until the answer can be read
// (rawtcp.Conn.WriteAwait: the read that follows finds it there, rather
// than first finding nothing).
func (ac *appConn) send(p []byte, whole bool) (int, error) {
	if whole && ac.raw == ac.Conn {
		if wa, ok := ac.Conn.(interface{ WriteAwait([]byte) (int, error) }); ok {
			return wa.WriteAwait(p)
		}
	}
	return ac.Write(p)
}

// pending reports whether the app wrote to or closed ac while it was idle.
func (ac *appConn) pending() bool {
	p, ok := ac.raw.(interface{ Pending() bool })
	return ok && p.Pending()
}

func (p *appPool) dial() (*appConn, error) {
	u := p.up
	d := net.Dialer{Timeout: u.e.c.opt.DialTimeout, KeepAlive: 30 * time.Second}
	conn, err := d.Dial("tcp", u.target)
	if err != nil {
		return nil, err
	}
	var c net.Conn = &upstreamConn{Conn: rawtcp.Wrap(conn)}
	if u.tls != nil {
		tc := tls.Client(c, u.tls)
		tc.SetDeadline(time.Now().Add(10 * time.Second))
		if err := tc.Handshake(); err != nil {
			tc.Close()
			return nil, err
		}
		tc.SetDeadline(time.Time{})
		cs := tc.ConnectionState()
		return &appConn{Conn: tc, raw: c, buf: make([]byte, appBufSize), tls: tlsFacts(&cs)}, nil
	}
	return &appConn{Conn: c, raw: c, buf: make([]byte, appBufSize)}, nil
}

func (p *appPool) put(ac *appConn) {
	ac.r, ac.w = 0, 0
	ac.idleAt = time.Now()
	p.mu.Lock()
	if len(p.idle) < maxIdleAppConns && !p.up.e.draining.Load() && !p.up.evicted.Load() {
		p.idle = append(p.idle, ac)
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	ac.Close()
}

func (p *appPool) closeAll() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, ac := range idle {
		ac.Close()
	}
}
