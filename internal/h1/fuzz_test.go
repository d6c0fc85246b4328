package h1

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/http/httputil"
	"strings"
	"testing"

	"github.com/tapwire/tapwire/internal/capture"
)

// stricterThanNetHTTP lists, by the start of our reason, the requests the
// engine refuses and net/http's ReadRequest accepts, each with its RFC
// reason. Every other disagreement fails FuzzH1AgainstNetHTTP.
var stricterThanNetHTTP = []struct{ reason, why string }{
	// RFC 9112 §5.2: a server must reject or replace obs-fold; net/http
	// joins the lines, which a proxy must not do for an app that splits.
	{"folded header line", "obs-fold"},
	// RFC 9112 §5.1: a server MUST reject whitespace between a field name
	// and its colon; net/http strips it.
	{"whitespace between header name and colon", "field name"},
	// RFC 9110 §5.1: a field name is a token; net/http passes names with
	// spaces inside for old clients.
	{"invalid header name", "field name"},
	// RFC 9112 §3.2: HTTP/1.1 needs exactly one valid Host. net/http's
	// server checks it after ReadRequest; the oracle here is ReadRequest.
	{"missing Host field", "Host"},
	{"more than one Host field", "Host"},
	{"invalid Host", "Host"},
	// RFC 9112 §6.3: both framings are an error for a proxy (smuggling).
	{"both Content-Length and Transfer-Encoding", "CL.TE"},
	// RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 is faulty framing;
	// net/http ignores the field.
	{"Transfer-Encoding in an HTTP/1.0 request", "TE in 1.0"},
	// RFC 9110 §9.3.6: CONNECT is refused on the app's port (not here).
	// RFC 9112 §3.2.4: the asterisk form is only for OPTIONS.
	{"request target * is only for OPTIONS", "asterisk-form"},
	// RFC 9112 §2.2: a bare CR is an error or replaced; we refuse.
	{"bare CR", "bare CR"},
	{"control byte in the value", "CTL"},
	// RFC 9112 §3: the target has no control bytes or spaces.
	{"invalid byte in request target", "target"},
	{"invalid request target", "target"},
	{"malformed request line", "request line"},
}

// laxerThanNetHTTP: requests the engine passes that net/http refuses.
//   - A target with an invalid percent-escape or other bytes Go's URL
//     parser refuses: RFC 9112 §3.2 leaves the target's meaning to the
//     origin; the app sees the client's bytes and decides.
func laxerOK(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "invalid URL escape") || strings.Contains(msg, "invalid character") ||
		strings.Contains(msg, "invalid port") || strings.Contains(msg, "invalid userinfo") ||
		strings.Contains(msg, "missing protocol scheme") || strings.Contains(msg, "first path segment in URL cannot contain colon") ||
		strings.Contains(msg, "invalid IP-literal") || strings.Contains(msg, "invalid URI for request") ||
		strings.Contains(msg, "missing required Host header") // not ReadRequest's concern, but some versions say it
}

// FuzzH1AgainstNetHTTP feeds the same bytes to the engine's parser and to
// net/http's ReadRequest (and, for a chunked body, to httputil's chunked
// reader) and requires the same decision and the same message boundaries.
func FuzzH1AgainstNetHTTP(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /x?y=1 HTTP/1.0\r\n\r\n",
		"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
		"POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		"POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nX-T: 1\r\n\r\n",
		"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
		"POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n",
		"GET / HTTP/1.1\nHost: a\n\n",
		"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
		"GET / HTTP/2.0\r\nHost: a\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET http://a/b HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n",
		"POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n",
		"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello",
		"GET /%zz HTTP/1.1\r\nHost: a\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		end := HeadEnd(raw)
		if end < 0 || end > 8<<10 {
			return
		}
		var h Head
		ours := ParseRequest(raw[:end], &h)
		br := bufio.NewReader(bytes.NewReader(raw))
		req, theirs := http.ReadRequest(br)
		if theirs == nil && req.Method == http.MethodConnect {
			return // not served by the engine
		}
		switch {
		case ours != nil && theirs == nil:
			for _, s := range stricterThanNetHTTP {
				if strings.HasPrefix(ours.Reason, s.reason) {
					return
				}
			}
			if ours.Status == http.StatusNotImplemented || ours.Status == http.StatusHTTPVersionNotSupported {
				return // net/http's server refuses these after ReadRequest too
			}
			t.Fatalf("we refuse (%s), net/http accepts: %q", ours.Reason, raw)
		case ours == nil && theirs != nil:
			if laxerOK(theirs) {
				return
			}
			t.Fatalf("we accept, net/http refuses (%v): %q", theirs, raw)
		case ours != nil:
			return
		}
		// Both accept: the same request and the same framing.
		if req.Method != string(h.Method) || req.RequestURI != string(h.Target) || req.ProtoMinor != h.Minor && h.Minor <= 1 {
			t.Fatalf("request line: ours %q %q 1.%d, net/http %q %q %s", h.Method, h.Target, h.Minor, req.Method, req.RequestURI, req.Proto)
		}
		if h.Chunked != (len(req.TransferEncoding) > 0) {
			t.Fatalf("chunked: ours %v, net/http %v: %q", h.Chunked, req.TransferEncoding, raw)
		}
		if !h.Chunked && req.ContentLength != h.Length {
			t.Fatalf("length: ours %d, net/http %d: %q", h.Length, req.ContentLength, raw)
		}
		for i, rf := range h.Headers() {
			if rf.Name != string(h.Fields[i].Name) || rf.Value != string(h.Fields[i].Value) {
				t.Fatalf("record field %d = %q: %q, want %q: %q", i, rf.Name, rf.Value, h.Fields[i].Name, h.Fields[i].Value)
			}
		}
		for _, fl := range h.Fields {
			name := http.CanonicalHeaderKey(string(fl.Name))
			if name == "Host" || name == "Transfer-Encoding" {
				continue
			}
			if !contains(req.Header.Values(name), string(fl.Value)) {
				t.Fatalf("field %s: ours %q, net/http %q", name, fl.Value, req.Header.Values(name))
			}
		}
		if !h.Chunked {
			return
		}
		// The chunked body: the same content, the same end, the same
		// decision.
		rest := raw[end:]
		var s BodyScan
		s.Start(&h, 8<<10, true)
		var got BodyCap
		got.Limit = 1 << 20
		_, serr := s.Scan(rest, &got)
		want, werr := io.ReadAll(httputil.NewChunkedReader(bytes.NewReader(rest)))
		if serr == nil && !s.Done {
			return // ours waits for more bytes; net/http's reader hit EOF
		}
		if (serr != nil) != (werr != nil) {
			// RFC 9112 §7.1.1: a chunk extension is tokens or quoted
			// strings; net/http skips whatever follows the ";".
			if serr != nil && strings.HasPrefix(serr.Reason, "control byte in chunk extension") {
				return
			}
			if serr != nil && strings.HasPrefix(serr.Reason, "trailer") {
				return // httputil's chunked reader leaves the trailers to its caller
			}
			if werr != nil && strings.Contains(werr.Error(), "trailer") {
				return
			}
			t.Fatalf("chunked body: ours %v, net/http %v: %q", serr, werr, rest)
		}
		if serr != nil {
			return
		}
		if !bytes.Equal(got.Buf, want) {
			t.Fatalf("chunked content: ours %q, net/http %q", got.Buf, want)
		}
	})
}

func contains(vs []string, v string) bool {
	for _, x := range vs {
		if x == v {
			return true
		}
	}
	return false
}

// FuzzH1ResponseAgainstNetHTTP does the same for response heads: the
// status, and where the body ends (a length, chunked, or at close).
func FuzzH1ResponseAgainstNetHTTP(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
		"HTTP/1.0 200 OK\r\n\r\nuntil close",
		"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
		"HTTP/1.1 304 Not Modified\r\n\r\n",
		"HTTP/1.1 200\r\nContent-Length: 1\r\n\r\nx",
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxx",
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	} {
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, raw []byte, head bool) {
		end := HeadEnd(raw)
		if end < 0 || end > 8<<10 {
			return
		}
		var h Head
		ours := ParseResponse(raw[:end], &h, head)
		method := http.MethodGet
		if head {
			method = http.MethodHead
		}
		res, theirs := http.ReadResponse(bufio.NewReader(bytes.NewReader(raw)), &http.Request{Method: method})
		switch {
		case ours != nil && theirs == nil:
			// Stricter than net/http, each for its RFC reason (as for
			// requests): obs-fold, field names, bare CR, control bytes,
			// a status code below 100 or a malformed status line.
			for _, s := range append(stricterThanNetHTTP, struct{ reason, why string }{"malformed status", "status line"}) {
				if strings.HasPrefix(ours.Reason, s.reason) {
					return
				}
			}
			t.Fatalf("we refuse (%s), net/http accepts: %q", ours.Reason, raw)
		case ours == nil && theirs != nil:
			// RFC 9112 §6.3 item 4: a response whose last transfer coding
			// is not chunked ends when the app closes; net/http's client
			// refuses codings it does not know, a proxy passes them.
			if h.BadTE && strings.Contains(theirs.Error(), "unsupported transfer encoding") {
				return
			}
			t.Fatalf("we accept, net/http refuses (%v): %q", theirs, raw)
		case ours != nil:
			return
		}
		if res.StatusCode != h.Status {
			t.Fatalf("status: ours %d, net/http %d", h.Status, res.StatusCode)
		}
		if h.Status < 200 || head || h.Status == 204 || h.Status == 304 {
			// 1xx, and answers without a body (RFC 9112 §6.3 item 1):
			// net/http reports the advertised length, reads nothing.
			if h.Length != 0 || h.Chunked {
				t.Fatalf("ours expects a body after %d (HEAD %v)", h.Status, head)
			}
			return
		}
		switch {
		case h.Chunked:
			if len(res.TransferEncoding) == 0 {
				t.Fatalf("ours chunked, net/http %v (length %d): %q", res.TransferEncoding, res.ContentLength, raw)
			}
		case h.Length >= 0:
			if res.ContentLength != h.Length && !(h.Length == 0 && res.ContentLength == -1) {
				t.Fatalf("length: ours %d, net/http %d: %q", h.Length, res.ContentLength, raw)
			}
		default:
			if res.ContentLength != -1 || len(res.TransferEncoding) > 0 && res.TransferEncoding[0] == "chunked" {
				t.Fatalf("ours until close, net/http length %d %v: %q", res.ContentLength, res.TransferEncoding, raw)
			}
		}
	})
}

// FuzzBodyScanPieces: a body's framing is followed the same whether its
// bytes come at once or in pieces cut anywhere (a chunk-size line, a CRLF
// or a trailer split across reads): the same bytes belong to the body, the
// same content comes out, the same error or none.
func FuzzBodyScanPieces(f *testing.F) {
	for _, s := range []string{
		"5\r\nhello\r\n0\r\n\r\nGET / HTTP/1.1\r\n",
		"3;ext=1\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nX-T: 1\r\n\r\n",
		"5\r\nhelloX\r\n",
		"-1\r\n",
		"5\r\nhel",
	} {
		f.Add([]byte(s), []byte{1, 2, 3}, true)
		f.Add([]byte(s), []byte{7}, false)
	}
	f.Fuzz(func(t *testing.T, body, cuts []byte, chunked bool) {
		h := Head{Chunked: chunked, Length: -1}
		if !chunked {
			h.Length = int64(len(body) / 2)
		}
		var whole BodyScan
		whole.Start(&h, 256, true)
		var wantCap BodyCap
		wantCap.Limit = 1 << 20
		wantN, wantErr := whole.Scan(body, &wantCap)

		var s BodyScan
		s.Start(&h, 256, true)
		var got BodyCap
		got.Limit = 1 << 20
		n, off := 0, 0
		var err *FramingError
		for i := 0; off < len(body) && err == nil && !s.Done; i++ {
			size := len(body) - off
			if len(cuts) > 0 {
				size = min(size, int(cuts[i%len(cuts)])%16+1)
			}
			var k int
			k, err = s.Scan(body[off:off+size], &got)
			n += k
			if k < size && err == nil && !s.Done {
				t.Fatalf("piece %d: %d of %d bytes taken without an end or an error", i, k, size)
			}
			off += size
		}
		if (err == nil) != (wantErr == nil) || s.Done != whole.Done {
			t.Fatalf("in pieces: err %v done %v; at once: err %v done %v (%q)", err, s.Done, wantErr, whole.Done, body)
		}
		if err == nil && n != wantN {
			t.Fatalf("in pieces %d bytes belong to the body, at once %d (%q)", n, wantN, body)
		}
		if err == nil && !bytes.Equal(got.Buf, wantCap.Buf) {
			t.Fatalf("content in pieces %q, at once %q", got.Buf, wantCap.Buf)
		}
	})
}

// Headers is HeadersInto a new list (the tests' form).
func (h *Head) Headers() capture.Headers { return h.HeadersInto(nil) }
