package protoraw

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"reflect"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/tapwire/tapwire/internal/capture"
)

// Helpers that build expected fields.

func varint(n int32, v uint64) capture.ProtoField {
	return capture.ProtoField{Num: n, Wire: WireVarint, Uint: &v}
}

func fixed32(n int32, v uint64) capture.ProtoField {
	return capture.ProtoField{Num: n, Wire: WireFixed32, Uint: &v}
}

func fixed64(n int32, v uint64) capture.ProtoField {
	return capture.ProtoField{Num: n, Wire: WireFixed64, Uint: &v}
}

func str(n int32, s string) capture.ProtoField {
	return capture.ProtoField{Num: n, Wire: WireBytes, String: &s}
}

func raw(n int32, b []byte) capture.ProtoField {
	return capture.ProtoField{Num: n, Wire: WireBytes, Bytes: b}
}

func msg(n int32, fs ...capture.ProtoField) capture.ProtoField {
	return capture.ProtoField{Num: n, Wire: WireBytes, Message: fs}
}

func group(n int32, fs ...capture.ProtoField) capture.ProtoField {
	return capture.ProtoField{Num: n, Wire: WireGroup, Message: fs}
}

func fields(fs ...capture.ProtoField) []capture.ProtoField { return fs }

// Helpers that build wire input.

func tag(num protowire.Number, typ protowire.Type) []byte { return protowire.AppendTag(nil, num, typ) }

func cat(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

func bytesField(num protowire.Number, v []byte) []byte {
	return protowire.AppendBytes(tag(num, protowire.BytesType), v)
}

func varintField(num protowire.Number, v uint64) []byte {
	return protowire.AppendVarint(tag(num, protowire.VarintType), v)
}

// nestBytes wraps inner in depth length-delimited fields numbered 1.
func nestBytes(inner []byte, depth int) []byte {
	for range depth {
		inner = bytesField(1, inner)
	}
	return inner
}

// nestGroups wraps inner in depth groups numbered 1.
func nestGroups(inner []byte, depth int) []byte {
	for range depth {
		inner = cat(tag(1, protowire.StartGroupType), inner, tag(1, protowire.EndGroupType))
	}
	return inner
}

// wantNested is the tree of nestBytes or nestGroups around leaf.
func wantNested(leaf capture.ProtoField, depth int, wrap func(int32, ...capture.ProtoField) capture.ProtoField) []capture.ProtoField {
	fs := fields(leaf)
	for range depth {
		fs = fields(wrap(1, fs...))
	}
	return fs
}

func TestDecode(t *testing.T) {
	manyVarints := bytes.Repeat([]byte{0x08, 0x01}, MaxFields)
	tests := []struct {
		name      string
		in        []byte
		want      []capture.ProtoField
		wantOK    bool
		canonical bool // Encode(want) gives in back
	}{
		// Known encodings, from the protobuf encoding guide.
		{"varint 150", []byte{0x08, 0x96, 0x01}, fields(varint(1, 150)), true, true},
		{"string testing", []byte("\x12\x07testing"), fields(str(2, "testing")), true, true},
		{"nested message", []byte{0x1a, 0x03, 0x08, 0x96, 0x01}, fields(msg(3, varint(1, 150))), true, true},
		{"empty message", nil, nil, true, true},

		// Scalars.
		{"varint 0", []byte{0x08, 0x00}, fields(varint(1, 0)), true, true},
		{"int32 -1", cat([]byte{0x08}, bytes.Repeat([]byte{0xff}, 9), []byte{0x01}), fields(varint(1, math.MaxUint64)), true, true},
		{"fixed32", []byte{0x0d, 0x01, 0x00, 0x00, 0x80}, fields(fixed32(1, 0x80000001)), true, true},
		{"fixed64 double 1.5", protowire.AppendFixed64(tag(4, protowire.Fixed64Type), math.Float64bits(1.5)), fields(fixed64(4, 0x3ff8000000000000)), true, true},
		{"repeated field", []byte{0x08, 0x01, 0x08, 0x02}, fields(varint(1, 1), varint(1, 2)), true, true},
		{"largest field number", varintField(protowire.MaxValidNumber, 7), fields(varint(1<<29-1, 7)), true, true},
		{"reserved field number", varintField(19000, 1), fields(varint(19000, 1)), true, true},

		// Length-delimited: what the heuristic makes of it.
		{"empty bytes", []byte{0x0a, 0x00}, fields(str(1, "")), true, true},
		{"binary bytes", []byte{0x0a, 0x02, 0x00, 0xff}, fields(raw(1, []byte{0x00, 0xff})), true, true},
		{"invalid UTF-8", bytesField(1, []byte("ab\xffc")), fields(raw(1, []byte("ab\xffc"))), true, true},
		{"control character", bytesField(1, []byte("ab\x01")), fields(raw(1, []byte("ab\x01"))), true, true},
		{"DEL", bytesField(1, []byte("ab\x7f")), fields(raw(1, []byte("ab\x7f"))), true, true},
		{"tab and line ends", bytesField(1, []byte("a\tb\r\n")), fields(str(1, "a\tb\r\n")), true, true},
		{"unicode", bytesField(1, []byte("ünïcødé ✓ 日本")), fields(str(1, "ünïcødé ✓ 日本")), true, true},
		// "hi" is 0x68 0x69: field 13, varint 105. Like protoc, the
		// message wins.
		{"short string that parses", bytesField(1, []byte("hi")), fields(msg(1, varint(13, 105))), true, true},
		// A packed repeated varint whose bytes are not a message.
		{"packed 1 2 3", bytesField(1, []byte{1, 2, 3}), fields(raw(1, []byte{1, 2, 3})), true, true},
		// ... and one whose are: 8, 150 reads as field 1 = 150.
		{"packed 8 150", bytesField(1, []byte{0x08, 0x96, 0x01}), fields(msg(1, varint(1, 150))), true, true},
		{"nested invalid stays bytes", bytesField(5, []byte{0x0b, 0x08, 0x01}), fields(raw(5, []byte{0x0b, 0x08, 0x01})), true, true},
		{"nested with string", bytesField(1, cat(bytesField(2, []byte("hello")), varintField(3, 1))), fields(msg(1, str(2, "hello"), varint(3, 1))), true, true},

		// Groups.
		{"group", []byte{0x0b, 0x08, 0x01, 0x0c}, fields(group(1, varint(1, 1))), true, true},
		{"empty group", []byte{0x0b, 0x0c}, fields(group(1)), true, true},
		{"group in group", []byte{0x0b, 0x13, 0x14, 0x0c}, fields(group(1, group(2))), true, true},
		{"group in bytes", bytesField(7, []byte{0x0b, 0x08, 0x01, 0x0c}), fields(msg(7, group(1, varint(1, 1)))), true, true},

		// Non-minimal varints decode; Encode shortens them.
		{"long varint value", []byte{0x08, 0x80, 0x00}, fields(varint(1, 0)), true, false},
		{"long tag", []byte{0x88, 0x00, 0x01}, fields(varint(1, 1)), true, false},
		{"long length", []byte{0x12, 0x81, 0x00, 'x'}, fields(str(2, "x")), true, false},

		// Invalid messages.
		{"field 0", []byte{0x00}, nil, false, false},
		{"field 0 bytes", []byte{0x02, 0x00}, nil, false, false},
		{"field 2^29", varintField(1<<29, 1), nil, false, false},
		{"tag beyond 32 bits", cat(protowire.AppendVarint(nil, 1<<35), []byte{0x00}), nil, false, false},
		{"wire type 6", []byte{0x0e, 0x00}, nil, false, false},
		{"wire type 7", []byte{0x0f, 0x00}, nil, false, false},
		{"truncated tag", []byte{0x88}, nil, false, false},
		{"truncated varint", []byte{0x08, 0x96}, nil, false, false},
		{"varint over 64 bits", cat([]byte{0x08}, bytes.Repeat([]byte{0xff}, 9), []byte{0x02}), nil, false, false},
		{"truncated fixed32", []byte{0x0d, 0x01, 0x02, 0x03}, nil, false, false},
		{"truncated fixed64", []byte{0x09, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07}, nil, false, false},
		{"truncated bytes", []byte{0x0a, 0x05, 'a'}, nil, false, false},
		{"length beyond int", cat([]byte{0x0a}, protowire.AppendVarint(nil, math.MaxUint64)), nil, false, false},
		{"end group alone", []byte{0x0c}, nil, false, false},
		{"end group of another field", []byte{0x0b, 0x14}, nil, false, false},
		{"group not ended", []byte{0x0b, 0x08, 0x01}, nil, false, false},
		{"valid then garbage", []byte{0x08, 0x01, 0xff}, nil, false, false},

		// Bounds.
		{"bytes at the depth limit", nestBytes([]byte{0x08, 0x01}, MaxDepth), wantNested(varint(1, 1), MaxDepth, msg), true, true},
		{"bytes beyond the depth limit", nestBytes([]byte("\x08\x01"), MaxDepth+1), wantNested(raw(1, []byte{0x08, 0x01}), MaxDepth, msg), true, true},
		{"groups at the depth limit", nestGroups(nil, MaxDepth), wantNested(group(1), MaxDepth-1, group), true, true},
		{"groups beyond the depth limit", nestGroups(nil, MaxDepth+1), nil, false, false},
		{"MaxFields fields", manyVarints, manyFields(MaxFields), true, true},
		{"too many fields", cat(manyVarints, []byte{0x08, 0x01}), nil, false, false},
		{"too many nested fields", cat(manyVarints[2:], bytesField(2, []byte{0x08, 0x01})), nil, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := Decode(tt.in)
			if ok != tt.wantOK || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Decode(% x) =\n%s, %v\nwant\n%s, %v", head(tt.in), show(got), ok, show(tt.want), tt.wantOK)
			}
			if !ok {
				return
			}
			enc := Encode(got)
			if tt.canonical && !bytes.Equal(enc, tt.in) {
				t.Errorf("Encode(Decode(x)) = % x, want x = % x", head(enc), head(tt.in))
			}
			if !tt.canonical && len(enc) >= len(tt.in) {
				t.Errorf("Encode(Decode(% x)) = % x, want it shorter", tt.in, enc)
			}
		})
	}
}

func manyFields(n int) []capture.ProtoField {
	fs := make([]capture.ProtoField, n)
	for i := range fs {
		fs[i] = varint(1, 1)
	}
	return fs
}

func head(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}

func show(fs []capture.ProtoField) string {
	b, _ := json.Marshal(fs)
	if len(b) > 400 {
		return string(b[:400]) + "..."
	}
	return string(b)
}

// TestDecodeDoesNotAlias checks that the fields keep no memory of the
// input, which a caller may reuse.
func TestDecodeDoesNotAlias(t *testing.T) {
	in := bytesField(1, []byte{0x00, 0xff})
	got, ok := Decode(in)
	if !ok {
		t.Fatal("Decode failed")
	}
	for i := range in {
		in[i] = 0xaa
	}
	if want := []byte{0x00, 0xff}; !bytes.Equal(got[0].Bytes, want) {
		t.Errorf("Bytes = % x after the input changed, want % x", got[0].Bytes, want)
	}
}

func TestCount(t *testing.T) {
	fs := fields(varint(1, 1), msg(2, str(1, "a"), group(3, varint(1, 2))), raw(4, []byte{0}))
	if got, want := Count(fs), 6; got != want {
		t.Errorf("Count = %d, want %d", got, want)
	}
	if got := Count(nil); got != 0 {
		t.Errorf("Count(nil) = %d, want 0", got)
	}
}

// TestEncode checks how Encode writes fields that Decode would not have
// produced.
func TestEncode(t *testing.T) {
	tests := []struct {
		name string
		in   []capture.ProtoField
		want []byte
	}{
		{"nil Uint", fields(capture.ProtoField{Num: 1, Wire: WireVarint}), []byte{0x08, 0x00}},
		{"fixed32 keeps the low bits", fields(fixed32(1, 1<<32|5)), []byte{0x0d, 0x05, 0x00, 0x00, 0x00}},
		{"message wins over string", fields(capture.ProtoField{Num: 1, Wire: WireBytes, Message: fields(varint(1, 1)), String: new("x")}), []byte{0x0a, 0x02, 0x08, 0x01}},
		{"empty bytes", fields(capture.ProtoField{Num: 1, Wire: WireBytes}), []byte{0x0a, 0x00}},
		{"unknown wire left out", fields(capture.ProtoField{Num: 1, Wire: "float"}, varint(2, 1)), []byte{0x10, 0x01}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Encode(tt.in); !bytes.Equal(got, tt.want) {
				t.Errorf("Encode = % x, want % x", got, tt.want)
			}
		})
	}
}

// TestGolden checks that the fields of the gRPC golden record of package
// capture are what Decode makes of its messages' data.
func TestGolden(t *testing.T) {
	b, err := os.ReadFile("../capture/testdata/grpc-in.golden.json")
	if err != nil {
		t.Fatal(err)
	}
	var rec capture.Record
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatal(err)
	}
	if rec.HTTP == nil || len(rec.HTTP.Messages) == 0 {
		t.Fatal("the golden record has no messages")
	}
	for i, m := range rec.HTTP.Messages {
		got, ok := Decode(m.Data)
		if !ok || !reflect.DeepEqual(got, m.Fields) {
			t.Errorf("message %d: Decode = %s, %v; golden fields %s", i, show(got), ok, show(m.Fields))
		}
	}
}

func FuzzDecode(f *testing.F) {
	seeds := [][]byte{
		{0x08, 0x96, 0x01},
		[]byte("\x12\x07testing"),
		{0x1a, 0x03, 0x08, 0x96, 0x01},
		{0x0b, 0x08, 0x01, 0x0c},
		{0x0b, 0x13, 0x14, 0x0c},
		{0x0d, 0x01, 0x00, 0x00, 0x80},
		{0x08, 0x80, 0x00},
		{0x12, 0x81, 0x00, 'x'},
		{0x0a, 0x02, 0x00, 0xff},
		bytesField(1, []byte("hi")),
		nestBytes([]byte{0x08, 0x01}, MaxDepth+1),
		nestGroups(nil, MaxDepth),
		benchMessage(),
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		fs, ok := Decode(in)
		if !ok {
			if fs != nil {
				t.Fatalf("Decode returned fields with ok false")
			}
			return
		}
		if n := Count(fs); n > MaxFields {
			t.Fatalf("Decode returned %d fields, more than MaxFields", n)
		}
		checkTree(t, fs, 0)
		enc := Encode(fs)
		// Encode shortens non-minimal varints and changes nothing else:
		// the same length means the same bytes.
		switch {
		case len(enc) > len(in):
			t.Fatalf("Encode(Decode(x)) is longer than x:\nx   % x\nenc % x", in, enc)
		case len(enc) == len(in) && !bytes.Equal(enc, in):
			t.Fatalf("Encode(Decode(x)) != x:\nx   % x\nenc % x", in, enc)
		}
		// The canonical form decodes to the same fields, and is a fixed point.
		fs2, ok := Decode(enc)
		if !ok || !reflect.DeepEqual(fs2, fs) {
			t.Fatalf("Decode(Encode(Decode(x))) = %s, %v; want %s", show(fs2), ok, show(fs))
		}
		if enc2 := Encode(fs2); !bytes.Equal(enc2, enc) {
			t.Fatalf("Encode is not stable:\n% x\n% x", enc, enc2)
		}
	})
}

// checkTree checks the invariants of a decoded tree: one value per field,
// as its wire type says, within the depth limit.
func checkTree(t *testing.T, fs []capture.ProtoField, depth int) {
	t.Helper()
	if len(fs) > 0 && depth > MaxDepth {
		t.Fatalf("fields at depth %d, beyond MaxDepth", depth)
	}
	for _, f := range fs {
		if f.Num < 1 || f.Num > 1<<29-1 {
			t.Fatalf("field number %d", f.Num)
		}
		set := 0
		for _, b := range []bool{f.Uint != nil, f.String != nil, f.Bytes != nil, f.Message != nil} {
			if b {
				set++
			}
		}
		switch f.Wire {
		case WireVarint, WireFixed64, WireFixed32:
			if f.Uint == nil || set != 1 {
				t.Fatalf("%s field %d: want only Uint, got %+v", f.Wire, f.Num, f)
			}
			if f.Wire == WireFixed32 && *f.Uint > math.MaxUint32 {
				t.Fatalf("fixed32 field %d = %d", f.Num, *f.Uint)
			}
		case WireBytes:
			if set != 1 || f.Uint != nil {
				t.Fatalf("bytes field %d: want one of String, Bytes, Message, got %+v", f.Num, f)
			}
			if f.Bytes != nil && (len(f.Bytes) == 0 || printable(f.Bytes)) {
				t.Fatalf("bytes field %d: Bytes % x should be a String", f.Num, f.Bytes)
			}
			if f.Message != nil && len(f.Message) == 0 {
				t.Fatalf("bytes field %d: empty Message", f.Num)
			}
		case WireGroup:
			if f.Uint != nil || f.String != nil || f.Bytes != nil {
				t.Fatalf("group field %d: want only Message, got %+v", f.Num, f)
			}
		default:
			t.Fatalf("field %d: wire %q", f.Num, f.Wire)
		}
		checkTree(t, f.Message, depth+1)
	}
}

// benchMessage is a message of about 1 KiB as an API returns: a list of
// items with ids, names, prices and a nested address, and a page token.
func benchMessage() []byte {
	var b []byte
	for i := range 12 {
		var item []byte
		item = varintField(1, uint64(1000+i))
		item = append(item, bytesField(2, []byte("Item name "+strings.Repeat("x", i)))...)
		item = protowire.AppendTag(item, 3, protowire.Fixed64Type)
		item = protowire.AppendFixed64(item, math.Float64bits(19.99+float64(i)))
		item = append(item, bytesField(4, cat(bytesField(1, []byte("Main Street 1")), bytesField(2, []byte("Springfield")), varintField(3, 12345)))...)
		item = append(item, bytesField(5, []byte{0x00, 0x01, 0xfe, 0xff, byte(i)})...)
		b = append(b, bytesField(1, item)...)
	}
	return append(b, bytesField(2, []byte("next-page-token-0123456789"))...)
}

func BenchmarkDecode(b *testing.B) {
	blob := bytes.Repeat([]byte{0x00, 0xff}, 32<<10)
	inputs := []struct {
		name string
		in   []byte
	}{
		{"small", []byte("\x0a\x05world\x10\x96\x01")},
		{"items-1KiB", benchMessage()},
		{"blob-64KiB", bytesField(1, blob)},
		{"not-proto-64KiB", bytes.Repeat([]byte(`{"a":1}`), 64<<10/7)},
		{"varints-10k", bytes.Repeat([]byte{0x08, 0x01}, MaxFields)},
		// Hostile: too many fields, MaxDepth groups deep.
		{"deep-groups-1MiB", nestGroups(bytes.Repeat([]byte{0x08, 0x01}, 1<<19), MaxDepth)},
	}
	for _, in := range inputs {
		b.Run(in.name, func(b *testing.B) {
			b.SetBytes(int64(len(in.in)))
			b.ReportAllocs()
			for b.Loop() {
				Decode(in.in)
			}
		})
	}
}
