package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/tapwire/tapwire/internal/capture"
)

// tunnelInfo describes a connection goproxy took over from an http.Server
// (a CONNECT tunnel) or from a sniffing listener.
type tunnelInfo struct {
	target string // host:port to dial
	host   string // target's host name
	connID string
	tls    *capture.TLS // the app-side TLS session goproxy terminated
	info   *connInfo
}

// streams tracks hijacked and raw connections, which http.Server.Shutdown
// does not see, so that shutdown can wait for them and then cut them.
type streams struct {
	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func (s *streams) add(cs ...net.Conn) {
	s.mu.Lock()
	if s.conns == nil {
		s.conns = make(map[net.Conn]struct{})
	}
	for _, c := range cs {
		s.conns[c] = struct{}{}
	}
	s.mu.Unlock()
	s.wg.Add(1)
}

func (s *streams) remove(cs ...net.Conn) {
	s.mu.Lock()
	for _, c := range cs {
		delete(s.conns, c)
	}
	s.mu.Unlock()
	s.wg.Done()
}

// shutdown waits for the streams to end until ctx is done, then closes
// what is left.
func (s *streams) shutdown(ctx context.Context) error {
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		<-done
		return ctx.Err()
	}
}

// pipe copies both ways between client and server until both directions
// end, and returns the byte counts. A direction that ends half-closes the
// other side when it can, so protocols that rely on half-close work.
func pipe(client, server net.Conn, chunks *chunkTee) (up, down int64, err error) {
	var wg sync.WaitGroup
	var upErr error
	var src, dst io.Reader = client, server
	if chunks != nil {
		src, dst = chunks.reader(client, true), chunks.reader(server, false)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		up, upErr = io.Copy(server, src)
		closeWrite(server)
	}()
	down, err = io.Copy(client, dst)
	closeWrite(client)
	wg.Wait()
	client.Close()
	server.Close()
	if err == nil {
		err = upErr
	}
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return up, down, err
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
		return
	}
	c.Close()
}

// relayTCP dials target and relays the raw stream of client, then emits a
// TCP record (endpoints, byte counts, duration).
func (c *core) relayTCP(client net.Conn, target string, dir capture.Direction, proxyName, reason string, ss *streams, t *tunnelInfo) {
	c.relayTCPTo(client, nil, time.Now(), target, dir, proxyName, reason, ss, t)
}

// relayTCPTo is relayTCP over server, a connection to target already made
// (nil: dial it), from start.
func (c *core) relayTCPTo(client, server net.Conn, start time.Time, target string, dir capture.Direction, proxyName, reason string, ss *streams, t *tunnelInfo) {
	c.m.tunnels.WithLabelValues(string(dir), reason).Inc()
	// Keep the bytes, bounded, unless they are encrypted.
	var chunks *chunkTee
	if c.opt.Emitter != nil && reason != "tls_no_unwrap" && c.opt.BodyLimit > 0 {
		chunks = &chunkTee{start: start, budget: c.opt.BodyLimit}
	}
	var err error
	if server == nil {
		d := net.Dialer{Timeout: c.opt.DialTimeout}
		server, err = d.Dial("tcp", target)
	}
	var up, down int64
	if err != nil {
		c.m.upstreamErrors(dir).Inc()
		c.log.Warn("dial upstream", "direction", dir, "target", target, "err", err)
		client.Close()
	} else {
		ss.add(client, server)
		up, down, err = pipe(client, server, chunks)
		ss.remove(client, server)
	}
	if c.opt.Emitter == nil {
		return
	}
	rec := &capture.Record{
		Schema:    capture.SchemaVersion,
		ID:        capture.NewID(),
		Kind:      capture.KindTCP,
		Direction: dir,
		Start:     start.UTC(),
		DurMicros: micros(time.Since(start)),
		Labels:    c.opt.Labels,
		Tags:      c.opt.Tags,
		Net: capture.Net{
			ClientAddr: client.RemoteAddr().String(),
			ServerAddr: target,
			ServerHost: hostOnly(target),
			Proxy:      proxyName,
		},
		TCP: &capture.TCP{BytesUp: up, BytesDown: down},
	}
	if chunks != nil {
		rec.TCP.Chunks, rec.TCP.Truncated = chunks.result()
	}
	if t != nil {
		rec.Net.ConnID = t.connID
		rec.Tags = withTag(c.opt.Tags, "tunnel", reason)
	}
	if err != nil {
		rec.Error = err.Error()
	}
	c.opt.Emitter.Emit(rec)
}

// withTag returns a copy of tags with one more entry.
func withTag(tags capture.Tags, k, v string) capture.Tags {
	out := make(capture.Tags, len(tags)+1)
	for kk, vv := range tags {
		out[kk] = vv
	}
	out[k] = v
	return out
}

// maxChunks bounds the chunks kept per stream.
const maxChunks = 4096

// chunkTee keeps the reads of both directions of a byte stream, with their
// time, within a byte budget shared by the two directions.
type chunkTee struct {
	start     time.Time
	mu        sync.Mutex
	budget    int64
	chunks    []capture.Chunk
	truncated bool
}

func (t *chunkTee) reader(r io.Reader, up bool) io.Reader {
	return &chunkReader{r: r, t: t, up: up}
}

func (t *chunkTee) add(p []byte, up bool, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	keep := min(int64(len(p)), t.budget)
	if keep < int64(len(p)) || len(t.chunks) >= maxChunks {
		t.truncated = true
	}
	if keep == 0 || len(t.chunks) >= maxChunks {
		return
	}
	t.budget -= keep
	t.chunks = append(t.chunks, capture.Chunk{Up: up, AtMicros: micros(now.Sub(t.start)), Data: append([]byte(nil), p[:keep]...)})
}

func (t *chunkTee) result() ([]capture.Chunk, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.chunks, t.truncated
}

type chunkReader struct {
	r  io.Reader
	t  *chunkTee
	up bool
}

func (c *chunkReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		c.t.add(p[:n], c.up, time.Now())
	}
	return n, err
}
