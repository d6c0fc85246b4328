package har

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/tapwire/tapwire/internal/capture"
)

// Errors of Read.
var (
	ErrNotHAR   = errors.New("not a HAR document: want a JSON object with a log")
	ErrVersion  = errors.New("unsupported HAR version")
	ErrBadEntry = errors.New("bad HAR entry")
)

// EntryError says which entry Read could not turn into a record, and
// where it starts in the input.
type EntryError struct {
	Index int // 0-based, in log.entries
	Line  int // 1-based line of the input where the entry starts
	Err   error
}

func (e *EntryError) Error() string {
	return fmt.Sprintf("line %d: entry %d: %s", e.Line, e.Index, e.Err.Error())
}

func (e *EntryError) Unwrap() error { return e.Err }

// foreignNS makes the ids of entries that carry none (HAR files of
// browsers and other tools) Tapwire's name-based UUIDs.
var foreignNS = uuid.MustParse("3d0f4c55-8a4e-4b8e-9f1a-6a2b7c1d9e20")

// Read reads a HAR document from r and calls fn with the record of each
// entry, in order, holding one entry in memory at a time. An error names
// the line where the bad entry starts (an *EntryError); an error from fn
// stops the read and comes back wrapped in one.
//
// Entries Tapwire wrote (they have _id) become the records they were
// written from. Entries of other tools become outbound HTTP records whose
// id is a name-based UUID of the entry's bytes and position, so that
// reading the same file twice gives the same ids; see RecordOf. Their
// entries whose URL is not http(s) or ws(s) (a browser's data: and blob:
// URLs, its extensions' resources) are skipped: nothing went over a
// network.
func Read(r io.Reader, fn func(*capture.Record) error) error {
	lc := &lineCounter{r: r}
	dec := json.NewDecoder(lc)
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return ErrNotHAR
	}
	sawLog := false
	for dec.More() {
		key, err := dec.Token()
		if err != nil {
			return fmt.Errorf("line %d: %w", lc.lineAt(dec.InputOffset()), eof(err))
		}
		if key != "log" {
			if err := skip(dec); err != nil {
				return fmt.Errorf("line %d: %w", lc.lineAt(dec.InputOffset()), eof(err))
			}
			continue
		}
		sawLog = true
		if err := readLog(dec, lc, fn); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil {
		return fmt.Errorf("line %d: %w", lc.lineAt(dec.InputOffset()), eof(err))
	}
	if !sawLog {
		return ErrNotHAR
	}
	return nil
}

// errEnd replaces the decoder's EOF in the middle of a document.
var errEnd = errors.New("the document ends early")

func eof(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return errEnd
	}
	return err
}

func skip(dec *json.Decoder) error {
	var v json.RawMessage
	return dec.Decode(&v)
}

func readLog(dec *json.Decoder, lc *lineCounter, fn func(*capture.Record) error) error {
	at := func(err error) error { return fmt.Errorf("line %d: %w", lc.lineAt(dec.InputOffset()), eof(err)) }
	if tok, err := dec.Token(); err != nil {
		return at(err)
	} else if tok != json.Delim('{') {
		return at(fmt.Errorf("%w: log is not an object", ErrNotHAR))
	}
	for dec.More() {
		key, err := dec.Token()
		if err != nil {
			return at(err)
		}
		switch key {
		case "version":
			var v string
			if err := dec.Decode(&v); err != nil {
				return at(fmt.Errorf("log.version: %w", err))
			}
			if v != "" && !strings.HasPrefix(v, "1.") {
				return at(fmt.Errorf("%w %q: want 1.2 (or 1.1)", ErrVersion, v))
			}
		case "entries":
			if tok, err := dec.Token(); err != nil {
				return at(err)
			} else if tok == nil {
				continue // null: no entries
			} else if tok != json.Delim('[') {
				return at(fmt.Errorf("%w: log.entries is not an array", ErrNotHAR))
			}
			for i := 0; dec.More(); i++ {
				var raw json.RawMessage
				if err := dec.Decode(&raw); err != nil {
					return at(fmt.Errorf("entry %d: %w", i, err))
				}
				line := lc.lineAt(dec.InputOffset() - int64(len(raw)))
				var e Entry
				if err := json.Unmarshal(raw, &e); err != nil {
					return &EntryError{i, line, fmt.Errorf("%w: %w", ErrBadEntry, err)}
				}
				if e.ID == "" && notWeb(e.Request.URL) {
					continue // a browser's data:, blob: or extension entry: no exchange on the wire
				}
				rec, err := recordOf(&e, foreignID(raw, i))
				if err != nil {
					return &EntryError{i, line, fmt.Errorf("%w: %w", ErrBadEntry, err)}
				}
				if err := fn(rec); err != nil {
					return &EntryError{i, line, err}
				}
			}
			if _, err := dec.Token(); err != nil {
				return at(err)
			}
		default:
			if err := skip(dec); err != nil {
				return at(err)
			}
		}
	}
	_, err := dec.Token()
	if err != nil {
		return at(err)
	}
	return nil
}

func foreignID(raw []byte, index int) string {
	b := make([]byte, 0, len(raw)+12)
	b = strconv.AppendInt(b, int64(index), 10)
	b = append(b, '\n')
	b = append(b, raw...)
	return uuid.NewSHA1(foreignNS, b).String()
}

// notWeb reports whether u is a URL of a scheme other than http, https,
// ws and wss (data:, blob:, chrome-extension:...).
func notWeb(u string) bool {
	p, err := url.Parse(u)
	if err != nil || p.Scheme == "" {
		return false // not a URL at all: recordOf says so
	}
	switch strings.ToLower(p.Scheme) {
	case "http", "https", "ws", "wss":
		return false
	}
	return true
}

// RecordOf converts an entry to a record. An entry Tapwire wrote (_id set)
// gives back the record it was written from. Another tool's entry gives an
// outbound HTTP record with a name-based id of its JSON; its HTTP versions
// are normalised (h2 is HTTP/2.0), HTTP/2 pseudo-header fields are dropped
// (:authority gives the host), and a response body that the tool decoded
// (HAR's content.text is the body after Content-Encoding is undone) loses
// its Content-Encoding and Content-Length fields, which go to the tag
// har.contentEncoding, so that the record is consistent.
func RecordOf(e *Entry) (*capture.Record, error) {
	raw, err := json.Marshal(e)
	if err != nil {
		return nil, err
	}
	return recordOf(e, foreignID(raw, 0))
}

func recordOf(e *Entry, foreignID string) (*capture.Record, error) {
	ours := e.ID != ""
	r := &capture.Record{
		Schema: capture.SchemaVersion, ID: e.ID, Kind: capture.KindHTTP, Direction: capture.Direction(e.Direction),
		Error: e.Error, Tags: e.Tags, Redactions: e.Redactions, Vendor: e.Vendor,
	}
	if !ours {
		r.ID = foreignID
		if r.Direction == "" {
			r.Direction = capture.DirOut // a browser's or a client's calls
		}
	}
	if e.Labels != nil {
		r.Labels = *e.Labels
	}
	start, err := time.Parse(time.RFC3339Nano, e.StartedDateTime)
	if err != nil {
		return nil, fmt.Errorf("startedDateTime %q: want an ISO 8601 date and time", e.StartedDateTime)
	}
	r.Start = start.UTC()
	r.DurMicros = micros(e.Time)
	t := e.Timings
	r.TTFBMicros = micros(pos(t.Blocked) + pos(t.DNS) + pos(t.Connect) + pos(t.Send) + pos(t.Wait))

	q := &e.Request
	if q.Method == "" {
		return nil, errors.New("request.method is empty")
	}
	u, err := url.Parse(q.URL)
	if err != nil || !u.IsAbs() || u.Host == "" {
		return nil, fmt.Errorf("request.url %q: want an absolute URL", q.URL)
	}
	h := &capture.HTTP{Req: capture.Request{Method: q.Method, URL: q.URL, Proto: q.HTTPVersion, Host: q.Host, Headers: headers(q.Headers, ours)}}
	if h.Req.Host == "" {
		h.Req.Host = u.Host
		if !ours {
			if v := nvGet(q.Headers, "Host"); v != "" {
				h.Req.Host = v
			} else if v := nvGet(q.Headers, ":authority"); v != "" {
				h.Req.Host = v
			}
		}
	}
	if h.Req.Body, err = requestBody(q, ours); err != nil {
		return nil, err
	}
	if e.Net != nil {
		r.Net = *e.Net
	} else {
		r.Net.ConnID = e.Connection
		if ip := strings.Trim(e.ServerIPAddress, "[]"); ip != "" {
			port := u.Port()
			if port == "" {
				port = map[bool]string{true: "443", false: "80"}[u.Scheme == "https" || u.Scheme == "wss"]
			}
			r.Net.ServerAddr = net.JoinHostPort(ip, port)
		}
	}

	s := &e.Response
	switch {
	case s.Status == 0:
		// A failed exchange: no response.
	case s.Status < 100 || s.Status > 999:
		return nil, fmt.Errorf("response.status %d: want 100 to 999, or 0 for no response", s.Status)
	default:
		res := &capture.Response{Status: s.Status, StatusText: s.StatusText, Proto: s.HTTPVersion,
			Headers: headers(s.Headers, ours), Trailers: headers(s.Trailers, true)}
		if res.Body, err = contentBody(&s.Content, s.BodySize, ours); err != nil {
			return nil, err
		}
		if !ours {
			if ce := res.Headers.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") && len(res.Body.Data) > 0 {
				res.Headers = without(res.Headers, "Content-Encoding", "Content-Length")
				if r.Tags == nil {
					r.Tags = capture.Tags{}
				}
				r.Tags["har.contentEncoding"] = ce
			}
		}
		h.Res = res
	}
	if !ours {
		h.Req.Proto = normProto(h.Req.Proto)
		if h.Res != nil {
			h.Res.Proto = normProto(h.Res.Proto)
		}
	}
	h.Messages, h.MessagesTruncated, h.GRPC = e.Messages, e.MessagesTruncated, e.GRPC
	r.HTTP = h
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return r, nil
}

// micros converts HAR's milliseconds to whole µs: 0 for negative values
// (HAR's -1, not known), capped for absurd ones.
func micros(ms float64) int64 {
	us := math.Round(ms * 1000)
	switch {
	case !(us > 0): // negative, zero, NaN
		return 0
	case us > 1<<53:
		return 1 << 53
	}
	return int64(us)
}

func pos(ms float64) float64 { return max(ms, 0) }

func headers(nv []NV, ours bool) capture.Headers {
	var h capture.Headers
	for _, f := range nv {
		if !ours && strings.HasPrefix(f.Name, ":") {
			continue
		}
		h = append(h, capture.Header{Name: f.Name, Value: f.Value})
	}
	return h
}

func nvGet(nv []NV, name string) string {
	for _, f := range nv {
		if strings.EqualFold(f.Name, name) {
			return f.Value
		}
	}
	return ""
}

func without(h capture.Headers, names ...string) capture.Headers {
	var out capture.Headers
next:
	for _, f := range h {
		for _, n := range names {
			if strings.EqualFold(f.Name, n) {
				continue next
			}
		}
		out = append(out, f)
	}
	return out
}

// normProto writes the HTTP versions of other tools (h2, http/1.1) as
// records do.
func normProto(p string) string {
	switch strings.ToLower(p) {
	case "h2", "http/2", "http/2.0":
		return "HTTP/2.0"
	case "h3", "http/3", "http/3.0":
		return "HTTP/3.0"
	case "http/1.1":
		return "HTTP/1.1"
	case "http/1.0":
		return "HTTP/1.0"
	}
	return p
}

func decodeText(text, encoding, where string) ([]byte, error) {
	switch strings.ToLower(encoding) {
	case "":
		if text == "" {
			return nil, nil
		}
		return []byte(text), nil
	case "base64":
		b, err := base64.StdEncoding.DecodeString(text)
		if err != nil {
			return nil, fmt.Errorf("%s: bad base64: %w", where, err)
		}
		if len(b) == 0 {
			return nil, nil
		}
		return b, nil
	}
	return nil, fmt.Errorf("%s: encoding %q: want base64 or none", where, encoding)
}

func requestBody(q *Request, ours bool) (capture.Body, error) {
	p := q.PostData
	if p == nil {
		size := max(q.BodySize, 0)
		return capture.Body{Size: size, Truncated: !ours && size > 0}, nil
	}
	enc := p.Encoding
	if enc == "" {
		enc = p.StdEncoding
	}
	data, err := decodeText(p.Text, enc, "request.postData")
	if err != nil {
		return capture.Body{}, err
	}
	if data == nil && len(p.Params) > 0 {
		v := url.Values{}
		var b strings.Builder
		for i, pa := range p.Params {
			if i > 0 {
				b.WriteByte('&')
			}
			v.Set(pa.Name, pa.Value)
			b.WriteString(v.Encode())
			v.Del(pa.Name)
		}
		data = []byte(b.String())
	}
	if ours {
		return capture.Body{Data: data, Size: q.BodySize, Truncated: p.Truncated}, nil
	}
	size := max(q.BodySize, int64(len(data)))
	return capture.Body{Data: data, Size: size, Truncated: size > int64(len(data))}, nil
}

func contentBody(c *Content, bodySize int64, ours bool) (capture.Body, error) {
	data, err := decodeText(c.Text, c.Encoding, "response.content")
	if err != nil {
		return capture.Body{}, err
	}
	if ours {
		return capture.Body{Data: data, Size: bodySize, Truncated: c.Truncated}, nil
	}
	size := max(c.Size, int64(len(data)))
	return capture.Body{Data: data, Size: size, Truncated: size > int64(len(data))}, nil
}

// lineCounter counts the lines of what a json.Decoder reads, so that an
// offset the decoder reports can be given as a line. Offsets must be asked
// in increasing order; it keeps only the newlines not yet asked past.
type lineCounter struct {
	r       io.Reader
	off     int64   // bytes read
	pending []int64 // offsets of newlines read, not yet counted
	line    int     // newlines before the last offset asked
}

func (l *lineCounter) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	for i, c := range p[:n] {
		if c == '\n' {
			l.pending = append(l.pending, l.off+int64(i))
		}
	}
	l.off += int64(n)
	return n, err
}

// lineAt returns the 1-based line of offset off.
func (l *lineCounter) lineAt(off int64) int {
	i := 0
	for i < len(l.pending) && l.pending[i] < off {
		i++
	}
	l.line += i
	l.pending = l.pending[i:]
	return l.line + 1
}
