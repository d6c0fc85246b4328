package proxy

import (
	"bufio"
	"encoding/binary"
	"net"
	"sync"
	"time"

	"github.com/tapwire/tapwire/internal/capture"
)

// wsFramer splits one direction of a WebSocket connection into frames
// (RFC 6455 §5.2) as the bytes pass, unmasking client frames, and keeps
// each frame's first bytes within a budget shared by the direction. It
// never blocks or alters the stream; on a malformed frame it stops
// parsing and says so.
type wsFramer struct {
	msgLog
	up     bool
	budget int64

	hdr    [14]byte // the longest header: 2 + 8 length + 4 mask
	hdrN   int
	need   int // header bytes needed, once known
	cur    *capture.Message
	mask   [4]byte
	masked bool
	pos    int64 // payload bytes consumed, for unmasking
	remain int64
	broken bool // a malformed frame was seen; parsing stopped
}

func newWSFramer(up bool, start time.Time, budget int64) *wsFramer {
	return &wsFramer{msgLog: msgLog{start: start}, up: up, budget: budget}
}

// headerLen returns the header length once its first two bytes are known.
func wsHeaderLen(b0, b1 byte) int {
	n := 2
	switch b1 & 0x7f {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	if b1&0x80 != 0 {
		n += 4
	}
	return n
}

func (f *wsFramer) feed(p []byte, now time.Time) {
	for len(p) > 0 && !f.broken {
		if f.cur == nil {
			if f.hdrN < 2 {
				k := copy(f.hdr[f.hdrN:2], p)
				f.hdrN += k
				p = p[k:]
				if f.hdrN < 2 {
					return
				}
				f.need = wsHeaderLen(f.hdr[0], f.hdr[1])
			}
			k := copy(f.hdr[f.hdrN:f.need], p)
			f.hdrN += k
			p = p[k:]
			if f.hdrN < f.need {
				return
			}
			if !f.startFrame(now) {
				return
			}
			continue
		}
		k := int64(len(p))
		if k > f.remain {
			k = f.remain
		}
		if keep := min(k, f.budget); keep > 0 {
			start := len(f.cur.Data)
			f.cur.Data = append(f.cur.Data, p[:keep]...)
			if f.masked {
				for i := range f.cur.Data[start:] {
					f.cur.Data[start+i] ^= f.mask[(f.pos+int64(i))%4]
				}
			}
			f.budget -= keep
		}
		f.pos += k
		f.remain -= k
		p = p[k:]
		if f.remain == 0 {
			f.finish(now)
		}
	}
}

// startFrame reads a complete header. It reports false on a malformed
// one, after which the direction is no longer parsed.
func (f *wsFramer) startFrame(now time.Time) bool {
	h := f.hdr[:f.need]
	f.hdrN = 0
	op := int(h[0] & 0x0f)
	var size uint64
	i := 2
	switch h[1] & 0x7f {
	case 126:
		size = uint64(binary.BigEndian.Uint16(h[2:4]))
		i = 4
	case 127:
		size = binary.BigEndian.Uint64(h[2:10])
		i = 10
	default:
		size = uint64(h[1] & 0x7f)
	}
	if size>>63 != 0 || (op >= 3 && op <= 7) || op > 10 || (op >= 8 && size > 125) {
		f.broken = true
		return false
	}
	f.masked = h[1]&0x80 != 0
	if f.masked {
		copy(f.mask[:], h[i:i+4])
	}
	f.cur = &capture.Message{Up: f.up, Size: int64(size), Opcode: op}
	f.pos, f.remain = 0, int64(size)
	if size == 0 {
		f.finish(now)
	}
	return true
}

func (f *wsFramer) finish(now time.Time) {
	f.keep(f.cur, now)
	f.cur = nil
}

// wsConn is the client connection of an upgraded WebSocket exchange: what
// the client sends (read here) and what the app answers (written here)
// pass through framers beside the stream.
type wsConn struct {
	net.Conn
	mu       sync.Mutex // guards the framers: the proxy reads and writes from two goroutines
	up, down *wsFramer
}

func (c *wsConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.mu.Lock()
		c.up.feed(p[:n], time.Now())
		c.mu.Unlock()
	}
	return n, err
}

func (c *wsConn) Write(p []byte) (int, error) {
	// The time the app's bytes reached goproxy, before the client can
	// see them and answer.
	now := time.Now()
	n, err := c.Conn.Write(p)
	if n > 0 {
		c.mu.Lock()
		c.down.feed(p[:n], now)
		c.mu.Unlock()
	}
	return n, err
}

// CloseWrite half-closes when the underlying connection can.
func (c *wsConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// messages returns both directions' frames, ordered by time.
func (c *wsConn) messages() ([]capture.Message, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return mergeByTime(c.up.msgs, c.down.msgs), c.up.truncated || c.down.truncated
}

// hijackWS wraps a hijacked client connection of a WebSocket upgrade.
// Bytes the server had already buffered from the client are parsed too.
func hijackWS(conn net.Conn, brw *bufio.ReadWriter, start time.Time, budget int64) (*wsConn, *bufio.ReadWriter) {
	wc := &wsConn{Conn: conn, up: newWSFramer(true, start, budget/2), down: newWSFramer(false, start, budget/2)}
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		wc.up.feed(b, time.Now())
	}
	return wc, brw
}
