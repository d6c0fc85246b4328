package proxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/tapwire/tapwire/internal/capture"
)

// bodyTee wraps a body and keeps its first bytes, up to limit, beside the
// stream. It never changes what the reader sees.
type bodyTee struct {
	rc    io.ReadCloser
	limit int64
	buf   []byte // at most limit bytes
	n     int64  // bytes read in all
	eof   bool
	err   error // first read error other than EOF
	first time.Time
	// frames, when set, splits the stream into gRPC messages, which then
	// carry the bytes instead of buf.
	frames *grpcFramer
	mu     sync.Mutex // guards the fields above: Read and the record's snapshot may race on an aborted request
}

func newBodyTee(rc io.ReadCloser, limit int64) *bodyTee {
	return &bodyTee{rc: rc, limit: limit}
}

func (b *bodyTee) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	b.mu.Lock()
	if n > 0 {
		if b.n == 0 {
			b.first = time.Now()
		}
		if b.frames != nil {
			b.frames.feed(p[:n], time.Now())
		} else if room := b.limit - int64(len(b.buf)); room > 0 {
			k := int64(n)
			if k > room {
				k = room
			}
			b.buf = append(b.buf, p[:k]...)
		}
		b.n += int64(n)
	}
	if err == io.EOF {
		b.eof = true
	} else if err != nil && b.err == nil {
		b.err = err
	}
	b.mu.Unlock()
	return n, err
}

func (b *bodyTee) Close() error { return b.rc.Close() }

// readErr returns the first error reading the body, other than EOF.
func (b *bodyTee) readErr() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

// body returns what was captured as a record body, and the messages when
// the body was framed.
func (b *bodyTee) body() (capture.Body, []capture.Message, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.frames != nil {
		// The messages carry the bytes; the body keeps only its size.
		return capture.Body{Size: b.n, Truncated: b.n > 0}, b.frames.msgs, b.frames.truncated
	}
	return capture.Body{Data: b.buf, Size: b.n, Truncated: b.n > int64(len(b.buf))}, nil, false
}

// captureWriter wraps the client's ResponseWriter and keeps the status and
// the first bytes of the response body, up to limit.
type captureWriter struct {
	http.ResponseWriter
	limit  int64
	status int
	buf    []byte
	n      int64
	first  time.Time   // first byte (or header) written
	frames *grpcFramer // as in bodyTee

	wsStart time.Time // set for a WebSocket upgrade request: frames are captured after the 101
	ws      *wsConn   // the upgraded connection, once hijacked
}

func (w *captureWriter) WriteHeader(code int) {
	if w.first.IsZero() {
		w.first = time.Now()
	}
	if w.status == 0 || (w.status >= 100 && w.status < 200) {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *captureWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if w.first.IsZero() {
		w.first = time.Now()
	}
	n, err := w.ResponseWriter.Write(p)
	if n > 0 {
		if w.frames != nil {
			w.frames.feed(p[:n], time.Now())
		} else if room := w.limit - int64(len(w.buf)); room > 0 {
			k := int64(n)
			if k > room {
				k = room
			}
			w.buf = append(w.buf, p[:k]...)
		}
		w.n += int64(n)
	}
	return n, err
}

// Flush lets streamed responses (server-sent events, long polls) reach the
// client as they arrive.
func (w *captureWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Hijack passes protocol upgrades (WebSocket) through.
func (w *captureWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.status == 0 {
		w.status = http.StatusSwitchingProtocols
	}
	hj, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("proxy: response writer cannot hijack")
	}
	c, brw, err := hj.Hijack()
	if err != nil || w.wsStart.IsZero() {
		return c, brw, err
	}
	w.ws, brw = hijackWS(c, brw, w.wsStart, w.limit)
	return w.ws, brw, nil
}

// Unwrap gives http.ResponseController the underlying writer.
func (w *captureWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *captureWriter) body() capture.Body {
	if w.frames != nil {
		return capture.Body{Size: w.n, Truncated: w.n > 0}
	}
	return capture.Body{Data: w.buf, Size: w.n, Truncated: w.n > int64(len(w.buf))}
}

// headers turns an http.Header into ordered fields. Go's server does not
// keep the order of the wire, so fields are sorted by name (values of one
// name keep their order).
func headers(h http.Header) capture.Headers {
	if len(h) == 0 {
		return nil
	}
	names := make([]string, 0, len(h))
	n := 0
	for k, vs := range h {
		names = append(names, k)
		n += len(vs)
	}
	sort.Strings(names)
	out := make(capture.Headers, 0, n)
	for _, k := range names {
		for _, v := range h[k] {
			out = append(out, capture.Header{Name: k, Value: v})
		}
	}
	return out
}

// trailers collects the response trailers the upstream sent.
func trailers(h http.Header) capture.Headers {
	if len(h) == 0 {
		return nil
	}
	t := make(http.Header, len(h))
	for k, vs := range h {
		if len(vs) > 0 && vs[0] != "" {
			t[k] = vs
		}
	}
	return headers(t)
}

func micros(d time.Duration) int64 { return int64(d / time.Microsecond) }
