package store

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sync/errgroup"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/content"
	"github.com/tapwire/tapwire/internal/format/jsonl"
)

// Row is a record as a store indexes it: the columns that filters,
// summaries and lists read, computed once at insert by NewRow.
type Row struct {
	ID        string
	StartUs   int64 // Start in µs since the Unix epoch
	DurUs     int64
	Kind      string
	Direction string
	Cluster   string
	Namespace string
	Service   string
	Pod       string
	Method    string // upper case; empty for tcp
	URL       string // http: the request URL; tcp: tcp://server-address
	Host      string // lower case, no port: the request's host, else the server's
	Path      string // the URL's path ("" for tcp)
	Route     string // Path with ids replaced by {id} (see Route)
	Status    int    // response status; 0 without a response
	Error     string
	Failed    bool   // Error set, status >= 500, or an http exchange without a response
	ReqSize   int64  // request body size (tcp: bytes up)
	ResSize   int64  // response body size (tcp: bytes down)
	Search    string // lower-cased URL and the start of each text body (see SearchText)
	Data      []byte // the record, encoded by EncodeRecord; empty from Scan
}

// Start returns StartUs as a time.
func (r *Row) Start() time.Time { return time.UnixMicro(r.StartUs).UTC() }

// newRow computes the columns of rec.
func newRow(rec *capture.Record) *Row {
	r := &Row{
		ID:        rec.ID,
		StartUs:   rec.Start.UnixMicro(),
		DurUs:     rec.DurMicros,
		Kind:      string(rec.Kind),
		Direction: string(rec.Direction),
		Cluster:   rec.Labels.Cluster,
		Namespace: rec.Labels.Namespace,
		Service:   rec.Labels.Service,
		Pod:       rec.Labels.Pod,
		Error:     rec.Error,
	}
	host := rec.Net.ServerHost
	switch {
	case rec.HTTP != nil:
		q := rec.HTTP.Req
		r.Method = strings.ToUpper(q.Method)
		r.URL = q.URL
		r.ReqSize = q.Body.Size
		u, err := url.Parse(q.URL)
		if err == nil {
			r.Path = u.EscapedPath()
			if h := u.Hostname(); h != "" {
				host = h
			}
		}
		if q.Host != "" {
			host = hostOnly(q.Host)
		}
		if rec.HTTP.Res != nil {
			r.Status = rec.HTTP.Res.Status
			r.ResSize = rec.HTTP.Res.Body.Size
		}
		r.Failed = rec.HTTP.Res == nil || r.Status >= 500
		if g := rec.HTTP.GRPC; g != nil && g.Status != nil && *g.Status != 0 {
			r.Failed = true // a gRPC error travels in a 200
		}
	case rec.TCP != nil:
		r.URL = "tcp://" + rec.Net.ServerAddr
		r.ReqSize, r.ResSize = rec.TCP.BytesUp, rec.TCP.BytesDown
	}
	if host == "" && rec.Net.ServerAddr != "" {
		host = hostOnly(rec.Net.ServerAddr)
	}
	r.Host = strings.ToLower(host)
	r.Route = Route(r.Path)
	r.Failed = r.Failed || rec.Error != ""
	r.Search = SearchText(rec)
	return r
}

// NewRow computes the columns of rec and encodes it.
func NewRow(rec *capture.Record) (*Row, error) {
	r := newRow(rec)
	data, err := EncodeRecord(rec)
	if err != nil {
		return nil, err
	}
	r.Data = data
	return r, nil
}

// NewRowJSON is NewRow for a record whose JSON form the caller has: line,
// which holds exactly rec (a jsonl.Line as received, with what the caller
// changed written again). It stores line instead of encoding rec again,
// compressed as EncodeRecord would; it does not keep line.
func NewRowJSON(rec *capture.Record, line []byte) *Row {
	r := newRow(rec)
	r.Data = compressRecord(line)
	return r
}

// NewRows computes the rows of recs, on up to GOMAXPROCS goroutines when
// there are many: encoding is most of an insert's CPU time outside the
// database, and it need not wait for the database's single writer.
func NewRows(recs []*capture.Record) ([]*Row, error) {
	rows := make([]*Row, len(recs))
	const chunk = 64
	if len(recs) <= chunk || runtime.GOMAXPROCS(0) == 1 {
		for i, rec := range recs {
			r, err := NewRow(rec)
			if err != nil {
				return nil, err
			}
			rows[i] = r
		}
		return rows, nil
	}
	var g errgroup.Group
	g.SetLimit(runtime.GOMAXPROCS(0))
	for lo := 0; lo < len(recs); lo += chunk {
		hi := min(lo+chunk, len(recs))
		g.Go(func() error {
			for i := lo; i < hi; i++ {
				r, err := NewRow(recs[i])
				if err != nil {
					return err
				}
				rows[i] = r
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return rows, nil
}

// Summary returns what a list shows of r.
func (r *Row) Summary() Summary {
	return Summary{
		ID: r.ID, Start: r.Start(), DurMicros: r.DurUs,
		Kind: capture.Kind(r.Kind), Direction: capture.Direction(r.Direction),
		Labels: capture.Labels{Cluster: r.Cluster, Namespace: r.Namespace, Service: r.Service, Pod: r.Pod},
		Method: r.Method, URL: r.URL, Host: r.Host, Status: r.Status, Error: r.Error, Failed: r.Failed,
		ReqSize: r.ReqSize, ResSize: r.ResSize,
	}
}

func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return strings.Trim(hostport, "[]")
}

// Route returns path with the segments that look like ids (numbers, UUIDs,
// long hex or mixed letters and digits) replaced by {id}, so that
// /orders/123 and /orders/456 are one endpoint in summaries.
func Route(path string) string {
	if path == "" {
		return ""
	}
	segs := strings.Split(path, "/")
	for i, s := range segs {
		if isID(s) {
			segs[i] = "{id}"
		}
	}
	return strings.Join(segs, "/")
}

func isID(s string) bool {
	if s == "" {
		return false
	}
	digits, hex, letters, other := 0, 0, 0, 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			digits++
		case (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'):
			hex++
		case (c >= 'g' && c <= 'z') || (c >= 'G' && c <= 'Z'):
			letters++
		case c == '-' || c == '_' || c == '.' || c == '%' || c == ':' || c == '~':
			other++
		default:
			return false
		}
	}
	switch {
	case digits == len(s): // 123
		return true
	case letters == 0 && digits > 0 && digits+hex+other == len(s) && len(s) >= 8: // UUIDs, hashes, 2025-03-01
		return true
	case digits >= 2 && len(s) >= 12 && letters+hex > 0: // opaque ids as ord_8f3KqP2x9z
		return true
	}
	return false
}

// SearchBodyBytes is how much of each body text search covers.
const SearchBodyBytes = 4096

// SearchText returns what the Text filter searches: the URL, then the first
// SearchBodyBytes of the request and response bodies (the TCP streams'
// first chunks of each direction; the messages of a gRPC call or a
// WebSocket, their decoded strings for protobuf), each only if it is UTF-8
// text, all lower case and joined by newlines.
func SearchText(rec *capture.Record) string {
	var b strings.Builder
	switch {
	case rec.HTTP != nil:
		b.WriteString(rec.HTTP.Req.URL)
		addText(&b, searchable(rec.HTTP.Req.Headers, rec.HTTP.Req.Body.Data))
		if rec.HTTP.Res != nil {
			addText(&b, searchable(rec.HTTP.Res.Headers, rec.HTTP.Res.Body.Data))
		}
		if len(rec.HTTP.Messages) > 0 {
			var up, down []byte
			for _, m := range rec.HTTP.Messages {
				p := &down
				if m.Up {
					p = &up
				}
				if len(*p) >= SearchBodyBytes {
					continue
				}
				if len(m.Fields) > 0 {
					*p = appendStrings(*p, m.Fields)
				} else if utf8.Valid(m.Data) && bytes.IndexByte(m.Data, 0) < 0 {
					*p = append(*p, m.Data...)
				}
				*p = append(*p, ' ')
			}
			addText(&b, up)
			addText(&b, down)
		}
	case rec.TCP != nil:
		b.WriteString("tcp://" + rec.Net.ServerAddr)
		var up, down []byte
		for _, c := range rec.TCP.Chunks {
			p := &down
			if c.Up {
				p = &up
			}
			if n := SearchBodyBytes - len(*p); n > 0 {
				*p = append(*p, c.Data[:min(n, len(c.Data))]...)
			}
		}
		addText(&b, up)
		addText(&b, down)
	}
	return strings.ToLower(b.String())
}

// searchable returns the first SearchBodyBytes of a body with its content
// codings undone by content.Decode, as the viewer undoes them, as far as
// the captured bytes go; a body in a coding it cannot undo is not
// searchable.
func searchable(h capture.Headers, data []byte) []byte {
	out, err := content.Decode(strings.Join(h.Values("Content-Encoding"), ", "), data, SearchBodyBytes)
	if err != nil {
		if de := (*content.Error)(nil); !errors.As(err, &de) || !de.Partial {
			return nil
		}
	}
	return out // a truncated stream gives what it has
}

// appendStrings appends the string fields of a decoded protobuf message.
func appendStrings(dst []byte, fs []capture.ProtoField) []byte {
	for _, f := range fs {
		switch {
		case len(dst) >= SearchBodyBytes:
			return dst
		case f.String != nil && *f.String != "":
			dst = append(append(dst, *f.String...), ' ')
		case len(f.Message) > 0:
			dst = appendStrings(dst, f.Message)
		}
	}
	return dst
}

func addText(b *strings.Builder, data []byte) {
	if len(data) > SearchBodyBytes {
		data = data[:SearchBodyBytes]
		// Drop a rune cut by the limit.
		for i := 0; i < utf8.UTFMax && len(data) > 0; i++ {
			if r, size := utf8.DecodeLastRune(data); r != utf8.RuneError || size != 1 {
				break
			}
			data = data[:len(data)-1]
		}
	}
	if len(data) == 0 || !utf8.Valid(data) || strings.IndexByte(string(data), 0) >= 0 {
		return
	}
	b.WriteByte('\n')
	b.Write(data)
}

// Records are stored as their JSON form, compressed with zstd when that is
// worth it. A zstd frame starts with 0x28, JSON with '{': the first byte
// says which.
const compressAbove = 4096

var (
	// Both are safe for concurrent EncodeAll and DecodeAll; each holds
	// up to GOMAXPROCS states. The decoder refuses frames that would
	// inflate past 256 MiB (a stored record is at most a few MiB).
	encoder, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest))
	decoder, _ = zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(256<<20))
)

// EncodeRecord returns the stored form of rec.
func EncodeRecord(rec *capture.Record) ([]byte, error) {
	// wire's encoder writes what encoding/json does, several times faster.
	var buf bytes.Buffer
	if err := jsonl.Append(&buf, []*capture.Record{rec}); err != nil {
		return nil, err
	}
	b := bytes.TrimSuffix(buf.Bytes(), []byte{'\n'})
	if len(b) <= compressAbove {
		return b, nil
	}
	return encoder.EncodeAll(b, make([]byte, 0, len(b)/3)), nil
}

// compressRecord returns the stored form of a record's JSON b: a copy of
// b, compressed when it is larger than compressAbove.
func compressRecord(b []byte) []byte {
	if len(b) <= compressAbove {
		return bytes.Clone(b)
	}
	return encoder.EncodeAll(b, make([]byte, 0, len(b)/3))
}

// DecodeRecord reads the stored form of a record.
func DecodeRecord(data []byte) (*capture.Record, error) {
	if len(data) > 0 && data[0] != '{' {
		var err error
		data, err = decoder.DecodeAll(data, nil)
		if err != nil {
			return nil, fmt.Errorf("decompress stored record: %w", err)
		}
	}
	rec := new(capture.Record)
	if err := json.Unmarshal(data, rec); err != nil {
		return nil, fmt.Errorf("decode stored record: %w", err)
	}
	return rec, nil
}

// Cursor is a position in the newest-first order of List: the start and
// id of the last record of a page.
type Cursor struct {
	StartUs int64
	ID      string
}

// String returns the cursor's opaque form.
func (c Cursor) String() string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(c.StartUs, 10) + "," + c.ID))
}

// ParseCursor reads the form String writes.
func ParseCursor(s string) (Cursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return Cursor{}, fmt.Errorf("%w: %q", ErrBadCursor, s)
	}
	ts, id, ok := strings.Cut(string(b), ",")
	n, err := strconv.ParseInt(ts, 10, 64)
	if !ok || err != nil || id == "" {
		return Cursor{}, fmt.Errorf("%w: %q", ErrBadCursor, s)
	}
	return Cursor{StartUs: n, ID: id}, nil
}
