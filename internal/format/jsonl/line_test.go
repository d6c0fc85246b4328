package jsonl

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	gojson "github.com/goccy/go-json"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/capture/capturetest"
)

// decodeLine decodes one line as Decode does, and returns the
// record and the line it passed.
func decodeLine(t testing.TB, line []byte) (*capture.Record, []byte) {
	t.Helper()
	var rec *capture.Record
	var raw []byte
	var l Line
	err := Decode(bytes.NewReader(line), Limits{Bytes: 32 << 20}, &l, Want{}, func(r *capture.Record, _ bool) error {
		rec, raw = r, bytes.Clone(l.Raw())
		return nil
	})
	if err != nil || rec == nil {
		t.Fatalf("decode %s: %v", line, err)
	}
	return rec, raw
}

// encodeFull is the line Append writes for rec.
func encodeFull(t testing.TB, rec *capture.Record) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := Append(&b, []*capture.Record{rec}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// goldenLines are the capture package's golden records, each on one line,
// and this package's test records.
func goldenLines(t testing.TB) [][]byte {
	files, _ := filepath.Glob("../../capture/testdata/*.golden.json")
	if len(files) == 0 {
		t.Fatal("no golden records in ../../capture/testdata")
	}
	var lines [][]byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var c bytes.Buffer
		if err := json.Compact(&c, b); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, c.Bytes())
	}
	for _, r := range capturetest.Batch(4, 30) {
		lines = append(lines, bytes.TrimSuffix(encodeFull(t, r), []byte("\n")))
	}
	return lines
}

// TestLineUnchanged: a line nothing changed is stored as it came, byte
// for byte (in any member order and spacing).
func TestLineUnchanged(t *testing.T) {
	lines := append(goldenLines(t), []byte(` { "id" : "a", "schema":1,"kind":"tcp" , "direction":"in","tcp":{"chunks":[{"up":true,"data":"QUJD"}]}, "labels":null } `))
	for _, line := range lines {
		rec, raw := decodeLine(t, line)
		var l Line
		if !l.ParseLine(raw) {
			t.Errorf("ParseLine refused %s", raw)
			continue
		}
		var out bytes.Buffer
		if ok, err := l.AppendTo(&out, rec, 0); !ok || err != nil {
			t.Fatalf("AppendTo: %v %v", ok, err)
		}
		if want := append(bytes.TrimSpace(line), '\n'); !bytes.Equal(out.Bytes(), want) {
			t.Errorf("unchanged line stored as\n%s\nwant\n%s", out.Bytes(), want)
		}
	}
}

// respace returns line with ws after each ',', ':', '[' and '{' and
// before each ']' and '}' outside strings.
func respace(line []byte, ws string) []byte {
	var out []byte
	in := false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case in && c == '\\':
			out = append(out, c, line[i+1])
			i++
			continue
		case c == '"':
			in = !in
		case !in && (c == ']' || c == '}'):
			out = append(out, ws...)
		}
		out = append(out, c)
		if !in && (c == ',' || c == ':' || c == '[' || c == '{') {
			out = append(out, ws...)
		}
	}
	return out
}

// TestLineSpaced: the encoder's lines with whitespace between all their
// tokens are taken as they are, typed as they were, and stored as they
// came.
func TestLineSpaced(t *testing.T) {
	for _, line := range goldenLines(t) {
		var plain Line
		if !plain.ParseLine(line) {
			t.Fatalf("ParseLine refused %s", line)
		}
		for _, ws := range []string{" ", "\t", " \r ", "  \t"} {
			spaced := respace(line, ws)
			rec, raw := decodeLine(t, spaced)
			var l Line
			if !l.ParseLine(raw) {
				t.Errorf("ParseLine refused %q", raw)
				continue
			}
			if l.Typed() != plain.Typed() {
				t.Errorf("Typed() = %v for %q, %v without the whitespace", l.Typed(), raw, plain.Typed())
			}
			var out bytes.Buffer
			if ok, err := l.AppendTo(&out, rec, 0); !ok || err != nil || !bytes.Equal(out.Bytes(), append(raw, '\n')) {
				t.Errorf("AppendTo = %v %v, %q; want the line as it came", ok, err, out.Bytes())
			}
		}
	}
}

// TestLineChanged: the members a server changed are written again, the
// rest kept; the stored line decodes to the changed record.
func TestLineChanged(t *testing.T) {
	for _, line := range goldenLines(t) {
		rec, raw := decodeLine(t, line)
		var l Line
		if !l.ParseLine(raw) {
			t.Fatalf("ParseLine refused %s", raw)
		}
		// Change every member the record has.
		var changed Field
		rec.Labels.Tenant = "acme<&>"
		rec.Tags = capture.Tags{"tenantName": "Acme \"Inc\""}
		rec.Redactions = append(rec.Redactions, "std-auth")
		changed |= FieldLabels | FieldTags | FieldRedactions
		if h := rec.HTTP; h != nil {
			h.Req.URL += "?token=REDACTED-x"
			h.Req.Headers = append(h.Req.Headers, capture.Header{Name: "Authorization", Value: "REDACTED-std-auth"})
			changed |= FieldURL | FieldReqHeaders
			if h.Req.Body.Data != nil {
				h.Req.Body.Data = []byte(`{"password":"REDACTED-pii"}`)
				changed |= FieldReqBody
			}
			if h.Res != nil {
				if h.Res.Headers != nil {
					h.Res.Headers[0].Value = "REDACTED-std-auth"
					changed |= FieldResHeaders
				}
				if h.Res.Trailers != nil {
					h.Res.Trailers[0].Value = "REDACTED-std-auth"
					changed |= FieldTrailers
				}
				if h.Res.Body.Data != nil {
					h.Res.Body.Data = []byte("card REDACTED-pii")
					changed |= FieldResBody
				}
			}
		}
		if tc := rec.TCP; tc != nil && len(tc.Chunks) > 0 {
			tc.Chunks[0].Data = []byte("REDACTED-pii")
			changed |= FieldChunks
		}
		var out bytes.Buffer
		ok, err := l.AppendTo(&out, rec, changed)
		if !ok || err != nil {
			t.Fatalf("AppendTo(%s): %v %v", raw, ok, err)
		}
		got, _ := decodeLine(t, out.Bytes())
		if !reflect.DeepEqual(got, rec) {
			t.Errorf("patched line\n%s\ndecodes to %+v\nwant %+v", out.Bytes(), got, rec)
		}
		if !bytes.Equal(encodeFull(t, got), encodeFull(t, rec)) {
			t.Errorf("patched line encodes differently")
		}
		// A member that is not changed keeps its bytes.
		if start := bytes.Index(raw, []byte(`"start":`)); start >= 0 {
			if end := bytes.IndexByte(raw[start:], ','); !bytes.Contains(out.Bytes(), raw[start:start+end]) {
				t.Errorf("start not kept: %s", out.Bytes())
			}
		}
	}
}

// TestLineAbsentMembers: top-level members a line lacks are added at its
// end; a nested one it lacks makes AppendTo decline.
func TestLineAbsentMembers(t *testing.T) {
	rec, raw := decodeLine(t, []byte(`{"schema":1,"id":"a","kind":"http","direction":"in","http":{"req":{"method":"GET","body":{"size":0}}}}`))
	var l Line
	if !l.ParseLine(raw) {
		t.Fatal("ParseLine refused")
	}
	rec.Labels.Cluster = "prod"
	rec.Redactions = []string{"std-auth"}
	var out bytes.Buffer
	if ok, err := l.AppendTo(&out, rec, FieldLabels|FieldRedactions); !ok || err != nil {
		t.Fatalf("AppendTo: %v %v", ok, err)
	}
	want := `{"schema":1,"id":"a","kind":"http","direction":"in","http":{"req":{"method":"GET","body":{"size":0}}},"labels":{"cluster":"prod"},"redactions":["std-auth"]}` + "\n"
	if out.String() != want {
		t.Errorf("got  %s\nwant %s", out.Bytes(), want)
	}
	rec.HTTP.Req.Headers = capture.Headers{{Name: "A", Value: "b"}}
	out.Reset()
	if ok, err := l.AppendTo(&out, rec, FieldReqHeaders); ok || err != nil || out.Len() != 0 {
		t.Errorf("AppendTo of an absent nested member: %v %v, %q; want false and nothing written", ok, err, out.Bytes())
	}
}

// TestParseLineRefuses: a line that holds more than its record, or that
// this package cannot patch safely, is refused.
func TestParseLineRefuses(t *testing.T) {
	const base = `{"schema":1,"id":"a","kind":"http","direction":"in","http":{"req":{"method":"GET","headers":[["A","b"]],"body":{"size":0}}}`
	for name, line := range map[string]string{
		"unknown member":        base + `,"future":{"cookie":"secret"}}`,
		"unknown nested member": strings.Replace(base, `"method":"GET"`, `"method":"GET","cookies":"secret"`, 1) + `}`,
		"member twice":          strings.Replace(base, `"method":"GET"`, `"headers":[["Authorization","secret"]],"method":"GET"`, 1) + `}`,
		"member in other case":  base + `,"Labels":{"service":"x"}}`,
		"escaped key":           base + `,"l\u0061bels":{"service":"x"}}`,
		"tag twice":             base + `,"tags":{"a":"1","a":"2"}}`,
		"vendor block":          base + `,"vendor":{"tech":"x"}}`,
		"invalid UTF-8":         base + `,"error":"` + "\xff" + `"}`,
		"not closed":            base,
		"trailing bytes":        base + `}x`,
		// names that begin like the member expected next, or that it begins
		"longer name":   strings.Replace(base, `"id":"a"`, `"idx":"a"`, 1) + `}`,
		"shorter name":  strings.Replace(base, `"kind":"http"`, `"kin":"http"`, 1) + `}`,
		"name at end":   `{"schema":1,"i`,
		"name unclosed": strings.Replace(base, `"id":"a"`, `"idX:"a"`, 1) + `}`, // not JSON: the key is "idX:"
	} {
		var l Line
		if l.ParseLine([]byte(line)) {
			t.Errorf("%s: ParseLine accepted %s", name, line)
		}
	}
	var l Line
	if !l.ParseLine([]byte(base + `,"tags":{"a":"1","b":"2"}}`)) {
		t.Errorf("ParseLine refused a good line")
	}
}

// FuzzLine: a line ParseLine takes holds nothing its record does not (no
// member encoding/json would not know, none twice), and a line patched
// with every member changed decodes to the record.
func FuzzLine(f *testing.F) {
	for _, l := range goldenLines(f) {
		f.Add(l)
	}
	f.Add([]byte(`{"schema":1,"id":"a","kind":"tcp","direction":"in","tcp":{"chunks":[{"up":true,"data":"QUJD"}]},"tags":{"x":"y"}}`))
	for _, data := range []string{`"QUJD"`, `"QUI="`, `"QQ=="`, `"QQ="`, `"Q==="`, `"QU\nJD"`, `"QU\u004aD"`, `""`, `null`, `[65]`, `"QUJ*"`} {
		f.Add([]byte(`{"schema":1,"id":"a","kind":"http","direction":"in","http":{"res":{"status":200,"body":{"data":` + data +
			`,"size":3}},"req":{"method":"GET","body":{"data":"eA==","size":1}}}}`))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		var rec, lazy *capture.Record
		var raw []byte
		var l, ll Line
		err := Decode(bytes.NewReader(line), Limits{Bytes: 1 << 20}, &l, Want{}, func(r *capture.Record, _ bool) error {
			if rec == nil {
				rec, raw = r, bytes.Clone(l.Raw())
			}
			return nil
		})
		lerr := Decode(bytes.NewReader(line), Limits{Bytes: 1 << 20}, &ll, Want{LazyBodies: true}, func(r *capture.Record, _ bool) error {
			if lazy == nil {
				ll.FillBodies(r)
				lazy = r
			}
			return nil
		})
		if (err == nil) != (lerr == nil) {
			t.Fatalf("%q: decoded with lazy bodies: %v; without: %v", line, lerr, err)
		}
		if !reflect.DeepEqual(rec, lazy) {
			t.Fatalf("%q: decoded with lazy bodies and filled\n%+v\nwithout\n%+v", line, lazy, rec)
		}
		if err != nil || rec == nil {
			return
		}
		l = Line{}
		if !l.ParseLine(raw) {
			return
		}
		if err := strictlyKnown(raw); err != nil {
			t.Fatalf("ParseLine took %s: %v", raw, err)
		}
		var changed Field
		for f := range numFields {
			bit := Field(1) << f
			if bit <= FieldRedactions || l.spans[f][1] != 0 {
				changed |= bit
			}
		}
		var out bytes.Buffer
		ok, err := l.AppendTo(&out, rec, changed)
		if err != nil || !ok {
			return // a member's value the record cannot give (http null)
		}
		got, _ := decodeLine(t, out.Bytes())
		if !bytes.Equal(encodeFull(t, got), encodeFull(t, rec)) {
			t.Fatalf("%s\npatched to\n%s\ndecodes to another record", raw, out.Bytes())
		}
	})
}

// strictlyKnown checks with encoding/json that b holds only members of
// the record, each once in its object.
func strictlyKnown(b []byte) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	var r capture.Record
	if err := d.Decode(&r); err != nil {
		return err
	}
	d = json.NewDecoder(bytes.NewReader(b))
	type obj struct{ keys map[string]bool }
	var stack []*obj
	wantKey := false
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{':
				stack = append(stack, &obj{keys: map[string]bool{}})
				wantKey = true
				continue
			case '[':
				stack = append(stack, nil)
			case '}', ']':
				stack = stack[:len(stack)-1]
			}
		case string:
			if wantKey {
				top := stack[len(stack)-1]
				if top.keys[v] {
					return &json.UnsupportedValueError{Str: "key " + v + " twice"}
				}
				top.keys[v] = true
				wantKey = false
				continue
			}
		}
		wantKey = len(stack) > 0 && stack[len(stack)-1] != nil
	}
}

// BenchmarkLine: what the forwarder does with each line after decoding it:
// find its members and store it with a redacted header and the
// redactions written again, against encoding the record in full.
func BenchmarkLine(b *testing.B) {
	recs := capturetest.Batch(64, 1024)
	var lines [][]byte
	for _, r := range recs {
		r.HTTP = nil
		r.Kind = capture.KindHTTP
		r.HTTP = capturetest.Batch(1, 1024)[0].HTTP
		r.HTTP.Req.Headers = append(r.HTTP.Req.Headers, capture.Header{Name: "Authorization", Value: "Bearer x.y.z"})
		lines = append(lines, bytes.TrimSuffix(encodeFull(b, r), []byte("\n")))
		r.HTTP.Req.Headers[len(r.HTTP.Req.Headers)-1].Value = "REDACTED-std-auth"
		r.Redactions = []string{"std-auth"}
	}
	var out bytes.Buffer
	b.Run("patch", func(b *testing.B) {
		var l Line
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			out.Reset()
			if !l.ParseLine(lines[i%len(lines)]) {
				b.Fatal("refused")
			}
			if ok, err := l.AppendTo(&out, recs[i%len(recs)], FieldReqHeaders|FieldRedactions); !ok || err != nil {
				b.Fatal(ok, err)
			}
		}
	})
	b.Run("encode", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			out.Reset()
			if err := Append(&out, recs[i%len(recs):i%len(recs)+1]); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkDecodePartial: Decode as a forwarder with no redaction to apply
// and a filter calls it (partial records with the filter's facts, labels
// stamped), over lines of HTTP records as goproxy sends them: five request
// headers, 1 KiB bodies.
func BenchmarkDecodePartial(b *testing.B) {
	recs := capturetest.Batch(256, 1024)
	for _, r := range recs {
		if r.HTTP != nil {
			r.HTTP.Req.Headers = append(r.HTTP.Req.Headers, capture.Header{Name: "User-Agent", Value: "curl/8.5.0"},
				capture.Header{Name: "Accept", Value: "*/*"}, capture.Header{Name: "Authorization", Value: "REDACTED-std-auth"})
		}
	}
	var in bytes.Buffer
	if err := Append(&in, recs); err != nil {
		b.Fatal(err)
	}
	want := Want{LazyBodies: true, Partial: true, Facts: true, Members: FieldLabels}
	var l Line
	b.SetBytes(int64(in.Len()))
	b.ReportAllocs()
	for b.Loop() {
		n := 0
		err := Decode(bytes.NewReader(in.Bytes()), Limits{Bytes: -1}, &l, want, func(rec *capture.Record, exact bool) error {
			if !exact || !l.Partial() {
				b.Fatal("not a partial record")
			}
			n++
			return nil
		})
		if err != nil || n != len(recs) {
			b.Fatal(err, n)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(recs)), "ns/record")
}

// TestAppendPlain: the encoder-free path writes what the encoder writes.
func TestAppendPlain(t *testing.T) {
	for _, v := range []any{"", "http://a/b?c=<d>&e", `q"`, `b\`, "ü", "\t",
		[]string(nil), []string{}, []string{"std-auth", "a<b"}, []string{"x", `"`},
		capture.Headers(nil), capture.Headers{}, capture.Headers{{Name: "A", Value: "b c"}, {Name: "X", Value: "1"}},
		capture.Headers{{Name: "A", Value: "<&>"}}, capture.Headers{{Name: "A", Value: "ü"}}} {
		var want bytes.Buffer
		je := gojsonEncoder(&want)
		if err := je.Encode(v); err != nil {
			t.Fatal(err)
		}
		got, ok := appendPlain(nil, v)
		if ok && string(got)+"\n" != want.String() {
			t.Errorf("appendPlain(%#v) = %s, want %s", v, got, want.Bytes())
		}
	}
}

// TestValidBase64: validBase64 takes what the decoder takes, but for
// line breaks (which the decoder skips) and the empty text. Besides short
// texts, texts around each multiple of its step, with a bad byte or
// padding at every place near the step's end and in the vector decoder's
// first and last blocks.
func TestValidBase64(t *testing.T) {
	texts := []string{"", "QQ==", "QUI=", "QUJD", "QUJDRA==", "QQ=", "Q===", "====", "QU=D", "QUJ*", "QU\nJD", "QUJD\n", "QUJD====",
		"QUJDQUJDQUJD", "QU*DQUJDQUJD", "QUJDQUJDQUJ*", "QUJDQUJDQQ==", "QUJDQU=DQQ==", "QU\rJD", "QUJD\r\n", "QUJD\r\r\r\rQUJD", "QU\r\r\r\rJD"}
	for _, n := range []int{48, 64, 96, base64Step - 4, base64Step, base64Step + 4, 2 * base64Step, 2*base64Step + 8} {
		good := []byte(strings.Repeat("QUJD", n/4))
		texts = append(texts, string(good), string(good[:n-2])+"==", string(good[:n-1])+"=")
		for _, at := range []int{0, 1, 31, 32, 33, 100, n/2 + 1, base64Step - 8, base64Step - 5, base64Step - 2, base64Step - 1, base64Step, base64Step + 1, n - 6, n - 1} {
			if at < 0 || at >= n {
				continue
			}
			for _, c := range []byte("=*\r\n-_ \x80") {
				bad := bytes.Clone(good)
				bad[at] = c
				texts = append(texts, string(bad))
			}
			if at%4 == 2 && at+2 < n { // a quad padded in the middle
				texts = append(texts, string(good[:at])+"=="+string(good[at+2:]))
			}
			if at%4 == 0 && at+4 <= n { // a quad of line breaks, which the decoder skips
				texts = append(texts, string(good[:at])+"\r\r\r\r"+string(good[at+4:]), string(good[:at])+"\r\n\r\n"+string(good[at+4:]))
			}
		}
	}
	var l Line
	for _, s := range texts {
		checkValidBase64(t, &l, []byte(s))
	}
}

func checkValidBase64(t *testing.T, l *Line, s []byte) {
	t.Helper()
	_, err := base64.StdEncoding.DecodeString(string(s))
	want := err == nil && len(s) > 0 && !bytes.ContainsAny(s, "\r\n")
	if got := l.validBase64(s); got != want {
		t.Errorf("validBase64(%.80q... %d bytes) = %v, want %v (the decoder says %v)", s, len(s), got, want, err)
	}
}

// FuzzValidBase64: validBase64 against the decoder, on texts of random
// bytes after a valid prefix of any length (up to past two steps).
func FuzzValidBase64(f *testing.F) {
	f.Add(uint16(0), []byte("QQ=="))
	f.Add(uint16(base64Step/4-1), []byte("QUJD"))
	f.Add(uint16(base64Step/4-1), []byte("QQ==QUJD"))
	f.Add(uint16(20), []byte("QU*D"))
	f.Add(uint16(3), []byte("QU\rJD"))
	var l Line
	f.Fuzz(func(t *testing.T, quads uint16, tail []byte) {
		s := append(bytes.Repeat([]byte("QUJD"), int(quads)%(2*base64Step/4+64)), tail...)
		checkValidBase64(t, &l, s)
	})
}

// TestTypedOwnLines: the lines this package's encoder writes for records
// of every kind are typed (the forwarder's partial decode takes them, or
// it silently does the whole work again), and a partial decode of each
// stamps labels and tags into the same line as the full decode does.
func TestTypedOwnLines(t *testing.T) {
	recs := capturetest.Records()
	for i, r := range capturetest.Batch(8, 300) {
		recs["batch-"+string(rune('a'+i))] = r
	}
	for name, r := range recs {
		if r.Vendor != nil {
			continue // a vendor block: ParseLine refuses it
		}
		line := bytes.TrimSuffix(encodeFull(t, r), []byte("\n"))
		var l Line
		if !l.ParseLine(line) {
			t.Errorf("%s: ParseLine refused the encoder's line %s", name, line)
			continue
		}
		if !l.Typed() {
			t.Errorf("%s: the encoder's line is not typed: %s", name, line)
			continue
		}
		full, _ := decodeLine(t, line)
		var facts capture.Record
		if err := l.decodeMembers(&facts, FieldTags, true); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if d := diffFacts(&facts, full); d != "" {
			t.Errorf("%s: the facts a filter reads differ: %s", name, d)
		}
		var part capture.Record
		if err := l.decodeMembers(&part, FieldLabels|FieldTags, false); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, rec := range []*capture.Record{full, &part} {
			rec.Labels.Cluster = "stamped"
			if rec.Tags == nil {
				rec.Tags = capture.Tags{}
			}
			rec.Tags["tenantName"] = "t"
		}
		var a, b bytes.Buffer
		okA, errA := l.AppendTo(&a, full, FieldLabels|FieldTags)
		okB, errB := l.AppendTo(&b, &part, FieldLabels|FieldTags)
		if !okA || !okB || errA != nil || errB != nil || !bytes.Equal(a.Bytes(), b.Bytes()) {
			t.Errorf("%s: stamped from the full record (%v %v)\n%s\nfrom the partial one (%v %v)\n%s", name, okA, errA, a.Bytes(), okB, errB, b.Bytes())
		}
	}
}

// TestTyped: values a line may hold that the check takes, and those it
// leaves to the full decode.
func TestTyped(t *testing.T) {
	base := `{"schema":1,"id":"a","kind":"tcp","direction":"in","start":"2025-02-11T21:07:54.542084Z","durationUs":5,"tcp":{"bytesUp":3,"chunks":[{"up":true,"atUs":0,"data":"QUJD"}]}`
	for _, tc := range []struct {
		line  string
		typed bool
	}{
		{base + `}`, true},
		{base + `,"tags":{"a":"b\n\u00e9\"\\\/"}}`, true},
		{strings.Replace(base, `"data":"QUJD"`, `"data":null`, 1) + `}`, true},
		{strings.Replace(base, `"data":"QUJD"`, `"data":""`, 1) + `}`, true},
		{strings.Replace(base, `"durationUs":5`, `"durationUs":-12`, 1) + `}`, true},
		{strings.Replace(base, `"durationUs":5`, `"durationUs":9223372036854775807`, 1) + `}`, true},
		{strings.Replace(base, `"durationUs":5`, `"durationUs":-9223372036854775808`, 1) + `}`, true},
		{strings.Replace(base, `"schema":1`, `"schema":0`, 1) + `}`, true},
		{strings.Replace(base, `"schema":1,`, ``, 1) + `}`, true},
		// left to the full decode
		{strings.Replace(base, `"durationUs":5`, `"durationUs":9223372036854775808`, 1) + `}`, false},
		{strings.Replace(base, `"durationUs":5`, `"durationUs":-9223372036854775809`, 1) + `}`, false},
		{strings.Replace(base, `"durationUs":5`, `"durationUs":10000000000000000000`, 1) + `}`, false},
		{strings.Replace(base, `"durationUs":5`, `"durationUs":5.0`, 1) + `}`, false},
		{strings.Replace(base, `"durationUs":5`, `"durationUs":1e3`, 1) + `}`, false},
		{strings.Replace(base, `"durationUs":5`, `"durationUs":05`, 1) + `}`, false},
		{strings.Replace(base, `"durationUs":5`, `"durationUs":-0`, 1) + `}`, false},
		{strings.Replace(base, `"durationUs":5`, `"durationUs":"5"`, 1) + `}`, false},
		{strings.Replace(base, `"durationUs":5`, `"durationUs":null`, 1) + `}`, false},
		{strings.Replace(base, `"schema":1`, `"schema":2`, 1) + `}`, false},
		{strings.Replace(base, `"id":"a"`, `"id":""`, 1) + `}`, false},
		{strings.Replace(base, `"id":"a",`, ``, 1) + `}`, false},
		{strings.Replace(base, `"id":"a"`, `"id":7`, 1) + `}`, false},
		{strings.Replace(base, `"direction":"in"`, `"direction":"up"`, 1) + `}`, false},
		{strings.Replace(base, `"direction":"in"`, `"direction":"\u0069n"`, 1) + `}`, false},
		{strings.Replace(base, `"kind":"tcp"`, `"kind":"http"`, 1) + `}`, false},
		{strings.Replace(base, `"start":"2025-02-11T21:07:54.542084Z"`, `"start":"2025-02-11 21:07:54"`, 1) + `}`, false},
		{strings.Replace(base, `"up":true`, `"up":1`, 1) + `}`, false},
		{strings.Replace(base, `"data":"QUJD"`, `"data":"QUJ"`, 1) + `}`, false},
		{strings.Replace(base, `"data":"QUJD"`, `"data":"QU\nJD"`, 1) + `}`, false},
		{base + `,"tags":{"a":"b\x"}}`, false},
		{base + `,"tags":{"a":"\u12"}}`, false},
		{base + `,"tags":{"a":null}}`, false},
		{base + ",\"tags\":{\"\x01\":\"\"}}", false}, // a raw control character in a key (found in review)
		{base + ",\"tags\":{\"a\x1f\":\"b\"}}", false},
		{base + ",\"tags\":{\"a\tb\":\"b\"}}", false},
		{base + `,"error":"` + "\t" + `"}`, false},
		{strings.Replace(base, `"kind":"tcp"`, `"kind":"http"`, 1) + `,"http":{"req":{"headers":[["a","b","c"]]}}}`, false},
		{strings.Replace(base, `"kind":"tcp"`, `"kind":"http"`, 1) + `,"http":{"req":{"headers":[["a"]]}}}`, false},
		{strings.Replace(base, `"kind":"tcp"`, `"kind":"http"`, 1) + `,"http":{"req":{"headers":[[]]}}}`, false},
		{strings.Replace(base, `"kind":"tcp"`, `"kind":"http"`, 1) + `,"http":{"req":{"headers":[["a","b"]]}}}`, true},
		{strings.Replace(base, `"kind":"tcp"`, `"kind":"http"`, 1) + `,"http":null}`, false},
	} {
		var l Line
		if !l.ParseLine([]byte(tc.line)) {
			t.Errorf("ParseLine refused %s", tc.line)
			continue
		}
		if got := l.Typed(); got != tc.typed {
			t.Errorf("Typed() = %v, want %v: %s", got, tc.typed, tc.line)
		}
	}
}

// FuzzTyped: a line the typed check takes decodes in full, passes
// Record.Validate, and its partial decode (labels, tags) is the full
// decode's; through Decode, the partial record is passed for it, and the
// full one for any other line, as without Partial.
func FuzzTyped(f *testing.F) {
	for _, l := range goldenLines(f) {
		f.Add(l)
	}
	for _, r := range capturetest.Records() {
		f.Add(bytes.TrimSuffix(encodeFull(f, r), []byte("\n")))
	}
	f.Add([]byte(`{"schema":1,"id":"a","kind":"tcp","direction":"in","tcp":{"chunks":[{"up":true,"data":"QUJD"}]},"labels":{"cluster":"c\u0041"},"tags":{"x":"y"}}`))
	f.Add([]byte("{\"id\":\"a\",\"kind\":\"tcp\",\"direction\":\"in\",\"tcp\":{},\"tags\":{\"\x01\":\"\"}}"))
	f.Fuzz(func(t *testing.T, line []byte) {
		var l Line
		if !l.ParseLine(line) || !l.Typed() {
			return
		}
		var full capture.Record
		if err := gojson.Unmarshal(line, &full); err != nil {
			t.Fatalf("typed, but the decoder refuses %q: %v", line, err)
		}
		if err := full.Validate(); err != nil {
			t.Fatalf("typed, but %q is not valid: %v", line, err)
		}
		var std capture.Record
		if err := json.Unmarshal(line, &std); err != nil {
			t.Fatalf("typed, but encoding/json refuses %q: %v", line, err)
		}
		var part capture.Record
		if err := l.decodeMembers(&part, FieldLabels|FieldTags, false); err != nil {
			t.Fatalf("%q: partial decode: %v", line, err)
		}
		if part.Labels != full.Labels || !reflect.DeepEqual(part.Tags, full.Tags) {
			t.Fatalf("%q: partial labels %+v tags %v, full %+v %v", line, part.Labels, part.Tags, full.Labels, full.Tags)
		}
		var facts capture.Record
		if err := l.decodeMembers(&facts, FieldTags, true); err != nil {
			t.Fatalf("%q: partial decode with facts: %v", line, err)
		}
		if d := diffFacts(&facts, &full); d != "" {
			t.Fatalf("%q: the facts a filter reads differ: %s", line, d)
		}
		var got *capture.Record
		var partial bool
		var dl Line
		err := Decode(bytes.NewReader(line), Limits{Bytes: 1 << 20}, &dl, Want{Partial: true, Members: FieldLabels | FieldTags, Facts: true},
			func(r *capture.Record, exact bool) error {
				got, partial = r, dl.Partial()
				return nil
			})
		if err != nil || got == nil || !partial || diffFacts(got, &full) != "" {
			t.Fatalf("%q: Decode with Partial: %v, partial %v, %+v", line, err, partial, got)
		}
	})
}

// TestDecodePartialSequence: the partial records of a batch whose lines
// share some labels, hosts, methods and URLs with the line before and
// differ in others (the caches decodeMembers keeps from line to line) each
// hold their own line's facts, with a record of the batch stamped by the
// callback (as a forwarder stamps labels) changing none of the next ones.
func TestDecodePartialSequence(t *testing.T) {
	recs := capturetest.Batch(12, 16)
	labels := []capture.Labels{{Service: "a"}, {Service: "a"}, {Service: "b", Pod: "p"}, {Service: "a"}, {}, {Service: `q"uote`}, {Service: `q"uote`}}
	hosts := []string{"x.example", "x.example", "y.example", `x\y`, "x.example", "", "y.example"}
	for i, r := range recs {
		r.Labels = labels[i%len(labels)]
		r.Net.ServerHost = hosts[i%len(hosts)]
		if r.HTTP != nil {
			r.HTTP.Req.Host = hosts[(i+1)%len(hosts)]
			r.HTTP.Req.Method = []string{"GET", "GET", "POST", "get"}[i%4]
			r.HTTP.Req.URL = []string{"/a", "/a", "/b?c", "/a"}[i%4]
			if i%5 == 0 {
				r.HTTP.Req.Headers = append(r.HTTP.Req.Headers, capture.Header{Name: "User-Agent", Value: "kube-probe/1.30\t"})
			}
		}
	}
	var in bytes.Buffer
	if err := Append(&in, recs); err != nil {
		t.Fatal(err)
	}
	lines := bytes.Split(bytes.TrimSuffix(in.Bytes(), []byte("\n")), []byte("\n"))
	var l Line
	n := 0
	err := Decode(bytes.NewReader(in.Bytes()), Limits{Bytes: -1}, &l, Want{Partial: true, Facts: true, Members: FieldLabels},
		func(r *capture.Record, exact bool) error {
			if !l.Partial() {
				t.Errorf("line %d: not a partial record", n)
			}
			var full capture.Record
			if err := gojson.Unmarshal(lines[n], &full); err != nil {
				t.Fatal(err)
			}
			if d := diffFacts(r, &full); d != "" {
				t.Errorf("line %d: %s", n, d)
			}
			r.Labels.Cluster, r.Labels.Tenant = "stamped", "t" // as the forwarder stamps them
			n++
			return nil
		})
	if err != nil || n != len(recs) {
		t.Fatalf("Decode: %v after %d of %d records", err, n, len(recs))
	}
}

// TestDecodeLineBuffers: lines whole in the reader's buffer are passed
// from it, longer ones (past its 64 KiB) gathered; in a batch that mixes
// them, and whose short lines straddle the buffer's refills, every line
// reaches fn as written and decodes to its record.
func TestDecodeLineBuffers(t *testing.T) {
	var recs []*capture.Record
	for i, size := range []int{10, 100 << 10, 900, 30 << 10, 64 << 10, 5, 70 << 10, 1 << 10, 2 << 10, 200 << 10, 0, 40 << 10} {
		r := capturetest.Batch(1, size)[0]
		r.ID = fmt.Sprintf("rec-%02d", i)
		recs = append(recs, r)
	}
	var in bytes.Buffer
	if err := Append(&in, recs); err != nil {
		t.Fatal(err)
	}
	lines := bytes.Split(bytes.TrimSuffix(in.Bytes(), []byte("\n")), []byte("\n"))
	for _, want := range []Want{{}, {LazyBodies: true}, {Partial: true, Facts: true, Members: FieldLabels}} {
		var l Line
		n := 0
		err := Decode(bytes.NewReader(in.Bytes()), Limits{Bytes: -1}, &l, want, func(r *capture.Record, exact bool) error {
			if !exact || !bytes.Equal(l.Raw(), lines[n]) {
				t.Errorf("%+v: line %d: exact %v, %d bytes passed, want the %d written", want, n, exact, len(l.Raw()), len(lines[n]))
			}
			if !l.Partial() && r.ID != recs[n].ID {
				t.Errorf("%+v: line %d decoded to %q, want %q", want, n, r.ID, recs[n].ID)
			}
			n++
			return nil
		})
		if err != nil || n != len(recs) {
			t.Fatalf("%+v: %v after %d of %d lines", want, err, n, len(recs))
		}
	}
}

// diffFacts describes how the facts a filter reads (internal/filter)
// differ between a partial record decoded with Want.Facts and the full one.
func diffFacts(p, f *capture.Record) string {
	switch {
	case p.Kind != f.Kind || p.Direction != f.Direction || !p.Start.Equal(f.Start) || p.Labels != f.Labels ||
		p.Net.ServerHost != f.Net.ServerHost || !reflect.DeepEqual(p.Tags, f.Tags):
		return fmt.Sprintf("record %s %s %v %+v %q %v, full %s %s %v %+v %q %v", p.Kind, p.Direction, p.Start, p.Labels, p.Net.ServerHost, p.Tags,
			f.Kind, f.Direction, f.Start, f.Labels, f.Net.ServerHost, f.Tags)
	case (p.HTTP == nil) != (f.HTTP == nil):
		return fmt.Sprintf("http %v, full %v", p.HTTP != nil, f.HTTP != nil)
	case p.HTTP == nil:
		return ""
	}
	pr, fr := p.HTTP.Req, f.HTTP.Req
	switch {
	case pr.Method != fr.Method || pr.URL != fr.URL || pr.Host != fr.Host || !reflect.DeepEqual(pr.Headers, fr.Headers):
		return fmt.Sprintf("request %q %q %q %v, full %q %q %q %v", pr.Method, pr.URL, pr.Host, pr.Headers, fr.Method, fr.URL, fr.Host, fr.Headers)
	case (p.HTTP.Res == nil) != (f.HTTP.Res == nil):
		return fmt.Sprintf("response %v, full %v", p.HTTP.Res != nil, f.HTTP.Res != nil)
	case p.HTTP.Res != nil && p.HTTP.Res.Status != f.HTTP.Res.Status:
		return fmt.Sprintf("status %d, full %d", p.HTTP.Res.Status, f.HTTP.Res.Status)
	}
	return ""
}

// typedProblem checks FuzzTyped's property on one line: when ParseLine
// takes it and Typed says it is typed, goccy and encoding/json decode it,
// Validate passes, and the partial facts are the full decode's. It returns
// what failed, or "".
func typedProblem(line []byte) string {
	var l Line
	if !l.ParseLine(line) || !l.Typed() {
		return ""
	}
	var full, std capture.Record
	if err := gojson.Unmarshal(line, &full); err != nil {
		return "goccy refuses it: " + err.Error()
	}
	if err := full.Validate(); err != nil {
		return "not valid: " + err.Error()
	}
	if err := json.Unmarshal(line, &std); err != nil {
		return "encoding/json refuses it: " + err.Error()
	}
	var part capture.Record
	if err := l.decodeMembers(&part, FieldLabels|FieldTags, true); err != nil {
		return "partial decode: " + err.Error()
	}
	return diffFacts(&part, &full)
}

// TestTypedSubstitutions: FuzzTyped's property, checked deterministically on
// every value and every map key of the sample lines replaced in turn by
// each of some hundred tokens at the edges of the types (integer bounds,
// escapes, control characters, times, base64, null, nested shapes). A
// review found a raw control character in a tags key that way, which the
// fuzzer had missed.
func TestTypedSubstitutions(t *testing.T) {
	tokens := []string{
		`""`, `"a"`, `"\u0000"`, `"\ud800"`, `"\uDFFF\uD800"`, `"\/"`, `"é"`, `"\u2028"`, "\"\x7f\"", `"\\"`, `"\""`,
		`"\b\f\n\r\t"`, `"\x"`, `"\u12"`, "\"\x01\"", "\"a\tb\"", `"in"`, `"out"`, `"http"`, `"tcp"`, `"HTTP"`, `"In"`,
		`0`, `-1`, `1`, `127`, `128`, `-129`, `255`, `256`, `32768`, `-32769`, `65536`, `2147483647`, `2147483648`,
		`-2147483649`, `4294967296`, `9223372036854775807`, `9223372036854775808`, `-9223372036854775808`,
		`-9223372036854775809`, `18446744073709551615`, `18446744073709551616`, `00`, `-0`, `1e2`, `1.0`, `-`, `01`,
		`"2025-02-11T21:07:54Z"`, `"2025-02-11T21:07:54.Z"`, `"2025-02-11T24:00:00Z"`, `"2025-02-29T00:00:00Z"`,
		`"2024-02-29T00:00:00+23:59"`, `"2025-02-11T21:07:54+00:60"`, `"2025-02-11T21:07:54,123Z"`, `"AA=="`, `"AB=="`,
		`"AAA="`, `"A==="`, `"AA=A"`, `"-_-_"`, `null`, `true`, `false`, `{}`, `[]`, `[[]]`, `[["a","b"]]`, `[["a"]]`,
		`[["a","b","c"]]`, `[null]`, `[{}]`, `{"a":"b"}`, `{"a":null}`, `{"a":"b","A":"c"}`, "{\"\x01\":\"x\"}", `{"":""}`,
	}
	keys := []string{`""`, `"a"`, `"A"`, "\"\x01\"", "\"a\x1f\"", "\"\t\"", `"\u0061"`, `"é"`, "\"\x7f\""}
	var seeds [][]byte
	for _, r := range capturetest.Records() {
		if r.Vendor == nil {
			seeds = append(seeds, bytes.TrimSuffix(encodeFull(t, r), []byte("\n")))
		}
	}
	checked, typedN := 0, 0
	for _, seed := range seeds {
		scalars, mapKeys := tokenSpans(t, seed)
		try := func(sp [2]int, tok string) {
			line := append(append(bytes.Clone(seed[:sp[0]]), tok...), seed[sp[1]:]...)
			checked++
			var l Line
			if l.ParseLine(line) && l.Typed() {
				typedN++
			}
			if p := typedProblem(line); p != "" {
				t.Errorf("typed, but %s:\n%q", p, line)
			}
		}
		for _, sp := range scalars {
			for _, tok := range tokens {
				try(sp, tok)
			}
		}
		for _, sp := range mapKeys {
			for _, k := range keys {
				try(sp, k)
			}
		}
	}
	if typedN == 0 || typedN == checked {
		t.Fatalf("%d of %d lines typed: the substitutions do not reach both sides of the check", typedN, checked)
	}
	t.Logf("%d lines, %d typed", checked, typedN)
}

// tokenSpans returns the spans of line's values that are not objects or
// arrays, and of the keys of its maps (tags): found with encoding/json's
// tokenizer.
func tokenSpans(t *testing.T, line []byte) (scalars, mapKeys [][2]int) {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(line))
	var path []string // the keys down to the current value; "" for an array element
	type frame struct {
		obj    bool
		key    bool // an object frame expecting a key
		inTags bool
	}
	var stack []frame
	for {
		start := int(d.InputOffset())
		tok, err := d.Token()
		if err == io.EOF {
			return scalars, mapKeys
		}
		if err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		end := int(d.InputOffset())
		for start < end && (line[start] == ',' || line[start] == ':' || line[start] == ' ') {
			start++
		}
		top := len(stack) - 1
		if dl, ok := tok.(json.Delim); ok {
			switch dl {
			case '{', '[':
				inTags := top >= 0 && stack[top].obj && len(path) > 0 && path[len(path)-1] == "tags" && len(stack) == 1
				stack = append(stack, frame{obj: dl == '{', key: dl == '{', inTags: inTags})
			default:
				stack = stack[:top]
				if top > 0 && stack[top-1].obj {
					stack[top-1].key = true
				}
			}
			continue
		}
		if top >= 0 && stack[top].obj && stack[top].key {
			stack[top].key = false
			path = append(path[:0], tok.(string))
			if stack[top].inTags {
				mapKeys = append(mapKeys, [2]int{start, end})
			}
			continue
		}
		scalars = append(scalars, [2]int{start, end})
		if top >= 0 && stack[top].obj {
			stack[top].key = true
		}
	}
}

// plainKeyRef and scalarStringRef are plainKey and scalar's string case
// with bytes.IndexByte alone, as they were before quoteOrEscape.
func plainKeyRef(b []byte, i int) (int, int, bool) {
	if i >= len(b) || b[i] != '"' {
		return 0, 0, false
	}
	j := bytes.IndexByte(b[i+1:], '"')
	if j < 0 || bytes.IndexByte(b[i+1:i+1+j], '\\') >= 0 {
		return 0, 0, false
	}
	return i + 1, i + 1 + j, true
}

func scalarStringRef(b []byte, i int) (int, bool) {
	for j := i + 1; ; {
		q := bytes.IndexByte(b[j:], '"')
		if q < 0 {
			return 0, false
		}
		s := bytes.IndexByte(b[j:j+q], '\\')
		if s < 0 {
			return j + q + 1, true
		}
		j += s + 2
		if j > len(b) {
			return 0, false
		}
	}
}

// FuzzQuoteOrEscape: plainKey and scalar find the same ends as a search
// with bytes.IndexByte, at every start, in strings shorter and longer than
// quoteOrEscape's reach.
func FuzzQuoteOrEscape(f *testing.F) {
	for _, s := range []string{`"method"`, `"a\"b"`, `"` + strings.Repeat("x", 40) + `"`, `"` + strings.Repeat("y", 31) + `\"z"`, `"unclosed`, `"\`, `""`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for i := range b {
			if b[i] != '"' {
				continue
			}
			ks, ke, kok := plainKey(b, i)
			rs, re, rok := plainKeyRef(b, i)
			if kok != rok || kok && (ks != rs || ke != re) {
				t.Fatalf("plainKey(%q, %d) = %d, %d, %v; want %d, %d, %v", b, i, ks, ke, kok, rs, re, rok)
			}
			end, ok := scalar(b, i)
			wend, wok := scalarStringRef(b, i)
			if ok != wok || ok && end != wend {
				t.Fatalf("scalar(%q, %d) = %d, %v; want %d, %v", b, i, end, ok, wend, wok)
			}
		}
	})
}

// FuzzStartRoundTrip: a record whose start Validate takes (years 0-9999
// in the start's own zone) is written as a line that decodes to the same
// instant; one it refuses never reaches a line (Append refuses it, as the
// shipper drops it), so a batch is never refused whole for it.
func FuzzStartRoundTrip(f *testing.F) {
	for _, s := range []int64{0, -62167219200, 253402300799, 253402300800, -62167219201, 1733500000} {
		f.Add(s, int32(0), int32(0))
	}
	f.Add(int64(253402318800), int32(999999999), int32(-5*3600))
	f.Fuzz(func(t *testing.T, sec int64, nsec int32, offset int32) {
		if nsec < 0 || nsec > 999999999 || offset <= -86400 || offset >= 86400 {
			return
		}
		rec := capturetest.Batch(1, 8)[0]
		if sec%2 != 0 {
			rec.Vendor = &capture.VendorFacts{Tech: "go"} // the encoder's other path
		}
		rec.Start = time.Unix(sec, int64(nsec)).In(time.FixedZone("", int(offset)))
		if offset == 0 {
			rec.Start = rec.Start.UTC()
		}
		if rec.Validate() != nil {
			var b bytes.Buffer
			if err := Append(&b, []*capture.Record{rec}); err == nil {
				t.Fatalf("start %v: Validate refuses it, Append wrote %.80s", rec.Start, b.Bytes())
			}
			return
		}
		got, _ := decodeLine(t, encodeFull(t, rec))
		if !got.Start.Equal(rec.Start) {
			t.Fatalf("start %v came back as %v", rec.Start, got.Start)
		}
	})
}

// FuzzPlainHeaders checks the request headers a partial record gets from
// plainHeaders against the decoder's: whenever it takes a list (of a valid
// UTF-8 line, as ParseLine leaves it), the decoder takes it too and reads
// the same headers.
func FuzzPlainHeaders(f *testing.F) {
	for _, s := range []string{
		`[]`, ` [ ] `, `null`, `[["Host","a.example"],["User-Agent","curl/8.5.0"]]`,
		`[ [ "a" , "b" ] , ["c",""] ]`, `[["a","b\"c"]]`, `[["a","\u00e9"]]`, `[["é","ü\u007f"]]`,
		`[["a","b"],]`, `[["a","b","c"]]`, `[["a"]]`, `[["a","b"]]x`, "[[\"a\",\"b\tc\"]]", `[["a",1]]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if !utf8.Valid(b) {
			return
		}
		got, ok := plainHeaders(nil, b)
		if !ok {
			return
		}
		var want capture.Headers
		if err := gojson.Unmarshal(b, &want); err != nil {
			t.Fatalf("plainHeaders took %q, the decoder refuses it: %v", b, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q: plainHeaders read %q, the decoder %q", b, got, want)
		}
	})
}

// validStringRef is validString one byte at a time, as it was before it
// tested eight a step: FuzzValidString's reference.
func validStringRef(v []byte) bool {
	if len(v) < 2 || v[0] != '"' {
		return false
	}
	v = v[1 : len(v)-1]
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c < 0x20:
			return false
		case c == '\\':
			if i+1 >= len(v) {
				return false
			}
			switch v[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i++
			case 'u':
				if i+5 >= len(v) {
					return false
				}
				for _, h := range v[i+2 : i+6] {
					if !('0' <= h && h <= '9' || 'a' <= h && h <= 'f' || 'A' <= h && h <= 'F') {
						return false
					}
				}
				i += 5
			default:
				return false
			}
		}
	}
	return true
}

// TestValidStringBytes: every byte value at every place of a word (and
// after a whole one) is judged as the byte-at-a-time reference judges it,
// alone and followed by an escape's letter.
func TestValidStringBytes(t *testing.T) {
	for c := range 256 {
		for at := range 20 {
			for _, after := range []string{"", "n", "u00e9", "x", "u00g", "\x01"} {
				s := []byte(`"` + strings.Repeat("a", at) + string([]byte{byte(c)}) + after + strings.Repeat("b", 9) + `"`)
				if got, want := validString(s), validStringRef(s); got != want {
					t.Fatalf("validString(%q) = %v, want %v", s, got, want)
				}
			}
		}
	}
}

// FuzzValidString: validString decides as the byte-at-a-time reference.
func FuzzValidString(f *testing.F) {
	for _, s := range []string{`""`, `"abc"`, `"a\"b"`, `"0123456789abcdef\u00e9"`, "\"01234567\x1f\"", `"0123456\\"`, `"\uZZZZ"`, `"é\u0041\\/"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, s []byte) {
		if got, want := validString(s), validStringRef(s); got != want {
			t.Fatalf("validString(%q) = %v, the reference %v", s, got, want)
		}
	})
}

// plainStringRef is plainString a byte at a time.
func plainStringRef(b []byte, j int) int {
	for ; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			return j
		case c < 0x20 || c == '\\':
			return -1
		}
	}
	return -1
}

// TestPlainString: every byte value at every place of the first three
// words of a text (after its first byte, then before a quote or not),
// found as the byte-at-a-time reference finds it.
func TestPlainString(t *testing.T) {
	for c := range 256 {
		for at := range 24 {
			for _, after := range []string{`"`, `abc"`, "", `\"`, "\x00\"", "é\""} {
				b := []byte("x" + strings.Repeat("a", at) + string([]byte{byte(c)}) + after)
				if got, want := plainString(b, 1), plainStringRef(b, 1); got != want {
					t.Fatalf("plainString(%q, 1) = %d, want %d", b, got, want)
				}
			}
		}
	}
}

// FuzzPlainString: plainString finds what the byte-at-a-time reference
// finds, from any place of any bytes.
func FuzzPlainString(f *testing.F) {
	for _, s := range []string{`"abc"`, `"a\"b"`, "\"0123456789abcdef\x7f\"", "\"01234567\x1f\"", `"0123456\\"`, `"é\u0041"`} {
		f.Add([]byte(s), uint8(1))
	}
	f.Fuzz(func(t *testing.T, b []byte, j uint8) {
		if int(j) > len(b) {
			return
		}
		if got, want := plainString(b, int(j)), plainStringRef(b, int(j)); got != want {
			t.Fatalf("plainString(%q, %d) = %d, the reference %d", b, j, got, want)
		}
	})
}

// checkParseTime: l.parseTime(v) returns what time.Time's UnmarshalJSON
// returns (the same time.Time, ==, for a time in UTC; the same instant and
// offset for another, whose zone is made anew each time), and fails when
// it fails.
func checkParseTime(t *testing.T, l *Line, v []byte) {
	t.Helper()
	var want time.Time
	werr := want.UnmarshalJSON(v)
	got, err := l.parseTime(v)
	same := got == want
	if want.Location() != time.UTC {
		same = got.Equal(want) && got.Format(time.RFC3339Nano) == want.Format(time.RFC3339Nano)
	}
	if (err != nil) != (werr != nil) || werr == nil && !same {
		t.Errorf("parseTime(%q) after %q = %v, %v; the decoder: %v, %v", v, l.minute, got, err, want, werr)
	}
}

// TestParseTime: times in one minute (parsed from the minute of the last
// one parsed in full) and in others, of each form the decoder takes or
// refuses, in turn.
func TestParseTime(t *testing.T) {
	var l Line
	for _, pre := range []string{`"2026-12-07T17:05:`, `"2026-12-07T17:06:`, `"1969-12-31T23:59:`, `"0001-01-01T00:00:`, `"2026-02-29T10:00:`, `"2028-02-29T10:00:`} {
		for _, rest := range []string{`17.124483241Z"`, `00Z"`, `59.9Z"`, `59.999999999Z"`, `17.1234567891Z"`, `60Z"`, `61.5Z"`, `7Z"`, `17.Z"`,
			`17,5Z"`, `17.12Z`, `17.12z"`, `17+01:00"`, `17.5+01:00"`, `17.5-00:00"`, `17.x5Z"`, `1a.5Z"`, `17.124483241Z""`, `17Z"x`, `"`, ``} {
			checkParseTime(t, &l, []byte(pre+rest))
		}
	}
	for _, v := range []string{`null`, `""`, `"2026-12-07T17:05"`, `"2026-12-07 17:05:17Z"`, `"2026-12-07t17:05:17z"`} {
		checkParseTime(t, &l, []byte(v))
	}
}

// FuzzParseTime: two times of the same beginning, parsed in turn, as the
// decoder parses them.
func FuzzParseTime(f *testing.F) {
	f.Add([]byte(`"2026-12-07T17:05:`), []byte(`17.124483241Z"`), []byte(`18.5Z"`))
	f.Add([]byte(`"2026-12-07T17:05:`), []byte(`17Z"`), []byte(`17.0000000001Z"`))
	f.Add([]byte(`"1969-12-31T23:59:`), []byte(`59.999Z"`), []byte(`01+01:00"`))
	f.Fuzz(func(t *testing.T, pre, a, b []byte) {
		var l Line
		checkParseTime(t, &l, append(slices.Clip(pre), a...))
		checkParseTime(t, &l, append(slices.Clip(pre), b...))
	})
}
