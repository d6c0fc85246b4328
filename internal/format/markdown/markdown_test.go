package markdown

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/capture/capturetest"
	"github.com/tapwire/tapwire/internal/rrpair"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

const recording = "testdata/recorded-2026-06-25_18-18-27"

func readAll(t testing.TB, dir string) []*capture.Record {
	t.Helper()
	var recs []*capture.Record
	if err := ReadDir(dir, func(r *capture.Record) error { recs = append(recs, r); return nil }); err != nil {
		t.Fatalf("ReadDir(%s) = %v", dir, err)
	}
	return recs
}

func readSample(t *testing.T, path string) *capture.Record {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rec, err := ReadFile(f, path)
	if err != nil {
		t.Fatalf("ReadFile(%s) = %v", path, err)
	}
	if err := rec.Validate(); err != nil {
		t.Fatalf("ReadFile(%s) record fails Validate: %v", path, err)
	}
	return rec
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

func headers(kv ...string) capture.Headers {
	var h capture.Headers
	for i := 0; i+1 < len(kv); i += 2 {
		h = append(h, capture.Header{Name: kv[i], Value: kv[i+1]})
	}
	return h
}

// TestReadSamples reads the hand-made recordings of testdata, one quirk of
// the vendor's files or one edit by a person in each.
func TestReadSamples(t *testing.T) {
	type check struct {
		name      string
		got, want any
	}
	tests := []struct {
		name   string
		file   string
		checks func(r *capture.Record) []check
	}{
		{
			// Headers and bodies only in the Markdown blocks; \, in values;
			// a header of two values; a pretty-printed JSON body; no
			// Content-Length; the signature's host is the reverse proxy's;
			// METADATA leaves out a tag that INTERNAL has.
			name: "markdown only",
			file: "localhost/2026-06-25_18-18-27.132643000.md",
			checks: func(r *capture.Record) []check {
				return []check{
					{"ID", r.ID, "6f1c2a30-7d4e-4b8a-9c21-5e3f7a9b0d12"},
					{"Direction", r.Direction, capture.DirIn},
					{"Start", r.Start, time.Date(2026, 6, 25, 18, 18, 27, 132643000, time.UTC)},
					{"DurMicros", r.DurMicros, int64(21000)},
					{"Req.URL", r.HTTP.Req.URL, "http://localhost:8088/api/deposits"},
					{"Req.Headers", r.HTTP.Req.Headers, headers("Accept", "*/*", "Content-Length", "26", "Content-Type", "application/json",
						"Host", "localhost:8088", "User-Agent", "curl/8.7.1")},
					{"Req.Body.Data", string(r.HTTP.Req.Body.Data), `{"account":7,"amount":3.5}`},
					{"Req.Body.Size", r.HTTP.Req.Body.Size, int64(26)},
					{"Res.Status", r.HTTP.Res.Status, 400},
					{"Res.Headers", r.HTTP.Res.Headers, headers("Cache-Control", "no-cache, no-store, must-revalidate",
						"Date", "Thu, 25 Jun 2026 18:18:27 GMT", "Vary", "Origin", "Vary", "Access-Control-Request-Method")},
					{"Res.Body.Size", r.HTTP.Res.Body.Size, int64(0)},
					{"signature http:host", r.Vendor.Signature["http:host"], base64.StdEncoding.EncodeToString([]byte("localhost"))},
					{"signature http:queryparams", r.Vendor.Signature["http:queryparams"], ""},
					{"Tags", r.Tags, capture.Tags{"captureMode": "proxy", "proxyLocation": "in", "proxyType": "dual", "source": "goproxy"}},
				}
			},
		},
		{
			// INTERNAL complete and the Markdown blocks not edited, though
			// rendered otherwise (the JSON pretty-printed with < unescaped,
			// the URL with its port): INTERNAL's bytes win.
			name: "unedited",
			file: "api.example.com/2026-06-25_18-18-28.500000000.md",
			checks: func(r *capture.Record) []check {
				return []check{
					{"ID", r.ID, "0b7e9d44-1a2b-4c3d-8e4f-5a6b7c8d9e0f"},
					{"Req.URL", r.HTTP.Req.URL, "https://api.example.com/v1/items?limit=1"},
					{"Req.Host", r.HTTP.Req.Host, "api.example.com"},
					{"Res.Body.Data", string(r.HTTP.Res.Body.Data), `{"items":[{"id":1,"name":"a\u003cb"}],"total":1}`},
					{"Res.Headers", r.HTTP.Res.Headers, headers("Content-Length", "48", "Content-Type", "application/json", "X-Tags", "a,b", "X-Tags", "c")},
					{"Tags", r.Tags, capture.Tags{"captureMode": "proxy"}},
					{"signature instance", r.Vendor.Signature["instance"], "MA=="},
				}
			},
		},
		{
			// The same exchange edited: URL, a header, the status, the body,
			// the duration, a tag and the signature. The edited blocks win
			// and Content-Length follows the new body.
			name: "edited",
			file: "api.example.com/2026-06-25_18-18-29.000000000.md",
			checks: func(r *capture.Record) []check {
				return []check{
					{"Req.URL", r.HTTP.Req.URL, "https://api.example.com/v1/items?limit=2"},
					{"Req.Headers", r.HTTP.Req.Headers, headers("Accept", "application/json", "Authorization", "Bearer y")},
					{"Res.Status", r.HTTP.Res.Status, 201},
					{"Res.StatusText", r.HTTP.Res.StatusText, "Created"},
					{"Res.Body.Data", string(r.HTTP.Res.Body.Data), `{"items":[{"id":1,"name":"a<b"}],"total":12}`},
					{"Res.Headers", r.HTTP.Res.Headers, headers("Content-Length", "44", "Content-Type", "application/json",
						"X-Tags", "a,b", "X-Tags", "c", "X-Tags", "d")},
					{"DurMicros", r.DurMicros, int64(1500)},
					{"Tags", r.Tags, capture.Tags{"captureMode": "proxy", "edited": "yes"}},
					{"signature http:queryparams", r.Vendor.Signature["http:queryparams"], base64.StdEncoding.EncodeToString([]byte("limit=2"))},
					{"vendor status", rrpair.FromRecord(r).Status, "201"},
				}
			},
		},
		{
			// No INTERNAL block; the uuid in base64; a binary body in base64;
			// a Content-Length written by hand; an empty body as a blank line.
			name: "no internal",
			file: "files.example.com/2026-06-25_18-18-30.000000000.md",
			checks: func(r *capture.Record) []check {
				return []check{
					{"ID", r.ID, "11111111-2222-4333-8444-555555555555"},
					{"Req.Method", r.HTTP.Req.Method, "PUT"},
					{"Req.URL", r.HTTP.Req.URL, "http://files.example.com/up/logo.png"},
					{"Req.Proto", r.HTTP.Req.Proto, "HTTP/1.1"},
					{"Req.Headers", r.HTTP.Req.Headers, headers("Content-Length", "10", "Content-Type", "image/png")},
					{"Req.Body.Data", r.HTTP.Req.Body.Data, []byte{0x89, 'P', 'N', 'G', 0, 1, 2, 3, 0xff, 0xfe}},
					{"Res.Status", r.HTTP.Res.Status, 204},
					{"Res.StatusText", r.HTTP.Res.StatusText, "No Content"},
					{"Res.Body.Data", r.HTTP.Res.Body.Data, []byte(nil)},
					{"Vendor", r.Vendor, (*capture.VendorFacts)(nil)},
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := readSample(t, filepath.Join(recording, tt.file))
			for _, c := range tt.checks(r) {
				if !reflect.DeepEqual(c.got, c.want) {
					t.Errorf("%s = %#v, want %#v", c.name, c.got, c.want)
				}
			}
		})
	}
}

// TestReadDir reads a recording directory and a host directory inside it,
// in path order, ignoring the files that are not .md.
func TestReadDir(t *testing.T) {
	tests := []struct {
		name    string
		dir     string
		wantIDs []string
	}{
		{"recording", recording, []string{
			"0b7e9d44-1a2b-4c3d-8e4f-5a6b7c8d9e0f",
			"0b7e9d44-1a2b-4c3d-8e4f-5a6b7c8d9e10",
			"11111111-2222-4333-8444-555555555555",
			"6f1c2a30-7d4e-4b8a-9c21-5e3f7a9b0d12",
		}},
		{"host", filepath.Join(recording, "localhost"), []string{"6f1c2a30-7d4e-4b8a-9c21-5e3f7a9b0d12"}},
		{"parent", "testdata", nil}, // the recording and the golden files: see wantN
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ids []string
			for _, r := range readAll(t, tt.dir) {
				ids = append(ids, r.ID)
			}
			if tt.wantIDs == nil {
				if wantN := 4 + len(capturetest.Records()); len(ids) != wantN {
					t.Errorf("ReadDir(%s) read %d records, want %d", tt.dir, len(ids), wantN)
				}
				return
			}
			if !slices.Equal(ids, tt.wantIDs) {
				t.Errorf("ReadDir(%s) ids = %v, want %v", tt.dir, ids, tt.wantIDs)
			}
		})
	}

	t.Run("callback error", func(t *testing.T) {
		stop := errors.New("stop")
		err := ReadDir(recording, func(*capture.Record) error { return stop })
		if !errors.Is(err, stop) || !strings.Contains(err.Error(), "2026-06-25_18-18-28.500000000.md") {
			t.Errorf("ReadDir = %v, want stop naming the first file", err)
		}
	})
	t.Run("missing", func(t *testing.T) {
		err := ReadDir(filepath.Join(t.TempDir(), "nothing"), func(*capture.Record) error { return nil })
		if !errors.Is(err, os.ErrNotExist) {
			t.Errorf("ReadDir(missing) = %v, want ErrNotExist", err)
		}
	})
}

func TestReadErrors(t *testing.T) {
	good, err := os.ReadFile(filepath.Join(recording, "localhost/2026-06-25_18-18-27.132643000.md"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		input    string
		wantErr  error
		wantText string
	}{
		{"empty", "", ErrNotRecording, "x.md"},
		{"prose", "# Notes\n\nnothing here\n", ErrNotRecording, "x.md"},
		{"block before section", "```\nGET / HTTP/1.1\n```\n", ErrBad, "line 1:"},
		{"unclosed block", "### REQUEST ###\n```\nGET / HTTP/1.1\n", ErrBad, "line 2:"},
		{"repeated section", "### METADATA ###\n```\n```\n### METADATA ###\n", ErrBad, "line 4:"},
		{"internal not json", "### INTERNAL - DO NOT MODIFY ###\n```\njson: {\n```\n", rrpair.ErrBad, "line 3:"},
		{"internal without json line", "### INTERNAL - DO NOT MODIFY ###\n```\nyaml: x\n```\n", ErrBad, "line 3:"},
		{"internal not rrpair", "### INTERNAL - DO NOT MODIFY ###\n```\njson: {\"msgType\":\"metric\"}\n```\n", rrpair.ErrNotPair, "x.md"},
		{"bad direction", strings.Replace(string(good), "direction: IN", "direction: SIDEWAYS", 1), rrpair.ErrBad, "direction"},
		{"bad ts", strings.Replace(string(good), "ts: 2026-06-25T18:18:27.132643Z", "ts: yesterday", 1), rrpair.ErrBad, "ts"},
		{"bad duration", strings.Replace(string(good), "duration: 21ms", "duration: soon", 1), ErrBad, "duration"},
		{"bad status", strings.Replace(string(good), "HTTP/1.1 400 Bad", "HTTP/1.1 four Bad", 1), ErrBad, "status code"},
		{"bad base64 body", "### REQUEST ###\n```\nGET http://h/ HTTP/1.1\n```\n\n```base64\n***\n```\n", ErrBad, "line 7:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadFile(strings.NewReader(tt.input), "x.md")
			if err == nil {
				t.Fatalf("ReadFile = nil, want %v", tt.wantErr)
			}
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("ReadFile = %v, want errors.Is %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantText) || !strings.HasPrefix(err.Error(), "x.md") {
				t.Errorf("ReadFile = %q, want it to start with the name and hold %q", err, tt.wantText)
			}
		})
	}

	t.Run("too large", func(t *testing.T) {
		defer func(n int) { maxFile = n }(maxFile)
		maxFile = len(good) - 1
		_, err := ReadFile(bytes.NewReader(good), "x.md")
		if !errors.Is(err, ErrTooLarge) {
			t.Errorf("ReadFile = %v, want ErrTooLarge", err)
		}
		maxFile = len(good)
		if _, err := ReadFile(bytes.NewReader(good), "x.md"); err != nil {
			t.Errorf("ReadFile of exactly maxFile bytes = %v, want nil", err)
		}
	})

	t.Run("no uuid", func(t *testing.T) {
		in := "### REQUEST ###\n```\nGET http://h/a HTTP/1.1\n```\n### METADATA ###\n```\ndirection: OUT\nts: 2026-01-01T00:00:00Z\n```\n"
		a, err := ReadFile(strings.NewReader(in), "a.md")
		if err != nil {
			t.Fatal(err)
		}
		b, err := ReadFile(strings.NewReader(in), "a.md")
		if err != nil {
			t.Fatal(err)
		}
		if a.ID != b.ID {
			t.Errorf("ids of two reads of one file: %s, %s, want the same", a.ID, b.ID)
		}
	})
}

func TestLooks(t *testing.T) {
	tests := []struct {
		name string
		head string
		want bool
	}{
		{"request", "### REQUEST ###\n```\n", true},
		{"blank lines and BOM", "\ufeff\n\r\n### METADATA ###\r\n", true},
		{"internal only", "### INTERNAL - DO NOT MODIFY ###\n", true},
		{"cut short", "### REQU", false},
		{"other section", "### NOTES ###\n", false},
		{"markdown heading", "# Recording\n### REQUEST ###\n", false},
		{"json", `{"msgType":"rrpair"}`, false},
		{"empty", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Looks([]byte(tt.head)); got != tt.want {
				t.Errorf("Looks(%q) = %v, want %v", tt.head, got, tt.want)
			}
		})
	}
}

func TestEscape(t *testing.T) {
	tests := []struct {
		name   string
		values []string
		want   string
	}{
		{"plain", []string{"a"}, "a"},
		{"comma", []string{"no-cache, no-store"}, `no-cache\, no-store`},
		{"two values", []string{"a", "b"}, "a, b"},
		{"backslash", []string{`C:\x`, `\`}, `C:\\x, \\`},
		{"leading space and empty", []string{" a", "", "b "}, " a, , b "},
		{"new line", []string{"a\r\nb"}, `a\r\nb`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parts := make([]string, len(tt.values))
			for i, v := range tt.values {
				parts[i] = escape(v, false)
			}
			got := strings.Join(parts, ", ")
			if got != tt.want {
				t.Errorf("escaped %q = %q, want %q", tt.values, got, tt.want)
			}
			if back := splitList(got); !slices.Equal(back, tt.values) {
				t.Errorf("splitList(%q) = %q, want %q", got, back, tt.values)
			}
		})
	}
	t.Run("hand-written backslash", func(t *testing.T) {
		if got, want := splitList(`a\b\`), []string{`a\b\`}; !slices.Equal(got, want) {
			t.Errorf("splitList = %q, want %q", got, want)
		}
	})
}

// TestGolden compares the recording of each golden record with
// testdata/golden/<name>.md; -update rewrites them.
func TestGolden(t *testing.T) {
	for name, rec := range capturetest.Records() {
		t.Run(name, func(t *testing.T) {
			got, err := Marshal(rec)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", "golden", name+".md")
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to write it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("Marshal(%s) differs from %s (run with -update):\ngot\n%s\nwant\n%s", name, path, got, want)
			}
			if !Looks(got) {
				t.Errorf("Looks(Marshal(%s)) = false, want true", name)
			}
		})
	}
}

// TestRoundTrip writes the golden records as a recording and reads it back.
// Intentional losses, as for the vendor's raw.jsonl (the INTERNAL block is
// an RRPair; see internal/rrpair's TestVendorRoundTripOwn): TCP chunks, the
// messages of HTTP (HTTP.Messages, HTTP.MessagesTruncated), and the order
// of header fields of different names (the vendor's form sorts them by
// name, keeping each name's values in order). The rest comes back equal.
func TestRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "recorded")
	w, err := NewWriter(dir)
	if err != nil {
		t.Fatal(err)
	}
	recs := capturetest.Records()
	for _, name := range slices.Sorted(mapsKeys(recs)) {
		if err := w.Write(recs[name]); err != nil {
			t.Fatalf("Write(%s) = %v", name, err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got := map[string]*capture.Record{}
	for _, r := range readAll(t, dir) {
		got[r.ID] = r
	}
	if len(got) != len(recs) {
		t.Fatalf("read %d records, want %d", len(got), len(recs))
	}
	for name, rec := range capturetest.Records() {
		t.Run(name, func(t *testing.T) {
			want := capturetest.VendorForm(rec)
			if g := got[rec.ID]; !reflect.DeepEqual(g, want) {
				t.Errorf("round trip of %s:\ngot  %s\nwant %s", name, mustJSON(g), mustJSON(want))
			}
		})
	}
}

func mapsKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// TestWriterNames checks the layout: dir/<host>/<time>.md, and a distinct
// file for records of the same host and instant.
func TestWriterNames(t *testing.T) {
	dir := t.TempDir()
	w, err := NewWriter(dir)
	if err != nil {
		t.Fatal(err)
	}
	rec := capturetest.Records()["http-in"]
	for range 3 {
		if err := w.Write(rec); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dir, path)
			got = append(got, filepath.ToSlash(rel))
		}
		return err
	})
	want := []string{
		"localhost/2025-02-11_21-07-54.542084000.md",
		"localhost/2025-02-11_21-07-54.542084000_0002.md",
		"localhost/2025-02-11_21-07-54.542084000_0003.md",
	}
	if !slices.Equal(got, want) {
		t.Errorf("files = %q, want %q", got, want)
	}
}

func TestHostName(t *testing.T) {
	tests := []struct {
		name string
		rec  capture.Record
		want string
	}{
		{"server host", capture.Record{Net: capture.Net{ServerHost: "api.example.com"}}, "api.example.com"},
		{"request host with port", capture.Record{HTTP: &capture.HTTP{Req: capture.Request{Host: "orders.shop:4143"}}}, "orders.shop"},
		{"server address", capture.Record{Net: capture.Net{ServerAddr: "db.internal:5432"}}, "db.internal"},
		{"unsafe", capture.Record{Net: capture.Net{ServerHost: "../etc/x"}}, ".._etc_x"},
		{"dots", capture.Record{Net: capture.Net{ServerHost: ".."}}, "unknown"},
		{"none", capture.Record{}, "unknown"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := hostName(&tt.rec); got != tt.want {
				t.Errorf("hostName = %q, want %q", got, tt.want)
			}
		})
	}
}

func FuzzReadFile(f *testing.F) {
	filepath.WalkDir(recording, func(path string, d os.DirEntry, err error) error {
		if err == nil && filepath.Ext(path) == Ext {
			b, _ := os.ReadFile(path)
			f.Add(b)
		}
		return err
	})
	for _, r := range capturetest.Records() {
		b, _ := Marshal(r)
		f.Add(b)
	}
	f.Add([]byte("### REQUEST ###\n````\nGET http://h/ HTTP/1.1\nA: b\\, c\n````\n\n```\n```\n### METADATA ###\n```\ndirection: OUT\n```\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rec, err := ReadFile(bytes.NewReader(data), "fuzz.md")
		if err != nil {
			return
		}
		if err := rec.Validate(); err != nil {
			t.Fatalf("record fails Validate: %v", err)
		}
		out, err := Marshal(rec)
		if err != nil {
			t.Fatalf("Marshal of a record read: %v", err)
		}
		again, err := ReadFile(bytes.NewReader(out), "again.md")
		if err != nil {
			t.Fatalf("read of the written record: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(again, capturetest.VendorForm(rec)) {
			t.Fatalf("record changed by write and read:\ngot  %s\nwant %s\nwritten\n%s", mustJSON(again), mustJSON(capturetest.VendorForm(rec)), out)
		}
	})
}
