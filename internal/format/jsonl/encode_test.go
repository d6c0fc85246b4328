package jsonl

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/tapwire/tapwire/internal/capture"
)

// goJSONLine is the record's line as go-json writes it: the reference
// appendRecord must agree with.
func goJSONLine(t testing.TB, r *capture.Record) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := gojsonEncoder(&buf).Encode(r); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// fill sets every exported field reachable from v to a value that is not
// its zero (strings from str, pointers allocated, slices of one or two
// elements), down to depth levels of nesting, so that a field that the
// hand-written encoder forgets is seen.
func fill(v reflect.Value, rng *rand.Rand, str func() string, depth int) {
	switch v.Kind() {
	case reflect.String:
		v.SetString(str())
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int32, reflect.Int64:
		v.SetInt(rng.Int64N(1<<40) + 1)
	case reflect.Uint64:
		v.SetUint(rng.Uint64() | 1)
	case reflect.Pointer:
		if depth <= 0 {
			return
		}
		p := reflect.New(v.Type().Elem())
		fill(p.Elem(), rng, str, depth-1)
		v.Set(p)
	case reflect.Slice:
		if depth <= 0 {
			return
		}
		n := 1 + rng.IntN(2)
		s := reflect.MakeSlice(v.Type(), n, n)
		for i := range n {
			fill(s.Index(i), rng, str, depth-1)
		}
		v.Set(s)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		for range 1 + rng.IntN(3) {
			k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
			fill(k, rng, str, depth-1)
			fill(e, rng, str, depth-1)
			m.SetMapIndex(k, e)
		}
		v.Set(m)
	case reflect.Struct:
		if v.Type() == reflect.TypeOf(time.Time{}) {
			v.Set(reflect.ValueOf(time.Unix(rng.Int64N(4e9), rng.Int64N(1e9)).UTC()))
			return
		}
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fill(v.Field(i), rng, str, depth)
			}
		}
	case reflect.Uint8: // an element of []byte
		v.SetUint(uint64(rng.IntN(256)))
	default:
		panic("fill: unhandled kind " + v.Kind().String() + " (" + v.Type().String() + ")")
	}
}

func plainWord(rng *rand.Rand) func() string {
	return func() string {
		const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./: "
		b := make([]byte, 1+rng.IntN(12))
		for i := range b {
			b[i] = letters[rng.IntN(len(letters))]
		}
		return string(b)
	}
}

// TestAppendRecordMatchesGoJSON: on records with every field set (but the
// vendor facts, which take go-json's path), appendRecord writes the very
// bytes go-json writes; with some fields cleared, too (omitempty).
func TestAppendRecordMatchesGoJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 300 {
		var r capture.Record
		fill(reflect.ValueOf(&r).Elem(), rng, plainWord(rng), 4)
		r.Vendor = nil
		if i%2 == 1 {
			clearSome(reflect.ValueOf(&r).Elem(), rng)
		}
		want := goJSONLine(t, &r)
		got, err := appendRecord(nil, &r)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("record %d:\n ours    %s\n go-json %s", i, got, want)
		}
	}
}

// clearSome sets about a third of the fields reachable from v to their
// zero value.
func clearSome(v reflect.Value, rng *rand.Rand) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			clearSome(v.Elem(), rng)
		}
	case reflect.Slice:
		if v.Type().Elem().Kind() != reflect.Uint8 {
			for i := range v.Len() {
				clearSome(v.Index(i), rng)
			}
		}
	case reflect.Struct:
		if v.Type() == reflect.TypeOf(time.Time{}) {
			return
		}
		for i := range v.NumField() {
			f := v.Field(i)
			if !v.Type().Field(i).IsExported() {
				continue
			}
			if rng.IntN(3) == 0 {
				f.Set(reflect.Zero(f.Type()))
			} else {
				clearSome(f, rng)
			}
		}
	}
}

// TestAppendRecordVendor: a record with vendor facts is go-json's line.
func TestAppendRecordVendor(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var r capture.Record
	fill(reflect.ValueOf(&r).Elem(), rng, plainWord(rng), 4)
	if r.Vendor == nil {
		t.Fatal("fill left Vendor nil")
	}
	raw := map[string]json.RawMessage{"k": json.RawMessage(`{"a":[1,"b"]}`)}
	r.Vendor.Extra, r.Vendor.ReqExtra, r.Vendor.ResExtra = raw, raw, raw
	got, err := appendRecord(nil, &r)
	if err != nil {
		t.Fatal(err)
	}
	if want := goJSONLine(t, &r); !bytes.Equal(got, want) {
		t.Fatalf("ours    %s\ngo-json %s", got, want)
	}
}

// FuzzAppendRecord: strings of any bytes in a record's fields encode to
// JSON that means what go-json's means (escapes may be spelled
// differently: \u003c or <) and decodes to the same record.
func FuzzAppendRecord(f *testing.F) {
	for _, s := range []string{"plain", "quote\" back\\slash", "ctl\x00\x01\x1f\x7f", "\n\r\t\b\f", "<a href=\"x\">&amp;</a>",
		"caf\u00e9 \u2028\u2029 \U0001F600", "bad \xff\xfe utf8 \xc3", "\xed\xa0\x80 surrogate"} {
		f.Add(s, []byte(s), int64(len(s)))
	}
	f.Fuzz(func(t *testing.T, s string, data []byte, seed int64) {
		rng := rand.New(rand.NewPCG(uint64(seed), 7))
		pieces := []string{s, s[:len(s)/2], s[len(s)/2:], "x" + s + "y"}
		var r capture.Record
		fill(reflect.ValueOf(&r).Elem(), rng, func() string { return pieces[rng.IntN(len(pieces))] }, 3)
		r.Vendor = nil
		if r.HTTP != nil {
			r.HTTP.Req.Body.Data = data
		}
		got, err := appendRecord(nil, &r)
		if err != nil {
			t.Fatal(err)
		}
		want := goJSONLine(t, &r)
		var a, b any
		if err := json.Unmarshal(got, &a); err != nil {
			t.Fatalf("ours is not JSON: %v\n%s", err, got)
		}
		if err := json.Unmarshal(want, &b); err != nil {
			t.Fatalf("go-json's is not JSON: %v", err)
		}
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("ours and go-json's differ:\n ours    %s\n go-json %s", got, want)
		}
		if !strings.HasSuffix(string(got), "}\n") || bytes.Count(got, []byte("\n")) != 1 {
			t.Fatalf("not one line: %q", got)
		}
		// An Encoder writes the same, the first time and when the record
		// repeats, and after one of the strings it remembers changes.
		var e Encoder
		for i := range 3 {
			if i == 2 {
				r.Net.ServerHost += s
				if got, err = appendRecord(nil, &r); err != nil {
					t.Fatal(err)
				}
			}
			line, err := e.appendRecord(nil, &r)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(line, got) {
				t.Fatalf("the Encoder's line %d differs:\n %s\n %s", i, line, got)
			}
		}
	})
}

func BenchmarkAppendRecord(b *testing.B) {
	r := benchRecord()
	b.Run("ours", func(b *testing.B) {
		var buf []byte
		for b.Loop() {
			buf, _ = appendRecord(buf[:0], r)
		}
		b.SetBytes(int64(len(buf)))
	})
	b.Run("encoder", func(b *testing.B) { // the record again and again, as a batch's repeat their labels and tags
		var e Encoder
		var buf []byte
		for b.Loop() {
			buf, _ = e.appendRecord(buf[:0], r)
		}
		b.SetBytes(int64(len(buf)))
	})
	b.Run("go-json", func(b *testing.B) {
		var buf bytes.Buffer
		je := gojsonEncoder(&buf)
		for b.Loop() {
			buf.Reset()
			_ = je.Encode(r)
		}
		b.SetBytes(int64(buf.Len()))
	})
}

// benchRecord is a record like bench/run's: a GET answered with 1 KiB.
func benchRecord() *capture.Record {
	body := bytes.Repeat([]byte(`{"id":12345,"name":"widget","price":9.99} `), 25)[:1024]
	return &capture.Record{
		Schema: 1, ID: capture.NewID(), Kind: capture.KindHTTP, Direction: capture.DirIn,
		Start: time.Now().UTC(), TTFBMicros: 120, DurMicros: 150,
		Labels: capture.Labels{Cluster: "c", Service: "orders"},
		Net:    capture.Net{ClientAddr: "127.0.0.1:50000", ServerAddr: "127.0.0.1:8080", ConnID: "c1", Proxy: "reverse"},
		HTTP: &capture.HTTP{
			Req: capture.Request{Method: "GET", URL: "http://127.0.0.1:8080/", Proto: "HTTP/1.1", Host: "127.0.0.1:4143",
				Headers: capture.Headers{{Name: "Host", Value: "127.0.0.1:4143"}, {Name: "User-Agent", Value: "wrk"}}},
			Res: &capture.Response{Status: 200, StatusText: "OK", Proto: "HTTP/1.1",
				Headers: capture.Headers{{Name: "Content-Type", Value: "application/json"}, {Name: "Content-Length", Value: "1024"}},
				Body:    capture.Body{Data: body, Size: 1024}},
		},
		Tags: capture.Tags{"captureMode": "proxy", "proxyType": "reverse"},
	}
}

// TestAppendTime: appendTime writes what AppendFormat(RFC3339Nano) does,
// for UTC times across the years 0-9999 with fractions of every length,
// and for those it leaves to AppendFormat (other zones); it refuses the
// years outside 0-9999, which RFC 3339 cannot write.
func TestAppendTime(t *testing.T) {
	rnd := rand.New(rand.NewPCG(3, 4))
	east := time.FixedZone("east", 5*3600+1800)
	times := []time.Time{{}, time.Unix(0, 0).UTC(), time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(0, 1, 1, 0, 0, 0, 1, time.UTC), time.Date(2026, 12, 7, 3, 4, 5, 100000000, time.UTC),
		time.Date(2026, 12, 7, 3, 4, 5, 120000, time.UTC), time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 12, 7, 3, 4, 5, 6, east), time.Now(), time.Now().UTC()}
	for range 20000 {
		ns := rnd.Int64N(10000 * 365 * 24 * 3600 * 1e9 / 1e3) // within the years 1970-11970, in µs
		tm := time.Unix(0, 0).Add(time.Duration(ns) * time.Microsecond).UTC().Add(-time.Duration(rnd.IntN(4)) * 2000 * 365 * 24 * time.Hour)
		switch rnd.IntN(4) {
		case 0:
			tm = tm.Truncate(time.Second)
		case 1:
			tm = tm.Add(time.Duration(rnd.IntN(1000)))
		}
		times = append(times, tm)
	}
	for _, tm := range times {
		got, ok := appendTime([]byte("x"), tm)
		if y := tm.Year(); y < 0 || y > 9999 {
			if ok || string(got) != "x" {
				t.Fatalf("%v: appendTime %s, %v; want nothing appended and false (RFC 3339 has four-digit years)", tm, got, ok)
			}
			continue
		}
		if want := "x" + tm.Format(time.RFC3339Nano); !ok || string(got) != want {
			t.Fatalf("%v: appendTime %s, %v; want %s", tm, got, ok, want)
		}
	}
}

// TestPlainPrefix: plainPrefix stops where a byte-at-a-time scan does, for
// every length up to 24 with each kind of byte that stops it at every
// place, and on random strings.
func TestPlainPrefix(t *testing.T) {
	ref := func(s string) int {
		for i := 0; i < len(s); i++ {
			if c := s[i]; c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' {
				return i
			}
		}
		return len(s)
	}
	stops := []byte{0x00, 0x1f, '"', '\\', 0x80, 0xff, 0xc3}
	for n := 0; n <= 24; n++ {
		plain := strings.Repeat("a~ Z", 7)[:n]
		if got := plainPrefix(plain); got != n {
			t.Fatalf("%q: %d, want %d", plain, got, n)
		}
		for at := range n {
			for _, c := range stops {
				s := []byte(plain)
				s[at] = c
				if got, want := plainPrefix(string(s)), ref(string(s)); got != want {
					t.Fatalf("%q: %d, want %d", s, got, want)
				}
			}
		}
	}
	rnd := rand.New(rand.NewPCG(5, 6))
	for range 100000 {
		b := make([]byte, rnd.IntN(40))
		for i := range b {
			b[i] = byte(0x20 + rnd.IntN(0x5f))
			if rnd.IntN(30) == 0 {
				b[i] = stops[rnd.IntN(len(stops))]
			}
		}
		if got, want := plainPrefix(string(b)), ref(string(b)); got != want {
			t.Fatalf("%q: %d, want %d", b, got, want)
		}
	}
}

// TestAppendStringMatchesGoJSON: every byte value, alone and between
// letters, and the runes encoding/json treats apart, are written as go-json
// (without HTML escaping) writes them, byte for byte: \b and \f as such, not
// as \u0008 and \u000c.
func TestAppendStringMatchesGoJSON(t *testing.T) {
	var ins []string
	for c := range 256 {
		ins = append(ins, string([]byte{byte(c)}), "a"+string([]byte{byte(c)})+"bcdefghij")
	}
	ins = append(ins, "\u2028", "x\u2029y", "é", "\xff\xfe", "a\xc3", "<>&", "\U0001F600", "")
	for _, s := range ins {
		var buf bytes.Buffer
		if err := gojsonEncoder(&buf).Encode(s); err != nil { // HTML escaping off, as Append's fallback
			t.Fatal(err)
		}
		want := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
		if got := appendString(nil, s); string(got) != string(want) {
			t.Errorf("%q: %s, go-json %s", s, got, want)
		}
	}
}

// TestEncoderRepeats: an Encoder writes every record of a sequence as
// appendRecord writes it alone, whether the record repeats the labels,
// network facts and tags of the one before by the same strings and map,
// by equal copies, or by the same map and TLS facts changed in place.
func TestEncoderRepeats(t *testing.T) {
	base := benchRecord()
	base.Labels = capture.Labels{Cluster: "c", Service: "svc", Pod: "pod-1"}
	base.Net = capture.Net{ClientAddr: "10.0.0.1:5000", ServerAddr: "127.0.0.1:8080", ServerHost: "app", Proxy: "reverse"}
	tags := capture.Tags{"captureMode": "proxy", "proxyType": "dual", "proxyProtocol": "tcp:http", "proxyHost": "h"}
	tls := &capture.TLS{SNI: "a.example", Version: "TLS 1.3", ALPN: "http/1.1"}
	base.Tags = tags

	// Each step changes the record (or what it points to) before it is
	// written again.
	steps := []struct {
		name string
		do   func(r *capture.Record)
	}{
		{"first", func(*capture.Record) {}},
		{"the same strings and map", func(*capture.Record) {}},
		{"equal copies", func(r *capture.Record) {
			r.Labels.Service = strings.Clone(r.Labels.Service)
			r.Net.ClientAddr = strings.Clone(r.Net.ClientAddr)
			r.Tags = capture.Tags{}
			for k, v := range tags {
				r.Tags[strings.Clone(k)] = strings.Clone(v)
			}
		}},
		{"a label", func(r *capture.Record) { r.Labels.Tenant = "t1" }},
		{"the client address", func(r *capture.Record) { r.Net.ClientAddr = "10.0.0.2:5000" }},
		{"the connection id", func(r *capture.Record) { r.Net.ConnID = "conn-1" }},
		{"the proxy", func(r *capture.Record) { r.Net.Proxy = "forward" }},
		{"a tag's value in place", func(r *capture.Record) { r.Tags = tags; tags["proxyHost"] = "h2" }},
		{"a tag replaced in place, as many", func(r *capture.Record) { delete(tags, "proxyHost"); tags["zz"] = "h2" }},
		{"a tag added in place", func(r *capture.Record) { tags["aa"] = "" }},
		{"a tag removed in place", func(r *capture.Record) { delete(tags, "captureMode") }},
		{"no tags", func(r *capture.Record) { r.Tags = nil }},
		{"the tags again", func(r *capture.Record) { r.Tags = tags }},
		{"empty tags", func(r *capture.Record) { r.Tags = capture.Tags{} }},
		{"TLS", func(r *capture.Record) { r.Tags = tags; r.Net.TLS = tls }},
		{"TLS again", func(*capture.Record) {}},
		{"TLS changed in place", func(*capture.Record) { tls.SNI = "b.example" }},
		{"an upstream session", func(*capture.Record) { tls.Upstream = &capture.TLS{Version: "TLS 1.2"} }},
		{"the upstream changed in place", func(*capture.Record) { tls.Upstream.CipherSuite = "TLS_AES_128_GCM_SHA256" }},
		{"a session deeper", func(*capture.Record) { tls.Upstream.Upstream = &capture.TLS{SNI: "deep"} }},
		{"deeper changed in place", func(*capture.Record) { tls.Upstream.Upstream.SNI = "deeper" }},
		{"no TLS", func(r *capture.Record) { r.Net.TLS = nil }},
		{"vendor facts", func(r *capture.Record) { r.Vendor = &capture.VendorFacts{UUID: "u"} }},
		{"no vendor facts", func(r *capture.Record) { r.Vendor = nil; r.Labels.Tenant = "" }},
		{"a label with a quote", func(r *capture.Record) { r.Labels.Pod = `p"1` }},
		{"a start", func(r *capture.Record) { r.Start = time.Date(2026, 12, 7, 15, 4, 5, 123456789, time.UTC) }},
		{"a start in the same minute", func(r *capture.Record) { r.Start = r.Start.Add(20 * time.Second) }},
		{"a start a second later, no fraction", func(r *capture.Record) { r.Start = r.Start.Add(time.Second).Truncate(time.Second) }},
		{"a fraction with zeros at its end", func(r *capture.Record) { r.Start = r.Start.Add(120 * time.Millisecond) }},
		{"the next minute", func(r *capture.Record) { r.Start = r.Start.Add(40 * time.Second) }},
		{"the next day, same minute of the hour", func(r *capture.Record) { r.Start = r.Start.Add(24 * time.Hour) }},
		{"before 1970", func(r *capture.Record) { r.Start = time.Date(1969, 12, 31, 23, 59, 30, 5, time.UTC) }},
		{"1970, under a minute later", func(r *capture.Record) { r.Start = r.Start.Add(40 * time.Second) }},
		{"before 1970 again", func(r *capture.Record) { r.Start = r.Start.Add(-40 * time.Second) }},
		{"before 1970, the minute before", func(r *capture.Record) { r.Start = r.Start.Add(-31 * time.Second) }},
		{"in a zone", func(r *capture.Record) { r.Start = r.Start.In(time.FixedZone("X", 3600)) }},
		{"in UTC again", func(r *capture.Record) { r.Start = r.Start.UTC() }},
	}
	var e Encoder
	var buf bytes.Buffer
	r := *base
	for _, st := range steps {
		st.do(&r)
		want, err := appendRecord(nil, &r)
		if err != nil {
			t.Fatal(err)
		}
		buf.Reset()
		if err := e.Append(&buf, &r); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf.Bytes(), want) {
			t.Fatalf("%s: the Encoder wrote\n%s\nalone it is\n%s", st.name, buf.Bytes(), want)
		}
	}

	// Append, many records at once, writes what each writes alone.
	recs := []*capture.Record{base, base, &r, base}
	var all, alone bytes.Buffer
	if err := Append(&all, recs); err != nil {
		t.Fatal(err)
	}
	for _, x := range recs {
		if err := Append(&alone, []*capture.Record{x}); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(all.Bytes(), alone.Bytes()) {
		t.Fatalf("Append of %d records differs from each alone", len(recs))
	}
}

// appendRecord appends r's JSON form and a newline to b, with nothing
// remembered from a record before (the tests' reference).
func appendRecord(b []byte, r *capture.Record) ([]byte, error) {
	return (*Encoder)(nil).appendRecord(b, r)
}
