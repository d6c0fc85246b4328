package redact

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tapwire/tapwire/internal/capture"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// testRules are the rules of the golden test: the default, and one of
// each other kind, as SPEEDSCALE_DLP_CONFIG would give them.
const testRules = `[
  {"id": "pii", "redactlist": {"entries": {"json": ["password", "ssn", "secret"], "query": ["email"], "http": ["X-Session"], "patterns": ["card", "email"]}}},
  {"id": "tokens", "redactlist": {"entries": {"all": ["token"], "patterns": ["bearer"]}}}
]`

func testRedactor(t testing.TB) *Redactor {
	t.Helper()
	rules, err := ParseRules(testRules)
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(append(DefaultRules(true), rules...))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func h(pairs ...string) capture.Headers {
	var hs capture.Headers
	for i := 0; i < len(pairs); i += 2 {
		hs = append(hs, capture.Header{Name: pairs[i], Value: pairs[i+1]})
	}
	return hs
}

func httpRec(url string, reqH capture.Headers, reqBody string, resH capture.Headers, resBody string) *capture.Record {
	return &capture.Record{
		Schema: 1, ID: "01950f6e-2a6e-7c4a-9b1e-3f6d2a8c4e10", Kind: capture.KindHTTP, Direction: capture.DirIn,
		Start: time.Date(2025, 2, 11, 21, 7, 54, 0, time.UTC),
		HTTP: &capture.HTTP{
			Req: capture.Request{Method: "POST", URL: url, Proto: "HTTP/1.1", Host: "svc", Headers: reqH,
				Body: capture.Body{Data: []byte(reqBody), Size: int64(len(reqBody))}},
			Res: &capture.Response{Status: 200, Headers: resH, Body: capture.Body{Data: []byte(resBody), Size: int64(len(resBody))}},
		},
	}
}

// view is the golden form of a redacted record: bodies as text.
type view struct {
	Name       string          `json:"name"`
	URL        string          `json:"url,omitempty"`
	ReqHeaders capture.Headers `json:"reqHeaders,omitempty"`
	ReqBody    string          `json:"reqBody,omitempty"`
	ResHeaders capture.Headers `json:"resHeaders,omitempty"`
	ResBody    string          `json:"resBody,omitempty"`
	Trailers   capture.Headers `json:"trailers,omitempty"`
	Chunks     []string        `json:"chunks,omitempty"`
	Redactions []string        `json:"redactions"`
}

func TestGolden(t *testing.T) {
	jsonCT := h("Content-Type", "application/json")
	cases := []struct {
		name string
		rec  *capture.Record
	}{
		{"credential headers", httpRec("http://svc/v1/me",
			h("Authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.e30.x", "Cookie", "session=abc; theme=dark", "X-API-Key", "k-123",
				"Proxy-Authorization", "Basic dXNlcjpwYXNz", "Accept", "*/*", "x-session", "s-1"),
			"", h("Set-Cookie", "session=new; HttpOnly", "Content-Type", "text/plain"), "ok")},
		{"query parameters", httpRec("http://svc/v1/search?q=shoes&access_token=abc123&email=bob%40example.com&Token=t&n=2#frag",
			nil, "", nil, "")},
		{"url patterns", httpRec("http://svc/v1/users/alice@example.com/cards/4111111111111111", nil, "", nil, "")},
		{"json fields at any depth", httpRec("http://svc/v1/signup", jsonCT,
			`{"user":{"name":"Ann","password":"hunter2","profile":{"ssn":123456789,"secret":{"a":[1,2,{"b":"c"}]}}},`+
				`"list":[{"Password":"x"},{"token":null}],"note":"call 555-0100","pass\u0077ord":"esc"}`,
			jsonCT, `{"ok":true,"token":"t-1","items":[]}`)},
		{"json patterns", httpRec("http://svc/v1/pay", jsonCT,
			`{"card":4111111111111111,"cardText":"4111 1111 1111 1111","notCard":4111111111111112,"ts":1739307474542,`+
				`"contact":"mail ann@example.org now","hint":"Bearer abcdefgh12345678","amount":12.5}`,
			jsonCT, `[{"email":"x@y.io"}]`)},
		{"truncated json", httpRec("http://svc/v1/signup", jsonCT, `{"user":{"password":"hunt`, jsonCT, `{"secret":{"deep":[1,2,`)},
		{"form body", httpRec("http://svc/login", h("Content-Type", "application/x-www-form-urlencoded"),
			"user=ann&password=hunter2&remember=1&ssn=1%2B2", nil, "")},
		{"text body patterns", httpRec("http://svc/v1/mail", h("Content-Type", "text/plain"),
			"To: bob@example.com\nCard: 5500-0000-0000-0004\nRef: 12345678901234567890123\nAuthorization: bearer tok_0123456789", nil, "")},
		{"gzip body untouched", httpRec("http://svc/v1/x", h("Content-Type", "application/json", "Content-Encoding", "gzip"),
			`{"password":"not really gzip"}`, nil, "")},
		{"nothing to redact", httpRec("http://svc/v1/items?page=2", h("Accept", "application/json"), "", jsonCT, `{"items":[1,2,3]}`)},
	}
	tcp := &capture.Record{Schema: 1, ID: "t", Kind: capture.KindTCP, Direction: capture.DirOut,
		TCP: &capture.TCP{Chunks: []capture.Chunk{{Up: true, Data: []byte("MAIL FROM:<eve@example.net>\r\n")}, {Data: []byte("250 OK\r\n")}}}}
	trailers := httpRec("http://svc/grpc", nil, "", h("Grpc-Status", "0"), "")
	trailers.HTTP.Res.Trailers = h("X-Session", "s-2", "Grpc-Message", "Bearer abcdefgh12345678")

	r := testRedactor(t)
	var views []view
	for _, c := range append(cases, struct {
		name string
		rec  *capture.Record
	}{"tcp chunks", tcp}, struct {
		name string
		rec  *capture.Record
	}{"trailers", trailers}) {
		got := r.Redact(c.rec)
		if !slices.Equal(got, c.rec.Redactions) {
			t.Errorf("%s: Redact returned %v, record says %v", c.name, got, c.rec.Redactions)
		}
		v := view{Name: c.name, Redactions: c.rec.Redactions}
		if v.Redactions == nil {
			v.Redactions = []string{}
		}
		if x := c.rec.HTTP; x != nil {
			v.URL, v.ReqHeaders, v.ReqBody = x.Req.URL, x.Req.Headers, string(x.Req.Body.Data)
			v.ResHeaders, v.ResBody, v.Trailers = x.Res.Headers, string(x.Res.Body.Data), x.Res.Trailers
		}
		if c.rec.TCP != nil {
			for _, ch := range c.rec.TCP.Chunks {
				v.Chunks = append(v.Chunks, string(ch.Data))
			}
		}
		// Redacting again changes nothing.
		if again := r.Redact(c.rec); again != nil {
			t.Errorf("%s: a second Redact changed %v", c.name, again)
		}
		views = append(views, v)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(views); err != nil {
		t.Fatal(err)
	}
	got := buf.Bytes()
	golden := filepath.Join("testdata", "redact.golden.json")
	if *update {
		os.MkdirAll("testdata", 0o755)
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("read golden (run with -update to create it): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("redacted records differ from %s (run with -update if intended):\n%s", golden, got)
	}
	// What must never survive, whatever the golden file says.
	for _, secret := range []string{"eyJhbGciOiJIUzI1NiJ9", "session=abc", "hunter2", `"ssn":123456789`, "4111111111111111",
		"4111 1111 1111 1111", "ann@example.org", "abcdefgh12345678", "bob%40example.com", "bob@example.com", "abc123",
		"5500-0000-0000-0004", "tok_0123456789", "eve@example.net", `"t-1"`, "alice@example.com", "s-1", "s-2"} {
		if bytes.Contains(got, []byte(secret)) {
			t.Errorf("%q survived redaction", secret)
		}
	}
	for _, kept := range []string{"4111111111111112", "1739307474542", "12345678901234567890123", "555-0100", "12.5", "not really gzip"} {
		if !bytes.Contains(got, []byte(kept)) {
			t.Errorf("%q was redacted, want it kept (not a secret by any rule)", kept)
		}
	}
}

func TestJSONStaysValid(t *testing.T) {
	r := testRedactor(t)
	in := `{"a":{"password":{"x":[1,{"y":"}"}]}},"b":[4111111111111111,"x@y.io",{"secret":"]"}],"c":"Bearer abcdefghijk"}`
	var h hits
	out := r.redactJSON([]byte(in), &h)
	if !json.Valid(out) {
		t.Fatalf("output is not JSON: %s", out)
	}
	want := `{"a":{"password":{}},"b":[0,"REDACTED-pii",{"secret":"REDACTED-std-auth"}],"c":"Bearer REDACTED-tokens"}`
	if string(out) != want {
		t.Errorf("got  %s\nwant %s", out, want)
	}
}

func TestDefaultSwitchedOff(t *testing.T) {
	r, err := New(nil)
	if err != nil {
		t.Fatal(err)
	}
	rec := httpRec("http://svc/?access_token=a", h("Authorization", "Bearer x"), "", nil, "")
	if got := r.Redact(rec); got != nil || rec.HTTP.Req.Headers.Get("Authorization") != "Bearer x" {
		t.Errorf("no rules changed the record: %v %v", got, rec.HTTP.Req.Headers)
	}
}

func TestParseRules(t *testing.T) {
	file := filepath.Join(t.TempDir(), "dlp.json")
	os.WriteFile(file, []byte(`{"id":"f","redactlist":{"entries":{"all":["pin"]}}}`), 0o600)
	tests := []struct {
		name, in string
		want     []string // rule ids
		wantErr  string
	}{
		{"empty", "", nil, ""},
		{"standard", "standard", nil, ""},
		{"one object", `{"id":"a","redactlist":{"entries":{"http":["x"]}}}`, []string{"a"}, ""},
		{"array", testRules, []string{"pii", "tokens"}, ""},
		{"file", file, []string{"f"}, ""},
		{"missing file", "/nonexistent/dlp.json", nil, "read redaction rules"},
		{"bad json", `{"id":`, nil, "parse redaction rule"},
		{"unknown member", `{"id":"a","redact":{}}`, nil, "unknown field"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rules, err := ParseRules(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, r := range rules {
				ids = append(ids, r.ID)
			}
			if !slices.Equal(ids, tc.want) {
				t.Errorf("ids %v, want %v", ids, tc.want)
			}
		})
	}
	for _, bad := range []string{
		`{"id":"","redactlist":{"entries":{}}}`,
		`[{"id":"a","redactlist":{"entries":{}}},{"id":"a","redactlist":{"entries":{}}}]`,
		`{"id":"a","redactlist":{"entries":{"cookies":["x"]}}}`,
		`{"id":"a","redactlist":{"entries":{"patterns":["ssn"]}}}`,
	} {
		rules, err := ParseRules(bad)
		if err == nil {
			_, err = New(rules)
		}
		if err == nil {
			t.Errorf("rules %s: no error", bad)
		}
	}
}

func TestLuhnAndCard(t *testing.T) {
	for _, c := range []struct {
		s    string
		want bool
	}{
		{"4111111111111111", true}, {"5500000000000004", true}, {"378282246310005", true},
		{"4111111111111112", false}, {"1739307474542", false}, {"411111111111", false}, {"41111111111111111111", false},
	} {
		if got := isCard([]byte(c.s)); got != c.want {
			t.Errorf("isCard(%s) = %t, want %t", c.s, got, c.want)
		}
	}
}

// FuzzRedactBody runs the walker over any body, with the golden test's
// rules and with the default rules alone: it must not panic, a body that
// was JSON must stay JSON, a second pass must change nothing, and the
// values of named fields must keep only what redaction leaves of their
// JSON type.
func FuzzRedactBody(f *testing.F) {
	f.Add([]byte(`{"user":{"password":"hunter2","n":[1,2,{"token":{"a":1}}]},"c":4111111111111111}`), uint8(0))
	f.Add([]byte(`{"password":"unterminated`), uint8(0))
	f.Add([]byte(`[[[[[[{"secret":"]"}]]]]]]`), uint8(0))
	f.Add([]byte(`mail bob@example.com card 4111-1111-1111-1111 Bearer abcdefgh123`), uint8(1))
	f.Add([]byte(`user=ann&password=x&token=%ZZ&&=`), uint8(2))
	f.Add([]byte(`{"a\u0022b":"x@y.io","pass\u0077ord":1}`), uint8(0))
	f.Add([]byte(`{"cvv":-1.5e3,"api_key":[1,{"b":2}],"token":true,"Key":{"S":"4111111111111111"}}`), uint8(4))
	f.Add([]byte(`cc=4111+1111+1111+1111&pwd=%41&x=4111%201111%201111%201111`), uint8(6))
	f.Add([]byte("--B\r\nContent-Disposition: form-data; name=\"password\"\r\n\r\nx\r\n--B\r\nContent-Type: application/json\r\n\r\n{\"token\":1}\r\n--B--"), uint8(3))
	f.Add([]byte("pre\r\n--B\r\n\r\n5500 0000 0000 0004\r\n--B"), uint8(7))
	redactors := []*Redactor{testRedactor(f), defaultRedactor(f, true)}
	types := []string{"application/json", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=B"}
	f.Fuzz(func(t *testing.T, body []byte, sel uint8) {
		ct := types[int(sel)%len(types)]
		r := redactors[int(sel)/len(types)%len(redactors)]
		hs := h("Content-Type", ct)
		var h1 hits
		in := bytes.Clone(body)
		out := r.redactBody(in, hs, &h1)
		if !bytes.Equal(in, body) {
			t.Fatalf("redactBody changed its input in place")
		}
		isJSON := ct == "application/json"
		if json.Valid(body) && isJSON && !json.Valid(out) {
			t.Fatalf("valid JSON became invalid:\nin:  %s\nout: %s", body, out)
		}
		var h2 hits
		if again := r.redactBody(out, hs, &h2); !bytes.Equal(again, out) {
			t.Fatalf("second pass changed the body:\n1st: %q\n2nd: %q", out, again)
		}
		if h1.any() == bytes.Equal(out, body) && !(h1.any() && bytes.Equal(out, body)) {
			t.Fatalf("hits %v but body changed %t", h1, !bytes.Equal(out, body))
		}
		if isJSON && json.Valid(out) {
			var v any
			json.Unmarshal(out, &v)
			checkNoNamedValues(t, v, out)
		}
	})
}

// checkNoNamedValues fails if a field named by a test rule or known to the
// default rule holds anything but what redaction leaves of its JSON type:
// the token, 0, {}, [], true, false or null.
func checkNoNamedValues(t *testing.T, v any, out []byte) {
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			switch strings.ToLower(k) {
			case "password", "ssn", "secret", "token":
				checkRedactedValue(t, k, val, out)
			default:
				if credentialField(k) {
					checkRedactedValue(t, k, val, out)
					continue
				}
				checkNoNamedValues(t, val, out)
			}
		}
	case []any:
		for _, e := range x {
			checkNoNamedValues(t, e, out)
		}
	}
}

func checkRedactedValue(t *testing.T, k string, val any, out []byte) {
	switch x := val.(type) {
	case string:
		if strings.HasPrefix(x, TokenPrefix) {
			return
		}
	case float64:
		if x == 0 {
			return
		}
	case map[string]any:
		if len(x) == 0 {
			return
		}
	case []any:
		if len(x) == 0 {
			return
		}
	case bool, nil:
		return
	}
	t.Fatalf("field %q kept %v in %s", k, val, out)
}

// TestRedactParts: RedactParts names exactly the parts it changed.
func TestRedactParts(t *testing.T) {
	red, err := New(append(DefaultRules(true), Rule{ID: "pii", RedactList: struct {
		Entries map[string][]string `json:"entries"`
	}{Entries: map[string][]string{"json": {"password"}, "patterns": {"email"}}}}))
	if err != nil {
		t.Fatal(err)
	}
	rec := func() *capture.Record {
		return &capture.Record{ID: "a", Kind: capture.KindHTTP, Direction: capture.DirIn, HTTP: &capture.HTTP{
			Req: capture.Request{URL: "http://a/b?x=1", Headers: capture.Headers{{Name: "Accept", Value: "*/*"}},
				Body: capture.Body{Data: []byte(`{"a":1}`)}},
			Res: &capture.Response{Status: 200, Headers: capture.Headers{{Name: "Content-Type", Value: "application/json"}},
				Body: capture.Body{Data: []byte(`{"b":2}`)}, Trailers: capture.Headers{{Name: "X", Value: "y"}}},
		}}
	}
	tcp := &capture.Record{ID: "t", Kind: capture.KindTCP, Direction: capture.DirOut, TCP: &capture.TCP{
		Chunks: []capture.Chunk{{Data: []byte("hi")}, {Data: []byte("mail ann@example.com")}}}}
	for _, tt := range []struct {
		name   string
		rec    *capture.Record
		change func(*capture.Record)
		want   Part
	}{
		{"nothing", rec(), func(*capture.Record) {}, 0},
		{"url", rec(), func(r *capture.Record) { r.HTTP.Req.URL += "&api_key=k" }, PartURL | PartRedactions},
		{"request header", rec(), func(r *capture.Record) {
			r.HTTP.Req.Headers = append(r.HTTP.Req.Headers, capture.Header{Name: "Cookie", Value: "c"})
		}, PartReqHeaders | PartRedactions},
		{"request body", rec(), func(r *capture.Record) { r.HTTP.Req.Body.Data = []byte(`{"password":"p"}`) }, PartReqBody | PartRedactions},
		{"response header", rec(), func(r *capture.Record) { r.HTTP.Res.Headers[0].Value = "text/plain; ann@example.com" }, PartResHeaders | PartRedactions},
		{"trailer", rec(), func(r *capture.Record) { r.HTTP.Res.Trailers[0].Name = "Set-Cookie" }, PartTrailers | PartRedactions},
		{"response body", rec(), func(r *capture.Record) { r.HTTP.Res.Body.Data = []byte(`{"to":"ann@example.com"}`) }, PartResBody | PartRedactions},
		{"already listed", rec(), func(r *capture.Record) {
			r.HTTP.Req.URL += "&api_key=k"
			r.Redactions = []string{DefaultRuleID}
		}, PartURL},
		{"already redacted", rec(), func(r *capture.Record) {
			r.HTTP.Req.Headers = append(r.HTTP.Req.Headers, capture.Header{Name: "Cookie", Value: "REDACTED-std-auth"})
		}, 0},
		{"tcp", tcp, func(*capture.Record) {}, PartChunks | PartRedactions},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.change(tt.rec)
			before, _ := json.Marshal(tt.rec)
			_, got := red.RedactParts(tt.rec)
			if got != tt.want {
				t.Errorf("parts %b, want %b", got, tt.want)
			}
			after, _ := json.Marshal(tt.rec)
			if (got == 0) != bytes.Equal(before, after) {
				t.Errorf("parts %b, but the record changed from %s to %s", got, before, after)
			}
		})
	}
}

// TestJSONEscapes: a pattern inside a JSON string never starts inside an
// escape, where the token would follow a backslash and break the JSON
// (found by FuzzRedactBody: "\b0000@0.AA").
func TestJSONEscapes(t *testing.T) {
	r := testRedactor(t)
	for in, want := range map[string]string{
		`["\b0000@0.AA"]`:               `["\bREDACTED-pii"]`,
		`["\u0041bc@x.io"]`:             `["\u0041REDACTED-pii"]`,
		`["\\bob@x.io"]`:                `["\\REDACTED-pii"]`,
		`["\u0040x.io"]`:                `["\u0040x.io"]`,
		`["\bearer abcdefghijk.lmn"]`:   `["\bearer abcdefghijk.lmn"]`,
		`["a\nBearer abcdefghijk.lmn"]`: `["a\nBearer REDACTED-tokens"]`,
		`["\n4111111111111111 card"]`:   `["\nREDACTED-std-card card"]`,
	} {
		var h hits
		out := r.redactJSON([]byte(in), &h)
		if out == nil {
			out = []byte(in) // nothing changed
		}
		if !json.Valid(out) || string(out) != want {
			t.Errorf("%s: got %s, want %s", in, out, want)
		}
	}
}

// TestMatchBeforeAddress: a card number or bearer token directly followed
// by "@domain" is redacted with its domain, or the token written in its
// place would be the local part of a new address and a second pass would
// change the text again (found by FuzzRedactBody: "BeArer 00000000@0.AA").
func TestMatchBeforeAddress(t *testing.T) {
	r := testRedactor(t)
	for in, want := range map[string]string{
		"BeArer 00000000@0.AA":            "BeArer REDACTED-tokens",
		"Bearer abcdefghij@x.io@y.io end": "Bearer REDACTED-tokens end",
		"Bearer abcdefghij@x.i end":       "Bearer REDACTED-tokens@x.i end",
		"4111111111111111@x.io":           "REDACTED-std-card",
		"4111111111111111@ and":           "REDACTED-std-card@ and",
	} {
		var h hits
		out := r.patterns([]byte(in), &h)
		if out == nil {
			out = []byte(in)
		}
		if string(out) != want {
			t.Errorf("%q: got %q, want %q", in, out, want)
		}
		if again := r.patterns(out, &h); again != nil {
			t.Errorf("%q: a second pass changed %q to %q", in, out, again)
		}
	}
}

// TestPatternsStable: a match that only shows once another is replaced is
// redacted in the same pass (found by FuzzRedactBody: two card numbers
// joined by a space read as one 32-digit number until one is replaced).
func TestPatternsStable(t *testing.T) {
	r := testRedactor(t)
	for _, in := range []string{
		"4111111111111111 4111111111111111",
		"4111111111111111 4111111111111111@x.io",
		"x 5500000000000004 4111111111111111 y",
	} {
		var h hits
		out := r.patterns([]byte(in), &h)
		if out == nil {
			out = []byte(in)
		}
		if again := r.patterns(out, &h); again != nil {
			t.Errorf("%q: a second pass changed %q to %q", in, out, again)
		}
	}
}

// TestRedactLeavesInputs: redaction reads header values and URLs in place
// (no copy) and never writes into them: the strings a record held before
// are unchanged, changed members are new strings.
func TestRedactLeavesInputs(t *testing.T) {
	red, err := New(DefaultRules(true))
	if err != nil {
		t.Fatal(err)
	}
	card := "4111111111111111"
	url := "http://svc/pay?card=" + card + "&token=abc&q=4111+1111+1111+1111#frag"
	value := "card " + card + " mail bob@example.com Bearer abcdefghijklmnop"
	heapURL, heapValue := strings.Clone(url), strings.Clone(value)
	for _, in := range [][2]string{{url, value}, {heapURL, heapValue}} {
		rec := &capture.Record{HTTP: &capture.HTTP{Req: capture.Request{URL: in[0],
			Headers: capture.Headers{{Name: "X-Note", Value: in[1]}}}}}
		red.Redact(rec)
		if in[0] != url || in[1] != value {
			t.Fatalf("inputs changed: %q, %q", in[0], in[1])
		}
		if rec.HTTP.Req.URL == url || rec.HTTP.Req.Headers[0].Value == value {
			t.Fatalf("nothing redacted: %q, %q", rec.HTTP.Req.URL, rec.HTTP.Req.Headers[0].Value)
		}
	}
}

// TestKeyCache: fieldRule answers for a JSON key what ruleFor does, when
// the key is met the first time, again, after thousands of other keys took
// the cache's slots, and from several goroutines at once.
func TestKeyCache(t *testing.T) {
	red, err := New(append(DefaultRules(true), Rule{ID: "pii", RedactList: struct {
		Entries map[string][]string `json:"entries"`
	}{Entries: map[string][]string{"json": {"ssn", "Customer-Email"}}}}))
	if err != nil {
		t.Fatal(err)
	}
	base := []string{"password", "api_key", "apiKey", "x-api-key", "nextPageToken", "idempotency_token", "ssn", "SSN",
		"customerEmail", "customer_email", "id", "total", "secret", "client_secret", "name", strings.Repeat("k", 64),
		strings.Repeat("k", 65) + "token"}
	var keys []string
	for i := range 3000 {
		keys = append(keys, base[i%len(base)], fmt.Sprintf("%s%d", base[i%len(base)], i), fmt.Sprintf("f%dtoken", i))
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for round := range 2 {
				for i := range keys {
					k := keys[(i+g*97)%len(keys)]
					gotRule, gotOK := red.fieldRule([]byte(k), strings.Contains(k, `\`))
					wantRule, wantOK := ruleFor(red, kindField, []byte(k))
					if gotRule != wantRule || gotOK != wantOK {
						t.Errorf("round %d, key %q: fieldRule %d %v, ruleFor %d %v", round, k, gotRule, gotOK, wantRule, wantOK)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	if rule, ok := red.fieldRule([]byte("password"), false); !ok || red.ids[rule] != DefaultRuleID {
		t.Errorf("password: rule %d %v, want %s", rule, ok, DefaultRuleID)
	}
}

// FuzzPatternsEscapeFree: in a JSON string without a backslash, the
// patterns find what they find in plain text (patternsIn reads such a
// string as plain text, skipping the escape checks), with every redactor
// of the tests.
func FuzzPatternsEscapeFree(f *testing.F) {
	for _, s := range []string{"4111 1111 1111 1111", "ann@example.com", "Bearer abc.def-ghi", "x4111111111111111@ex.io",
		"ord_00048213", "2026-12-01T10:00:00Z", "a@b@c.d 5500-0000-0000-0004", "bob.smith+tag@mail.example.org", "bearer"} {
		f.Add([]byte(s))
	}
	redactors := []*Redactor{testRedactor(f), defaultRedactor(f, true), defaultRedactor(f, false)}
	f.Fuzz(func(t *testing.T, b []byte) {
		b = bytes.ReplaceAll(b, []byte{'\\'}, nil)
		for _, r := range redactors {
			var hj, hp hits
			inJSON := r.patternsOnce(b, true, &hj)
			plain := r.patternsOnce(b, false, &hp)
			if !bytes.Equal(inJSON, plain) || hj.bits != hp.bits {
				t.Fatalf("%q: in a JSON string %q (rules %b), as plain text %q (rules %b)", b, inJSON, hj.bits, plain, hp.bits)
			}
		}
	})
}

// FuzzScanStr: the JSON walker's one-pass string scan ends every string
// where scanString does, says it holds a backslash exactly when it does,
// and says it holds a pattern's first byte whenever skip finds one in its
// contents (the walker reads a string again only then), with every
// redactor of the tests (card, e-mail and bearer patterns on and off).
func FuzzScanStr(f *testing.F) {
	for _, s := range []string{`"plain"`, `"a\"b" x`, `"4111 1111 1111 1111"`, `"x\u0034y"`, `"\b\\"`, `"unclosed \`, `"\"`,
		`"mail bob@example.com"`, `"Bearer abc"`, `""`, `"`} {
		f.Add([]byte(s))
	}
	none, err := New(nil)
	if err != nil {
		f.Fatal(err)
	}
	redactors := []*Redactor{testRedactor(f), defaultRedactor(f, true), defaultRedactor(f, false), none}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 || data[0] != '"' {
			data = append([]byte{'"'}, data...)
		}
		wantEnd, wantClosed := scanString(data, 0)
		inner := data[1:wantEnd]
		if wantClosed {
			inner = data[1 : wantEnd-1]
		}
		for _, r := range redactors {
			end, closed, class := r.scanStr(data, 0)
			if end != wantEnd || closed != wantClosed {
				t.Fatalf("scanStr(%q) ends at %d (closed %v), scanString at %d (%v)", data, end, closed, wantEnd, wantClosed)
			}
			if got, want := class&classEscape != 0, bytes.IndexByte(inner, '\\') >= 0; got != want {
				t.Fatalf("scanStr(%q): escape %v, want %v", data, got, want)
			}
			if r.skip(inner, 0) < len(inner) && class&classStart == 0 {
				t.Fatalf("scanStr(%q): no pattern start, but skip finds one at %d", data, r.skip(inner, 0))
			}
		}
	})
}

// patternRedactors returns a redactor for each set of the three patterns
// (none, card, email, bearer, and every combination).
func patternRedactors(t testing.TB) []*Redactor {
	names := []string{PatternCard, PatternEmail, PatternBearer}
	var out []*Redactor
	for set := range 1 << len(names) {
		var rule Rule
		rule.ID = "p"
		for k, n := range names {
			if set&(1<<k) != 0 {
				if rule.RedactList.Entries == nil {
					rule.RedactList.Entries = map[string][]string{}
				}
				rule.RedactList.Entries["patterns"] = append(rule.RedactList.Entries["patterns"], n)
			}
		}
		var rules []Rule
		if set != 0 {
			rules = []Rule{rule}
		}
		r, err := New(rules)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

// TestHasDigit: the word test finds a digit exactly when there is one, for
// every byte value at every place in the word, beside other bytes.
func TestHasDigit(t *testing.T) {
	for c := range 256 {
		for pos := range 8 {
			for _, fill := range []byte{'x', 0, 0xff, 0x80, 0xb9, '/', ':', '5'} {
				var w [8]byte
				for k := range w {
					w[k] = fill
				}
				w[pos] = byte(c)
				want := bytes.IndexAny(w[:], "0123456789") >= 0
				if got := hasDigit(binary.LittleEndian.Uint64(w[:])) != 0; got != want {
					t.Fatalf("hasDigit(%q) = %v, want %v", w, got, want)
				}
			}
		}
	}
}

// TestCountDigits: the word count of digits agrees with a byte loop, for
// every byte value at every place of texts of 1 to 20 bytes among digits
// and other bytes.
func TestCountDigits(t *testing.T) {
	for n := 1; n <= 20; n++ {
		for _, fill := range []byte{'x', '0', '9', 0, 0xff, 0x80, 0xb9, 0xb0, '/', ':'} {
			for pos := range n {
				for c := range 256 {
					b := bytes.Repeat([]byte{fill}, n)
					b[pos] = byte(c)
					want := 0
					for _, c := range b {
						if '0' <= c && c <= '9' {
							want++
						}
					}
					if got := countDigits(b); got != want {
						t.Fatalf("countDigits(%q) = %d, want %d", b, got, want)
					}
				}
			}
		}
	}
}

// TestSkipWords: skip's word steps (32 and 16 bytes with the card pattern
// alone, 8 otherwise) find a pattern's first byte at every place of a
// long text, after every kind of other byte, from several starts.
func TestSkipWords(t *testing.T) {
	for _, r := range patternRedactors(t) {
		for _, start := range []byte{'7', '0', '9', '@', 'B', 'b'} {
			for _, fill := range []byte{'x', 0, 0xff, 0x80, 0xb9, 0xcf, '/', ':'} {
				for p := range 140 {
					data := bytes.Repeat([]byte{fill}, 140)
					data[p] = start
					for _, i := range []int{0, 1, 7, 31, 33, 64} {
						want := i
						for want < len(data) && r.starts[data[want]] == 0 {
							want++
						}
						if got := r.skip(data, i); got != want {
							t.Fatalf("card %d email %d bearer %d: skip(%q at %d in %#x, %d) = %d, want %d",
								r.card, r.email, r.bearer, start, p, fill, i, got, want)
						}
					}
				}
			}
		}
	}
}

// FuzzSkip: skip returns the first byte at or after i that a pattern can
// begin at, as a plain loop over the table finds it, under every set of
// patterns.
func FuzzSkip(f *testing.F) {
	for _, s := range []string{"xxxxxxxxxxxxxxxxx1", "abc@def", "xxxxxxxxBearer", "\x00\xff\x80\xb9\xcf09:/", "", "12345678"} {
		f.Add([]byte(s), uint8(0))
	}
	redactors := patternRedactors(f)
	f.Fuzz(func(t *testing.T, data []byte, from uint8) {
		i := min(int(from), len(data))
		for _, r := range redactors {
			want := i
			for want < len(data) && r.starts[data[want]] == 0 {
				want++
			}
			if got := r.skip(data, i); got != want {
				t.Fatalf("card %d email %d bearer %d: skip(%q, %d) = %d, want %d", r.card, r.email, r.bearer, data, i, got, want)
			}
		}
	})
}

// FuzzFewDigits: a text, or a JSON string's contents, with fewer than 13
// digits holds no card number (patternsIn skips the scan of such short
// texts when the card is the only pattern).
func FuzzFewDigits(f *testing.F) {
	for _, s := range []string{"Mon, 07 Dec 2026 10:00:00 GMT", "4111 1111 1111", "4111-1111-1111-1111", "127.0.0.1:8080", `41\u00311111111111111`} {
		f.Add([]byte(s), false)
	}
	r := defaultRedactor(f, true)
	f.Fuzz(func(t *testing.T, b []byte, inJSON bool) {
		if !fewDigits(b) {
			return
		}
		var h hits
		if out := r.patternsOnce(b, inJSON, &h); out != nil {
			t.Fatalf("patternsOnce(%q, %v) = %q: a match with fewer than 13 digits", b, inJSON, out)
		}
	})
}
