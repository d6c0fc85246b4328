package har

import (
	"bytes"
	"cmp"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tapwire/tapwire/internal/capture"
)

// Writer writes a HAR document: the log's head, one entry per HTTP record
// in time order (oldest first, as browsers write them) whatever order the
// records come in (the stores list newest first), and the tail on Close.
// It holds one entry in memory at a time: each is encoded to a temporary
// file (removed as soon as it is made where the system allows, else on
// Close), with 24 bytes per entry kept to order them, and the document is
// written on Close. Writes to the underlying writer are small: buffer it.
type Writer struct {
	w       io.Writer
	creator Creator
	n       int
	buf     bytes.Buffer
	enc     *json.Encoder
	spool   *os.File
	spooled int64    // bytes in spool
	index   []spanAt // one per entry
	tmpName string   // spool's name while it is still to be removed
}

// spanAt is where an entry lies in the spool, and its start time.
type spanAt struct {
	start    int64 // UnixNano
	off, len int64
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

// Write adds r as an entry. A record that is not HTTP has no place in HAR
// and is skipped.
func (h *Writer) Write(r *capture.Record) error {
	if r.HTTP == nil {
		return nil
	}
	h.buf.Reset()
	if err := h.enc.Encode(EntryOf(r)); err != nil {
		return fmt.Errorf("har entry %s: %w", r.ID, err)
	}
	h.buf.Truncate(h.buf.Len() - 1) // the encoder's newline
	if h.spool == nil {
		f, err := os.CreateTemp("", "tapwire-har-*")
		if err != nil {
			return fmt.Errorf("har spool: %w", err)
		}
		h.spool = f
		if os.Remove(f.Name()) != nil { // kept open, it is read back on Close
			h.tmpName = f.Name()
		}
	}
	if _, err := h.spool.Write(h.buf.Bytes()); err != nil {
		return fmt.Errorf("har spool: %w", err)
	}
	h.index = append(h.index, spanAt{start: r.Start.UnixNano(), off: h.spooled, len: int64(h.buf.Len())})
	h.spooled += int64(h.buf.Len())
	h.n++
	return nil
}

// Close writes the document, its entries oldest first (records of the
// same start time in the order written), and removes the spool. It does
// not close the underlying writer.
func (h *Writer) Close() error {
	if h.spool != nil {
		defer func() {
			h.spool.Close()
			if h.tmpName != "" {
				os.Remove(h.tmpName)
			}
			h.spool, h.index = nil, nil
		}()
	}
	head, err := json.Marshal(h.creator)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintf(h.w, `{"log":{"version":%q,"creator":%s,"pages":[],"entries":[`, Version, head); err != nil {
		return err
	}
	slices.SortStableFunc(h.index, func(a, b spanAt) int { return cmp.Compare(a.start, b.start) })
	for i, at := range h.index {
		sep := ",\n"
		if i == 0 {
			sep = "\n"
		}
		if _, err := io.WriteString(h.w, sep); err != nil {
			return err
		}
		if _, err := io.Copy(h.w, io.NewSectionReader(h.spool, at.off, at.len)); err != nil {
			return fmt.Errorf("har spool: %w", err)
		}
	}
	_, err = io.WriteString(h.w, "\n]}}\n")
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
	// In whole microseconds, as recorded: 0.3, never 0.30000000000000004.
	e.Timings = Timings{Send: 0, Wait: ms(r.TTFBMicros), Receive: ms(max(r.DurMicros-r.TTFBMicros, 0))}
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
