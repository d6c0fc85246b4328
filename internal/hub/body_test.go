package hub

import (
	"bytes"
	"compress/zlib"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/tapwire/tapwire/internal/apitype"
	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/content"
	"github.com/tapwire/tapwire/internal/store/storetest"
)

func gz(b []byte) []byte { out, _ := content.Encode("gzip", b); return out }
func br(b []byte) []byte { out, _ := content.Encode("br", b); return out }

func TestViewBody(t *testing.T) {
	js := []byte(`{"order":{"id":123,"items":["a","b"]}}`)
	zs, _ := zstd.NewWriter(nil)
	var zl bytes.Buffer
	zw := zlib.NewWriter(&zl)
	zw.Write([]byte("deflated text"))
	zw.Close()
	var long []byte
	for i := range 5000 {
		long = fmt.Appendf(long, "line %d: %x 0123456789\n", i, i*i*7919)
	}
	brGz := br(gz(long))
	tests := []struct {
		name      string
		h         capture.Headers
		b         capture.Body
		kind      string
		text      string // a substring of Text
		enc, note string
	}{
		{"empty", nil, capture.Body{}, "empty", "", "", ""},
		{"json indented", capture.Headers{{Name: "Content-Type", Value: "application/json"}}, capture.Body{Data: js, Size: int64(len(js))}, "json", "\"items\": [\n", "", ""},
		{"json sniffed", nil, capture.Body{Data: js}, "json", "  \"order\": {", "", ""},
		{"gzip json", capture.Headers{{Name: "Content-Encoding", Value: "gzip"}, {Name: "Content-Type", Value: "application/json; charset=utf-8"}}, capture.Body{Data: gz(js)}, "json", "\"id\": 123", "gzip", ""},
		{"br", capture.Headers{{Name: "content-encoding", Value: "br"}}, capture.Body{Data: br([]byte("hello brotli"))}, "text", "hello brotli", "br", ""},
		{"zstd", capture.Headers{{Name: "Content-Encoding", Value: "zstd"}}, capture.Body{Data: zs.EncodeAll([]byte("hello zstd"), nil)}, "text", "hello zstd", "zstd", ""},
		{"deflate", capture.Headers{{Name: "Content-Encoding", Value: "deflate"}}, capture.Body{Data: zl.Bytes()}, "text", "deflated text", "deflate", ""},
		{"two encodings", capture.Headers{{Name: "Content-Encoding", Value: "gzip, br"}}, capture.Body{Data: br(gz([]byte("twice")))}, "text", "twice", "gzip, br", ""},
		{"two encoding headers", capture.Headers{{Name: "Content-Encoding", Value: "gzip"}, {Name: "Content-Encoding", Value: "br"}}, capture.Body{Data: br(gz([]byte("twice")))}, "text", "twice", "gzip, br", ""},
		{"two encodings cut short", capture.Headers{{Name: "Content-Encoding", Value: "gzip, br"}}, capture.Body{Data: brGz[:len(brGz)/2], Size: int64(len(brGz)), Truncated: true}, "text", "line 0: 0 0123456789", "gzip, br", "decoded in part: br: "},
		{"truncated gzip", capture.Headers{{Name: "Content-Encoding", Value: "gzip"}}, capture.Body{Data: gz(long)[:2000], Size: 9999, Truncated: true}, "text", "line 0: 0 0123456789", "gzip", "decoded in part"},
		{"not gzip", capture.Headers{{Name: "Content-Encoding", Value: "gzip"}}, capture.Body{Data: []byte("plain")}, "text", "plain", "", "not decoded"},
		{"unknown encoding", capture.Headers{{Name: "Content-Encoding", Value: "compress"}}, capture.Body{Data: []byte("x")}, "text", "x", "", "unknown content encoding"},
		{"binary", nil, capture.Body{Data: []byte{0, 1, 2, 0xff}}, "binary", "", "", ""},
		{"deep json", nil, capture.Body{Data: []byte(strings.Repeat("[", 500) + strings.Repeat("]", 500))}, "json", "[\n  [\n    [", "", ""},
		{"huge indentation: as it is", nil, capture.Body{Data: []byte(strings.Repeat("[", 100) + "1" + strings.Repeat(",1", 100000) + strings.Repeat("]", 100))}, "text", "[[[[1,1,1", "", ""},
		{"json with brackets in strings", nil, capture.Body{Data: []byte(`{"a":"[[[[\"{{{{"}`)}, "json", "\"a\": ", "", ""},
		{"html stays text", capture.Headers{{Name: "Content-Type", Value: "text/html"}}, capture.Body{Data: []byte("<script>alert(1)</script>")}, "text", "<script>alert(1)</script>", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := viewBody(tc.h, tc.b)
			if v.Kind != tc.kind || !strings.Contains(v.Text, tc.text) || v.Encoding != tc.enc || !strings.Contains(v.Note, tc.note) {
				t.Errorf("got kind %q encoding %q note %q text %.80q; want %q %q %q containing %q", v.Kind, v.Encoding, v.Note, v.Text, tc.kind, tc.enc, tc.note, tc.text)
			}
		})
	}
	// A zip bomb stops at the bound.
	bomb := gz(make([]byte, maxDecodedBody+1000))
	v := viewBody(capture.Headers{{Name: "Content-Encoding", Value: "gzip"}}, capture.Body{Data: bomb})
	if v.Bytes != maxDecodedBody || !strings.Contains(v.Note, "MiB decoded") || len(v.Data) != maxBinaryShown {
		t.Errorf("bomb: %d bytes, note %q, %d shown", v.Bytes, v.Note, len(v.Data))
	}
}

// TestBodyEndpoint: the decoded bodies over HTTP, within the tenant.
func TestBodyEndpoint(t *testing.T) {
	h := newHub(t, stores[0].open(t), Config{})
	r := storetest.Rec(1, "orders", "in", "GET", "http://orders/v1/x", 200)
	r.HTTP.Req.Body = capture.Body{Data: []byte("q=1"), Size: 3}
	r.HTTP.Res.Headers = capture.Headers{{Name: "Content-Encoding", Value: "gzip"}, {Name: "Content-Type", Value: "application/json"}}
	r.HTTP.Res.Body = capture.Body{Data: gz([]byte(`{"a":1}`)), Size: 27}
	noRes := storetest.Rec(2, "orders", "out", "GET", "http://up/", 0)
	if _, resp := h.post(h.keys["acme/ingest"], []*capture.Record{r, noRes}); resp.StatusCode != 200 {
		t.Fatal(resp.StatusCode)
	}
	read := h.keys["acme/read"]
	var v apitype.BodyView
	if code := h.get(read, "/api/v1/records/"+r.ID+"/body/res", &v); code != 200 || v.Kind != "json" || v.Text != "{\n  \"a\": 1\n}" || v.Encoding != "gzip" {
		t.Errorf("res body: %d %+v", code, v)
	}
	if code := h.get(read, "/api/v1/records/"+r.ID+"/body/req", &v); code != 200 || v.Kind != "text" || v.Text != "q=1" {
		t.Errorf("req body: %d %+v", code, v)
	}
	if code := h.get(read, "/api/v1/records/"+noRes.ID+"/body/res", &v); code != 200 || v.Kind != "empty" || v.Note != "no response" {
		t.Errorf("body of a missing response: %d %+v", code, v)
	}
	if code := h.get(read, "/api/v1/records/"+r.ID+"/body/other", nil); code != 404 {
		t.Errorf("side other: %d", code)
	}
	if code := h.get(h.keys["beta/read"], "/api/v1/records/"+r.ID+"/body/res", nil); code != 404 {
		t.Errorf("another tenant's body: %d, want 404", code)
	}
	if code := h.get("", "/api/v1/records/"+r.ID+"/body/res", nil); code != 401 {
		t.Errorf("no key: %d, want 401", code)
	}
}

// TestViewerFiles: the page and its assets are served with the security
// headers, and the page loads nothing from elsewhere.
func TestViewerFiles(t *testing.T) {
	h := newHub(t, stores[0].open(t), Config{})
	for _, tc := range []struct{ path, ctype, want string }{
		{"/", "text/html", `<script type="module" src="/assets/app.js"></script>`},
		{"/assets/app.js", "text/javascript", "textContent"},
		{"/assets/snapshots.js", "text/javascript", "export function setupSnapshots"},
		{"/assets/reports.js", "text/javascript", "export function setupReports"},
		{"/assets/app.css", "text/css", ":root"},
	} {
		resp, err := http.Get(h.url + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), tc.ctype) || !strings.Contains(string(b), tc.want) {
			t.Errorf("GET %s: %d %q, want %s containing %q", tc.path, resp.StatusCode, resp.Header.Get("Content-Type"), tc.ctype, tc.want)
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe") {
			t.Errorf("GET %s: Content-Security-Policy %q", tc.path, csp)
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: no nosniff", tc.path)
		}
	}
	// The scripts never write markup.
	for _, name := range []string{"app.js", "snapshots.js", "reports.js"} {
		js, _ := webFiles.ReadFile("web/" + name)
		for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("} {
			if strings.Contains(string(js), bad) {
				t.Errorf("%s uses %s", name, bad)
			}
		}
	}
	html, _ := webFiles.ReadFile("web/index.html")
	if strings.Contains(string(html), "http://") || strings.Contains(string(html), "https://") {
		t.Errorf("index.html refers to another origin")
	}
	resp, err := http.Get(h.url + "/assets/nope.js")
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != 404 {
			t.Errorf("missing asset: %d", resp.StatusCode)
		}
	}
}

// FuzzViewBody: any captured bytes under any encoding decode without a
// panic and within the bounds.
func FuzzViewBody(f *testing.F) {
	f.Add("gzip", gz([]byte(`{"a":1}`)))
	f.Add("br", br([]byte("hello")))
	f.Add("deflate", []byte{0x78, 0x9c, 0x03, 0x00})
	f.Add("zstd", []byte{0x28, 0xb5, 0x2f, 0xfd})
	f.Add("", []byte{0xff, 0xfe, 0})
	f.Add("gzip, br", []byte("x"))
	f.Fuzz(func(t *testing.T, enc string, data []byte) {
		v := viewBody(capture.Headers{{Name: "Content-Encoding", Value: enc}}, capture.Body{Data: data, Size: int64(len(data))})
		if v.Bytes > maxDecodedBody || len(v.Data) > maxBinaryShown || int64(len(v.Text)) > max(maxIndented, v.Bytes) {
			t.Fatalf("out of bounds: %d bytes, %d shown, %d text", v.Bytes, len(v.Data), len(v.Text))
		}
		switch v.Kind {
		case "empty", "json", "text", "binary":
		default:
			t.Fatalf("kind %q", v.Kind)
		}
	})
}
