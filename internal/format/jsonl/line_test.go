package jsonl

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

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
	err := Decode(bytes.NewReader(line), Limits{Bytes: 32 << 20}, &l, false, func(r *capture.Record, _ bool) error {
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
		err := Decode(bytes.NewReader(line), Limits{Bytes: 1 << 20}, &l, false, func(r *capture.Record, _ bool) error {
			if rec == nil {
				rec, raw = r, bytes.Clone(l.Raw())
			}
			return nil
		})
		lerr := Decode(bytes.NewReader(line), Limits{Bytes: 1 << 20}, &ll, true, func(r *capture.Record, _ bool) error {
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

// TestValidBase64: what validBase64 takes, the decoder takes; it refuses
// only what the decoder refuses, and line breaks. (FuzzLine checks the
// bytes are the same.)
func TestValidBase64(t *testing.T) {
	for _, s := range []string{"", "QQ==", "QUI=", "QUJD", "QUJDRA==", "QQ=", "Q===", "====", "QU=D", "QUJ*", "QU\nJD", "QUJD\n", "QUJD====",
		"QUJDQUJDQUJD", "QU*DQUJDQUJD", "QUJDQUJDQUJ*", "QUJDQUJDQQ==", "QUJDQU=DQQ=="} {
		_, err := base64.StdEncoding.DecodeString(s)
		if validBase64([]byte(s)) && err != nil {
			t.Errorf("validBase64(%q) = true, but the decoder says %v", s, err)
		}
		if !validBase64([]byte(s)) && err == nil && s != "" && !strings.Contains(s, "\n") {
			t.Errorf("validBase64(%q) = false, but the decoder takes it", s)
		}
	}
}
