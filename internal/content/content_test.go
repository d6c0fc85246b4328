package content

import (
	"bytes"
	"compress/flate"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// encode applies codings with Encode, which the tests below check
// against Decode.
func encode(codings string, b []byte) []byte {
	out, err := Encode(codings, b)
	if err != nil {
		panic(err)
	}
	return out
}

func gz(b []byte) []byte { return encode("gzip", b) }
func zl(b []byte) []byte { return encode("deflate", b) }
func br(b []byte) []byte { return encode("br", b) }
func zs(b []byte) []byte { return encode("zstd", b) }

// rawDeflate is deflate without zlib's frame, as some servers send it.
func rawDeflate(b []byte) []byte {
	var buf bytes.Buffer
	w, _ := flate.NewWriter(&buf, flate.DefaultCompression)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

// cutShort returns the first half of b, as a capture cut short.
func cutShort(b []byte) []byte { return b[:len(b)/2] }

func TestCodings(t *testing.T) {
	tests := []struct {
		name, in string
		want     []string
	}{
		{"none", "", nil},
		{"identity", "identity", nil},
		{"one", "gzip", []string{"gzip"}},
		{"stacked, any case and space", " GZIP ,identity,  Br ", []string{"gzip", "br"}},
		{"empty elements", ",,zstd,", []string{"zstd"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Codings(tc.in); !slices.Equal(got, tc.want) {
				t.Errorf("Codings(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestDecode(t *testing.T) {
	text := []byte("hello, stacked world")
	var long []byte
	for i := range 5000 {
		long = fmt.Appendf(long, "line %d: %x 0123456789\n", i, i*i*7919)
	}
	tests := []struct {
		name    string
		enc     string
		data    []byte
		limit   int
		want    []byte // the output, or its start when err is partial
		prefix  bool   // want is a prefix of the output
		err     string // a substring of the error; "" for none
		partial bool
		undone  []string
	}{
		{"no coding", "", text, 4, text, false, "", false, nil},
		{"identity", "identity", text, 100, text, false, "", false, nil},
		{"empty body", "gzip", nil, 100, nil, false, "", false, nil},
		{"gzip", "gzip", gz(text), 100, text, false, "", false, nil},
		{"x-gzip", "x-gzip", gz(text), 100, text, false, "", false, nil},
		{"deflate as zlib", "deflate", zl(text), 100, text, false, "", false, nil},
		{"deflate raw", "deflate", rawDeflate(text), 100, text, false, "", false, nil},
		{"br", "br", br(text), 100, text, false, "", false, nil},
		{"zstd", "zstd", zs(text), 100, text, false, "", false, nil},
		{"stacked: undone from the last", "gzip, br", br(gz(text)), 100, text, false, "", false, nil},
		{"stacked three", "zstd, deflate, gzip", gz(zl(zs(text))), 100, text, false, "", false, nil},
		{"upper case with identity", "GZIP, identity", gz(text), 100, text, false, "", false, nil},
		{"truncated: decoded in part", "gzip", gz(long)[:2000], 1 << 20, long[:100], true, "gzip: the captured bytes end before the stream does", true, []string{"gzip"}},
		{"not gzip: input returned", "gzip", text, 100, text, false, "gzip: gzip: invalid header", false, nil},
		{"unknown coding", "compress", text, 100, text, false, `unknown content encoding "compress"`, false, nil},
		{"outer undone, inner not", "gzip, br", br(text), 100, text, false, "gzip: ", false, []string{"br"}},
		{"unknown inner coding", "compress, gzip", gz(text), 100, text, false, `unknown content encoding "compress"`, false, []string{"gzip"}},
		{"stacked and cut short: decoded in part", "gzip, br", cutShort(br(gz(long))), 1 << 20, long[:100], true, "br: the captured bytes end before the stream does", true, []string{"gzip", "br"}},
		{"outer cut short, inner not decodable", "gzip, br", cutShort(br(long)), 1 << 20, long[:100], true, "gzip: gzip: invalid header", false, []string{"br"}},
		{"stacked over the limit", "gzip, br", br(gz(long)), 1000, long[:1000], false, "br: more than 1000 bytes decoded", true, []string{"gzip", "br"}},
		{"limit", "gzip", gz(long), 1000, long[:1000], false, "gzip: more than 1000 bytes decoded", true, []string{"gzip"}},
		{"limit in MiB", "br", br(make([]byte, 2<<20)), 1 << 20, make([]byte, 1<<20), false, "br: more than 1 MiB decoded", true, []string{"br"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Decode(tc.enc, tc.data, tc.limit)
			if tc.prefix && !bytes.HasPrefix(got, tc.want) || !tc.prefix && !bytes.Equal(got, tc.want) {
				t.Errorf("got %.60q (%d bytes), want %.60q (%d bytes, prefix %v)", got, len(got), tc.want, len(tc.want), tc.prefix)
			}
			if tc.err == "" {
				if err != nil {
					t.Errorf("got error %v, want none", err)
				}
				return
			}
			var de *Error
			if !errors.As(err, &de) {
				t.Fatalf("got error %v (%T), want an *Error containing %q", err, err, tc.err)
			}
			if !strings.Contains(de.Error(), tc.err) || de.Partial != tc.partial || !slices.Equal(de.Undone, tc.undone) {
				t.Errorf("got error %q partial %v undone %q; want %q partial %v undone %q", de, de.Partial, de.Undone, tc.err, tc.partial, tc.undone)
			}
		})
	}
}

// TestDecodeBombs: output stops at the limit, however much the codings
// would produce, stacked or not.
func TestDecodeBombs(t *testing.T) {
	const limit = 64 << 10
	zeros := make([]byte, 32<<20)
	tests := []struct {
		name, enc string
		data      []byte
	}{
		{"gzip", "gzip", gz(zeros)},
		{"br", "br", br(zeros)},
		{"zstd", "zstd", zs(zeros)},
		{"gzip of gzip", "gzip, gzip", gz(gz(zeros))},
		{"br of zstd", "zstd, br", br(zs(zeros))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Decode(tc.enc, tc.data, limit)
			if len(got) > limit {
				t.Errorf("got %d bytes, want at most %d", len(got), limit)
			}
			var de *Error
			if !errors.As(err, &de) || !de.Partial {
				t.Errorf("got error %v, want a partial *Error", err)
			}
		})
	}
	// The single-coding bombs name the cause.
	if _, err := Decode("gzip", gz(zeros), limit); !errors.Is(err, ErrTooLarge) {
		t.Errorf("gzip bomb: got error %v, want ErrTooLarge", err)
	}
}

func TestEncodeUnknown(t *testing.T) {
	if _, err := Encode("gzip, compress", []byte("x")); err == nil || !strings.Contains(err.Error(), `unknown content encoding "compress"`) {
		t.Errorf("got error %v, want unknown content encoding \"compress\"", err)
	}
}

// FuzzDecode: any bytes under any codings decode without a panic, within
// the limit, and the same twice; what the encoders write decodes back.
func FuzzDecode(f *testing.F) {
	f.Add("gzip", gz([]byte(`{"a":1}`)))
	f.Add("br", br([]byte("hello")))
	f.Add("deflate", []byte{0x78, 0x9c, 0x03, 0x00})
	f.Add("zstd", []byte{0x28, 0xb5, 0x2f, 0xfd})
	f.Add("", []byte{0xff, 0xfe, 0})
	f.Add("gzip, br", br(gz([]byte("twice"))))
	f.Add("gzip, gzip", gz(gz(make([]byte, 1<<20))))
	f.Add("zstd", zs(make([]byte, 1<<20)))
	f.Add("br", br(make([]byte, 1<<20)))
	const limit = 64 << 10
	f.Fuzz(func(t *testing.T, enc string, data []byte) {
		got, err := Decode(enc, data, limit)
		var de *Error
		switch {
		case err != nil && !errors.As(err, &de):
			t.Fatalf("error %v is a %T, want *Error", err, err)
		case len(Codings(enc)) == 0 || len(data) == 0:
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("nothing to undo: got %d bytes, %v; want the input", len(got), err)
			}
		case err != nil && !de.Partial && len(de.Undone) == 0:
			if !bytes.Equal(got, data) {
				t.Fatalf("nothing undone: got %d bytes, want the input", len(got))
			}
		case len(got) > limit:
			t.Fatalf("got %d bytes, want at most %d", len(got), limit)
		}
		again, err2 := Decode(enc, data, limit)
		if !bytes.Equal(got, again) || (err == nil) != (err2 == nil) {
			t.Fatalf("two decodes differ: %d bytes, %v; then %d bytes, %v", len(got), err, len(again), err2)
		}
		if len(data) > limit {
			return
		}
		encoded, err := Encode("zstd, gzip, br", data)
		if err != nil {
			t.Fatalf("Encode: %v", err)
		}
		if back, err := Decode("zstd, gzip, br", encoded, limit); err != nil || !bytes.Equal(back, data) {
			t.Fatalf("round trip through zstd, gzip, br: got %d bytes, %v; want the %d bytes", len(back), err, len(data))
		}
	})
}
