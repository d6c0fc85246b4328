package store

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/tapwire/tapwire/internal/capture"
)

func TestRoute(t *testing.T) {
	tests := []struct{ path, want string }{
		{"", ""},
		{"/", "/"},
		{"/v1/orders", "/v1/orders"},
		{"/v1/orders/123", "/v1/orders/{id}"},
		{"/v1/orders/123/items/7", "/v1/orders/{id}/items/{id}"},
		{"/users/3f0b6c1e-4d5a-5c2b-9e11-7a8f0c2d4b61", "/users/{id}"},
		{"/blobs/deadbeefcafe0123", "/blobs/{id}"},
		{"/charges/ch_3MmlLrLkdIwHu7ix0snN0B15", "/charges/{id}"},
		{"/days/2025-03-01", "/days/{id}"},
		{"/v2/api", "/v2/api"}, // short mixed: a name
		{"/static/app.js", "/static/app.js"},
		{"/feed", "/feed"}, // hex letters only: a word
		{"/decade", "/decade"},
	}
	for _, tc := range tests {
		if got := Route(tc.path); got != tc.want {
			t.Errorf("Route(%q) = %q, want %q", tc.path, got, tc.want)
		}
	}
}

func TestParseStatus(t *testing.T) {
	tests := []struct {
		in     string
		lo, hi int
		ok     bool
	}{
		{"2xx", 200, 299, true}, {"5XX", 500, 599, true}, {"404", 404, 404, true},
		{"6xx", 0, 0, false}, {"x", 0, 0, false}, {"99", 0, 0, false}, {"", 0, 0, false},
	}
	for _, tc := range tests {
		lo, hi, err := ParseStatus(tc.in)
		if (err == nil) != tc.ok || lo != tc.lo || hi != tc.hi {
			t.Errorf("ParseStatus(%q) = %d, %d, %v; want %d, %d ok=%v", tc.in, lo, hi, err, tc.lo, tc.hi, tc.ok)
		}
	}
}

func TestCursor(t *testing.T) {
	c := Cursor{StartUs: -5, ID: "a,b"}
	got, err := ParseCursor(c.String())
	if err != nil || got != c {
		t.Errorf("round trip: %+v %v, want %+v", got, err, c)
	}
	for _, bad := range []string{"", "%%", "MTIz", "LGE"} {
		if _, err := ParseCursor(bad); !errors.Is(err, ErrBadCursor) {
			t.Errorf("ParseCursor(%q): %v, want ErrBadCursor", bad, err)
		}
	}
}

func TestRank(t *testing.T) {
	tests := []struct {
		vals []int64
		p    int
		want int64
	}{
		{[]int64{7}, 50, 7}, {[]int64{7}, 99, 7},
		{[]int64{1, 2}, 50, 1}, {[]int64{1, 2}, 95, 2},
		{[]int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 50, 5}, {[]int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 95, 10},
	}
	for _, tc := range tests {
		if got := rank(tc.vals, tc.p); got != tc.want {
			t.Errorf("rank(%v, %d) = %d, want %d", tc.vals, tc.p, got, tc.want)
		}
	}
}

func TestNewRow(t *testing.T) {
	rec := &capture.Record{Schema: 1, ID: "x", Kind: "http", Direction: "out", Start: time.Unix(1, 2000),
		Net: capture.Net{ServerHost: "ignored.example", ServerAddr: "10.0.0.1:443"},
		HTTP: &capture.HTTP{Req: capture.Request{Method: "get", URL: "https://Example.COM:8443/a/1?q=Z", Host: "Example.COM:8443",
			Body: capture.Body{Data: []byte("Hello " + strings.Repeat("é", SearchBodyBytes)), Size: 9000}}}}
	r, err := NewRow(rec)
	if err != nil {
		t.Fatal(err)
	}
	if r.Method != "GET" || r.Host != "example.com" || r.Path != "/a/1" || r.Route != "/a/{id}" || !r.Failed || r.StartUs != 1_000_002 {
		t.Errorf("row: %+v", r)
	}
	if !strings.HasPrefix(r.Search, "https://example.com:8443/a/1?q=z\nhello é") || len(r.Search) > 40+SearchBodyBytes {
		t.Errorf("search text %q... (%d bytes)", r.Search[:40], len(r.Search))
	}
	if !strings.HasSuffix(r.Search, "é") {
		t.Errorf("search text ends with a cut rune")
	}
	back, err := DecodeRecord(r.Data)
	if err != nil || back.ID != "x" || back.HTTP.Req.Body.Size != 9000 {
		t.Errorf("DecodeRecord: %+v %v", back, err)
	}
	if r.Data[0] == '{' {
		t.Errorf("a %d-byte record is stored uncompressed", len(r.Data))
	}
}

func TestNewRowGRPC(t *testing.T) {
	str := func(s string) *string { return &s }
	status := 5
	rec := &capture.Record{Schema: 1, ID: "g", Kind: "http", Direction: "out", Start: time.Unix(1, 0),
		HTTP: &capture.HTTP{
			Req: capture.Request{Method: "POST", URL: "http://inv:50051/inv.Stock/Get", Proto: "HTTP/2.0", Host: "inv:50051"},
			Res: &capture.Response{Status: 200},
			Messages: []capture.Message{
				{Up: true, Size: 9, Data: []byte{0x0a, 0x07, 'S', 'K', 'U', '-', '4', '2', 0}, Fields: []capture.ProtoField{
					{Num: 1, Wire: "bytes", String: str("SKU-42")},
					{Num: 2, Wire: "bytes", Message: []capture.ProtoField{{Num: 1, Wire: "bytes", String: str("Warehouse North")}}}}},
				{Size: 11, Data: []byte("hello frame"), Opcode: 1},
			},
			GRPC: &capture.GRPC{Service: "inv.Stock", Method: "Get", Status: &status},
		}}
	r, err := NewRow(rec)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Failed {
		t.Errorf("a gRPC call with status 5 is not failed")
	}
	for _, want := range []string{"sku-42", "warehouse north", "hello frame"} {
		if !strings.Contains(r.Search, want) {
			t.Errorf("search text %q lacks %q", r.Search, want)
		}
	}
	if strings.ContainsRune(r.Search, 0) {
		t.Errorf("search text has a NUL")
	}
}

// FuzzParseCursor: a cursor from a client either parses or is
// ErrBadCursor, and a parsed one round-trips.
func FuzzParseCursor(f *testing.F) {
	f.Add(Cursor{StartUs: 1740830400000000, ID: "01950f6e-2a6e-7c4a-9b1e-3f6d2a8c4e10"}.String())
	f.Add("")
	f.Add("LGE")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCursor(s)
		if err != nil {
			if !errors.Is(err, ErrBadCursor) {
				t.Fatalf("error %v is not ErrBadCursor", err)
			}
			return
		}
		if back, err := ParseCursor(c.String()); err != nil || back != c {
			t.Fatalf("round trip of %+v: %+v %v", c, back, err)
		}
	})
}

// FuzzNewRow: any record that decodes from JSON makes a row (or an
// error), with search text that is valid UTF-8 without NUL (PostgreSQL's
// text type holds nothing else).
func FuzzNewRow(f *testing.F) {
	f.Add([]byte(`{"schema":1,"id":"x","kind":"http","direction":"in","start":"2025-01-01T00:00:00Z","http":{"req":{"method":"GET","url":"http://h/p","host":"h","headers":[["Content-Encoding","gzip"]],"body":{"data":"H4sIAAAAAAAA/w==","size":10}}}}`))
	f.Add([]byte(`{"schema":1,"id":"y","kind":"tcp","direction":"out","tcp":{"chunks":[{"up":true,"data":"AAEC"}]}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var rec capture.Record
		if json.Unmarshal(b, &rec) != nil || rec.Validate() != nil {
			return
		}
		r, err := NewRow(&rec)
		if err != nil {
			return
		}
		if !utf8.ValidString(r.Search) || strings.ContainsRune(r.Search, 0) {
			t.Fatalf("search text %q", r.Search)
		}
		if _, err := DecodeRecord(r.Data); err != nil {
			t.Fatalf("stored form does not decode: %v", err)
		}
	})
}
