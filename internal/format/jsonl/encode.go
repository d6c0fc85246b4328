package jsonl

// appendRecord is the encoder of goproxy's hot path: a record's JSON line
// written by hand for the types of internal/capture, without reflection,
// with bodies in base64 by segmentio/asm's vectorised encoder.
//
// Why by hand: under callgrind, shipping a record of a 1 KiB exchange cost
// goproxy about 66,000 instructions, of which 16,500 were encoding/base64
// (which go-json calls for every []byte) and about 10,000 go-json's
// reflection-driven machine and its re-compaction of Header.MarshalJSON's
// output (bench/RESULTS.md, issue 11). The output is the same JSON as
// go-json's (same field order, same omitempty rules, the same bytes for
// printable ASCII strings), which TestAppendRecordMatchesGoJSON checks on
// records whose every field is set by reflection, so that a field added
// to capture.Record and forgotten here fails it; FuzzAppendRecord checks
// strings of any bytes. Parts that are rare on the hot path (a vendor
// record's facts, a protobuf message's decoded fields) are handed to
// go-json.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	gojson "github.com/goccy/go-json"

	"github.com/tapwire/tapwire/internal/capture"
)

// Encoder writes records as JSON lines, the same bytes as Append, and
// remembers how it wrote the last record's labels and network facts and
// its tags: a sidecar's records repeat them (one process's labels and
// tags, one connection's addresses), and a repeat is compared, which
// costs a few instructions a string when the strings are the same ones,
// rather than written again (about 2,000 instructions a record of
// goproxy's, most of them the tags: a map to range over and sort). What
// is compared is the values, never only their addresses: a map changed in
// place between two records is written anew. The zero Encoder is ready to
// use; it is not safe for concurrent use.
type Encoder struct {
	net     netKey // the last record's, when netJSON holds its block
	netJSON []byte // `,"labels":{...},"net":{...}`; nil before the first

	tags     [][2]string // the last record's tags, sorted by key
	tagsJSON []byte      // `,"tags":{...}`

	minute     int64    // the Unix minute of minuteText, when minuteOK
	minuteOK   bool     // (a batch's records start within a minute or two)
	minuteText [17]byte // "2006-01-02T15:04:" of the last start written
}

// netKey is what a record's labels and net block are written from, its
// TLS facts copied by value.
type netKey struct {
	labels        capture.Labels
	net           capture.Net // TLS nil
	tls, up       capture.TLS // *TLS and its Upstream, Upstream nil
	hasTLS, hasUp bool
}

// makeNetKey returns r's netKey; ok is false when its TLS facts nest more
// deeply than a session and its upstream (not remembered).
func makeNetKey(r *capture.Record) (k netKey, ok bool) {
	k.labels, k.net = r.Labels, r.Net
	k.net.TLS = nil
	if t := r.Net.TLS; t != nil {
		k.hasTLS, k.tls = true, *t
		k.tls.Upstream = nil
		if u := t.Upstream; u != nil {
			if u.Upstream != nil {
				return k, false
			}
			k.hasUp, k.up = true, *u
		}
	}
	return k, true
}

// Append writes r's line to buf, as Append does.
func (e *Encoder) Append(buf *bytes.Buffer, r *capture.Record) error {
	b, err := e.appendRecord(buf.AvailableBuffer(), r)
	if err != nil {
		return fmt.Errorf("encode record (%s): %w", r.ID, err)
	}
	buf.Write(b)
	return nil
}

// appendRecord appends r's JSON form and a newline to b, from what e
// remembers when r repeats it (a nil e remembers nothing).
func (e *Encoder) appendRecord(b []byte, r *capture.Record) ([]byte, error) {
	if r.Vendor != nil {
		if t, _ := capture.WireTime(r.Start); t != r.Start {
			// A zone RFC 3339 cannot write: the encoder would drop the
			// offset's seconds and move the instant; as appendTime, UTC.
			rc := *r
			rc.Start = t
			r = &rc
		}
		out, err := gojson.MarshalNoEscape(r)
		if err != nil {
			return b, err
		}
		return append(append(b, out...), '\n'), nil
	}
	b = append(b, `{"schema":`...)
	b = strconv.AppendInt(b, int64(r.Schema), 10)
	b = append(b, `,"id":`...)
	b = appendString(b, r.ID)
	b = append(b, `,"kind":`...)
	b = appendString(b, string(r.Kind))
	b = append(b, `,"direction":`...)
	b = appendString(b, string(r.Direction))
	b = append(b, `,"start":"`...)
	var ok bool
	if b, ok = e.appendTime(b, r.Start); !ok {
		return b, fmt.Errorf("%w: %d", capture.ErrBadStart, r.Start.Year())
	}
	b = append(b, '"')
	if r.TTFBMicros != 0 {
		b = append(b, `,"ttfbUs":`...)
		b = strconv.AppendInt(b, r.TTFBMicros, 10)
	}
	b = append(b, `,"durationUs":`...)
	b = strconv.AppendInt(b, r.DurMicros, 10)

	if e == nil {
		b = appendLabelsNet(b, r)
	} else if k, ok := makeNetKey(r); !ok {
		b = appendLabelsNet(b, r)
	} else if e.netJSON != nil && k == e.net {
		b = append(b, e.netJSON...)
	} else {
		n := len(b)
		b = appendLabelsNet(b, r)
		e.net, e.netJSON = k, append(e.netJSON[:0], b[n:]...)
	}

	if r.HTTP != nil {
		var err error
		b = append(b, `,"http":`...)
		if b, err = appendHTTP(b, r.HTTP); err != nil {
			return b, err
		}
	}
	if r.TCP != nil {
		b = append(b, `,"tcp":{"bytesUp":`...)
		b = strconv.AppendInt(b, r.TCP.BytesUp, 10)
		b = append(b, `,"bytesDown":`...)
		b = strconv.AppendInt(b, r.TCP.BytesDown, 10)
		if len(r.TCP.Chunks) > 0 {
			b = append(b, `,"chunks":[`...)
			for i := range r.TCP.Chunks {
				c := &r.TCP.Chunks[i]
				if i > 0 {
					b = append(b, ',')
				}
				b = append(b, `{"up":`...)
				b = strconv.AppendBool(b, c.Up)
				b = append(b, `,"atUs":`...)
				b = strconv.AppendInt(b, c.AtMicros, 10)
				b = append(b, `,"data":`...)
				b = appendBase64(b, c.Data) // no omitempty: null when nil
				b = append(b, '}')
			}
			b = append(b, ']')
		}
		if r.TCP.Truncated {
			b = append(b, `,"truncated":true`...)
		}
		b = append(b, '}')
	}
	if r.Error != "" {
		b = append(b, `,"error":`...)
		b = appendString(b, r.Error)
	}
	if len(r.Tags) > 0 {
		switch {
		case e == nil:
			var small [8][2]string
			b = appendTags(b, sortedTags(small[:0], r.Tags))
		case e.sameTags(r.Tags):
			b = append(b, e.tagsJSON...)
		default:
			n := len(b)
			e.tags = sortedTags(e.tags[:0], r.Tags)
			b = appendTags(b, e.tags)
			e.tagsJSON = append(e.tagsJSON[:0], b[n:]...)
		}
	}
	if len(r.Redactions) > 0 {
		b = append(b, `,"redactions":[`...)
		for i, s := range r.Redactions {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, s)
		}
		b = append(b, ']')
	}
	return append(b, "}\n"...), nil
}

// appendLabelsNet writes r's labels and net block, from `,"labels":`.
func appendLabelsNet(b []byte, r *capture.Record) []byte {
	b = append(b, `,"labels":{`...)
	n := len(b)
	b = appendStringField(b, n, "cluster", r.Labels.Cluster)
	b = appendStringField(b, n, "namespace", r.Labels.Namespace)
	b = appendStringField(b, n, "service", r.Labels.Service)
	b = appendStringField(b, n, "pod", r.Labels.Pod)
	b = appendStringField(b, n, "tenant", r.Labels.Tenant)
	b = append(b, `},"net":{`...)
	n = len(b)
	b = appendStringField(b, n, "clientAddr", r.Net.ClientAddr)
	b = appendStringField(b, n, "serverAddr", r.Net.ServerAddr)
	b = appendStringField(b, n, "serverHost", r.Net.ServerHost)
	b = appendStringField(b, n, "connId", r.Net.ConnID)
	if r.Net.TLS != nil {
		b = appendKey(b, n, "tls")
		b = appendTLS(b, r.Net.TLS)
	}
	b = appendStringField(b, n, "proxy", r.Net.Proxy)
	return append(b, '}')
}

// sortedTags appends m's pairs to tags, sorted by key as go-json and
// encoding/json sort map keys.
func sortedTags(tags [][2]string, m capture.Tags) [][2]string {
	for k, v := range m {
		tags = append(tags, [2]string{k, v})
	}
	slices.SortFunc(tags, func(x, y [2]string) int { return strings.Compare(x[0], y[0]) })
	return tags
}

// appendTags writes sorted tags, from `,"tags":`.
func appendTags(b []byte, tags [][2]string) []byte {
	b = append(b, `,"tags":{`...)
	for i, kv := range tags {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, kv[0])
		b = append(b, ':')
		b = appendString(b, kv[1])
	}
	return append(b, '}')
}

// sameTags reports whether m holds exactly the tags e wrote last: as many
// pairs, and each of those in m with the same value (keys are distinct,
// so nothing else can be in m).
func (e *Encoder) sameTags(m capture.Tags) bool {
	if len(m) != len(e.tags) || e.tagsJSON == nil {
		return false
	}
	for _, kv := range e.tags {
		if v, ok := m[kv[0]]; !ok || v != kv[1] {
			return false
		}
	}
	return true
}

func appendTLS(b []byte, t *capture.TLS) []byte {
	b = append(b, '{')
	n := len(b)
	b = appendStringField(b, n, "sni", t.SNI)
	b = appendStringField(b, n, "version", t.Version)
	b = appendStringField(b, n, "alpn", t.ALPN)
	b = appendStringField(b, n, "cipherSuite", t.CipherSuite)
	if t.Upstream != nil {
		b = appendKey(b, n, "upstream")
		b = appendTLS(b, t.Upstream)
	}
	return append(b, '}')
}

func appendHTTP(b []byte, h *capture.HTTP) ([]byte, error) {
	q := &h.Req
	b = append(b, `{"req":{"method":`...)
	b = appendString(b, q.Method)
	b = append(b, `,"url":`...)
	b = appendString(b, q.URL)
	b = append(b, `,"proto":`...)
	b = appendString(b, q.Proto)
	b = append(b, `,"host":`...)
	b = appendString(b, q.Host)
	if len(q.Headers) > 0 {
		b = append(b, `,"headers":`...)
		b = appendHeaders(b, q.Headers)
	}
	b = append(b, `,"body":`...)
	b = appendBody(b, &q.Body)
	b = append(b, '}')
	if s := h.Res; s != nil {
		b = append(b, `,"res":{"status":`...)
		b = strconv.AppendInt(b, int64(s.Status), 10)
		if s.StatusText != "" {
			b = append(b, `,"statusText":`...)
			b = appendString(b, s.StatusText)
		}
		if s.Proto != "" {
			b = append(b, `,"proto":`...)
			b = appendString(b, s.Proto)
		}
		if len(s.Headers) > 0 {
			b = append(b, `,"headers":`...)
			b = appendHeaders(b, s.Headers)
		}
		b = append(b, `,"body":`...)
		b = appendBody(b, &s.Body)
		if len(s.Trailers) > 0 {
			b = append(b, `,"trailers":`...)
			b = appendHeaders(b, s.Trailers)
		}
		b = append(b, '}')
	}
	if len(h.Messages) > 0 {
		b = append(b, `,"messages":[`...)
		for i := range h.Messages {
			m := &h.Messages[i]
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"up":`...)
			b = strconv.AppendBool(b, m.Up)
			b = append(b, `,"atUs":`...)
			b = strconv.AppendInt(b, m.AtMicros, 10)
			b = append(b, `,"size":`...)
			b = strconv.AppendInt(b, m.Size, 10)
			if len(m.Data) > 0 {
				b = append(b, `,"data":`...)
				b = appendBase64(b, m.Data)
			}
			if m.Truncated {
				b = append(b, `,"truncated":true`...)
			}
			if m.Compressed {
				b = append(b, `,"compressed":true`...)
			}
			if m.Opcode != 0 {
				b = append(b, `,"opcode":`...)
				b = strconv.AppendInt(b, int64(m.Opcode), 10)
			}
			if len(m.Fields) > 0 {
				out, err := gojson.MarshalNoEscape(m.Fields)
				if err != nil {
					return b, err
				}
				b = append(b, `,"fields":`...)
				b = append(b, out...)
			}
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	if h.MessagesTruncated {
		b = append(b, `,"messagesTruncated":true`...)
	}
	if g := h.GRPC; g != nil {
		b = append(b, `,"grpc":{"service":`...)
		b = appendString(b, g.Service)
		b = append(b, `,"method":`...)
		b = appendString(b, g.Method)
		if g.Status != nil {
			b = append(b, `,"status":`...)
			b = strconv.AppendInt(b, int64(*g.Status), 10)
		}
		if g.StatusMessage != "" {
			b = append(b, `,"statusMessage":`...)
			b = appendString(b, g.StatusMessage)
		}
		if g.Encoding != "" {
			b = append(b, `,"encoding":`...)
			b = appendString(b, g.Encoding)
		}
		b = append(b, '}')
	}
	return append(b, '}'), nil
}

// appendTime appends t as t.AppendFormat(b, time.RFC3339Nano) does, a UTC
// time (every start goproxy makes) written here: the general layout
// interpreter was 1.3% of a captured request's instructions. A zone whose
// offset RFC 3339 cannot write (seconds: a historical local mean time, or a
// day or more) is written as UTC, the same instant (capture.WireTime). It
// reports false, having appended nothing, for a year outside 0-9999, which
// RFC 3339 cannot write either (time.Time.UnmarshalJSON would refuse what
// AppendFormat writes).
func appendTime(b []byte, t time.Time) ([]byte, bool) {
	if t.Location() != time.UTC {
		t, ok := capture.WireTime(t) // a zone RFC 3339 cannot write goes as UTC
		if !ok {
			return b, false
		}
		if t.Location() != time.UTC {
			return t.AppendFormat(b, time.RFC3339Nano), true
		}
		return appendTime(b, t)
	}
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		return b, false
	}
	hour, minute, sec := t.Clock()
	var d [17]byte // 2006-01-02T15:04:
	put := func(at, v, n int) {
		for i := at + n - 1; i >= at; i-- {
			d[i] = byte('0' + v%10)
			v /= 10
		}
	}
	put(0, year, 4)
	d[4] = '-'
	put(5, int(month), 2)
	d[7] = '-'
	put(8, day, 2)
	d[10] = 'T'
	put(11, hour, 2)
	d[13] = ':'
	put(14, minute, 2)
	d[16] = ':'
	return appendSeconds(append(b, d[:]...), sec, t.Nanosecond()), true
}

// appendSeconds writes the end of an RFC3339Nano time in UTC: the
// seconds, the fraction without its trailing zeros, and Z.
func appendSeconds(b []byte, sec, ns int) []byte {
	var d [13]byte // 05.999999999Z
	d[0], d[1] = byte('0'+sec/10), byte('0'+sec%10)
	n := 2
	if ns != 0 {
		d[2] = '.'
		for i := 11; i >= 3; i-- {
			d[i] = byte('0' + ns%10)
			ns /= 10
		}
		n = 12
		for d[n-1] == '0' { // RFC3339Nano drops the fraction's trailing zeros
			n--
		}
	}
	d[n] = 'Z'
	return append(b, d[:n+1]...)
}

// appendTime is the function appendTime that writes a start in the minute
// of the one before from what it wrote then: the date, hour and minute
// take most of the function's time (t.Date and t.Clock divide).
func (e *Encoder) appendTime(b []byte, t time.Time) ([]byte, bool) {
	if e == nil || t.Location() != time.UTC {
		return appendTime(b, t)
	}
	sec := t.Unix()
	m := sec / 60
	if sec%60 < 0 {
		m-- // before 1970: the minute that holds sec
	}
	if !e.minuteOK || m != e.minute {
		n := len(b)
		b, ok := appendTime(b, t)
		if ok {
			copy(e.minuteText[:], b[n:])
			e.minute, e.minuteOK = m, true
		}
		return b, ok
	}
	return appendSeconds(append(b, e.minuteText[:]...), int(sec-m*60), t.Nanosecond()), true
}

func appendBody(b []byte, body *capture.Body) []byte {
	b = append(b, '{')
	if len(body.Data) > 0 {
		b = append(b, `"data":`...)
		b = appendBase64(b, body.Data)
		b = append(b, ',')
	}
	b = append(b, `"size":`...)
	b = strconv.AppendInt(b, body.Size, 10)
	if body.Truncated {
		b = append(b, `,"truncated":true`...)
	}
	return append(b, '}')
}

// appendHeaders writes headers as Header.MarshalJSON does: a list of
// [name, value] pairs.
func appendHeaders(b []byte, hs capture.Headers) []byte {
	b = append(b, '[')
	for i, h := range hs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '[')
		b = appendString(b, h.Name)
		b = append(b, ',')
		b = appendString(b, h.Value)
		b = append(b, ']')
	}
	return append(b, ']')
}

// appendKey writes "name": after a comma unless b has grown nothing since
// the object's opening brace at start.
func appendKey(b []byte, start int, name string) []byte {
	if len(b) > start {
		b = append(b, ',')
	}
	b = append(b, '"')
	b = append(b, name...)
	return append(b, `":`...)
}

// appendStringField writes an omitempty string field.
func appendStringField(b []byte, start int, name, v string) []byte {
	if v == "" {
		return b
	}
	return appendString(appendKey(b, start, name), v)
}

// appendString writes s as a JSON string, escaped as encoding/json does
// without its HTML escaping (SetEscapeHTML(false), as go-json is used
// here): quote, backslash and control characters escaped, invalid UTF-8
// as U+FFFD, U+2028 and U+2029 escaped.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	i := plainPrefix(s)
	if i == len(s) {
		return append(append(b, s...), '"')
	}
	start := 0
	for i < len(s) {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			default:
				const hex = "0123456789abcdef"
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, `\u202`...)
			b = append(b, "89"[r-'\u2028'])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// plainPrefix returns the length of s's longest prefix of bytes that a
// JSON string holds as they are (printable ASCII but quote and
// backslash), eight bytes a step. A string of 4 bytes or more that is
// plain throughout (nearly all of a record's) is told by whole words to its
// end, the last one overlapping the one before, without a byte loop.
func plainPrefix(s string) int {
	i := 0
	for ; i+8 <= len(s); i += 8 {
		if !plainUint64(binary.LittleEndian.Uint64([]byte(s[i : i+8]))) {
			break
		}
	}
	switch n := len(s); {
	case i == n:
		return n
	case n >= 8 && i+8 > n: // the loop ran out of whole words: the last one ends the string
		if plainUint64(binary.LittleEndian.Uint64([]byte(s[n-8:]))) {
			return n
		}
	case n >= 4 && n < 8: // two half words, overlapping
		if plainUint64(uint64(binary.LittleEndian.Uint32([]byte(s[:4]))) | uint64(binary.LittleEndian.Uint32([]byte(s[n-4:])))<<32) {
			return n
		}
	}
	for ; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' {
			break
		}
	}
	return i
}

// plainUint64 reports whether none of x's eight bytes is below 0x20, a
// quote, a backslash or non-ASCII: exact when true (a borrow can make it
// report false for a plain word, which the byte loop then reads).
func plainUint64(x uint64) bool {
	const (
		ones  = 0x0101010101010101
		highs = 0x8080808080808080
	)
	q, bs := x^(ones*'"'), x^(ones*'\\')
	return ((x-ones*0x20)|(q-ones)|(bs-ones)|x)&highs == 0
}
