package raw

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/capture/capturetest"
	"github.com/tapwire/tapwire/internal/rrpair"
)

const samplePath = "testdata/dynamodb-raw.jsonl"

func sampleLines(t testing.TB) [][]byte { return capturetest.Lines(t, samplePath) }

func TestReadErrors(t *testing.T) {
	good := string(sampleLines(t)[0])
	tests := []struct {
		name     string
		input    string
		wantLine string
		wantErr  error
	}{
		{"not JSON", good + "\n{not json\n", "line 2:", rrpair.ErrBad},
		{"other msgType", `{"msgType":"metric","direction":"IN"}`, "line 1:", rrpair.ErrNotPair},
		{"bad direction", "\n\n" + `{"msgType":"rrpair","direction":"SIDEWAYS","ts":"2025-02-11T21:07:54Z"}`, "line 3:", rrpair.ErrBad},
		{"bad ts", `{"msgType":"rrpair","direction":"IN","ts":"yesterday"}`, "line 1:", rrpair.ErrBad},
		{"negative duration", `{"msgType":"rrpair","direction":"IN","duration":-1}`, "line 1:", rrpair.ErrBad},
		{"bad body", `{"msgType":"rrpair","direction":"IN","http":{"req":{"bodyBase64":"**"}}}`, "line 1:", rrpair.ErrBad},
		{"bad tapwire tag", `{"msgType":"rrpair","direction":"IN","tags":{"tapwire.ttfbUs":"soon"}}`, "line 1:", rrpair.ErrBad},
		{"duration as text", `{"msgType":"rrpair","direction":"IN","duration":"5"}`, "line 1:", rrpair.ErrBad},
		{"array line", good + "\n" + good + "\n[]\n", "line 3:", rrpair.ErrBad},
		{"bad grpc tag", `{"msgType":"rrpair","direction":"IN","http":{},"tags":{"tapwire.grpc":"{"}}`, "line 1:", rrpair.ErrBad},
		{"grpc tag on tcp", `{"msgType":"rrpair","direction":"IN","tags":{"tapwire.grpc":"{}"}}`, "line 1:", rrpair.ErrBad},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Read(strings.NewReader(tt.input), func(*capture.Record) error { return nil })
			if err == nil {
				t.Fatalf("Read = nil, want an error at %s", tt.wantLine)
			}
			if !strings.Contains(err.Error(), tt.wantLine) {
				t.Errorf("Read = %q, want it to name %q", err, tt.wantLine)
			}
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("Read = %v, want errors.Is %v", err, tt.wantErr)
			}
		})
	}

	t.Run("callback error", func(t *testing.T) {
		stop := errors.New("stop")
		n := 0
		err := Read(strings.NewReader(good+"\n"+good+"\n"), func(*capture.Record) error {
			if n++; n == 2 {
				return stop
			}
			return nil
		})
		if !errors.Is(err, stop) || !strings.Contains(err.Error(), "line 2:") {
			t.Errorf("Read = %v, want stop at line 2", err)
		}
	})

	t.Run("line too long", func(t *testing.T) {
		defer func(n int) { maxLine = n }(maxLine)
		maxLine = 128 << 10 // above the scanner's initial 64 KiB buffer
		long := strings.NewReader(good + "\n" + `{"msgType":"` + strings.Repeat("x", maxLine) + `"}`)
		err := Read(long, func(*capture.Record) error { return nil })
		if !errors.Is(err, bufio.ErrTooLong) || !strings.Contains(err.Error(), "line 2:") {
			t.Errorf("Read = %v, want ErrTooLong at line 2", err)
		}
	})
}

func FuzzRead(f *testing.F) {
	for _, l := range sampleLines(f)[:3] {
		f.Add(l)
	}
	for _, r := range capturetest.Records() {
		b, _ := json.Marshal(rrpair.FromRecord(r))
		f.Add(b)
	}
	f.Add([]byte(`{"msgType":"rrpair","direction":"in","http":{}}`))
	f.Add([]byte(`{"direction":"OUT","uuid":"x","http":{"req":{"uri":"http://a/b"}},"tags":{"tapwire.tls":"{}","tapwire.redactions":"[]"}}`))
	f.Add([]byte("{\"direction\":\"IN\",\"netinfo\":{\"downstream\":{\"ipAddress\":\"::1\",\"port\":0,\"bytesSent\":7}},\"x\":{\"a\" : \"<&>\"}}\n\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var recs []*capture.Record
		if err := Read(bytes.NewReader(data), func(r *capture.Record) error {
			recs = append(recs, r)
			return nil
		}); err != nil {
			return
		}
		for _, r := range recs {
			if err := r.Validate(); err != nil {
				t.Fatalf("imported record fails Validate: %v", err)
			}
			if _, err := json.Marshal(r); err != nil {
				t.Fatalf("imported record does not marshal: %v", err)
			}
		}
		var out bytes.Buffer
		if err := Write(&out, recs); err != nil {
			t.Fatalf("export of imported records: %v", err)
		}
		var again []*capture.Record
		if err := Read(bytes.NewReader(out.Bytes()), func(r *capture.Record) error {
			again = append(again, r)
			return nil
		}); err != nil {
			t.Fatalf("re-import of export: %v\n%s", err, out.Bytes())
		}
		if len(again) != len(recs) {
			t.Fatalf("re-imported %d records, want %d", len(again), len(recs))
		}
		for i := range recs {
			if !reflect.DeepEqual(again[i], recs[i]) {
				t.Fatalf("record %d changed by export and import:\ngot  %+v\nwant %+v\nexport %s", i, again[i], recs[i], out.Bytes())
			}
		}
	})
}

func TestReadNoUUID(t *testing.T) {
	in := `{"msgType":"rrpair","direction":"IN","ts":"2025-02-11T21:07:54Z","http":{"req":{"method":"GET","url":"/a"}}}
{"msgType":"rrpair","direction":"IN","ts":"2025-02-11T21:07:55Z","http":{"req":{"method":"GET","url":"/b"}}}
`
	read := func() []string {
		var ids []string
		if err := Read(strings.NewReader(in), func(r *capture.Record) error {
			ids = append(ids, r.ID)
			return r.Validate()
		}); err != nil {
			t.Fatal(err)
		}
		return ids
	}
	a, b := read(), read()
	if len(a) != 2 || a[0] != b[0] || a[1] != b[1] {
		t.Errorf("ids differ between reads: %v, %v", a, b)
	}
	if a[0] == a[1] {
		t.Errorf("two lines got the same id %s", a[0])
	}
}
