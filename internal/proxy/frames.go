package proxy

import (
	"encoding/binary"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/protoraw"
)

// maxMessages bounds the messages kept per direction of one exchange; the
// bytes they keep are bounded by the body cap.
const maxMessages = 1000

// grpcFramer splits one direction of a gRPC stream into its
// length-prefixed messages as the bytes pass (a 1-byte compressed flag and
// a 4-byte big-endian length, then the message), keeping each message's
// first bytes within a budget shared by the whole direction.
type grpcFramer struct {
	msgLog
	up     bool
	budget int64 // data bytes that may still be kept

	hdr       [5]byte
	hdrN      int
	cur       *capture.Message
	remaining int64
}

func newGRPCFramer(up bool, start time.Time, budget int64) *grpcFramer {
	return &grpcFramer{msgLog: msgLog{start: start}, up: up, budget: budget}
}

// feed consumes bytes as they pass, at time now.
func (f *grpcFramer) feed(p []byte, now time.Time) {
	for len(p) > 0 {
		if f.cur == nil {
			n := copy(f.hdr[f.hdrN:], p)
			f.hdrN += n
			p = p[n:]
			if f.hdrN < len(f.hdr) {
				return
			}
			f.hdrN = 0
			size := int64(binary.BigEndian.Uint32(f.hdr[1:]))
			f.cur = &capture.Message{Up: f.up, Size: size, Compressed: f.hdr[0]&1 == 1}
			f.remaining = size
			if size == 0 {
				f.finish(now)
			}
			continue
		}
		k := int64(len(p))
		if k > f.remaining {
			k = f.remaining
		}
		if keep := min(k, f.budget); keep > 0 {
			f.cur.Data = append(f.cur.Data, p[:keep]...)
			f.budget -= keep
		}
		f.remaining -= k
		p = p[k:]
		if f.remaining == 0 {
			f.finish(now)
		}
	}
}

func (f *grpcFramer) finish(now time.Time) {
	f.keep(f.cur, now)
	f.cur = nil
}

// msgLog keeps one direction's finished messages, at most maxMessages.
type msgLog struct {
	start     time.Time
	msgs      []capture.Message
	truncated bool // messages passed that were not kept
}

// keep stamps m with its time and keeps it if there is room.
func (l *msgLog) keep(m *capture.Message, now time.Time) {
	m.AtMicros = micros(now.Sub(l.start))
	m.Truncated = int64(len(m.Data)) < m.Size
	if len(l.msgs) >= maxMessages {
		l.truncated = true
		return
	}
	l.msgs = append(l.msgs, *m)
}

// grpcInfo reads the call's identity from the path and its outcome from
// the trailers (or the headers of a trailers-only response).
func grpcInfo(path string, res *http.Response) *capture.GRPC {
	g := &capture.GRPC{}
	svc, method, _ := strings.Cut(strings.TrimPrefix(path, "/"), "/")
	g.Service, g.Method = svc, method
	if res == nil {
		return g
	}
	get := func(k string) string {
		if v := res.Trailer.Get(k); v != "" {
			return v
		}
		return res.Header.Get(k)
	}
	if s := get("Grpc-Status"); s != "" {
		if n, err := strconv.Atoi(s); err == nil {
			g.Status = &n
		}
	}
	if m := get("Grpc-Message"); m != "" {
		if u, err := url.PathUnescape(m); err == nil {
			m = u
		}
		g.StatusMessage = m
	}
	g.Encoding = res.Header.Get("Grpc-Encoding")
	return g
}

// mergeByTime orders both directions' messages by time.
func mergeByTime(up, down []capture.Message) []capture.Message {
	out := make([]capture.Message, 0, len(up)+len(down))
	i, j := 0, 0
	for i < len(up) || j < len(down) {
		if j == len(down) || (i < len(up) && up[i].AtMicros <= down[j].AtMicros) {
			out = append(out, up[i])
			i++
		} else {
			out = append(out, down[j])
			j++
		}
	}
	return out
}

// Bounds on schema-less decoding, which turns wire bytes into far larger
// trees: only small messages are decoded, and a record keeps a bounded
// number of decoded fields in all. Larger messages keep their bytes.
const (
	maxDecodeBytes      = 16 << 10
	maxDecodedPerRecord = 2048
)

// decodeProtobuf decodes the whole, uncompressed, small messages from the
// protobuf wire format, within the record's field budget.
func decodeProtobuf(ms []capture.Message) {
	budget := maxDecodedPerRecord
	for k := range ms {
		m := &ms[k]
		if m.Compressed || m.Truncated || len(m.Data) == 0 || len(m.Data) > maxDecodeBytes {
			continue
		}
		fields, ok := protoraw.Decode(m.Data)
		if !ok {
			continue
		}
		if n := protoraw.Count(fields); n <= budget {
			m.Fields = fields
			budget -= n
		}
	}
}
