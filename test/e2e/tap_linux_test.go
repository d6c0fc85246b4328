package e2e

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
)

// tap is a raw TCP relay on the path from the task to the forwarder: the
// task resolves forwarder.ecs.local to the tap's namespace, and the tap
// passes each connection on to the forwarder byte for byte, keeping a copy
// of what the client sent while recording is on. It stands for the VPC
// between the task and the forwarder's service, where anyone on the path
// reads the guide's plaintext hop. goproxy's environment is the guide's:
// only the address its name resolves to differs.
type tap struct {
	ln        net.Listener
	dial      func(ctx context.Context, network, addr string) (net.Conn, error)
	target    string
	recording atomic.Bool

	mu    sync.Mutex
	conns []*tapConn        // every connection while recording, in order
	live  map[net.Conn]bool // open connections, both sides, closed at the end
	wg    sync.WaitGroup
}

// tapConn is one connection's bytes from goproxy to the forwarder.
type tapConn struct {
	mu   sync.Mutex
	sent bytes.Buffer
	tap  *tap
}

func (c *tapConn) Write(b []byte) (int, error) {
	if c.tap.recording.Load() {
		c.mu.Lock()
		c.sent.Write(b)
		c.mu.Unlock()
	}
	return len(b), nil
}

// startTap relays ns's :8888 to target, recording from the start.
func (g *guide) startTap(t *testing.T, ns, target string) *tap {
	t.Helper()
	tp := &tap{ln: g.listen(ns, ":8888"), dial: g.dialer(ns), target: target, live: map[net.Conn]bool{}}
	tp.recording.Store(true)
	tp.wg.Add(1)
	go tp.serve()
	t.Cleanup(tp.close)
	return tp
}

func (tp *tap) serve() {
	defer tp.wg.Done()
	for {
		c, err := tp.ln.Accept()
		if err != nil {
			return
		}
		tp.wg.Add(1)
		go tp.relay(c)
	}
}

func (tp *tap) track(c net.Conn, open bool) {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	if open {
		tp.live[c] = true
	} else {
		delete(tp.live, c)
	}
}

// relay passes one connection on. When the forwarder cannot be reached
// (killed by the fault test) the client's connection is reset, as a
// refused connection would be.
func (tp *tap) relay(c net.Conn) {
	defer tp.wg.Done()
	tp.track(c, true)
	defer tp.track(c, false)
	defer c.Close()
	up, err := tp.dial(context.Background(), "tcp", tp.target)
	if err != nil {
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0)
		}
		return
	}
	tp.track(up, true)
	defer tp.track(up, false)
	defer up.Close()
	rec := &tapConn{tap: tp}
	if tp.recording.Load() {
		tp.mu.Lock()
		tp.conns = append(tp.conns, rec)
		tp.mu.Unlock()
	}
	done := make(chan struct{}, 2)
	go func() { io.Copy(up, io.TeeReader(c, rec)); done <- struct{}{} }()
	go func() { io.Copy(c, up); done <- struct{}{} }()
	<-done // either side ended: end both
	c.Close()
	up.Close()
	<-done
}

func (tp *tap) close() {
	tp.ln.Close()
	tp.mu.Lock()
	for c := range tp.live {
		c.Close()
	}
	tp.mu.Unlock()
	tp.wg.Wait()
}

// tapBatch is one request goproxy sent through the tap.
type tapBatch struct {
	header http.Header
	body   []byte // decompressed per Content-Encoding
}

// batches parses what was recorded as the HTTP/1.1 requests it is, and
// returns them with their bodies decompressed, and every byte recorded as
// it passed. A request still being sent at the end of a recording is left
// out.
func (tp *tap) batches() (reqs []tapBatch, raw []byte, err error) {
	tp.mu.Lock()
	conns := append([]*tapConn(nil), tp.conns...)
	tp.mu.Unlock()
	for i, c := range conns {
		c.mu.Lock()
		b := bytes.Clone(c.sent.Bytes())
		c.mu.Unlock()
		raw = append(raw, b...)
		br := bufio.NewReader(bytes.NewReader(b))
		for {
			req, err := http.ReadRequest(br)
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				break
			}
			if err != nil {
				return nil, nil, fmt.Errorf("connection %d through the tap: not HTTP/1.1 requests: %w", i, err)
			}
			body, err := io.ReadAll(req.Body)
			if errors.Is(err, io.ErrUnexpectedEOF) {
				break
			}
			if err != nil {
				return nil, nil, fmt.Errorf("connection %d through the tap: read a body: %w", i, err)
			}
			switch enc := req.Header.Get("Content-Encoding"); enc {
			case "zstd":
				body, err = unzstd(body)
			case "s2": // goproxy's batches once the forwarder listed it
				body, err = io.ReadAll(s2.NewReader(bytes.NewReader(body)))
			case "gzip":
				var zr *gzip.Reader
				if zr, err = gzip.NewReader(bytes.NewReader(body)); err == nil {
					body, err = io.ReadAll(zr)
				}
			case "", "identity":
			default:
				err = fmt.Errorf("unknown Content-Encoding %q", enc)
			}
			if err != nil {
				return nil, nil, fmt.Errorf("connection %d through the tap: decompress %s %s: %w", i, req.Method, req.URL, err)
			}
			reqs = append(reqs, tapBatch{header: req.Header, body: body})
		}
	}
	return reqs, raw, nil
}

// unzstd decompresses a zstd stream of one or more frames.
func unzstd(b []byte) ([]byte, error) {
	d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(1<<30))
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return d.DecodeAll(b, nil)
}
