package h1

import (
	"bytes"
	"fmt"
	"math"
	"net/http"
	"strconv"

	"golang.org/x/net/http/httpguts"
)

// MaxChunkLine bounds a chunk-size line with its extensions, as net/http
// does.
const MaxChunkLine = 4096

// FramingError is a message whose framing or grammar goproxy refuses: the
// status the client gets and why. Before the request was handed on the
// engine answers it itself; in the middle of a body it is the body's read
// error (the client's fault).
type FramingError struct {
	Status int // 400, 431, 501, 505 (502 for an upstream's response)
	Reason string
}

func (e *FramingError) Error() string { return "malformed request: " + e.Reason }

// Refuse makes the FramingError of a message refused with status.
func Refuse(status int, format string, args ...any) *FramingError {
	return &FramingError{Status: status, Reason: fmt.Sprintf(format, args...)}
}

// BadStart reports whether b, the start of a request head that is not
// whole yet, can no longer become a request line: its method holds a byte
// that is not a token character, or its first line a control byte. Such a
// client (binary sent to an HTTP port) is answered at once instead of when
// it has sent the header limit or timed out.
func BadStart(b []byte) bool {
	line := b
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		line = b[:i]
	}
	line = bytes.TrimSuffix(line, []byte("\r"))
	method := line
	if sp := bytes.IndexByte(line, ' '); sp >= 0 {
		method = line[:sp]
	}
	for _, c := range method {
		if !httpguts.IsTokenRune(rune(c)) {
			return true
		}
	}
	for _, c := range line {
		if c < 0x20 && c != '\t' || c == 0x7f {
			return true
		}
	}
	return false
}

// CutLine splits b after its first LF and returns the line without its
// line end (LF or CRLF).
func CutLine(b []byte) (line, rest []byte) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return b, nil
	}
	line, rest = b[:i], b[i+1:]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, rest
}

// HeadEnd returns the length of the head at the start of b (through the
// blank line that ends it), or -1 when b does not hold a whole head yet.
func HeadEnd(b []byte) int {
	for i := 0; ; {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return -1
		}
		line := b[i : i+j]
		i += j + 1
		if len(line) == 0 || (len(line) == 1 && line[0] == '\r') {
			return i
		}
	}
}

// ParseDecimal parses 1*DIGIT that fits an int64. Leading zeros are
// digits like any other (RFC 9110 §8.6; net/http accepts them too): only
// the digits after them count toward the 19 an int64 holds.
func ParseDecimal(v []byte) (int64, bool) {
	if len(v) == 0 {
		return 0, false
	}
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	for len(v) > 1 && v[0] == '0' {
		v = v[1:]
	}
	if len(v) > 19 {
		return 0, false
	}
	n, err := strconv.ParseInt(string(v), 10, 64)
	return n, err == nil
}

// ParseChunkLine checks one chunk-size line (RFC 9112 §7.1), line end
// included: 1 to 16 hex digits that fit an int64, optional extensions
// after ";" (no control bytes), and a CRLF, never a bare LF or CR. It
// refuses what net/http's chunked reader refuses, so that a body it passes
// does not fail later. It is fuzzed.
func ParseChunkLine(line []byte) (int64, *FramingError) {
	n := len(line)
	if n < 2 || line[n-2] != '\r' || line[n-1] != '\n' {
		return 0, Refuse(http.StatusBadRequest, "chunk-size line %.20q does not end in CRLF", line)
	}
	line = line[:n-2]
	i := 0
	var size uint64
	for i < len(line) {
		d, ok := unhex(line[i])
		if !ok {
			break
		}
		if i == 16 {
			return 0, Refuse(http.StatusBadRequest, "chunk size %.20q overflows", line)
		}
		size = size<<4 | uint64(d)
		i++
	}
	if i == 0 {
		return 0, Refuse(http.StatusBadRequest, "chunk size %.20q is not hexadecimal", line)
	}
	if size > math.MaxInt64 {
		return 0, Refuse(http.StatusBadRequest, "chunk size %.20q overflows", line)
	}
	// Whitespace may end the line (net/http trims it); an extension
	// follows ";" at once (net/http refuses whitespace before it).
	ext := line[i:]
	if len(bytes.TrimRight(ext, " \t")) == 0 {
		return int64(size), nil
	}
	if ext[0] != ';' {
		return 0, Refuse(http.StatusBadRequest, "chunk size %.20q is not hexadecimal", line)
	}
	if !validValue(ext) { // no control byte but tab, as a field value
		return 0, Refuse(http.StatusBadRequest, "control byte in chunk extension %.20q", line)
	}
	return int64(size), nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// EqualFold reports whether b is s in ASCII, ignoring case.
func EqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		x, y := b[i], s[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
