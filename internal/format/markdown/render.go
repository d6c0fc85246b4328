package markdown

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/tapwire/tapwire/internal/rrpair"
)

// The rendering of a vendor record (rrpair.Pair) as the Markdown blocks a
// person reads. The writer writes these blocks; the reader renders the
// INTERNAL block the same way and takes a Markdown block into account only
// where it differs from that rendering, that is where a person edited it.

const (
	contentLength = "Content-Length"
	base64Info    = "base64" // info string of a body block written in base64
	noneValue     = "-NONE-" // an empty signature value
	lineWidth     = 76       // of base64 body lines
)

// headLines renders a header map as "Name: value, value" lines sorted by
// name, without Content-Length (the vendor's form leaves it out).
func headLines(h map[string][]string) []string {
	names := make([]string, 0, len(h))
	for k, vs := range h {
		if len(vs) > 0 && !strings.EqualFold(k, contentLength) {
			names = append(names, k)
		}
	}
	slices.Sort(names)
	lines := make([]string, 0, len(names))
	for _, k := range names {
		vs := make([]string, len(h[k]))
		for i, v := range h[k] {
			vs[i] = escape(v, false)
		}
		lines = append(lines, k+": "+strings.Join(vs, ", "))
	}
	return lines
}

// reqLine renders the request line: method, absolute URL, protocol.
func reqLine(p *rrpair.Pair) string {
	q := p.HTTP.Req
	if q == nil {
		q = &rrpair.Request{}
	}
	return q.Method + " " + absURL(p, q) + " " + reqProto(q)
}

func reqProto(q *rrpair.Request) string {
	if q.Version == "" {
		return "HTTP/1.1"
	}
	if strings.HasPrefix(q.Version, "HTTP/") {
		return q.Version
	}
	return "HTTP/" + q.Version
}

// absURL is the request's URL as rrpair.ToRecord builds it: the scheme
// from l7protocol, the request's host (or the connection's), and the uri.
func absURL(p *rrpair.Pair, q *rrpair.Request) string {
	uri := q.URI
	if uri == "" {
		uri = q.URL
	}
	if uri == "" {
		uri = p.Location
	}
	if strings.HasPrefix(uri, "http://") || strings.HasPrefix(uri, "https://") {
		return uri
	}
	return scheme(p) + "://" + reqHost(p, q) + uri
}

func scheme(p *rrpair.Pair) string {
	if strings.EqualFold(p.L7Protocol, "https") {
		return "https"
	}
	return "http"
}

func reqHost(p *rrpair.Pair, q *rrpair.Request) string {
	if q.Host != "" {
		return q.Host
	}
	if p.NetInfo != nil && p.NetInfo.Upstream != nil && p.NetInfo.Upstream.Hostname != "" {
		return p.NetInfo.Upstream.Hostname
	}
	return p.NetworkAddress
}

// statusLine renders the response's status line.
func statusLine(p *rrpair.Pair) string {
	s := p.HTTP.Res
	return resProto(p) + " " + strconv.Itoa(s.StatusCode) + " " + statusText(s)
}

func resProto(p *rrpair.Pair) string {
	if v := p.Tags[rrpair.TagResProto]; v != "" {
		return v
	}
	q := p.HTTP.Req
	if q == nil {
		q = &rrpair.Request{}
	}
	return reqProto(q)
}

func statusText(s *rrpair.Response) string {
	text, ok := strings.CutPrefix(s.StatusMessage, strconv.Itoa(s.StatusCode)+" ")
	if !ok {
		return s.StatusMessage
	}
	return text
}

// renderBody returns the block of a body: empty, JSON pretty-printed with
// two spaces (an object or an array), text as it is, or anything else
// (binary, control characters) in base64 with the info string "base64".
func renderBody(data []byte) block {
	switch {
	case len(data) == 0:
		return block{}
	case isJSON(data):
		var b bytes.Buffer
		if json.Indent(&b, data, "", "  ") == nil {
			return block{content: b.String()}
		}
	case isText(data):
		return block{content: string(data)}
	}
	s := base64.StdEncoding.EncodeToString(data)
	var lines []string
	for len(s) > lineWidth {
		lines = append(lines, s[:lineWidth])
		s = s[lineWidth:]
	}
	return block{info: base64Info, content: strings.Join(append(lines, s), "\n")}
}

// isJSON reports whether b is a JSON object or array.
func isJSON(b []byte) bool {
	t := bytes.TrimSpace(b)
	return len(t) > 0 && (t[0] == '{' || t[0] == '[') && json.Valid(t)
}

// isText reports whether b is UTF-8 without control characters other than
// tab, new line and carriage return.
func isText(b []byte) bool {
	if !utf8.Valid(b) {
		return false
	}
	for _, r := range string(b) {
		if (r < 0x20 && r != '\t' && r != '\n' && r != '\r') || r == 0x7f {
			return false
		}
	}
	return true
}

// decodeBody reads a body block: base64 when its info string says so,
// else the text, compacted when it is a JSON object or array (as the
// vendor's tools do).
func decodeBody(b *block) ([]byte, error) {
	if b.info == base64Info {
		return base64.StdEncoding.DecodeString(strings.Join(strings.Fields(b.content), ""))
	}
	data := []byte(b.content)
	if isJSON(data) {
		var c bytes.Buffer
		if json.Compact(&c, data) == nil {
			return c.Bytes(), nil
		}
	}
	return data, nil
}

// sameBody reports whether two bodies are the same bytes, or the same
// JSON value (the same members and numbers as written, in any order and
// with any escapes).
func sameBody(a, b []byte) bool {
	if bytes.Equal(a, b) {
		return true
	}
	if !isJSON(a) || !isJSON(b) {
		return false
	}
	va, err := decodeJSON(a)
	if err != nil {
		return false
	}
	vb, err := decodeJSON(b)
	return err == nil && reflect.DeepEqual(va, vb)
}

// decodeJSON decodes b keeping numbers as they are written.
func decodeJSON(b []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	err := d.Decode(&v)
	return v, err
}

// sigLines renders the signature as "key is value" lines sorted by key,
// each value decoded from base64. An empty value is written -NONE-; a
// value that is not base64 of one line of text is written as it is.
func sigLines(sig map[string]string) []string {
	keys := make([]string, 0, len(sig))
	for k := range sig {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	lines := make([]string, 0, len(keys))
	for _, k := range keys {
		lines = append(lines, k+" is "+sigValue(sig[k]))
	}
	return lines
}

func sigValue(v string) string {
	if v == "" {
		return noneValue
	}
	b, err := base64.StdEncoding.DecodeString(v)
	if err != nil || !isText(b) || bytes.ContainsAny(b, "\r\n") || len(b) == 0 || string(b) == noneValue {
		return v
	}
	return string(b)
}

// metaLines renders the METADATA block's fields.
func metaLines(p *rrpair.Pair) []string {
	return []string{
		"direction: " + p.Direction,
		"uuid: " + uuidText(p.UUID),
		"ts: " + p.TS,
		"duration: " + strconv.FormatInt(p.Duration, 10) + "ms",
		"tags: " + tagsText(p.Tags),
	}
}

// uuidText shows the vendor's uuid, 16 bytes in base64, as a UUID; any
// other value as it is.
func uuidText(s string) string {
	if b, err := base64.StdEncoding.DecodeString(s); err == nil && len(b) == 16 {
		return uuid.UUID(b).String()
	}
	return s
}

// tagsText renders tags as "k=v, k=v", sorted by key.
func tagsText(tags map[string]string) string {
	keys := make([]string, 0, len(tags))
	for k := range tags {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = escape(k, true) + "=" + escape(tags[k], false)
	}
	return strings.Join(parts, ", ")
}

// writeFence writes a fenced block, with a fence longer than any run of
// backticks that starts a line of the content.
func writeFence(w *bytes.Buffer, b block) {
	n := 3
	for line := range strings.SplitSeq(b.content, "\n") {
		t := strings.TrimSpace(line)
		k := 0
		for k < len(t) && t[k] == '`' {
			k++
		}
		if k >= n {
			n = k + 1
		}
	}
	fence := strings.Repeat("`", n)
	w.WriteString(fence + b.info + "\n")
	if b.content != "" || b.info != "" {
		w.WriteString(b.content + "\n")
	}
	w.WriteString(fence + "\n")
}

// headBlock is the first block of REQUEST or RESPONSE.
func headBlock(first string, h map[string][]string) block {
	return block{content: strings.Join(append([]string{first}, headLines(h)...), "\n")}
}

func bodyData(s string) []byte {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil
	}
	return b
}

// render writes p as a recording.
func render(p *rrpair.Pair, internal []byte) []byte {
	var w bytes.Buffer
	section := func(name string, blocks ...block) {
		if w.Len() > 0 {
			w.WriteString("\n")
		}
		w.WriteString("### " + name + " ###\n")
		for i, b := range blocks {
			if i > 0 {
				w.WriteString("\n")
			}
			writeFence(&w, b)
		}
	}
	if h := p.HTTP; h != nil {
		q := h.Req
		if q == nil {
			q = &rrpair.Request{}
		}
		section(secRequest, headBlock(reqLine(p), q.Headers), renderBody(bodyData(q.BodyBase64)))
		if s := h.Res; s != nil {
			section(secResponse, headBlock(statusLine(p), s.Headers), renderBody(bodyData(s.BodyBase64)))
		}
	}
	if len(p.Signature) > 0 {
		section(secSignature, block{content: strings.Join(sigLines(p.Signature), "\n")})
	}
	section(secMetadata, block{content: strings.Join(metaLines(p), "\n")})
	section(secInternal, block{content: "json: " + string(internal)})
	return w.Bytes()
}
