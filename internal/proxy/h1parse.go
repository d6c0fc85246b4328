package proxy

import (
	"bytes"
	"net/http"

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

// h1Field is one field line of a head: slices of the head's bytes.
type h1Field struct {
	name, value []byte
	line        []byte // the whole line without its line end
	at, valueAt int    // where name and value start in the head
}

// connection options found in a head's Connection fields.
const (
	connClose = 1 << iota
	connKeepAlive
	connUpgrade
)

// h1Head is a parsed request or response head.
type h1Head struct {
	raw    []byte // the whole head, through the blank line
	fields []h1Field

	// request line
	method, target []byte
	// status line
	status int
	reason []byte

	minor int // HTTP/1.minor

	length    int64 // body length; -1 when not framed by Content-Length
	chunked   bool
	expect100 bool
	conn      int      // connClose | connKeepAlive | connUpgrade
	connNames [][]byte // other field names listed in Connection: removed as hop-by-hop
	upgrade   []byte   // the Upgrade field's value
	host      []byte
	hasTE     bool // a Transfer-Encoding field (of a response: not chunked last means read until close)
	badTE     bool // a response Transfer-Encoding whose last coding is not chunked

	// what parseFields saw of the framing fields, for parseRequest and
	// parseResponse to judge
	hosts int
	tes   int    // Transfer-Encoding fields
	te    []byte // the last one's value
	cls   int    // Content-Length fields
	cl    []byte // the first one's value
	clErr *framingError
}

// reset empties h for the next message, keeping its field slice.
func (h *h1Head) reset() {
	f := h.fields[:0]
	n := h.connNames[:0]
	*h = h1Head{fields: f, connNames: n, length: -1}
}

// keepAlive reports whether the sender of h wants the connection kept
// open after this message (RFC 9112 §9.3).
func (h *h1Head) keepAlive() bool {
	if h.conn&connClose != 0 {
		return false
	}
	return h.minor >= 1 || h.conn&connKeepAlive != 0
}

// parseRequest parses a whole request head (as h1HeadEnd delimits it)
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
func parseRequest(b []byte, h *h1Head) *framingError {
	h.reset()
	h.raw = b
	line, rest := cutLine(b)
	if bytes.IndexByte(line, '\r') >= 0 {
		return refuse(http.StatusBadRequest, "bare CR in the request line")
	}
	sp1 := bytes.IndexByte(line, ' ')
	sp2 := bytes.LastIndexByte(line, ' ')
	if sp1 <= 0 || sp2 == sp1 {
		return refuse(http.StatusBadRequest, "malformed request line %.60q", line)
	}
	h.method, h.target = line[:sp1], line[sp1+1:sp2]
	proto := line[sp2+1:]
	for _, c := range h.method {
		if !httpguts.IsTokenRune(rune(c)) {
			return refuse(http.StatusBadRequest, "invalid method %.20q", h.method)
		}
	}
	minor, ok := parseVersion(proto)
	if !ok {
		if len(proto) == 8 && string(proto[:5]) == "HTTP/" && proto[6] == '.' && proto[5] != '1' && isDigit(proto[5]) && isDigit(proto[7]) {
			return refuse(http.StatusHTTPVersionNotSupported, "HTTP version %q is not supported", proto)
		}
		return refuse(http.StatusBadRequest, "malformed request line %.60q", line)
	}
	h.minor = minor
	if len(h.target) == 0 {
		return refuse(http.StatusBadRequest, "empty request target")
	}
	for _, c := range h.target {
		if c <= ' ' || c == 0x7f {
			return refuse(http.StatusBadRequest, "invalid byte in request target %.60q", h.target)
		}
	}
	switch {
	case string(h.method) == http.MethodConnect:
		// authority-form: CONNECT is for the outbound proxy.
	case h.target[0] == '/':
	case string(h.target) == "*":
		if string(h.method) != http.MethodOptions {
			return refuse(http.StatusBadRequest, "request target * is only for OPTIONS")
		}
	case bytes.Contains(h.target, []byte("://")):
		// absolute-form (RFC 9112 §3.2.2): a server must accept it.
	default:
		return refuse(http.StatusBadRequest, "invalid request target %.60q", h.target)
	}
	if err := h.parseFields(rest); err != nil {
		return err
	}
	hosts := h.hosts
	h.chunked = h.tes == 1 && asciiEqualFold(h.te, "chunked")
	if hosts > 1 {
		return refuse(http.StatusBadRequest, "more than one Host field")
	}
	if hosts == 0 && h.minor >= 1 {
		return refuse(http.StatusBadRequest, "missing Host field")
	}
	if hosts == 1 && !httpguts.ValidHostHeader(string(h.host)) {
		return refuse(http.StatusBadRequest, "invalid Host %.60q", h.host)
	}
	if h.hasTE {
		if h.cls > 0 {
			return refuse(http.StatusBadRequest, "both Content-Length and Transfer-Encoding")
		}
		if h.minor == 0 {
			return refuse(http.StatusBadRequest, "Transfer-Encoding in an HTTP/1.0 request")
		}
		if !h.chunked {
			return refuse(http.StatusNotImplemented, "transfer coding %.40q is not supported (only chunked)", h.te)
		}
		return nil
	}
	n, ferr := h.contentLength()
	if ferr != nil {
		return ferr
	}
	h.length = n
	if n < 0 {
		h.length = 0 // a request without framing has no body (RFC 9112 §6.3 item 7)
	}
	return nil
}

// contentLength judges the message's Content-Length fields: all the same
// plain decimal number. It returns -1 when there is none.
func (h *h1Head) contentLength() (int64, *framingError) {
	if h.cls == 0 {
		return -1, nil
	}
	if h.clErr != nil {
		return 0, h.clErr
	}
	n, ok := parseDecimal(h.cl)
	if !ok {
		return 0, refuse(http.StatusBadRequest, "invalid Content-Length %.20q", h.cl)
	}
	return n, nil
}

// parseResponse parses a whole response head into h. reqMethod is the
// method of the request it answers: the framing of a response to HEAD
// (and of 1xx, 204 and 304) is no body whatever its fields say.
func parseResponse(b []byte, h *h1Head, head bool) *framingError {
	h.reset()
	h.raw = b
	line, rest := cutLine(b)
	if bytes.IndexByte(line, '\r') >= 0 {
		return refuse(http.StatusBadGateway, "bare CR in the status line")
	}
	if len(line) < 12 || line[8] != ' ' {
		return refuse(http.StatusBadGateway, "malformed status line %.60q", line)
	}
	minor, ok := parseVersion(line[:8])
	if !ok {
		return refuse(http.StatusBadGateway, "malformed status line %.60q", line)
	}
	h.minor = minor
	code := line[9:12]
	if !isDigit(code[0]) || !isDigit(code[1]) || !isDigit(code[2]) || code[0] == '0' {
		return refuse(http.StatusBadGateway, "malformed status code %.60q", line)
	}
	h.status = int(code[0]-'0')*100 + int(code[1]-'0')*10 + int(code[2]-'0')
	switch {
	case len(line) == 12:
	case line[12] == ' ':
		h.reason = line[13:]
	default:
		return refuse(http.StatusBadGateway, "malformed status line %.60q", line)
	}
	if err := h.parseFields(rest); err != nil {
		err.status = http.StatusBadGateway
		return err
	}
	if h.hasTE {
		last := h.te
		if i := bytes.LastIndexByte(last, ','); i >= 0 {
			last = bytes.Trim(last[i+1:], " \t")
		}
		h.chunked = asciiEqualFold(last, "chunked")
		h.badTE = !h.chunked
	}
	// A malformed Content-Length is refused even beside a
	// Transfer-Encoding that would override it: the message is broken
	// either way, and net/http's client refuses it too.
	n, ferr := h.contentLength()
	if ferr != nil {
		ferr.status = http.StatusBadGateway
		return ferr
	}
	if head || h.status < 200 || h.status == http.StatusNoContent || h.status == http.StatusNotModified {
		h.chunked, h.length = false, 0
		return nil
	}
	if h.hasTE {
		// Transfer-Encoding overrides Content-Length (RFC 9112 §6.3
		// item 3); the connection is closed after such a response.
		if h.cls > 0 {
			h.conn |= connClose
		}
		if h.badTE {
			h.chunked = false // read until the app closes
		}
		return nil
	}
	h.length = n
	return nil
}

// parseFields parses the field lines after the start line.
func (h *h1Head) parseFields(rest []byte) *framingError {
	for len(rest) > 0 {
		at := len(h.raw) - len(rest)
		var line []byte
		line, rest = cutLine(rest)
		if len(line) == 0 {
			if len(rest) != 0 {
				return refuse(http.StatusBadRequest, "bytes after the end of the head")
			}
			return nil
		}
		if line[0] == ' ' || line[0] == '\t' {
			return refuse(http.StatusBadRequest, "folded header line (obs-fold) %.40q", line)
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return refuse(http.StatusBadRequest, "header line without a name and colon: %.40q", line)
		}
		name := line[:colon]
		if c := name[len(name)-1]; c == ' ' || c == '\t' {
			return refuse(http.StatusBadRequest, "whitespace between header name and colon in %.40q", line)
		}
		for _, c := range name {
			if !httpguts.IsTokenRune(rune(c)) {
				return refuse(http.StatusBadRequest, "invalid header name %.40q", name)
			}
		}
		value := bytes.TrimLeft(line[colon+1:], " \t")
		valueAt := at + len(line) - len(value)
		value = bytes.TrimRight(value, " \t")
		for _, c := range value {
			if c < ' ' && c != '\t' || c == 0x7f {
				return refuse(http.StatusBadRequest, "control byte in the value of %.40q", name)
			}
		}
		h.fields = append(h.fields, h1Field{name: name, value: value, line: line, at: at, valueAt: valueAt})
		switch {
		case asciiEqualFold(name, "Host"):
			h.hosts++
			h.host = value
		case asciiEqualFold(name, "Content-Length"):
			if h.cls++; h.cls == 1 {
				h.cl = value
			} else if h.clErr == nil && !bytes.Equal(value, h.cl) {
				h.clErr = refuse(http.StatusBadRequest, "Content-Length headers differ: %.20q and %.20q", h.cl, value)
			}
		case asciiEqualFold(name, "Transfer-Encoding"):
			h.tes++
			h.hasTE = true
			h.te = value
		case asciiEqualFold(name, "Expect"):
			h.expect100 = asciiEqualFold(value, "100-continue")
		case asciiEqualFold(name, "Connection"):
			for rest := value; len(rest) > 0; {
				var tok []byte
				tok, rest, _ = bytes.Cut(rest, []byte(","))
				tok = bytes.Trim(tok, " \t")
				switch {
				case len(tok) == 0:
				case asciiEqualFold(tok, "close"):
					h.conn |= connClose
				case asciiEqualFold(tok, "keep-alive"):
					h.conn |= connKeepAlive
				case asciiEqualFold(tok, "upgrade"):
					h.conn |= connUpgrade
				default:
					h.connNames = append(h.connNames, tok)
				}
			}
		case asciiEqualFold(name, "Upgrade"):
			h.upgrade = value
		}
	}
	return refuse(http.StatusBadRequest, "head without its blank line")
}

// upgrading reports whether a request asks to switch protocols.
func (h *h1Head) upgrading() bool { return h.conn&connUpgrade != 0 && len(h.upgrade) > 0 }

// hopByHop reports whether a field is removed by a proxy (RFC 9110
// §7.6.1): the connection options, the fields they name, and the
// HTTP/1.0-era Keep-Alive and Proxy-Connection. Transfer-Encoding and
// Trailer stay: the body's chunks pass as they came. Upgrade stays when the
// request upgrades.
func (h *h1Head) hopByHop(name []byte) bool {
	switch len(name) {
	case 2:
		return asciiEqualFold(name, "TE")
	case 7:
		return asciiEqualFold(name, "Upgrade") && !h.upgrading()
	case 10:
		if asciiEqualFold(name, "Connection") || asciiEqualFold(name, "Keep-Alive") {
			return true
		}
	case 16:
		if asciiEqualFold(name, "Proxy-Connection") {
			return true
		}
	}
	for _, n := range h.connNames {
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
