package proxy

import (
	"context"
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/h1"
	"github.com/tapwire/tapwire/internal/rawtcp"
)

// ConnTable lists the connections goproxy holds now and the most recent
// closed ones, for the diagnostics endpoint. It is bounded: open
// connections are as many as the listeners hold, closed ones are kept in a
// ring of fixed size.
type ConnTable struct {
	mu     sync.Mutex
	nextID uint64
	open   map[uint64]*connInfo
	closed []ConnView // ring, at most cap entries
	next   int        // ring write index
}

// NewConnTable keeps up to keep closed connections; if keep <= 0, 256.
func NewConnTable(keep int) *ConnTable {
	if keep <= 0 {
		keep = 256
	}
	return &ConnTable{open: make(map[uint64]*connInfo), closed: make([]ConnView, 0, keep)}
}

// ConnView is one connection as the diagnostics endpoint shows it.
type ConnView struct {
	ID         uint64       `json:"id"`
	Listener   string       `json:"listener"` // inbound, outbound
	Client     string       `json:"client"`
	Server     string       `json:"server,omitempty"`
	Protocol   string       `json:"protocol,omitempty"` // http/1.1, tls, tcp...
	TLS        *capture.TLS `json:"tls,omitempty"`
	Opened     time.Time    `json:"opened"`
	Closed     *time.Time   `json:"closed,omitempty"`
	BytesRead  int64        `json:"bytesRead"`    // from the client
	BytesWrite int64        `json:"bytesWritten"` // to the client
}

type connInfo struct {
	id       uint64
	listener string
	client   string
	opened   time.Time
	rx, tx   atomic.Int64

	mu       sync.Mutex // guards the fields below, set after accept
	server   string
	protocol string
	tls      *capture.TLS
}

func (ci *connInfo) set(server, protocol string, t *capture.TLS) {
	ci.mu.Lock()
	if server != "" {
		ci.server = server
	}
	if protocol != "" {
		ci.protocol = protocol
	}
	if t != nil {
		ci.tls = t
	}
	ci.mu.Unlock()
}

func (ci *connInfo) view() ConnView {
	ci.mu.Lock()
	defer ci.mu.Unlock()
	return ConnView{
		ID: ci.id, Listener: ci.listener, Client: ci.client, Server: ci.server,
		Protocol: ci.protocol, TLS: ci.tls, Opened: ci.opened,
		BytesRead: ci.rx.Load(), BytesWrite: ci.tx.Load(),
	}
}

func (t *ConnTable) add(listener, client string) *connInfo {
	t.mu.Lock()
	t.nextID++
	ci := &connInfo{id: t.nextID, listener: listener, client: client, opened: time.Now()}
	t.open[ci.id] = ci
	t.mu.Unlock()
	return ci
}

func (t *ConnTable) done(ci *connInfo) {
	v := ci.view()
	now := time.Now()
	v.Closed = &now
	t.mu.Lock()
	delete(t.open, ci.id)
	if len(t.closed) < cap(t.closed) {
		t.closed = append(t.closed, v)
	} else {
		t.closed[t.next] = v
		t.next = (t.next + 1) % cap(t.closed)
	}
	t.mu.Unlock()
}

// Snapshot returns the open connections and then the recently closed
// ones, newest first.
func (t *ConnTable) Snapshot() (open, closed []ConnView) {
	t.mu.Lock()
	infos := make([]*connInfo, 0, len(t.open))
	for _, ci := range t.open {
		infos = append(infos, ci)
	}
	closed = append(closed, t.closed...)
	t.mu.Unlock()
	for _, ci := range infos {
		open = append(open, ci.view())
	}
	sort.Slice(open, func(i, j int) bool { return open[i].ID > open[j].ID })
	sort.Slice(closed, func(i, j int) bool { return closed[i].ID > closed[j].ID })
	return open, closed
}

// trackListener counts every accepted connection's bytes and lists it in
// the table.
type trackListener struct {
	net.Listener
	name  string
	dir   capture.Direction
	table *ConnTable
	m     *Metrics
	live  *liveConns
}

// liveConns holds every client connection a listener accepted that is not
// closed yet, whatever serves it now (the HTTP/1 server, an HTTP/2 server
// after an upgrade, a hijacked tunnel), so that shutdown can end them all.
type liveConns struct {
	mu sync.Mutex
	m  map[*trackConn]struct{}
}

func (l *liveConns) add(c *trackConn) {
	l.mu.Lock()
	if l.m == nil {
		l.m = make(map[*trackConn]struct{})
	}
	l.m[c] = struct{}{}
	l.mu.Unlock()
}

func (l *liveConns) remove(c *trackConn) {
	l.mu.Lock()
	delete(l.m, c)
	l.mu.Unlock()
}

func (l *liveConns) closeAll() {
	l.mu.Lock()
	cs := make([]*trackConn, 0, len(l.m))
	for c := range l.m {
		cs = append(cs, c)
	}
	l.mu.Unlock()
	for _, c := range cs {
		c.Close()
	}
}

// wait lets the connections end on their own until ctx is done, then
// closes what is left.
func (l *liveConns) wait(ctx context.Context) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		l.mu.Lock()
		n := len(l.m)
		l.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			l.closeAll()
			return ctx.Err()
		case <-t.C:
		}
	}
}

func (l *trackListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := &trackConn{Conn: rawtcp.Wrap(c), l: l}
	l.live.add(tc)
	if l.table != nil {
		tc.info = l.table.add(l.name, c.RemoteAddr().String())
	} else {
		tc.info = &connInfo{listener: l.name, client: c.RemoteAddr().String(), opened: time.Now()}
	}
	return tc, nil
}

// trackConn counts the bytes of one client connection.
type trackConn struct {
	net.Conn
	l    *trackListener
	info *connInfo
	once sync.Once
}

func (c *trackConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.info.rx.Add(int64(n))
	return n, err
}

func (c *trackConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.info.tx.Add(int64(n))
	return n, err
}

// WriteAwaitThen is the connection's (rawtcp.Conn.WriteAwaitThen), bytes
// counted; a Write, then then, where it has none (see awaiterOf).
func (c *trackConn) WriteAwaitThen(p []byte, then func(int, error)) (int, error) {
	wa, ok := c.Conn.(writeAwaiter)
	if !ok {
		n, err := c.Write(p)
		if then != nil {
			then(n, err)
		}
		return n, err
	}
	n, err := wa.WriteAwaitThen(p, then)
	c.info.tx.Add(int64(n))
	return n, err
}

func (c *trackConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.live.remove(c)
		c.l.m.bytes(c.l.dir).Add(float64(c.info.rx.Load() + c.info.tx.Load()))
		if c.l.table != nil {
			c.l.table.done(c.info)
		}
	})
	return err
}

// CloseWrite half-closes when the underlying connection can.
func (c *trackConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// infoOf finds the table entry of a connection that came from a
// trackListener, through any wrapping of ours.
func infoOf(c net.Conn) *connInfo {
	for ; c != nil; c = wrapped(c) {
		if tc, ok := c.(*trackConn); ok {
			return tc.info
		}
	}
	return nil
}

// wrapped returns the connection c wraps, when c is one of our wrappers
// (the listener's byte counting, the sniffer's peeking and replay); nil
// otherwise.
func wrapped(c net.Conn) net.Conn {
	switch v := c.(type) {
	case *trackConn:
		return v.Conn
	case *peekConn:
		return v.Conn
	case *h1.ReplayConn:
		return v.Conn
	}
	return nil
}
