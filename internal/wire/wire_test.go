package wire

import (
	"bytes"
	"compress/gzip"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/capture/capturetest"
	"github.com/tapwire/tapwire/internal/format/jsonl"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func decodeAll(t testing.TB, body []byte, encoding string) []*capture.Record {
	t.Helper()
	var got []*capture.Record
	if err := DecodeBatch(bytes.NewReader(body), encoding, 0, func(r *capture.Record) error {
		got = append(got, r)
		return nil
	}); err != nil {
		t.Fatalf("DecodeBatch(%s): %v", encoding, err)
	}
	return got
}

func TestGoldenLines(t *testing.T) {
	var buf bytes.Buffer
	if err := jsonl.Append(&buf, capturetest.Batch(4, 20)); err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "batch.jsonl")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("read golden (run with -update to create it): %v", err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("encoded lines differ from %s (run with -update if the change is intended)\ngot:\n%s\nwant:\n%s", golden, buf.Bytes(), want)
	}
	// The golden file decodes to the records it was made from.
	got := decodeAll(t, want, EncodingIdentity)
	var again bytes.Buffer
	if err := jsonl.Append(&again, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.Bytes(), want) {
		t.Errorf("golden file does not survive decode and encode:\ngot:\n%s\nwant:\n%s", again.Bytes(), want)
	}
}

func TestRoundTrip(t *testing.T) {
	recs := capturetest.Batch(50, 300)
	var plain bytes.Buffer
	if err := jsonl.Append(&plain, recs); err != nil {
		t.Fatal(err)
	}
	var zs bytes.Buffer
	if err := EncodeBatch(&zs, recs); err != nil {
		t.Fatal(err)
	}
	var ss bytes.Buffer
	if err := EncodeBatchS2(&ss, recs); err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(plain.Bytes())
	zw.Close()

	tests := []struct {
		name     string
		encoding string
		body     []byte
	}{
		{"zstd", "zstd", zs.Bytes()},
		{"zstd upper case", "ZSTD", zs.Bytes()},
		{"s2", "s2", ss.Bytes()},
		{"s2 upper case", "S2", ss.Bytes()},
		{"s2 from a plain s2 writer", "s2", s2Of(plain.String(), S2BlockBytes)},
		{"gzip", "gzip", gz.Bytes()},
		{"identity", "identity", plain.Bytes()},
		{"no encoding", "", plain.Bytes()},
		{"crlf lines", "", bytes.ReplaceAll(plain.Bytes(), []byte("\n"), []byte("\r\n"))},
		{"blank lines", "", append([]byte("\n\n"), bytes.ReplaceAll(plain.Bytes(), []byte("\n"), []byte("\n  \n"))...)},
		{"no final newline", "", bytes.TrimSuffix(plain.Bytes(), []byte("\n"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := decodeAll(t, tt.body, tt.encoding)
			var out bytes.Buffer
			if err := jsonl.Append(&out, got); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out.Bytes(), plain.Bytes()) {
				t.Errorf("round trip changed the records: got %d records, want %d", len(got), len(recs))
			}
		})
	}
	if zs.Len() >= plain.Len()/4 {
		t.Errorf("zstd body is %d bytes for %d plain: want better than 4:1 on repetitive JSON", zs.Len(), plain.Len())
	}
	if ss.Len() >= plain.Len()/4 {
		t.Errorf("s2 body is %d bytes for %d plain: want better than 4:1 on repetitive JSON", ss.Len(), plain.Len())
	}
}

// s2Of is s as an S2 stream of blocks of at most block bytes.
func s2Of(s string, block int) []byte {
	var b bytes.Buffer
	w := s2.NewWriter(&b, s2.WriterBlockSize(block), s2.WriterConcurrency(1))
	w.Write([]byte(s))
	w.Close()
	return b.Bytes()
}

// TestListsCoding: Accept-Encoding as RFC 9110 12.5.3 writes it.
func TestListsCoding(t *testing.T) {
	for _, tt := range []struct {
		vals []string
		want bool
	}{
		{[]string{AcceptEncoding}, true},
		{[]string{"s2"}, true},
		{[]string{" S2 ;q=0.5, zstd"}, true},
		{[]string{"zstd", "gzip, s2"}, true},
		{[]string{"s2;q=1.000"}, true},
		{[]string{"s2;q=0, s2"}, false}, // a refusal anywhere wins
		{[]string{"s2;q="}, false},
		{[]string{"s2;q=abc"}, false},
		{[]string{"s2;q=2"}, false},
		{[]string{"s2;level=1"}, true},
		{[]string{"s2;Q=0"}, false},
		{[]string{"s2; q=0.0, zstd"}, false},
		{[]string{"zstd, gzip"}, false},
		{[]string{"s2x, xs2"}, false},
		{[]string{"*"}, false}, // only what the server names: "*" may be an intermediary's
		{[]string{""}, false},
	} {
		if got := listsCoding(tt.vals, EncodingS2); got != tt.want {
			t.Errorf("listsCoding(%q) = %v, want %v", tt.vals, got, tt.want)
		}
	}
}

func TestDecodeUnknownFieldsIgnored(t *testing.T) {
	line := `{"schema":1,"id":"a","kind":"tcp","direction":"in","tcp":{"bytesUp":1,"bytesDown":0,"future":true},"newField":{"x":[1,2]}}`
	got := decodeAll(t, []byte(line), "")
	if len(got) != 1 || got[0].ID != "a" || got[0].TCP.BytesUp != 1 {
		t.Errorf("got %+v, want one tcp record with id a", got)
	}
}

func TestDecodeErrors(t *testing.T) {
	good := `{"schema":1,"id":"a","kind":"tcp","direction":"in","tcp":{"bytesUp":1,"bytesDown":0}}`
	zstdOf := func(s string) []byte {
		e, _ := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
		defer e.Close()
		return e.EncodeAll([]byte(s), nil)
	}
	// A zip bomb: 16 MiB of newlines squeezes into under a KiB.
	bomb := zstdOf(strings.Repeat("\n", 16<<20))
	longLine := `{"schema":1,"id":"` + strings.Repeat("x", MaxLineBytes) + `"}`

	tests := []struct {
		name       string
		encoding   string
		body       []byte
		maxDecoded int64
		wantErr    error
		wantLine   int
		wantCalls  int
	}{
		{"bad json", "", []byte(good + "\n{nope\n"), 0, ErrBadRecord, 2, 1},
		{"invalid record", "", []byte(good + "\n" + good + "\n" + `{"schema":1,"id":"b","kind":"http","direction":"in"}`), 0, capture.ErrMissingHTTP, 3, 2},
		{"no id", "", []byte(`{"schema":1,"kind":"tcp","direction":"in","tcp":{}}`), 0, capture.ErrNoID, 1, 0},
		{"schema too new", "", []byte(`{"schema":99,"id":"a","kind":"tcp","direction":"in","tcp":{}}`), 0, capture.ErrSchemaTooNew, 1, 0},
		{"two objects on a line", "", []byte(good + good), 0, ErrBadRecord, 1, 0},
		{"line too long", "", []byte(good + "\n" + longLine), 0, ErrLineTooLong, 2, 1},
		{"too large", "", []byte(strings.Repeat(good+"\n", 10)), int64(5*len(good) + 3), ErrTooLarge, 5, 4},
		{"zip bomb", "zstd", bomb, 1 << 20, ErrTooLarge, -1, 0},
		{"unknown encoding", "br", []byte(good), 0, ErrUnsupportedEncoding, 0, 0},
		{"corrupt zstd", "zstd", []byte("not zstd at all"), 0, ErrCorrupt, 1, 0},
		{"truncated zstd", "zstd", zstdOf(good + "\n" + good)[:20], 0, ErrCorrupt, 1, 0},
		{"corrupt gzip", "gzip", []byte("not gzip"), 0, ErrCorrupt, 0, 0},
		{"s2 bomb", "s2", s2Of(strings.Repeat("\n", 16<<20), S2BlockBytes), 1 << 20, ErrTooLarge, -1, 0},
		{"corrupt s2", "s2", []byte("not s2 at all"), 0, ErrCorrupt, 1, 0},
		{"truncated s2", "s2", s2Of(good+"\n"+good, S2BlockBytes)[:20], 0, ErrCorrupt, 1, 0},
		{"s2 checksum", "s2", s2Flip(s2Of(good+"\n", S2BlockBytes)), 0, ErrCorrupt, 1, 0},
		{"s2 block too large", "s2", s2Of(strings.Repeat(good+"\n", 2*S2BlockBytes/len(good)), 4*S2BlockBytes), 0, ErrCorrupt, 1, 0},
	}
	// The flipped byte is caught by the block's CRC, not by the decoder
	// or the JSON parser.
	if err := DecodeBatch(bytes.NewReader(s2Flip(s2Of(good+"\n", S2BlockBytes))), "s2", 0, func(*capture.Record) error { return nil }); !errors.Is(err, s2.ErrCRC) {
		t.Errorf("a flipped byte in an S2 block: %v, want s2.ErrCRC", err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := 0
			err := DecodeBatch(bytes.NewReader(tt.body), tt.encoding, tt.maxDecoded, func(*capture.Record) error {
				calls++
				return nil
			})
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("err = %T, want *DecodeError", err)
			}
			if tt.wantLine >= 0 && de.Line != tt.wantLine {
				t.Errorf("line = %d, want %d (%v)", de.Line, tt.wantLine, err)
			}
			if calls != tt.wantCalls {
				t.Errorf("fn called %d times, want %d", calls, tt.wantCalls)
			}
		})
	}
}

// s2Flip changes one byte of the first block's data (after the stream
// identifier, the block's header and its CRC): only the CRC can tell.
func s2Flip(b []byte) []byte {
	b = bytes.Clone(b)
	b[len(b)-1] ^= 0x20
	return b
}

func TestDecodeCallbackErrorUnwrapped(t *testing.T) {
	stop := errors.New("disk full")
	err := DecodeBatch(strings.NewReader(`{"schema":1,"id":"a","kind":"tcp","direction":"in","tcp":{}}`), "", 0,
		func(*capture.Record) error { return stop })
	if err != stop {
		t.Errorf("err = %v, want the callback's own error", err)
	}
}

type failingReader struct{ err error }

func (f failingReader) Read([]byte) (int, error) { return 0, f.err }

func TestDecodeTransportErrorNotADecodeError(t *testing.T) {
	gone := errors.New("connection reset")
	for _, enc := range []string{"", "zstd", "gzip", "s2"} {
		err := DecodeBatch(failingReader{gone}, enc, 0, func(*capture.Record) error { return nil })
		var de *DecodeError
		if !errors.Is(err, gone) || errors.As(err, &de) {
			t.Errorf("encoding %q: err = %v, want the reader's error and no *DecodeError", enc, err)
		}
	}
}

// TestDecodeCutShortIsTransport: a body cut short by the transport (a
// client gone mid-upload: net/http's io.ErrUnexpectedEOF) is the
// transport's error in every encoding, not a corrupt batch, even where the
// decompressor reports the short read as corruption of its own (S2).
func TestDecodeCutShortIsTransport(t *testing.T) {
	recs := capturetest.Batch(40, 2000)
	var plain, zs, ss, gz bytes.Buffer
	jsonl.Append(&plain, recs)
	EncodeBatch(&zs, recs)
	EncodeBatchS2(&ss, recs)
	zw := gzip.NewWriter(&gz)
	zw.Write(plain.Bytes())
	zw.Close()
	for enc, body := range map[string][]byte{"identity": plain.Bytes(), "zstd": zs.Bytes(), "s2": ss.Bytes(), "gzip": gz.Bytes()} {
		cut := io.MultiReader(bytes.NewReader(body[:len(body)/2]), failingReader{io.ErrUnexpectedEOF})
		err := DecodeBatch(cut, enc, 0, func(*capture.Record) error { return nil })
		var de *DecodeError
		if !errors.Is(err, io.ErrUnexpectedEOF) || errors.As(err, &de) {
			t.Errorf("encoding %s: err = %v, want the transport's io.ErrUnexpectedEOF and no *DecodeError", enc, err)
		}
	}
}

func TestEstimateSize(t *testing.T) {
	for _, r := range capturetest.Batch(8, 1000) {
		var b bytes.Buffer
		jsonl.Append(&b, []*capture.Record{r})
		est := EstimateSize(r)
		if got := int64(b.Len()); est < got/2 || est > got*2 {
			t.Errorf("EstimateSize(%s kind %s) = %d, encoded %d: want within a factor of 2", r.ID, r.Kind, est, got)
		}
	}
}

// TestEncodeDecodeConcurrent shares the pooled coders between goroutines.
func TestEncodeDecodeConcurrent(t *testing.T) {
	recs := capturetest.Batch(20, 100)
	done := make(chan error)
	for range 4 {
		go func() {
			var b bytes.Buffer
			if err := EncodeBatch(&b, recs); err != nil {
				done <- err
				return
			}
			n := 0
			err := DecodeBatch(&b, "zstd", 0, func(*capture.Record) error { n++; return nil })
			if err == nil && n != len(recs) {
				err = fmt.Errorf("decoded %d records, want %d", n, len(recs))
			}
			done <- err
		}()
	}
	for range 4 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

func FuzzDecodeBatch(f *testing.F) {
	var plain, zs bytes.Buffer
	recs := capturetest.Batch(3, 40)
	jsonl.Append(&plain, recs)
	EncodeBatch(&zs, recs)
	f.Add(plain.Bytes(), uint8(0))
	f.Add(zs.Bytes(), uint8(1))
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(plain.Bytes())
	zw.Close()
	f.Add(gz.Bytes(), uint8(2))
	f.Add([]byte(`{"schema":1,"id":"a","kind":"http","direction":"in","http":{"req":{"headers":[["a","b"]]}}}`), uint8(0))
	f.Add([]byte("\n\r\n{}\n"), uint8(0))
	var ss bytes.Buffer
	EncodeBatchS2(&ss, recs)
	f.Add(ss.Bytes(), uint8(3))
	encodings := []string{"identity", "zstd", "gzip", "s2"}
	f.Fuzz(func(t *testing.T, body []byte, enc uint8) {
		const limit = 1 << 20
		n := 0
		err := DecodeBatch(bytes.NewReader(body), encodings[int(enc)%len(encodings)], limit, func(r *capture.Record) error {
			if err := r.Validate(); err != nil {
				t.Fatalf("fn got an invalid record: %v", err)
			}
			n++
			return nil
		})
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("error %v is %T, want *DecodeError", err, err)
			}
			return
		}
		if enc%4 == 0 && n > bytes.Count(body, []byte("\n"))+1 {
			t.Fatalf("%d records from %d lines", n, bytes.Count(body, []byte("\n"))+1)
		}
	})
}

func BenchmarkEncodeBatch(b *testing.B) {
	recs := capturetest.Batch(256, 1024)
	var plain bytes.Buffer
	jsonl.Append(&plain, recs)
	run := func(b *testing.B, encode func(io.Writer, []*capture.Record) error) {
		var out bytes.Buffer
		b.SetBytes(int64(plain.Len()))
		b.ReportAllocs()
		for b.Loop() {
			out.Reset()
			if err := encode(&out, recs); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(len(recs))*float64(b.N)/b.Elapsed().Seconds(), "records/s")
		b.ReportMetric(float64(plain.Len())/float64(out.Len()), "ratio")
	}
	b.Run("pooled", func(b *testing.B) { run(b, EncodeBatch) })
	b.Run("fast", func(b *testing.B) {
		run(b, func(w io.Writer, recs []*capture.Record) error { return encodeBatch(w, recs, EncodingZstd, true, nil) })
	})
	b.Run("s2", func(b *testing.B) { run(b, EncodeBatchS2) })
	b.Run("new", func(b *testing.B) {
		run(b, func(w io.Writer, recs []*capture.Record) error {
			e, err := zstd.NewWriter(w, zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(MaxWindowBytes))
			if err != nil {
				return err
			}
			var buf bytes.Buffer
			if err := jsonl.Append(&buf, recs); err != nil {
				return err
			}
			e.Write(buf.Bytes())
			return e.Close()
		})
	})
}

func BenchmarkDecodeBatch(b *testing.B) {
	recs := capturetest.Batch(256, 1024)
	for _, enc := range []string{EncodingZstd, EncodingS2} {
		b.Run(enc, func(b *testing.B) {
			var body bytes.Buffer
			encodeBatch(&body, recs, enc, true, nil)
			b.ReportAllocs()
			for b.Loop() {
				if err := DecodeBatch(bytes.NewReader(body.Bytes()), enc, 0, func(*capture.Record) error { return nil }); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(recs))*float64(b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// TestBatchID: BatchID is the version-5 UUID of the batch's ids joined by
// newlines (what it was when it joined them first: retries and the S3
// keys named by it depend on it), with ids of any length across its
// buffer's edges, and it allocates only its result.
func TestBatchID(t *testing.T) {
	joined := func(recs []*capture.Record) string {
		var b strings.Builder
		for _, r := range recs {
			b.WriteString(r.ID)
			b.WriteByte('\n')
		}
		return uuid.NewSHA1(batchNamespace, []byte(b.String())).String()
	}
	ids := func(lens ...int) []*capture.Record {
		var recs []*capture.Record
		for i, n := range lens {
			recs = append(recs, &capture.Record{ID: strings.Repeat(string(rune('a'+i%26)), n)})
		}
		return recs
	}
	// The buffer holds the 16-byte namespace, then ids and newlines.
	cases := [][]*capture.Record{nil, ids(0), ids(36), ids(4079), ids(4080), ids(4081), ids(4078, 1), ids(4079, 0, 5),
		ids(5000, 3, 9000), ids(2039, 2039, 1, 1), ids(4095, 4096, 4097)}
	var many []*capture.Record
	for range 512 {
		many = append(many, &capture.Record{ID: capture.NewID()})
	}
	cases = append(cases, many, many[:13])
	for _, recs := range cases {
		if got, want := BatchID(recs), joined(recs); got != want {
			t.Errorf("%d ids: %s, want %s", len(recs), got, want)
		}
	}
	if got := BatchID(many[:1]); got == BatchID(many[1:2]) || got != BatchID(many[:1]) {
		t.Errorf("BatchID not a function of the ids: %s", got)
	}
	if n := testing.AllocsPerRun(20, func() { BatchID(many) }); n > 2 {
		t.Errorf("BatchID of 512 records: %.0f allocations, want at most 2 (the hash and the string)", n)
	}
}

// BenchmarkBatchID: the idempotency key of a batch of 512 records.
func BenchmarkBatchID(b *testing.B) {
	recs := make([]*capture.Record, 512)
	for i := range recs {
		recs[i] = &capture.Record{ID: capture.NewID()}
	}
	for b.Loop() {
		BatchID(recs)
	}
}
