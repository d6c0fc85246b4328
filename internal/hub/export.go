package hub

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/store"
)

// Export limits: records per export, and per page read from the store.
const (
	DefaultExportLimit = 10_000
	MaxExportLimit     = 100_000
	exportPage         = 500
)

// handleExport streams the records a filter selects, newest first, as HAR
// (http records only), the vendor's raw.jsonl, or our JSONL. A store error
// in the middle aborts the response, so that a client never takes a cut
// file for a whole one.
func (s *Server) handleExport(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	key, err := s.readKey(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	format := r.PathValue("format")
	var ext, ctype string
	switch format {
	case "har":
		ext, ctype = "har", "application/json"
	case "raw.jsonl":
		ext, ctype = "raw.jsonl", "application/x-ndjson"
	case "records.jsonl":
		ext, ctype = "jsonl", "application/x-ndjson"
	default:
		s.writeError(w, r, errorf(http.StatusNotFound, "export format %q: want har, raw.jsonl or records.jsonl", format))
		return
	}
	f, err := parseFilter(r, s.now())
	if err == nil {
		var limit int
		limit, err = parseLimit(r, DefaultExportLimit, MaxExportLimit)
		if err == nil {
			err = s.export(w, r, key, format, ext, ctype, f, limit)
		}
	}
	if err != nil {
		s.writeError(w, r, err)
	}
}

// export writes the export; it returns an error only before the first
// byte is written.
func (s *Server) export(w http.ResponseWriter, r *http.Request, key store.Key, format, ext, ctype string, f store.Filter, limit int) error {
	q := store.Query{Filter: f, Limit: min(limit, exportPage), Full: true}
	page, err := s.store.List(r.Context(), key.Tenant, q)
	if err != nil {
		return err
	}
	name := fmt.Sprintf("tapwire-%s-%s.%s", key.Tenant, s.now().UTC().Format("20060102-150405"), ext)
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
	bw := bufio.NewWriterSize(w, 64<<10)
	var enc exporter
	switch format {
	case "har":
		enc = newHARWriter(bw)
	case "raw.jsonl":
		enc = rawWriter{bw}
	default:
		enc = jsonlWriter{bw}
	}
	n := 0
	for {
		for _, it := range page.Items {
			if n == limit {
				break
			}
			n++
			if err := enc.write(it.Record); err != nil {
				s.log.Warn("export cut short", "format", format, "tenant", key.Tenant, "err", err.Error())
				panic(http.ErrAbortHandler)
			}
		}
		if page.Next == "" || n == limit {
			break
		}
		q.Cursor, q.Limit = page.Next, min(limit-n, exportPage)
		if page, err = s.store.List(r.Context(), key.Tenant, q); err != nil {
			s.log.Error("export cut short", "format", format, "tenant", key.Tenant, "err", err.Error())
			panic(http.ErrAbortHandler)
		}
	}
	if err := enc.close(); err != nil {
		panic(http.ErrAbortHandler)
	}
	if err := bw.Flush(); err != nil {
		panic(http.ErrAbortHandler)
	}
	return nil
}

type exporter interface {
	write(*capture.Record) error
	close() error
}

type jsonlWriter struct{ w *bufio.Writer }

func (j jsonlWriter) write(r *capture.Record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode record %s: %w", r.ID, err)
	}
	j.w.Write(b)
	return j.w.WriteByte('\n')
}
func (j jsonlWriter) close() error { return nil }

type rawWriter struct{ w *bufio.Writer }

func (j rawWriter) write(r *capture.Record) error {
	return capture.WriteRawJSONL(j.w, []*capture.Record{r})
}
func (j rawWriter) close() error { return nil }

// HAR 1.2 (http://www.softwareishard.com/blog/har-12-spec/). Custom fields
// start with an underscore, as the format asks.
type harLog struct {
	Version string     `json:"version"`
	Creator harCreator `json:"creator"`
	Entries []harEntry `json:"entries"`
	Pages   []struct{} `json:"pages"`
}

type harCreator struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

type harEntry struct {
	Started    string         `json:"startedDateTime"`
	Time       float64        `json:"time"` // ms
	Request    harRequest     `json:"request"`
	Response   harResponse    `json:"response"`
	Cache      struct{}       `json:"cache"`
	Timings    harTimings     `json:"timings"`
	ServerIP   string         `json:"serverIPAddress,omitempty"`
	Connection string         `json:"connection,omitempty"`
	Comment    string         `json:"comment,omitempty"`
	ID         string         `json:"_id"`
	Direction  string         `json:"_direction"`
	Labels     capture.Labels `json:"_labels"`
	Error      string         `json:"_error,omitempty"`
}

type harNV struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

type harCookie struct {
	Name     string `json:"name"`
	Value    string `json:"value"`
	Path     string `json:"path,omitempty"`
	Domain   string `json:"domain,omitempty"`
	Expires  string `json:"expires,omitempty"`
	HTTPOnly bool   `json:"httpOnly,omitempty"`
	Secure   bool   `json:"secure,omitempty"`
}

type harRequest struct {
	Method      string      `json:"method"`
	URL         string      `json:"url"`
	HTTPVersion string      `json:"httpVersion"`
	Cookies     []harCookie `json:"cookies"`
	Headers     []harNV     `json:"headers"`
	QueryString []harNV     `json:"queryString"`
	PostData    *harPost    `json:"postData,omitempty"`
	HeadersSize int         `json:"headersSize"`
	BodySize    int64       `json:"bodySize"`
}

type harPost struct {
	MimeType  string `json:"mimeType"`
	Text      string `json:"text"`
	Encoding  string `json:"_encoding,omitempty"` // base64 when the body is not UTF-8 text
	Truncated bool   `json:"_truncated,omitempty"`
}

type harResponse struct {
	Status      int         `json:"status"`
	StatusText  string      `json:"statusText"`
	HTTPVersion string      `json:"httpVersion"`
	Cookies     []harCookie `json:"cookies"`
	Headers     []harNV     `json:"headers"`
	Content     harContent  `json:"content"`
	RedirectURL string      `json:"redirectURL"`
	HeadersSize int         `json:"headersSize"`
	BodySize    int64       `json:"bodySize"`
}

type harContent struct {
	Size      int64  `json:"size"`
	MimeType  string `json:"mimeType"`
	Text      string `json:"text,omitempty"`
	Encoding  string `json:"encoding,omitempty"`
	Truncated bool   `json:"_truncated,omitempty"`
}

type harTimings struct {
	Send    float64 `json:"send"`
	Wait    float64 `json:"wait"`
	Receive float64 `json:"receive"`
}

// harWriter streams a HAR document: the log's head, each entry, the tail.
type harWriter struct {
	w     *bufio.Writer
	n     int
	begun bool
}

func newHARWriter(w *bufio.Writer) *harWriter { return &harWriter{w: w} }

func (h *harWriter) begin() error {
	if h.begun {
		return nil
	}
	h.begun = true
	head, err := json.Marshal(harCreator{Name: "tapwire hub", Version: "1"})
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(h.w, `{"log":{"version":"1.2","creator":%s,"pages":[],"entries":[`, head)
	return err
}

func (h *harWriter) write(r *capture.Record) error {
	if err := h.begin(); err != nil {
		return err
	}
	if r.HTTP == nil {
		return nil // HAR has no place for a byte stream
	}
	b, err := json.Marshal(harEntryOf(r))
	if err != nil {
		return fmt.Errorf("har entry %s: %w", r.ID, err)
	}
	if h.n > 0 {
		h.w.WriteByte(',')
	}
	h.n++
	h.w.WriteByte('\n')
	_, err = h.w.Write(b)
	return err
}

func (h *harWriter) close() error {
	if err := h.begin(); err != nil {
		return err
	}
	_, err := h.w.WriteString("\n]}}\n")
	return err
}

func ms(us int64) float64 { return float64(us) / 1000 }

// harEntryOf converts an HTTP record to a HAR entry.
func harEntryOf(r *capture.Record) harEntry {
	e := harEntry{
		Started: r.Start.UTC().Format("2006-01-02T15:04:05.000Z07:00"), Time: ms(r.DurMicros),
		Connection: r.Net.ConnID, ID: r.ID, Direction: string(r.Direction), Labels: r.Labels, Error: r.Error,
	}
	if h := r.Net.ServerAddr; h != "" {
		if host, _, ok := strings.Cut(h, ":"); ok && isIP(host) {
			e.ServerIP = host
		}
	}
	q := r.HTTP.Req
	e.Request = harRequest{Method: q.Method, URL: q.URL, HTTPVersion: q.Proto, Cookies: []harCookie{},
		Headers: harHeaders(q.Headers), QueryString: []harNV{}, HeadersSize: -1, BodySize: q.Body.Size}
	if u, err := url.Parse(q.URL); err == nil {
		for k, vs := range u.Query() {
			for _, v := range vs {
				e.Request.QueryString = append(e.Request.QueryString, harNV{k, v})
			}
		}
	}
	for _, line := range q.Headers.Values("Cookie") {
		if cs, err := http.ParseCookie(line); err == nil {
			for _, c := range cs {
				e.Request.Cookies = append(e.Request.Cookies, harCookie{Name: c.Name, Value: c.Value})
			}
		}
	}
	if q.Body.Size > 0 || len(q.Body.Data) > 0 {
		text, enc := bodyText(q.Body.Data)
		e.Request.PostData = &harPost{MimeType: q.Headers.Get("Content-Type"), Text: text, Encoding: enc, Truncated: q.Body.Truncated}
	}
	e.Response = harResponse{Cookies: []harCookie{}, Headers: []harNV{}, HeadersSize: -1, BodySize: -1,
		Content: harContent{MimeType: "x-unknown"}}
	if res := r.HTTP.Res; res != nil {
		text, enc := bodyText(res.Body.Data)
		e.Response = harResponse{Status: res.Status, StatusText: res.StatusText, HTTPVersion: res.Proto,
			Cookies: []harCookie{}, Headers: harHeaders(res.Headers), HeadersSize: -1, BodySize: res.Body.Size,
			RedirectURL: res.Headers.Get("Location"),
			Content:     harContent{Size: res.Body.Size, MimeType: res.Headers.Get("Content-Type"), Text: text, Encoding: enc, Truncated: res.Body.Truncated}}
		if e.Response.HTTPVersion == "" {
			e.Response.HTTPVersion = q.Proto
		}
		for _, line := range res.Headers.Values("Set-Cookie") {
			if c, err := http.ParseSetCookie(line); err == nil {
				hc := harCookie{Name: c.Name, Value: c.Value, Path: c.Path, Domain: c.Domain, HTTPOnly: c.HttpOnly, Secure: c.Secure}
				if !c.Expires.IsZero() {
					hc.Expires = c.Expires.UTC().Format(time.RFC3339)
				}
				e.Response.Cookies = append(e.Response.Cookies, hc)
			}
		}
	}
	wait := ms(r.TTFBMicros)
	e.Timings = harTimings{Send: 0, Wait: wait, Receive: max(ms(r.DurMicros)-wait, 0)}
	return e
}

func isIP(s string) bool {
	for _, c := range s {
		if (c < '0' || c > '9') && c != '.' {
			return false
		}
	}
	return s != ""
}

func harHeaders(h capture.Headers) []harNV {
	out := make([]harNV, 0, len(h))
	for _, f := range h {
		out = append(out, harNV{f.Name, f.Value})
	}
	return out
}

// bodyText returns a body as HAR text: itself when it is UTF-8, else
// base64 with the encoding named.
func bodyText(b []byte) (text, encoding string) {
	if utf8.Valid(b) {
		return string(b), ""
	}
	return base64.StdEncoding.EncodeToString(b), "base64"
}
