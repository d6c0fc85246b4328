// Package markdown reads and writes the vendor's Markdown recordings: a
// directory recorded-<time>/<host>/<time>.md with one exchange per file, in
// sections REQUEST, RESPONSE, SIGNATURE, METADATA and "INTERNAL - DO NOT
// MODIFY" (the vendor's RRPair, internal/rrpair, as JSON on one line).
//
// The INTERNAL block is the exact copy; the Markdown blocks are the view a
// person reads and edits. The reader renders the INTERNAL block as the
// writer would and takes a Markdown block into account only where it
// differs from that rendering: an edited block wins, and an unedited one
// changes nothing, so that what this package writes reads back the same.
// The rules for each block, and what is lost, are in docs/record.md.
package markdown

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/rrpair"
)

// MaxFile bounds the size of one recording that ReadFile accepts. A larger
// file is an error, not an allocation.
const MaxFile = 64 << 20

var maxFile = MaxFile // lowered by tests

// Errors of the reader. A bad INTERNAL record is also rrpair.ErrBad or
// rrpair.ErrNotPair.
var (
	ErrNotRecording = errors.New("not a markdown recording")
	ErrBad          = errors.New("bad markdown recording")
	ErrTooLarge     = errors.New("markdown recording too large")
)

// Ext is the extension of a recording's files.
const Ext = ".md"

// fileNS is the name space of ids made from the bytes of a file without a
// uuid.
var fileNS = uuid.NewSHA1(uuid.NameSpaceURL, []byte("https://github.com/tapwire/tapwire/vendor-markdown"))

// Looks reports whether head, the first bytes of a file, look like a
// recording: its first line that is not blank is a "### NAME ###" line of
// one of the vendor's sections.
func Looks(head []byte) bool {
	s := strings.TrimLeft(string(bytes.TrimPrefix(head, []byte("\ufeff"))), " \t\r\n")
	line, _, _ := strings.Cut(s, "\n")
	name, ok := sectionName(line)
	if !ok {
		return false
	}
	switch name {
	case secRequest, secResponse, secSignature, secMetadata, secInternal:
		return true
	}
	return false
}

// ReadFile parses one recording; name is used in errors.
func ReadFile(r io.Reader, name string) (*capture.Record, error) {
	b, err := io.ReadAll(io.LimitReader(r, int64(maxFile)+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if len(b) > maxFile {
		return nil, fmt.Errorf("%s: %w: more than %d bytes", name, ErrTooLarge, maxFile)
	}
	f, err := parse(b, name)
	if err != nil {
		return nil, err
	}
	p, err := internalPair(f, name)
	if err != nil {
		return nil, err
	}
	if err := overlay(p, f, name); err != nil {
		return nil, err
	}
	rec, err := rrpair.ToRecord(p)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if f.blockOf(secInternal, 0) == nil && rec.Vendor != nil {
		// With no INTERNAL record, no vendor field was left out on
		// purpose: export derives them all.
		rec.Vendor.Absent = nil
		if reflect.ValueOf(*rec.Vendor).IsZero() {
			rec.Vendor = nil
		}
	}
	if p.UUID == "" {
		// An id from the file's bytes rather than a random one, so that
		// importing the same file twice stores it once.
		rec.ID = uuid.NewSHA1(fileNS, b).String()
	}
	return rec, nil
}

// internalPair decodes the INTERNAL block's "json: " line, or returns an
// empty record when there is none.
func internalPair(f *file, name string) (*rrpair.Pair, error) {
	p := &rrpair.Pair{}
	b := f.blockOf(secInternal, 0)
	if b == nil {
		return p, nil
	}
	for i, line := range strings.Split(b.content, "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "json:")
		if !ok {
			continue
		}
		if err := json.Unmarshal([]byte(rest), p); err != nil {
			return nil, fmt.Errorf("%s: line %d: %w: INTERNAL json: %w", name, b.line+i, rrpair.ErrBad, err)
		}
		return p, nil
	}
	return nil, fmt.Errorf("%s: line %d: %w: INTERNAL block has no json: line", name, b.line, ErrBad)
}

// ReadDir reads every recording (.md file) below dir, in the order of
// their paths, and calls fn with each record. Other files (the vendor's
// metadata) are ignored. dir may also be one .md file. An error names the
// file; an error from fn stops the read and is returned, wrapped with it.
func ReadDir(dir string, fn func(*capture.Record) error) error {
	var paths []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() && strings.EqualFold(filepath.Ext(path), Ext) {
			paths = append(paths, path)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("list recordings: %w", err)
	}
	// WalkDir visits in lexical order within each directory, so paths is
	// sorted by path.
	for _, path := range paths {
		rec, err := readPath(path)
		if err != nil {
			return err
		}
		if err := fn(rec); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	return nil
}

func readPath(path string) (*capture.Record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read recording: %w", err)
	}
	defer f.Close()
	return ReadFile(f, path)
}

// Writer writes records as a recording directory: dir/<host>/<time>.md,
// one file per record.
type Writer struct {
	dir string
	n   int
}

// NewWriter returns a Writer into dir, which it creates.
func NewWriter(dir string) (*Writer, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create recording directory: %w", err)
	}
	return &Writer{dir: dir}, nil
}

// Write writes one record to a new file dir/<host>/<time>.md, named after
// its host and start time; a second record of the same host and instant
// gets <time>_0002.md, and so on.
func (w *Writer) Write(r *capture.Record) error {
	b, err := Marshal(r)
	if err != nil {
		return fmt.Errorf("encode record %d (%s): %w", w.n, r.ID, err)
	}
	hostDir := filepath.Join(w.dir, hostName(r))
	if err := os.MkdirAll(hostDir, 0o755); err != nil {
		return fmt.Errorf("write record %d: %w", w.n, err)
	}
	base := r.Start.UTC().Format("2006-01-02_15-04-05.000000000")
	for i := 1; ; i++ {
		name := base + Ext
		if i > 1 {
			name = fmt.Sprintf("%s_%04d%s", base, i, Ext)
		}
		f, err := os.OpenFile(filepath.Join(hostDir, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("write record %d: %w", w.n, err)
		}
		_, err = f.Write(b)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("write record %d: %w", w.n, err)
		}
		w.n++
		return nil
	}
}

// Close does nothing: each file is closed when written. It is there for
// the shape every format's writer has.
func (w *Writer) Close() error { return nil }

// Marshal returns the recording of one record: its Markdown blocks and the
// INTERNAL block.
func Marshal(r *capture.Record) ([]byte, error) {
	internal, err := json.Marshal(rrpair.FromRecord(r))
	if err != nil {
		return nil, err
	}
	// Render what the reader will decode, so that its renderings match.
	var p rrpair.Pair
	if err := json.Unmarshal(internal, &p); err != nil {
		return nil, err
	}
	return render(&p, internal), nil
}

// hostName is the directory of a record: the upstream's host name, or the
// request's host, made safe as one path element.
func hostName(r *capture.Record) string {
	h := r.Net.ServerHost
	if h == "" && r.HTTP != nil {
		h = r.HTTP.Req.Host
	}
	if h == "" {
		h = r.Net.ServerAddr
	}
	if host, _, ok := strings.Cut(h, ":"); ok && !strings.Contains(h, "]") {
		h = host
	}
	h = strings.Map(func(c rune) rune {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '-', c == '_':
			return c
		}
		return '_'
	}, h)
	if strings.Trim(h, ".") == "" {
		return "unknown"
	}
	return h
}

// overlay lays the edited Markdown blocks of f over p, the INTERNAL record.
func overlay(p *rrpair.Pair, f *file, name string) error {
	if err := overlayMeta(p, f, name); err != nil {
		return err
	}
	overlaySignature(p, f)
	if f.sections[secRequest] != nil || f.sections[secResponse] != nil {
		if p.HTTP == nil {
			p.HTTP = &rrpair.HTTP{}
		}
		if p.HTTP.Req == nil {
			p.HTTP.Req = &rrpair.Request{}
		}
	}
	if f.sections[secRequest] != nil {
		if err := overlayRequest(p, f, name); err != nil {
			return err
		}
	}
	if f.sections[secResponse] != nil {
		if p.HTTP.Res == nil {
			p.HTTP.Res = &rrpair.Response{}
		}
		if err := overlayResponse(p, f, name); err != nil {
			return err
		}
	}
	return nil
}

// fields reads "key: value" lines (METADATA) or "key is value" lines
// (SIGNATURE) in order; blank lines are skipped.
func fields(content, sep string) (keys []string, m map[string]string) {
	m = map[string]string{}
	for line := range strings.SplitSeq(content, "\n") {
		line = strings.TrimRight(line, "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		k, v, _ := strings.Cut(line, sep)
		k = strings.TrimSpace(k)
		if _, dup := m[k]; !dup {
			keys = append(keys, k)
		}
		m[k] = v
	}
	return keys, m
}

func overlayMeta(p *rrpair.Pair, f *file, name string) error {
	b := f.blockOf(secMetadata, 0)
	if b == nil {
		return nil
	}
	want := strings.Join(metaLines(p), "\n")
	if b.content == want {
		return nil
	}
	_, was := fields(want, ":")
	_, got := fields(b.content, ":")
	for k, v := range got {
		v = strings.TrimSpace(v)
		if v == strings.TrimSpace(was[k]) {
			continue
		}
		switch k {
		case "direction":
			p.Direction = v
		case "uuid":
			switch u, err := uuid.Parse(v); {
			case v == p.UUID:
			case err == nil:
				p.UUID = base64.StdEncoding.EncodeToString(u[:])
			default:
				p.UUID = v // 16 bytes in base64, or another text
			}
		case "ts":
			p.TS = v
		case "duration":
			d, err := parseDuration(v)
			if err != nil {
				return fmt.Errorf("%s: line %d: %w: duration %q: %w", name, b.line, ErrBad, v, err)
			}
			p.Duration = d.Milliseconds()
			if p.Tags == nil {
				p.Tags = map[string]string{}
			}
			delete(p.Tags, rrpair.TagDuration)
			if d%time.Millisecond != 0 {
				p.Tags[rrpair.TagDuration] = strconv.FormatInt(d.Microseconds(), 10)
			}
		case "tags":
			// A tag left out of METADATA is kept: the vendor's METADATA
			// does not show every tag of INTERNAL.
			for _, kv := range parseTagList(v) {
				if ov, ok := p.Tags[kv[0]]; ok && ov == kv[1] {
					continue
				}
				if p.Tags == nil {
					p.Tags = map[string]string{}
				}
				p.Tags[kv[0]] = kv[1]
			}
		}
	}
	return nil
}

// parseDuration reads "21ms" or any Go duration; a bare number is
// milliseconds.
func parseDuration(s string) (time.Duration, error) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		s = strconv.FormatInt(n, 10) + "ms"
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, err
	}
	if d < 0 {
		return 0, errors.New("negative")
	}
	return d, nil
}

// parseTagList reads "k=v, k=v" into pairs.
func parseTagList(s string) [][2]string {
	if s == "" {
		return nil
	}
	var kvs [][2]string
	for _, part := range splitRaw(s) {
		k, v, _ := cutKey(part)
		kvs = append(kvs, [2]string{unescape(k), unescape(v)})
	}
	return kvs
}

func overlaySignature(p *rrpair.Pair, f *file) {
	b := f.blockOf(secSignature, 0)
	if b == nil || b.content == strings.Join(sigLines(p.Signature), "\n") {
		return
	}
	keys, got := fields(b.content, " is ")
	sig := make(map[string]string, len(keys))
	for _, k := range keys {
		v := got[k]
		if old, ok := p.Signature[k]; ok && sigValue(old) == v {
			sig[k] = old // unchanged: the INTERNAL value as it is
			continue
		}
		if v == noneValue {
			sig[k] = ""
			continue
		}
		sig[k] = base64.StdEncoding.EncodeToString([]byte(v))
	}
	p.Signature = sig
	if len(sig) == 0 {
		p.Signature = nil
	}
}

// head is a parsed REQUEST or RESPONSE head block: its first line's words
// and its headers.
type head struct {
	first   []string
	headers map[string][]string
	hasLen  bool // a Content-Length line was there
}

func parseHead(content string) head {
	h := head{headers: map[string][]string{}}
	lines := strings.Split(content, "\n")
	for i, line := range lines {
		line = strings.TrimRight(line, "\r")
		if i == 0 {
			h.first = strings.Fields(line)
			continue
		}
		if strings.TrimSpace(line) == "" {
			continue
		}
		k, v, _ := strings.Cut(line, ":")
		k = strings.TrimSpace(k)
		v = strings.TrimPrefix(v, " ")
		if strings.EqualFold(k, contentLength) {
			h.hasLen = true
		}
		h.headers[k] = append(h.headers[k], splitList(v)...)
	}
	return h
}

// sameHeaders compares header maps, Content-Length left out.
func sameHeaders(a, b map[string][]string) bool {
	return strings.Join(headLines(a), "\n") == strings.Join(headLines(b), "\n")
}

// headerName returns the name under which h holds the named header: the
// name itself, or the first of its case variants in sorted order.
func headerName(h map[string][]string, name string) (string, bool) {
	if _, ok := h[name]; ok {
		return name, true
	}
	found := ""
	for k := range h {
		if strings.EqualFold(k, name) && (found == "" || k < found) {
			found = k
		}
	}
	return found, found != ""
}

// setHeaders replaces the headers of a message by those of an edited head
// block. Content-Length, which the vendor's form leaves out, comes back
// when INTERNAL had it, or, when INTERNAL has no headers at all, when the
// body is not empty and there is no Transfer-Encoding; its value is the
// body's size.
func setHeaders(dst *map[string][]string, h head, size func() int64) {
	old := *dst
	m := h.headers
	if !h.hasLen {
		name, had := headerName(old, contentLength)
		if len(old) == 0 {
			name, had = contentLength, size() > 0 && !hasHeader(m, "Transfer-Encoding")
		}
		if had {
			m[name] = []string{strconv.FormatInt(size(), 10)}
		}
	}
	if len(m) == 0 {
		m = nil
	}
	*dst = m
}

func hasHeader(h map[string][]string, name string) bool {
	_, ok := headerName(h, name)
	return ok
}

// bodySize returns the whole size of a body: its size tag, or its length.
func bodySize(p *rrpair.Pair, tag, b64 string) int64 {
	if n, err := strconv.ParseInt(p.Tags[tag], 10, 64); err == nil {
		return n
	}
	return int64(len(bodyData(b64)))
}

// setBody replaces a body by an edited body block. The edited body is
// whole: a size tag (the size of a body cut at the capture cap) goes.
func setBody(p *rrpair.Pair, dst *string, b *block, tag string) error {
	data, err := decodeBody(b)
	if err != nil {
		return err
	}
	if !sameBody(data, bodyData(*dst)) {
		*dst = base64.StdEncoding.EncodeToString(data)
		delete(p.Tags, tag)
	}
	return nil
}

func overlayRequest(p *rrpair.Pair, f *file, name string) error {
	q := p.HTTP.Req
	if b := f.blockOf(secRequest, 1); b != nil && b.content != renderBody(bodyData(q.BodyBase64)).content {
		if err := setBody(p, &q.BodyBase64, b, rrpair.TagReqBodySize); err != nil {
			return fmt.Errorf("%s: line %d: %w: request body: %w", name, b.line, ErrBad, err)
		}
	}
	b := f.blockOf(secRequest, 0)
	if b == nil || b.content == headBlock(reqLine(p), q.Headers).content {
		return nil
	}
	h := parseHead(b.content)
	was := strings.Fields(reqLine(p))
	if len(h.first) > 0 && h.first[0] != was[0] {
		if p.Command == q.Method {
			p.Command = h.first[0]
		}
		q.Method = h.first[0]
	}
	if len(h.first) > 2 && (h.first[len(h.first)-1] != was[len(was)-1] || q.Version == "") {
		q.Version = strings.TrimPrefix(h.first[len(h.first)-1], "HTTP/")
	}
	if len(h.first) > 1 && h.first[1] != was[1] {
		setURL(p, q, h.first[1])
	}
	if !sameHeaders(h.headers, q.Headers) || h.hasLen {
		setHeaders(&q.Headers, h, func() int64 { return bodySize(p, rrpair.TagReqBodySize, q.BodyBase64) })
	}
	return nil
}

// setURL lays an edited request URL over q: its scheme, its host (unless
// it is the same host with the port of the scheme or of the connection, as
// the vendor writes it), and its path and query.
func setURL(p *rrpair.Pair, q *rrpair.Request, u string) {
	sch, rest, ok := strings.Cut(u, "://")
	if !ok {
		sch, rest = scheme(p), reqHost(p, q)+u
	}
	host, uri := rest, ""
	if i := strings.IndexAny(rest, "/?"); i >= 0 {
		host, uri = rest[:i], rest[i:]
	}
	if sch = strings.ToLower(sch); sch != scheme(p) || p.L7Protocol == "" {
		p.L7Protocol = sch
	}
	old := reqHost(p, q)
	port := "80"
	if sch == "https" {
		port = "443"
	}
	if host != old && host != old+":"+port && host != p.NetworkAddress {
		q.Host = host
	}
	oldURI := q.URI
	if oldURI == "" {
		oldURI = q.URL
	}
	if uri != oldURI {
		oldPath, _, _ := strings.Cut(oldURI, "?")
		newPath, _, _ := strings.Cut(uri, "?")
		if p.Location == oldPath {
			p.Location = newPath
		}
		if q.URL == q.URI {
			q.URL = uri
		}
		q.URI = uri
	}
}

func overlayResponse(p *rrpair.Pair, f *file, name string) error {
	s := p.HTTP.Res
	if b := f.blockOf(secResponse, 1); b != nil && b.content != renderBody(bodyData(s.BodyBase64)).content {
		if err := setBody(p, &s.BodyBase64, b, rrpair.TagResBodySize); err != nil {
			return fmt.Errorf("%s: line %d: %w: response body: %w", name, b.line, ErrBad, err)
		}
	}
	b := f.blockOf(secResponse, 0)
	if b == nil || b.content == headBlock(statusLine(p), s.Headers).content {
		return nil
	}
	h := parseHead(b.content)
	was := strings.Fields(statusLine(p))
	if len(h.first) > 0 && h.first[0] != was[0] {
		if p.Tags == nil {
			p.Tags = map[string]string{}
		}
		p.Tags[rrpair.TagResProto] = h.first[0]
	}
	if len(h.first) > 1 && (len(was) < 2 || h.first[1] != was[1]) {
		code, err := strconv.Atoi(h.first[1])
		if err != nil || code < 0 || code > 999 {
			return fmt.Errorf("%s: line %d: %w: status code %q", name, b.line, ErrBad, h.first[1])
		}
		if p.Status == strconv.Itoa(s.StatusCode) {
			p.Status = strconv.Itoa(code)
		}
		text := statusText(s)
		s.StatusCode = code
		s.StatusMessage = strconv.Itoa(code) + " " + text
	}
	if text := strings.Join(h.first[min(2, len(h.first)):], " "); text != statusText(s) {
		s.StatusMessage = strconv.Itoa(s.StatusCode) + " " + text
	}
	if !sameHeaders(h.headers, s.Headers) || h.hasLen {
		oldCT := headerValue(s.Headers, "Content-Type")
		setHeaders(&s.Headers, h, func() int64 { return bodySize(p, rrpair.TagResBodySize, s.BodyBase64) })
		if s.ContentType == oldCT {
			s.ContentType = headerValue(s.Headers, "Content-Type")
		}
	}
	return nil
}

func headerValue(h map[string][]string, name string) string {
	if k, ok := headerName(h, name); ok && len(h[k]) > 0 {
		return h[k][0]
	}
	return ""
}
