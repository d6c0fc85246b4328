package h1

import (
	"bytes"
	"net/http"
	"strings"

	"github.com/tapwire/tapwire/internal/capture"
)

// The states of a chunked body (RFC 9112 §7.1).
const (
	csLine    = iota // a chunk-size line
	csData           // remain bytes of chunk data
	csCRLF           // the CRLF after chunk data (crlf of its 2 bytes seen)
	csTrailer        // trailer lines, up to the blank line
	csDone
)

// PayloadSink receives a body's content as it passes: chunk data without
// its framing.
type PayloadSink interface{ Payload(p []byte) }

// BodyScan follows the framing of one message body over the bytes that
// pass, which it never changes: how many bytes belong to the body, where
// it ends, and whether its chunked framing is valid. It is fuzzed.
type BodyScan struct {
	Chunked    bool
	UntilClose bool  // the body ends when the sender closes (a response without framing)
	Remain     int64 // bytes of a Content-Length body or of the current chunk
	st         int
	crlf       int
	line       []byte // a chunk-size or trailer line split across reads
	limit      int    // trailer bytes allowed
	trail      int
	trailers   [][]byte // trailer lines (without line end), kept when keepTrailers
	keepTrail  bool
	Done       bool
}

// Start sets s up for a body framed as h says.
func (s *BodyScan) Start(h *Head, limit int, keepTrailers bool) {
	*s = BodyScan{line: s.line[:0], trailers: s.trailers[:0], limit: limit, keepTrail: keepTrailers}
	switch {
	case h.Chunked:
		s.Chunked = true
	case h.Length >= 0:
		s.Remain = h.Length
		s.Done = h.Length == 0
	default:
		s.UntilClose = true
	}
}

// Scan takes the next bytes on the wire. It returns how many of them
// belong to the body (fewer than len(p) only when the body ended inside
// p), after giving their content to sink.
func (s *BodyScan) Scan(p []byte, sink PayloadSink) (int, *FramingError) {
	if s.Done {
		return 0, nil
	}
	if s.UntilClose {
		sink.Payload(p)
		return len(p), nil
	}
	if !s.Chunked {
		n := int(min(int64(len(p)), s.Remain))
		sink.Payload(p[:n])
		s.Remain -= int64(n)
		s.Done = s.Remain == 0
		return n, nil
	}
	used := 0
	for used < len(p) && !s.Done {
		b := p[used:]
		switch s.st {
		case csData:
			n := int(min(int64(len(b)), s.Remain))
			sink.Payload(b[:n])
			s.Remain -= int64(n)
			used += n
			if s.Remain == 0 {
				s.st, s.crlf = csCRLF, 0
			}
		case csCRLF:
			want := byte('\r')
			if s.crlf == 1 {
				want = '\n'
			}
			if b[0] != want {
				return used, Refuse(http.StatusBadRequest, "chunk data not followed by CRLF")
			}
			used++
			if s.crlf++; s.crlf == 2 {
				s.st = csLine
			}
		case csLine, csTrailer:
			i := bytes.IndexByte(b, '\n')
			bound := MaxChunkLine
			if s.st == csTrailer {
				bound = s.limit - s.trail
			}
			if i < 0 {
				if len(s.line)+len(b) > bound {
					return used, s.tooLong()
				}
				s.line = append(s.line, b...)
				used += len(b)
				continue
			}
			line := b[:i+1]
			if len(s.line) > 0 {
				s.line = append(s.line, line...)
				line = s.line
			}
			if len(line) > bound {
				return used, s.tooLong()
			}
			if err := s.endLine(line); err != nil {
				return used, err // the bad line is not passed on
			}
			used += i + 1
			s.line = s.line[:0]
		}
	}
	return used, nil
}

func (s *BodyScan) tooLong() *FramingError {
	if s.st == csTrailer {
		return Refuse(http.StatusBadRequest, "trailer section exceeds %d bytes", s.limit)
	}
	return Refuse(http.StatusBadRequest, "chunk-size line longer than %d bytes", MaxChunkLine)
}

// endLine handles a whole chunk-size or trailer line, its LF included.
func (s *BodyScan) endLine(line []byte) *FramingError {
	if s.st == csLine {
		n, err := ParseChunkLine(line)
		if err != nil {
			return err
		}
		if n == 0 {
			s.st, s.trail = csTrailer, 0
		} else {
			s.st, s.Remain = csData, n
		}
		return nil
	}
	s.trail += len(line)
	n := len(line)
	if n < 2 || line[n-2] != '\r' || bytes.IndexByte(line[:n-2], '\r') >= 0 {
		return Refuse(http.StatusBadRequest, "trailer line does not end in CRLF")
	}
	if n == 2 {
		s.st, s.Done = csDone, true
		return nil
	}
	if s.keepTrail {
		s.trailers = append(s.trailers, append([]byte(nil), line[:n-2]...))
	}
	return nil
}

// TrailerHeaders turns the kept trailer lines into record fields.
func (s *BodyScan) TrailerHeaders() capture.Headers {
	var out capture.Headers
	for _, l := range s.trailers {
		name, value, ok := bytes.Cut(l, []byte(":"))
		if !ok {
			continue
		}
		out = append(out, capture.Header{Name: string(name), Value: strings.Trim(string(value), " \t")})
	}
	return out
}

// BodyCap keeps a body's first bytes, up to limit, and counts them all.
type BodyCap struct {
	Limit int64
	Buf   []byte
	n     int64
}

func (c *BodyCap) Payload(p []byte) {
	if room := c.Limit - int64(len(c.Buf)); room > 0 {
		c.Buf = append(c.Buf, p[:min(int64(len(p)), room)]...)
	}
	c.n += int64(len(p))
}

// Reset empties c for the next body, keeping its buffer.
func (c *BodyCap) Reset() { c.Buf, c.n = c.Buf[:0], 0 }

func (c *BodyCap) Body() capture.Body {
	return capture.Body{Data: c.Buf, Size: c.n, Truncated: c.n > int64(len(c.Buf))}
}
