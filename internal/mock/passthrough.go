package mock

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/format/jsonl"
)

// maxMissBody bounds each body a recorded miss keeps.
const maxMissBody = 1 << 20

// passthrough forwards a miss to the real upstream and streams its answer back; with RecordMisses set, the
// exchange is written as a record.
func (s *Server) passthrough(w http.ResponseWriter, r *http.Request, req *Request) {
	s.report.passthrough.Add(1)
	start := time.Now()
	out, err := http.NewRequestWithContext(r.Context(), r.Method, req.URL(), bytes.NewReader(req.Body))
	if err != nil {
		http.Error(w, "502 Bad Gateway: tapwire mock: "+err.Error(), http.StatusBadGateway)
		return
	}
	for k, vs := range r.Header {
		if !hopHeaders[strings.ToLower(k)] && !strings.HasPrefix(strings.ToLower(k), "proxy-") {
			out.Header[k] = vs
		}
	}
	out.ContentLength = int64(len(req.Body))
	resp, err := s.opt.Upstream.RoundTrip(out)
	if err != nil {
		s.log.Info("passthrough failed", "url", req.URL(), "err", err)
		http.Error(w, "502 Bad Gateway: tapwire mock: passthrough to "+req.Host+": "+err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for k, vs := range resp.Header {
		if !hopHeaders[strings.ToLower(k)] {
			w.Header()[k] = vs
		}
	}
	w.WriteHeader(resp.StatusCode)
	var tee *capBuffer
	var src io.Reader = resp.Body
	if s.misses != nil {
		tee = &capBuffer{max: maxMissBody}
		src = io.TeeReader(resp.Body, tee)
	}
	n, _ := io.Copy(w, src)
	if s.misses == nil {
		return
	}
	rec := &capture.Record{Schema: capture.SchemaVersion, ID: capture.NewID(), Kind: capture.KindHTTP, Direction: capture.DirOut, Start: start.UTC(),
		DurMicros: time.Since(start).Microseconds(), Tags: capture.Tags{"source": "speedctl-mock-passthrough"},
		HTTP: &capture.HTTP{
			Req: capture.Request{Method: r.Method, URL: req.URL(), Proto: r.Proto, Host: req.Host, Headers: req.Headers,
				Body: capture.Body{Data: req.Body, Size: int64(len(req.Body))}},
			Res: &capture.Response{Status: resp.StatusCode, Proto: resp.Proto, Headers: headersOf(resp.Header),
				Body: capture.Body{Data: tee.b.Bytes(), Size: n, Truncated: n > int64(tee.b.Len())}},
		}}
	if err := s.misses.write(rec); err != nil {
		s.log.Warn("record a miss", "err", err)
	}
}

// capBuffer keeps the first max bytes written to it.
type capBuffer struct {
	b   bytes.Buffer
	max int
}

func (c *capBuffer) Write(p []byte) (int, error) {
	if room := c.max - c.b.Len(); room > 0 {
		c.b.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

// missWriter writes records of misses, one at a time.
type missWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (m *missWriter) write(rec *capture.Record) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return jsonl.NewWriter(m.w).Write(rec)
}
