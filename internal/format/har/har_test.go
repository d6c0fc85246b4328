package har

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/format/raw"
)

// testRecords are records that exercise every member HAR carries: the
// golden records of docs/record.md, the vendor sample, and edge cases.
func testRecords(t testing.TB) []*capture.Record {
	t.Helper()
	var recs []*capture.Record
	goldens, err := filepath.Glob("../../capture/testdata/*.golden.json")
	if err != nil || len(goldens) < 4 {
		t.Fatalf("golden records: %v %v", goldens, err)
	}
	for _, p := range goldens {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		r := new(capture.Record)
		if err := json.Unmarshal(b, r); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		recs = append(recs, r)
	}
	f, err := os.Open("../raw/testdata/dynamodb-raw.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := raw.Read(f, func(r *capture.Record) error { recs = append(recs, r); return nil }); err != nil {
		t.Fatal(err)
	}
	base := func(id string) *capture.Record {
		return &capture.Record{Schema: 1, ID: id, Kind: capture.KindHTTP, Direction: capture.DirOut,
			Start: time.Date(2025, 3, 1, 12, 0, 0, 123456789, time.UTC), DurMicros: 123456789, TTFBMicros: 1,
			HTTP: &capture.HTTP{Req: capture.Request{Method: "GET", URL: "http://a.example/x?b=2&a=1&a=0", Proto: "HTTP/1.1", Host: "a.example"}}}
	}
	noRes := base("no-response")
	noRes.Error = "dial tcp: connection refused"
	binary := base("binary-bodies")
	binary.HTTP.Req.Body = capture.Body{Data: []byte{0, 0xff, 0xfe}, Size: 3}
	binary.HTTP.Res = &capture.Response{Status: 200, Body: capture.Body{Data: []byte{0xc3, 0x28}, Size: 9000, Truncated: true}}
	off := base("capture-off")
	off.Start = off.Start.Truncate(time.Microsecond)
	off.HTTP.Req.Body = capture.Body{Size: 10, Truncated: true}
	off.HTTP.Req.Host = "other.example:8080"
	off.HTTP.Res = &capture.Response{Status: 204, StatusText: "No Content", Body: capture.Body{}, Trailers: capture.Headers{{Name: "X-T", Value: "1"}}}
	off.Net = capture.Net{ServerAddr: "[2001:db8::1]:443", ClientAddr: "10.0.0.1:1"}
	text := base("text")
	text.Start = text.Start.Truncate(time.Millisecond)
	text.HTTP.Req.Headers = capture.Headers{{Name: "Cookie", Value: "a=1; b=2"}, {Name: "X", Value: "1"}, {Name: "x", Value: "2"}}
	text.HTTP.Res = &capture.Response{Status: 302, Proto: "HTTP/1.1", Headers: capture.Headers{{Name: "Location", Value: "/y"}, {Name: "Set-Cookie", Value: "s=1; HttpOnly"}},
		Body: capture.Body{Data: []byte("<p>\u2028 & é</p>"), Size: 15}}
	text.Labels = capture.Labels{Tenant: "acme", Service: "orders"}
	text.Tags = capture.Tags{"k": "v"}
	text.Redactions = []string{"r1"}
	return append(recs, noRes, binary, off, text)
}

func jsonOf(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func writeAll(t testing.TB, recs []*capture.Record) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := NewWriter(&buf, Creator{Name: "test", Version: "1"})
	for _, r := range recs {
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func readAll(t testing.TB, b []byte) []*capture.Record {
	t.Helper()
	var recs []*capture.Record
	if err := Read(bytes.NewReader(b), func(r *capture.Record) error { recs = append(recs, r); return nil }); err != nil {
		t.Fatalf("Read: %v", err)
	}
	return recs
}

var writeHAR = flag.String("writehar", "", "write the HAR of the test records to this file, for checks with other tools")

// TestWriteHAR writes the test records' HAR for a third-party reader:
// go test ./internal/har -run TestWriteHAR -writehar /tmp/records.har
func TestWriteHAR(t *testing.T) {
	if *writeHAR == "" {
		t.Skip("no -writehar FILE")
	}
	if err := os.WriteFile(*writeHAR, writeAll(t, testRecords(t)), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestRoundTrip: record → HAR → record gives the same record, for every
// HTTP record; TCP records are left out.
func TestRoundTrip(t *testing.T) {
	recs := testRecords(t)
	doc := writeAll(t, recs)
	var h HAR
	if err := json.Unmarshal(doc, &h); err != nil {
		t.Fatalf("the HAR is not JSON: %v", err)
	}
	var want []*capture.Record
	for _, r := range recs {
		if r.HTTP != nil {
			want = append(want, r)
		}
	}
	want = inTimeOrder(want) // as the HAR has them
	if h.Log.Version != "1.2" || len(h.Log.Entries) != len(want) || len(want) < 48 {
		t.Fatalf("version %q, %d entries; want 1.2 and %d", h.Log.Version, len(h.Log.Entries), len(want))
	}
	got := readAll(t, doc)
	if len(got) != len(want) {
		t.Fatalf("read %d records, want %d", len(got), len(want))
	}
	for i := range want {
		if g, w := jsonOf(t, got[i]), jsonOf(t, want[i]); g != w {
			t.Errorf("record %s:\ngot  %s\nwant %s", want[i].ID, g, w)
		}
	}
	// Written again, the same bytes.
	if again := writeAll(t, got); !bytes.Equal(again, doc) {
		t.Errorf("HAR → records → HAR differs")
	}
	// The vendor sample goes through HAR to the same raw.jsonl.
	var a, b bytes.Buffer
	if err := raw.Write(&a, want); err != nil {
		t.Fatal(err)
	}
	if err := raw.Write(&b, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Errorf("raw.jsonl of the records read back differs")
	}
}

func TestFormatTime(t *testing.T) {
	for _, tc := range []struct {
		in   time.Time
		want string
	}{
		{time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC), "2025-03-01T12:00:00.000Z"},
		{time.Date(2025, 3, 1, 12, 0, 0, 5e6, time.FixedZone("x", 3600)), "2025-03-01T11:00:00.005Z"},
		{time.Date(2025, 3, 1, 12, 0, 0, 542084000, time.UTC), "2025-03-01T12:00:00.542084Z"},
		{time.Date(2025, 3, 1, 12, 0, 0, 1, time.UTC), "2025-03-01T12:00:00.000000001Z"},
	} {
		if got := FormatTime(tc.in); got != tc.want {
			t.Errorf("FormatTime(%v) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

// TestBrowserHAR reads a HAR shaped as Chrome writes one.
func TestBrowserHAR(t *testing.T) {
	doc, err := os.ReadFile("testdata/browser.har")
	if err != nil {
		t.Fatal(err)
	}
	recs := readAll(t, doc)
	if len(recs) != 3 {
		t.Fatalf("%d records, want 3", len(recs))
	}
	a, b, c := recs[0], recs[1], recs[2]
	for _, r := range recs {
		if r.Direction != capture.DirOut || r.Kind != capture.KindHTTP || r.Schema != 1 || len(r.ID) != 36 {
			t.Errorf("record %+v: want an outbound http record with a UUID", r)
		}
	}
	if a.ID == b.ID || a.ID == c.ID {
		t.Errorf("ids not distinct: %s %s %s", a.ID, b.ID, c.ID)
	}
	if again := readAll(t, doc); again[0].ID != a.ID || again[2].ID != c.ID {
		t.Errorf("a second read gives other ids")
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"a.start", a.Start, time.Date(2025, 3, 1, 12, 0, 0, 123e6, time.UTC)},
		{"a.duration", a.DurMicros, int64(52250)},
		{"a.ttfb (blocked+send+wait)", a.TTFBMicros, int64(42250)},
		{"a.proto", a.HTTP.Req.Proto, "HTTP/2.0"},
		{"a.res.proto", a.HTTP.Res.Proto, "HTTP/2.0"},
		{"a.host from :authority", a.HTTP.Req.Host, "shop.example"},
		{"a.headers without pseudo-headers", len(a.HTTP.Req.Headers), 3},
		{"a.serverAddr", a.Net.ServerAddr, "[2001:db8::1]:443"},
		{"a.connId", a.Net.ConnID, "8812"},
		{"a.body decoded", string(a.HTTP.Res.Body.Data), "<html><body>orders 2</body></html>\n"},
		{"a.body size", a.HTTP.Res.Body.Size, int64(35)},
		{"a.content-encoding dropped", a.HTTP.Res.Headers.Get("Content-Encoding") + a.HTTP.Res.Headers.Get("Content-Length"), ""},
		{"a.tag", a.Tags["har.contentEncoding"], "gzip"},
		{"b.start in UTC", b.Start, time.Date(2025, 3, 1, 12, 0, 0, 5e8, time.UTC)},
		{"b.form body", string(b.HTTP.Req.Body.Data), "user=ada&pass=x+y"},
		{"b.req size", b.HTTP.Req.Body.Size, int64(23)},
		{"b.host", b.HTTP.Req.Host, "api.example:8080"},
		{"b.serverAddr", b.Net.ServerAddr, "10.1.2.3:8080"},
		{"b.png", b.HTTP.Res.Body.Data, []byte("\x89PNG\r\n\x1a\n")},
		{"b.ttfb", b.TTFBMicros, int64(2000)},
		{"c.no response", c.HTTP.Res == nil, true},
		{"c.req size", c.HTTP.Req.Body.Size, int64(0)},
	}
	for _, ck := range checks {
		if jsonOf(t, ck.got) != jsonOf(t, ck.want) {
			t.Errorf("%s = %v, want %v", ck.name, ck.got, ck.want)
		}
	}
	// Once read, the records go through our HAR unchanged.
	got := readAll(t, writeAll(t, recs))
	for i := range recs {
		if g, w := jsonOf(t, got[i]), jsonOf(t, recs[i]); g != w {
			t.Errorf("record %d through HAR:\ngot  %s\nwant %s", i, g, w)
		}
	}
}

func TestReadErrors(t *testing.T) {
	entry := func(mod string) string {
		return `{"startedDateTime": "2025-03-01T12:00:00Z", "time": 1, "request": {"method": "GET", "url": "http://a/", "headers": []},
 "response": {"status": 200, "content": {"size": 0}}` + mod + `}`
	}
	good := entry("")
	for _, tc := range []struct {
		name, doc, want string
	}{
		{"empty", ``, "not a HAR document"},
		{"array", `[]`, "not a HAR document"},
		{"no log", `{"foo": 1}`, "not a HAR document"},
		{"log not object", `{"log": []}`, "log is not an object"},
		{"version 2", `{"log": {"version": "2.0", "entries": []}}`, `line 1: unsupported HAR version "2.0"`},
		{"entries not array", `{"log": {"entries": {}}}`, "log.entries is not an array"},
		{"bad date", "{\"log\": {\"entries\": [\n" + good + ",\n\n" + strings.Replace(good, "2025-03-01T12:00:00Z", "yesterday", 1) + "]}}", `line 5: entry 1: bad HAR entry: startedDateTime "yesterday"`},
		{"relative url", "{\"log\": {\"entries\": [\n" + strings.Replace(good, "http://a/", "/a", 1) + "]}}", `line 2: entry 0: bad HAR entry: request.url "/a": want an absolute URL`},
		{"no method", `{"log": {"entries": [` + strings.Replace(good, `"GET"`, `""`, 1) + `]}}`, "request.method is empty"},
		{"bad status", `{"log": {"entries": [` + strings.Replace(good, "200", "1000", 1) + `]}}`, "response.status 1000"},
		{"bad base64", `{"log": {"entries": [` + strings.Replace(good, `"size": 0`, `"size": 1, "text": "!!", "encoding": "base64"`, 1) + `]}}`, "response.content: bad base64"},
		{"bad encoding", `{"log": {"entries": [` + strings.Replace(good, `"size": 0`, `"size": 1, "text": "a", "encoding": "rot13"`, 1) + `]}}`, `encoding "rot13"`},
		{"wrong type", `{"log": {"entries": [` + strings.Replace(good, `"time": 1`, `"time": "1"`, 1) + `]}}`, "entry 0: bad HAR entry: json"},
		{"bad direction", `{"log": {"entries": [` + entry(`, "_id": "x", "_direction": "up"`) + `]}}`, "record direction is not in or out"},
		{"cut short", "{\"log\": {\"entries\": [\n" + good, "line 3: the document ends early"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := 0
			err := Read(strings.NewReader(tc.doc), func(*capture.Record) error { n++; return nil })
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Read = %v, want an error containing %q", err, tc.want)
			}
		})
	}
	// A browser's data: entry is no exchange: skipped, not an error; ours
	// (with _id) must be a web URL.
	n := 0
	doc := `{"log":{"entries":[` + strings.Replace(good, "http://a/", "data:image/png;base64,AAAA", 1) + `,` + good + `]}}`
	if err := Read(strings.NewReader(doc), func(*capture.Record) error { n++; return nil }); err != nil || n != 1 {
		t.Errorf("Read of a data: entry and an http one: %d records, %v; want 1, nil", n, err)
	}
	doc = `{"log":{"entries":[` + strings.Replace(entry(`, "_id": "x"`), "http://a/", "data:,x", 1) + `]}}`
	if err := Read(strings.NewReader(doc), func(*capture.Record) error { return nil }); err == nil || !strings.Contains(err.Error(), "want an absolute URL") {
		t.Errorf("Read of our entry with a data: URL = %v, want an error", err)
	}
	stop := errors.New("stop")
	err := Read(strings.NewReader(`{"log":{"entries":[`+good+`]}}`), func(*capture.Record) error { return stop })
	var ee *EntryError
	if !errors.Is(err, stop) || !errors.As(err, &ee) || ee.Index != 0 || ee.Line != 1 {
		t.Errorf("Read with a failing fn = %v, want stop in an EntryError of entry 0, line 1", err)
	}
	if err := Read(strings.NewReader(`{"x": [1, {"log": 2}], "log": {"entries": null, "version": "1.1"}, "y": 1}`), func(*capture.Record) error { return nil }); err != nil {
		t.Errorf("Read of a log with null entries: %v", err)
	}
}

// inTimeOrder returns recs oldest first, those of the same start in their
// order: the order of a HAR's entries.
func inTimeOrder(recs []*capture.Record) []*capture.Record {
	out := slices.Clone(recs)
	slices.SortStableFunc(out, func(a, b *capture.Record) int { return a.Start.Compare(b.Start) })
	return out
}

// TestTimeOrder: entries come out oldest first whatever the order of the
// records (the stores list newest first), ties in the order written; the
// timings are whole microseconds.
func TestTimeOrder(t *testing.T) {
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	rec := func(id string, at time.Duration) *capture.Record {
		return &capture.Record{Schema: 1, ID: id, Kind: capture.KindHTTP, Direction: capture.DirIn, Start: t0.Add(at),
			TTFBMicros: 100, DurMicros: 400,
			HTTP: &capture.HTTP{Req: capture.Request{Method: "GET", URL: "http://a/" + id, Proto: "HTTP/2.0"},
				Res: &capture.Response{Status: 200, Proto: "HTTP/1.1"}}}
	}
	doc := writeAll(t, []*capture.Record{rec("c", 3*time.Second), rec("b1", time.Second), rec("a", 0), rec("b2", time.Second)})
	var h HAR
	if err := json.Unmarshal(doc, &h); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range h.Log.Entries {
		ids = append(ids, e.ID)
	}
	if want := []string{"a", "b1", "b2", "c"}; !slices.Equal(ids, want) {
		t.Errorf("entries %v, want %v", ids, want)
	}
	// Each leg's own version: the request as the client sent it, the
	// response as the upstream answered.
	if e := h.Log.Entries[0]; e.Request.HTTPVersion != "HTTP/2.0" || e.Response.HTTPVersion != "HTTP/1.1" {
		t.Errorf("httpVersion: request %q, response %q; want HTTP/2.0, HTTP/1.1", e.Request.HTTPVersion, e.Response.HTTPVersion)
	}
	if !bytes.Contains(doc, []byte(`"timings":{"send":0,"wait":0.1,"receive":0.3}`)) {
		t.Errorf("timings not in whole microseconds:\n%s", doc)
	}
}

func FuzzRead(f *testing.F) {
	browser, err := os.ReadFile("testdata/browser.har")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(browser)
	recs := testRecords(f)
	f.Add(writeAll(f, recs[:5]))
	f.Add(writeAll(f, recs[len(recs)-4:]))
	f.Add([]byte(`{"log":{"version":"1.2","entries":[{"startedDateTime":"2025-03-01T12:00:00Z","request":{"method":"GET","url":"http://a/"},"response":{"status":0}}]}}`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		var got []*capture.Record
		if err := Read(bytes.NewReader(doc), func(r *capture.Record) error {
			if err := r.Validate(); err != nil {
				t.Fatalf("Read gave an invalid record: %v", err)
			}
			got = append(got, r)
			return nil
		}); err != nil {
			return
		}
		again := readAll(t, writeAll(t, got))
		got = inTimeOrder(got)
		if len(again) != len(got) {
			t.Fatalf("through HAR again: %d records, want %d", len(again), len(got))
		}
		for i := range got {
			if g, w := jsonOf(t, again[i]), jsonOf(t, got[i]); g != w {
				t.Fatalf("record %d through HAR:\ngot  %s\nwant %s", i, g, w)
			}
		}
	})
}
