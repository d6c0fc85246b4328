package har

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tapwire/tapwire/internal/capture"
)

// Writer streams a HAR document: the log's head, one entry per HTTP
// record, and the tail on Close. It holds one entry in memory at a time.
// Writes to the underlying writer are small: buffer it.
type Writer struct {
	w       io.Writer
	creator Creator
	n       int
	begun   bool
	buf     bytes.Buffer
	enc     *json.Encoder
}

// NewWriter returns a Writer to w that names creator as the log's creator.
func NewWriter(w io.Writer, creator Creator) *Writer {
	h := &Writer{w: w, creator: creator}
	h.enc = json.NewEncoder(&h.buf)
	h.enc.SetEscapeHTML(false)
	return h
}

// Entries returns how many entries were written.
func (h *Writer) Entries() int { return h.n }

func (h *Writer) begin() error {
	if h.begun {
		return nil
	}
	h.begun = true
	head, err := json.Marshal(h.creator)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(h.w, `{"log":{"version":%q,"creator":%s,"pages":[],"entries":[`, Version, head)
	return err
}

// Write writes r as an entry. A record that is not HTTP has no place in
// HAR and is skipped.
func (h *Writer) Write(r *capture.Record) error {
	if err := h.begin(); err != nil {
		return err
	}
	if r.HTTP == nil {
		return nil
	}
	h.buf.Reset()
	if h.n > 0 {
		h.buf.WriteByte(',')
	}
	h.buf.WriteByte('\n')
	if err := h.enc.Encode(EntryOf(r)); err != nil {
		return fmt.Errorf("har entry %s: %w", r.ID, err)
	}
	h.buf.Truncate(h.buf.Len() - 1) // the encoder's newline
	if _, err := h.w.Write(h.buf.Bytes()); err != nil {
		return err
	}
	h.n++
	return nil
}

// Close writes the end of the document. It does not close the underlying
// writer.
func (h *Writer) Close() error {
	if err := h.begin(); err != nil {
		return err
	}
	_, err := io.WriteString(h.w, "\n]}}\n")
	return err
}

func ms(us int64) float64 { return float64(us) / 1000 }

// FormatTime writes a start time as HAR's startedDateTime: UTC with
// milliseconds, as browsers write it, or with as many more digits as the
// time needs (ISO 8601 allows any), so that it reads back exactly.
func FormatTime(t time.Time) string {
	t = t.UTC()
	switch ns := t.Nanosecond(); {
	case ns%1e6 == 0:
		return t.Format("2006-01-02T15:04:05.000Z07:00")
	case ns%1e3 == 0:
		return t.Format("2006-01-02T15:04:05.000000Z07:00")
	}
	return t.Format("2006-01-02T15:04:05.000000000Z07:00")
}

// EntryOf converts an HTTP record (r.HTTP set) to a HAR entry.
func EntryOf(r *capture.Record) Entry {
	labels := r.Labels
	e := Entry{
		StartedDateTime: FormatTime(r.Start), Time: ms(r.DurMicros),
		Connection: r.Net.ConnID, ID: r.ID, Direction: string(r.Direction), Labels: &labels, Error: r.Error,
		Tags: r.Tags, Redactions: r.Redactions, Messages: r.HTTP.Messages, MessagesTruncated: r.HTTP.MessagesTruncated,
		GRPC: r.HTTP.GRPC, Vendor: r.Vendor,
	}
	if r.Net != (capture.Net{}) {
		n := r.Net
		e.Net = &n
	}
	if host, _, err := net.SplitHostPort(r.Net.ServerAddr); err == nil && net.ParseIP(host) != nil {
		e.ServerIPAddress = host
	}
	q := r.HTTP.Req
	e.Request = Request{Method: q.Method, URL: q.URL, HTTPVersion: q.Proto, Cookies: []Cookie{},
		Headers: nvs(q.Headers), QueryString: []NV{}, HeadersSize: -1, BodySize: q.Body.Size}
	if u, err := url.Parse(q.URL); err == nil {
		if q.Host != u.Host {
			e.Request.Host = q.Host
		}
		// In the URL's order, which u.Query() would lose.
		e.Request.QueryString = append(e.Request.QueryString, splitQuery(u.RawQuery)...)
	} else if q.Host != "" {
		e.Request.Host = q.Host
	}
	for _, line := range q.Headers.Values("Cookie") {
		if cs, err := http.ParseCookie(line); err == nil {
			for _, c := range cs {
				e.Request.Cookies = append(e.Request.Cookies, Cookie{Name: c.Name, Value: c.Value})
			}
		}
	}
	if q.Body.Size > 0 || len(q.Body.Data) > 0 || q.Body.Truncated { // truncated has nowhere else to go
		text, enc := bodyText(q.Body.Data)
		e.Request.PostData = &PostData{MimeType: q.Headers.Get("Content-Type"), Text: text, Encoding: enc, Truncated: q.Body.Truncated}
	}
	e.Response = Response{Cookies: []Cookie{}, Headers: []NV{}, HeadersSize: -1, BodySize: -1,
		Content: Content{MimeType: "x-unknown"}}
	if res := r.HTTP.Res; res != nil {
		text, enc := bodyText(res.Body.Data)
		e.Response = Response{Status: res.Status, StatusText: res.StatusText, HTTPVersion: res.Proto,
			Cookies: []Cookie{}, Headers: nvs(res.Headers), HeadersSize: -1, BodySize: res.Body.Size,
			RedirectURL: res.Headers.Get("Location"), Trailers: nvsOrNil(res.Trailers),
			Content: Content{Size: res.Body.Size, MimeType: res.Headers.Get("Content-Type"), Text: text, Encoding: enc, Truncated: res.Body.Truncated}}
		for _, line := range res.Headers.Values("Set-Cookie") {
			if c, err := http.ParseSetCookie(line); err == nil {
				hc := Cookie{Name: c.Name, Value: c.Value, Path: c.Path, Domain: c.Domain, HTTPOnly: c.HttpOnly, Secure: c.Secure}
				if !c.Expires.IsZero() {
					hc.Expires = c.Expires.UTC().Format(time.RFC3339)
				}
				e.Response.Cookies = append(e.Response.Cookies, hc)
			}
		}
	}
	wait := ms(r.TTFBMicros)
	e.Timings = Timings{Send: 0, Wait: wait, Receive: max(ms(r.DurMicros)-wait, 0)}
	return e
}

// splitQuery returns the parameters of a raw query in their order,
// unescaped where they can be.
func splitQuery(raw string) []NV {
	var out []NV
	for _, kv := range strings.Split(raw, "&") {
		if kv == "" {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		if uk, err := url.QueryUnescape(k); err == nil {
			k = uk
		}
		if uv, err := url.QueryUnescape(v); err == nil {
			v = uv
		}
		out = append(out, NV{k, v})
	}
	return out
}

func nvs(h capture.Headers) []NV {
	out := make([]NV, 0, len(h))
	for _, f := range h {
		out = append(out, NV{f.Name, f.Value})
	}
	return out
}

func nvsOrNil(h capture.Headers) []NV {
	if len(h) == 0 {
		return nil
	}
	return nvs(h)
}

// bodyText returns a body as HAR text: itself when it is UTF-8, else
// base64 with the encoding named.
func bodyText(b []byte) (text, encoding string) {
	if utf8.Valid(b) {
		return string(b), ""
	}
	return base64.StdEncoding.EncodeToString(b), "base64"
}
