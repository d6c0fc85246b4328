package h1

import (
	"bytes"
	"encoding/binary"
	"net/http"

	"github.com/tapwire/tapwire/internal/capture"
	"golang.org/x/net/http/httpguts"
)

// This file is the strict HTTP/1.1 message parser of the engine (h1.go):
// RFC 9112 request and status lines, field lines and message framing,
// parsed in place over the bytes read from the wire. Fields are slices of
// the head as received, so that the app sees the client's names, case and
// order; nothing is canonicalised or copied until a record is built.
//
// Where it is stricter than net/http it says why (FuzzH1AgainstNetHTTP
// checks every other decision against net/http's).

// Field is one field line of a head: slices of the head's bytes.
type Field struct {
	Name, Value []byte
	Line        []byte // the whole line without its line end
	At, ValueAt int    // where name and value start in the head
}

// connection options found in a head's Connection fields.
const (
	ConnClose = 1 << iota
	ConnKeepAlive
	ConnUpgrade
)

// Head is a parsed request or response head.
type Head struct {
	Raw    []byte // the whole head, through the blank line
	Fields []Field

	// request line
	Method, Target []byte
	// Status line
	Status int
	Reason []byte

	Minor int // HTTP/1.minor

	Length    int64 // body length; -1 when not framed by Content-Length
	Chunked   bool
	Expect100 bool
	Conn      int      // connClose | connKeepAlive | connUpgrade
	ConnNames [][]byte // other field names listed in Connection: removed as hop-by-hop
	Upgrade   []byte   // the Upgrade field's value
	Host      []byte
	hostAt    int  // where Host is in Raw
	HasTE     bool // a Transfer-Encoding field (of a response: not chunked last means read until close)
	BadTE     bool // a response Transfer-Encoding whose last coding is not chunked

	// what parseFields saw of the framing fields, for ParseRequest and
	// ParseResponse to judge
	hosts int
	tes   int    // Transfer-Encoding fields
	te    []byte // the last one's value
	cls   int    // Content-Length fields
	cl    []byte // the first one's value
	clErr *FramingError
}

// Reset empties h for the next message, keeping its field slice.
func (h *Head) Reset() {
	f := h.Fields[:0]
	n := h.ConnNames[:0]
	*h = Head{Fields: f, ConnNames: n, Length: -1}
}

// KeepAlive reports whether the sender of h wants the connection kept
// open after this message (RFC 9112 §9.3).
func (h *Head) KeepAlive() bool {
	if h.Conn&ConnClose != 0 {
		return false
	}
	return h.Minor >= 1 || h.Conn&ConnKeepAlive != 0
}

// ParseRequest parses a whole request head (as h1HeadEnd delimits it)
// into h. It refuses, with the status to answer:
//   - a request line that is not method SP target SP HTTP/1.x (400; 505
//     for another major version), a method that is not a token, a target
//     with a control byte or a space, or not in the form its method needs;
//   - a field line with whitespace before its colon (RFC 9112 §5.1), a
//     name that is not a token, a value with a control byte, or a line
//     folded onto the one before (obs-fold, §5.2: net/http joins it; a
//     proxy that joins what the app might split is a smuggling vector);
//   - a bare CR (§2.2);
//   - HTTP/1.1 without exactly one valid Host (§3.2);
//   - ambiguous framing (§6.3): Content-Length with Transfer-Encoding,
//     Content-Lengths that differ or are not numbers, Transfer-Encoding in
//     HTTP/1.0, a transfer coding other than chunked (501).
//
// It is fuzzed against net/http: it must never panic.
func ParseRequest(b []byte, h *Head) *FramingError {
	h.Reset()
	h.Raw = b
	line, rest := CutLine(b)
	if bytes.IndexByte(line, '\r') >= 0 {
		return Refuse(http.StatusBadRequest, "bare CR in the request line")
	}
	sp1 := bytes.IndexByte(line, ' ')
	sp2 := bytes.LastIndexByte(line, ' ')
	if sp1 <= 0 || sp2 == sp1 {
		return Refuse(http.StatusBadRequest, "malformed request line %.60q", line)
	}
	h.Method, h.Target = line[:sp1], line[sp1+1:sp2]
	proto := line[sp2+1:]
	for _, c := range h.Method {
		if !httpguts.IsTokenRune(rune(c)) {
			return Refuse(http.StatusBadRequest, "invalid method %.20q", h.Method)
		}
	}
	minor, ok := parseVersion(proto)
	if !ok {
		if len(proto) == 8 && string(proto[:5]) == "HTTP/" && proto[6] == '.' && proto[5] != '1' && isDigit(proto[5]) && isDigit(proto[7]) {
			return Refuse(http.StatusHTTPVersionNotSupported, "HTTP version %q is not supported", proto)
		}
		return Refuse(http.StatusBadRequest, "malformed request line %.60q", line)
	}
	h.Minor = minor
	if len(h.Target) == 0 {
		return Refuse(http.StatusBadRequest, "empty request target")
	}
	for _, c := range h.Target {
		if c <= ' ' || c == 0x7f {
			return Refuse(http.StatusBadRequest, "invalid byte in request target %.60q", h.Target)
		}
	}
	switch {
	case string(h.Method) == http.MethodConnect:
		// authority-form: CONNECT is for the outbound proxy.
	case h.Target[0] == '/':
	case string(h.Target) == "*":
		if string(h.Method) != http.MethodOptions {
			return Refuse(http.StatusBadRequest, "request target * is only for OPTIONS")
		}
	case bytes.Contains(h.Target, []byte("://")):
		// absolute-form (RFC 9112 §3.2.2): a server must accept it.
	default:
		return Refuse(http.StatusBadRequest, "invalid request target %.60q", h.Target)
	}
	if err := h.parseFields(rest); err != nil {
		return err
	}
	hosts := h.hosts
	h.Chunked = h.tes == 1 && EqualFold(h.te, "chunked")
	if hosts > 1 {
		return Refuse(http.StatusBadRequest, "more than one Host field")
	}
	if hosts == 0 && h.Minor >= 1 {
		return Refuse(http.StatusBadRequest, "missing Host field")
	}
	if hosts == 1 && !httpguts.ValidHostHeader(string(h.Host)) {
		return Refuse(http.StatusBadRequest, "invalid Host %.60q", h.Host)
	}
	if h.HasTE {
		if h.cls > 0 {
			return Refuse(http.StatusBadRequest, "both Content-Length and Transfer-Encoding")
		}
		if h.Minor == 0 {
			return Refuse(http.StatusBadRequest, "Transfer-Encoding in an HTTP/1.0 request")
		}
		if !h.Chunked {
			return Refuse(http.StatusNotImplemented, "transfer coding %.40q is not supported (only chunked)", h.te)
		}
		return nil
	}
	n, ferr := h.contentLength()
	if ferr != nil {
		return ferr
	}
	h.Length = n
	if n < 0 {
		h.Length = 0 // a request without framing has no body (RFC 9112 §6.3 item 7)
	}
	return nil
}

// contentLength judges the message's Content-Length fields: all the same
// plain decimal number. It returns -1 when there is none.
func (h *Head) contentLength() (int64, *FramingError) {
	if h.cls == 0 {
		return -1, nil
	}
	if h.clErr != nil {
		return 0, h.clErr
	}
	n, ok := ParseDecimal(h.cl)
	if !ok {
		return 0, Refuse(http.StatusBadRequest, "invalid Content-Length %.20q", h.cl)
	}
	return n, nil
}

// ParseResponse parses a whole response head into h. reqMethod is the
// method of the request it answers: the framing of a response to HEAD
// (and of 1xx, 204 and 304) is no body whatever its fields say.
func ParseResponse(b []byte, h *Head, head bool) *FramingError {
	h.Reset()
	h.Raw = b
	line, rest := CutLine(b)
	if bytes.IndexByte(line, '\r') >= 0 {
		return Refuse(http.StatusBadGateway, "bare CR in the status line")
	}
	if len(line) < 12 || line[8] != ' ' {
		return Refuse(http.StatusBadGateway, "malformed status line %.60q", line)
	}
	minor, ok := parseVersion(line[:8])
	if !ok {
		return Refuse(http.StatusBadGateway, "malformed status line %.60q", line)
	}
	h.Minor = minor
	code := line[9:12]
	if !isDigit(code[0]) || !isDigit(code[1]) || !isDigit(code[2]) || code[0] == '0' {
		return Refuse(http.StatusBadGateway, "malformed status code %.60q", line)
	}
	h.Status = int(code[0]-'0')*100 + int(code[1]-'0')*10 + int(code[2]-'0')
	switch {
	case len(line) == 12:
	case line[12] == ' ':
		h.Reason = line[13:]
	default:
		return Refuse(http.StatusBadGateway, "malformed status line %.60q", line)
	}
	if err := h.parseFields(rest); err != nil {
		err.Status = http.StatusBadGateway
		return err
	}
	if h.HasTE {
		last := h.te
		if i := bytes.LastIndexByte(last, ','); i >= 0 {
			last = bytes.Trim(last[i+1:], " \t")
		}
		h.Chunked = EqualFold(last, "chunked")
		h.BadTE = !h.Chunked
	}
	// A malformed Content-Length is refused even beside a
	// Transfer-Encoding that would override it: the message is broken
	// either way, and net/http's client refuses it too.
	n, ferr := h.contentLength()
	if ferr != nil {
		ferr.Status = http.StatusBadGateway
		return ferr
	}
	if head || h.Status < 200 || h.Status == http.StatusNoContent || h.Status == http.StatusNotModified {
		h.Chunked, h.Length = false, 0
		return nil
	}
	if h.HasTE {
		// Transfer-Encoding overrides Content-Length (RFC 9112 §6.3
		// item 3); the connection is closed after such a response.
		if h.cls > 0 {
			h.Conn |= ConnClose
		}
		if h.BadTE {
			h.Chunked = false // read until the app closes
		}
		return nil
	}
	h.Length = n
	return nil
}

// parseFields parses the field lines after the start line.
func (h *Head) parseFields(rest []byte) *FramingError {
	for len(rest) > 0 {
		at := len(h.Raw) - len(rest)
		var line []byte
		line, rest = CutLine(rest)
		if len(line) == 0 {
			if len(rest) != 0 {
				return Refuse(http.StatusBadRequest, "bytes after the end of the head")
			}
			return nil
		}
		if line[0] == ' ' || line[0] == '\t' {
			return Refuse(http.StatusBadRequest, "folded header line (obs-fold) %.40q", line)
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return Refuse(http.StatusBadRequest, "header line without a name and colon: %.40q", line)
		}
		name := line[:colon]
		if c := name[len(name)-1]; c == ' ' || c == '\t' {
			return Refuse(http.StatusBadRequest, "whitespace between header name and colon in %.40q", line)
		}
		for _, c := range name {
			if !httpguts.IsTokenRune(rune(c)) {
				return Refuse(http.StatusBadRequest, "invalid header name %.40q", name)
			}
		}
		value := line[colon+1:]
		for len(value) > 0 && (value[0] == ' ' || value[0] == '\t') { // OWS: bytes.TrimLeft builds a set each call
			value = value[1:]
		}
		valueAt := at + len(line) - len(value)
		for len(value) > 0 && (value[len(value)-1] == ' ' || value[len(value)-1] == '\t') {
			value = value[:len(value)-1]
		}
		if !validValue(value) {
			return Refuse(http.StatusBadRequest, "control byte in the value of %.40q", name)
		}
		h.Fields = append(h.Fields, Field{Name: name, Value: value, Line: line, At: at, ValueAt: valueAt})
		switch {
		case EqualFold(name, "Host"):
			h.hosts++
			h.Host, h.hostAt = value, valueAt
		case EqualFold(name, "Content-Length"):
			if h.cls++; h.cls == 1 {
				h.cl = value
			} else if h.clErr == nil && !bytes.Equal(value, h.cl) {
				h.clErr = Refuse(http.StatusBadRequest, "Content-Length headers differ: %.20q and %.20q", h.cl, value)
			}
		case EqualFold(name, "Transfer-Encoding"):
			h.tes++
			h.HasTE = true
			h.te = value
		case EqualFold(name, "Expect"):
			h.Expect100 = EqualFold(value, "100-continue")
		case EqualFold(name, "Connection"):
			for rest := value; len(rest) > 0; {
				var tok []byte
				tok, rest, _ = bytes.Cut(rest, []byte(","))
				tok = bytes.Trim(tok, " \t")
				switch {
				case len(tok) == 0:
				case EqualFold(tok, "close"):
					h.Conn |= ConnClose
				case EqualFold(tok, "keep-alive"):
					h.Conn |= ConnKeepAlive
				case EqualFold(tok, "upgrade"):
					h.Conn |= ConnUpgrade
				default:
					h.ConnNames = append(h.ConnNames, tok)
				}
			}
		case EqualFold(name, "Upgrade"):
			h.Upgrade = value
		}
	}
	return Refuse(http.StatusBadRequest, "head without its blank line")
}

// validValue reports whether a field value holds no control byte but tab
// (RFC 9110 §5.5: obs-text and visible characters, space and tab). Eight
// bytes a step: a word with no byte below 0x20 and no DEL is passed whole
// (both tests exact for the word); one that has one is read byte by byte,
// as a tab does.
func validValue(v []byte) bool {
	const ones, high = 0x0101010101010101, 0x8080808080808080
	for len(v) >= 8 {
		w := binary.LittleEndian.Uint64(v)
		d := w ^ ones*0x7f // a zero byte where w has DEL
		if (w-ones*0x20)&^w&high|(d-ones)&^d&high != 0 && !validBytes(v[:8]) {
			return false
		}
		v = v[8:]
	}
	return validBytes(v)
}

// validBytes is validValue a byte at a time.
func validBytes(v []byte) bool {
	for _, c := range v {
		if c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// HostOf is Host as a substring of raw, a copy of Raw.
func (h *Head) HostOf(raw string) string { return raw[h.hostAt : h.hostAt+len(h.Host)] }

// Upgrading reports whether a request asks to switch protocols.
func (h *Head) Upgrading() bool { return h.Conn&ConnUpgrade != 0 && len(h.Upgrade) > 0 }

// HopByHop reports whether a field is removed by a proxy (RFC 9110
// §7.6.1): the connection options, the fields they name, and the
// HTTP/1.0-era Keep-Alive and Proxy-Connection. Transfer-Encoding and
// Trailer stay: the body's chunks pass as they came. Upgrade stays when the
// request upgrades.
func (h *Head) HopByHop(name []byte) bool {
	switch len(name) {
	case 2:
		return EqualFold(name, "TE")
	case 7:
		return EqualFold(name, "Upgrade") && !h.Upgrading()
	case 10:
		if EqualFold(name, "Connection") || EqualFold(name, "Keep-Alive") {
			return true
		}
	case 16:
		if EqualFold(name, "Proxy-Connection") {
			return true
		}
	}
	for _, n := range h.ConnNames {
		if bytes.EqualFold(name, n) {
			return true
		}
	}
	return false
}

// parseVersion parses "HTTP/1.x" and returns x.
func parseVersion(p []byte) (int, bool) {
	if len(p) != 8 || string(p[:7]) != "HTTP/1." || !isDigit(p[7]) {
		return 0, false
	}
	return int(p[7] - '0'), true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// HeadersInto copies a head's fields into record headers, in wire order:
// one string for the whole head, the names and values substrings of it; in
// into's array when it has room for them.
func (h *Head) HeadersInto(into capture.Headers) capture.Headers {
	if len(h.Fields) == 0 {
		return nil
	}
	return h.HeadersOf(string(h.Raw), into)
}

// HeadersOf is HeadersInto with the names and values substrings of raw, a
// copy of Raw the caller made (with other strings, in one allocation).
func (h *Head) HeadersOf(raw string, into capture.Headers) capture.Headers {
	fs := h.Fields
	if len(fs) == 0 {
		return nil
	}
	out := into[:0]
	if cap(out) < len(fs) {
		out = make(capture.Headers, 0, len(fs))
	}
	out = out[:len(fs)]
	for i, f := range fs {
		out[i] = capture.Header{Name: raw[f.At : f.At+len(f.Name)], Value: raw[f.ValueAt : f.ValueAt+len(f.Value)]}
	}
	return out
}
