package proxy

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/tapwire/tapwire/internal/h1"
	"golang.org/x/net/http/httpguts"
)

// chanListener is a net.Listener fed by the proxy itself: connections that
// were accepted elsewhere and then found to speak HTTP (after sniffing, or
// inside an unwrapped CONNECT tunnel) are handed to an http.Server through
// it.
type chanListener struct {
	addr  net.Addr
	ch    chan net.Conn
	once  sync.Once
	close chan struct{}
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{addr: addr, ch: make(chan net.Conn), close: make(chan struct{})}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.close:
		return nil, net.ErrClosed
	}
}

// push hands c to the server. It reports false (and closes c) when the
// listener is closed.
func (l *chanListener) push(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.close:
		c.Close()
		return false
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.close) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }

// peekConn is a connection whose first bytes were read ahead to sniff the
// protocol; reads return them first.
type peekConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *peekConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// unwrap returns the connection with the bytes read ahead as its first
// reads and then no buffer in between: the engine reads into its own.
func (c *peekConn) unwrap() net.Conn {
	b, _ := c.r.Peek(c.r.Buffered())
	return &h1.ReplayConn{Conn: c.Conn, Pending: append([]byte(nil), b...)}
}

// CloseWrite half-closes when the underlying connection can.
func (c *peekConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// sniffKind is what the first bytes of a connection look like.
type sniffKind int

const (
	sniffUnknown sniffKind = iota // not HTTP, not TLS: a raw byte stream
	sniffHTTP1                    // an HTTP/1.x request line
	sniffHTTP2                    // the HTTP/2 connection preface
	sniffTLS                      // a TLS handshake record
	sniffSilent                   // the client sent nothing before the sniff deadline
	sniffClosed                   // the client closed without sending anything (a TCP health check)
)

// sniffTimeout bounds how long a new connection may stay silent before
// goproxy asks the app whether it speaks first (awaitFirst).
const sniffTimeout = 2 * time.Second

// sniff reads ahead on c without consuming and says what protocol the
// client speaks. It returns a connection that replays the peeked bytes.
func sniff(c net.Conn, timeout time.Duration) (*peekConn, sniffKind) {
	pc := &peekConn{Conn: c, r: bufio.NewReaderSize(c, 4096)}
	return pc, pc.sniff(timeout)
}

// sniff waits up to timeout for the first bytes and classifies them.
func (pc *peekConn) sniff(timeout time.Duration) sniffKind {
	c, br := pc.Conn, pc.r
	c.SetReadDeadline(time.Now().Add(timeout))
	defer c.SetReadDeadline(time.Time{})
	b, err := br.Peek(1)
	if err != nil || len(b) == 0 {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return sniffSilent
		}
		return sniffClosed
	}
	// Peek what has arrived already, up to a request line's worth; more
	// bytes arrive with the first packet in practice.
	n := br.Buffered()
	if n < 24 {
		// Wait a little for a complete method token or preface.
		c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if p, _ := br.Peek(24); len(p) > n {
			n = len(p)
		}
	}
	p, _ := br.Peek(n)
	return classify(p)
}

// classify says what protocol a connection's first bytes belong to. It is
// fuzzed: it must never panic on any input.
func classify(p []byte) sniffKind {
	if len(p) == 0 {
		return sniffSilent
	}
	if len(p) >= 3 && p[0] == 0x16 && p[1] == 0x03 && p[2] <= 0x04 {
		return sniffTLS
	}
	// "PRI * HTTP/2.0" starts the HTTP/2 preface; a client that botches
	// the rest is still an HTTP/2 client, and the HTTP/2 server closes
	// its connection as RFC 9113 §3.4 requires.
	const preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
	if n := min(len(p), 14); n >= 4 && string(p[:n]) == preface[:n] {
		return sniffHTTP2
	}
	// Anything that begins like an HTTP/1 request line, a token followed by
	// whitespace, takes the HTTP path, where the strict parser accepts or
	// refuses it: never a raw relay that the app might parse as HTTP.
	for i, c := range p {
		if c == ' ' || c == '\t' {
			if i == 0 {
				return sniffUnknown
			}
			return sniffHTTP1
		}
		if !httpguts.IsTokenRune(rune(c)) || i >= 32 {
			return sniffUnknown
		}
	}
	// Only token bytes so far: a method arriving byte by byte, when they
	// are uppercase letters (every method in use).
	for _, c := range p {
		if (c < 'A' || c > 'Z') && c != '-' && c != '_' {
			return sniffUnknown
		}
	}
	return sniffHTTP1
}

// acceptLoop accepts connections on ln and handles each in its own
// goroutine until ln is closed. Temporary accept errors (running out of
// file descriptors) back off from 5 ms up to 1 s instead of spinning.
func acceptLoop(ln net.Listener, handle func(net.Conn)) error {
	var delay time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				if delay = max(2*delay, 5*time.Millisecond); delay > time.Second {
					delay = time.Second
				}
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		go handle(conn)
	}
}

// listenerRef holds a listener that Serve opened and Shutdown closes.
type listenerRef struct {
	mu sync.Mutex
	ln net.Listener
}

func (r *listenerRef) set(ln net.Listener) {
	r.mu.Lock()
	r.ln = ln
	r.mu.Unlock()
}

func (r *listenerRef) close() {
	r.mu.Lock()
	if r.ln != nil {
		r.ln.Close()
	}
	r.mu.Unlock()
}

// drain is the shutdown both listeners share: stop accepting, then let
// the HTTP servers (which tell HTTP/2 clients to go away), the raw
// streams and every other accepted connection end until ctx is done, and
// close what is left. It returns the first error.
func drain(ctx context.Context, ln *listenerRef, ss *streams, live *liveConns, srvs ...*http.Server) error {
	ln.close()
	var err error
	keep := func(e error) {
		if err == nil {
			err = e
		}
	}
	for _, s := range srvs {
		keep(s.Shutdown(ctx))
	}
	keep(ss.shutdown(ctx))
	keep(live.wait(ctx))
	return err
}

// closeNow ends everything at once: a drain with no time left.
func closeNow(ln *listenerRef, ss *streams, live *liveConns, srvs ...*http.Server) error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	drain(ctx, ln, ss, live, srvs...)
	var err error
	for _, s := range srvs {
		if e := s.Close(); err == nil {
			err = e
		}
	}
	return err
}
