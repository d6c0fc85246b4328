// Package protoraw decodes the protobuf wire format without a schema, as
// protoc --decode_raw does, into the capture record's ProtoField trees, and
// encodes such trees again.
//
// Without a schema the wire format says only a field's number and its wire
// type, so Decode guesses what a length-delimited field holds:
//
//   - empty: the empty string (String is "");
//   - bytes that parse, whole, as a message: that message (Message). Like
//     protoc, Decode prefers a message whenever the bytes parse, so a short
//     string can come out as a message: "hi" is 0x68 0x69, field 13 with the
//     varint 105. A packed repeated field can parse as a message too;
//   - otherwise, valid UTF-8 of printable characters (graphic Unicode, and
//     \t, \n, \r): a string (String);
//   - otherwise: bytes (Bytes).
//
// Varints, fixed32 and fixed64 values are given as unsigned integers (Uint):
// a negative int32 or int64 reads as 2^64 plus it, a sint as its zigzag
// encoding, a float or double as its IEEE 754 bits. A group (the deprecated
// start-group and end-group wire types) comes out as a Message, as protoc
// prints it.
//
// The work is bounded: messages nest at most MaxDepth deep (deeper bytes
// stay String or Bytes, as protoc does when its recursion budget runs out; a
// deeper group makes the input invalid), and Decode gives up on input of
// more than MaxFields fields.
package protoraw

import (
	"unicode"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/tapwire/tapwire/internal/capture"
)

// Bounds of Decode on hostile input.
const (
	// MaxDepth is how deep messages nest in a decoded tree: the fields of
	// the top-level message are at depth 0, those of a message inside one
	// of them at depth 1, and so on up to MaxDepth.
	MaxDepth = 32
	// MaxFields is the most fields, nested ones included, that one Decode
	// returns. An input with more is reported as not decoded (ok false,
	// no fields): a record holds a message's fields whole or not at all.
	MaxFields = 10000
)

// The values of capture.ProtoField.Wire.
const (
	WireVarint  = "varint"
	WireFixed64 = "fixed64"
	WireBytes   = "bytes"
	WireFixed32 = "fixed32"
	WireGroup   = "group"
)

// Decode decodes b, a protobuf message in the wire format, without its
// schema. ok is false when b is not a valid message: a tag that does not
// parse, a field number of 0 or above 2^29-1, a reserved wire type (6 or
// 7), a value cut short, a varint of more than 64 bits, an end-group tag
// without its start or with another field number, a group not ended, groups
// nested deeper than MaxDepth; and when b has more than MaxFields fields.
// The empty input is the empty message: no fields, ok true.
//
// The fields do not share memory with b. See the package comment for how a
// length-delimited field is read.
func Decode(b []byte) (fields []capture.ProtoField, ok bool) {
	n, count := scan(b, 0, 0)
	if n != len(b) || count > MaxFields {
		return nil, false
	}
	var d decoder
	fields, n = d.fields(b, 0, 0, count)
	if n != len(b) {
		return nil, false
	}
	return fields, true
}

// Count returns the number of fields in fs, nested ones included, as
// MaxFields counts them: a caller that decodes many messages can bound
// their sum with it.
func Count(fs []capture.ProtoField) int {
	n := len(fs)
	for i := range fs {
		n += Count(fs[i].Message)
	}
	return n
}

// consumeTag parses a tag and checks its field number.
func consumeTag(b []byte) (protowire.Number, protowire.Type, int) {
	num, typ, n := protowire.ConsumeTag(b)
	if n < 0 || num > protowire.MaxValidNumber {
		return 0, 0, -1
	}
	return num, typ, n
}

// scan checks that b holds a message whose fields are at depth, or, when
// group is not 0, the rest of that group up to and including its end tag.
// It returns the bytes consumed (-1 when invalid) and the number of fields
// at depth (at most MaxFields+1: beyond, it stops counting). It does not
// look into length-delimited values.
func scan(b []byte, depth int, group protowire.Number) (n, count int) {
	n0 := len(b)
	for len(b) > 0 {
		num, typ, k := consumeTag(b)
		if k < 0 {
			return -1, 0
		}
		b = b[k:]
		switch typ {
		case protowire.EndGroupType:
			if num != group {
				return -1, 0
			}
			return n0 - len(b), count
		case protowire.StartGroupType:
			if depth >= MaxDepth {
				return -1, 0
			}
			k, _ = scan(b, depth+1, num)
		case protowire.VarintType, protowire.Fixed32Type, protowire.Fixed64Type, protowire.BytesType:
			k = protowire.ConsumeFieldValue(num, typ, b)
		default:
			return -1, 0
		}
		if k < 0 {
			return -1, 0
		}
		b = b[k:]
		if count <= MaxFields {
			count++
		}
	}
	if group != 0 {
		return -1, 0 // the group is not ended
	}
	return n0, count
}

// decoder builds the fields of input that scan accepted.
type decoder struct {
	n     int      // fields built so far
	uints []uint64 // a slab for the Uint values
}

func (d *decoder) uint(v uint64) *uint64 {
	if len(d.uints) == cap(d.uints) {
		d.uints = make([]uint64, 0, min(max(2*cap(d.uints), 16), 1024))
	}
	d.uints = append(d.uints, v)
	return &d.uints[len(d.uints)-1]
}

// fields builds the fields of b at depth (or of the rest of group, as
// scan), given their number from scan when it is known (0 when not). It
// returns the bytes consumed, -1 when the input turns out invalid or the
// fields too many.
func (d *decoder) fields(b []byte, depth int, group protowire.Number, count int) ([]capture.ProtoField, int) {
	if d.n+count > MaxFields {
		return nil, -1
	}
	var fs []capture.ProtoField
	if count > 0 {
		fs = make([]capture.ProtoField, 0, count)
	}
	n0 := len(b)
	for len(b) > 0 {
		num, typ, k := consumeTag(b)
		if k < 0 {
			return nil, -1
		}
		b = b[k:]
		if typ == protowire.EndGroupType {
			if num != group {
				return nil, -1
			}
			return fs, n0 - len(b)
		}
		if d.n++; d.n > MaxFields {
			return nil, -1
		}
		f := capture.ProtoField{Num: int32(num)}
		switch typ {
		case protowire.VarintType:
			var v uint64
			v, k = protowire.ConsumeVarint(b)
			f.Wire, f.Uint = WireVarint, d.uint(v)
		case protowire.Fixed32Type:
			var v uint32
			v, k = protowire.ConsumeFixed32(b)
			f.Wire, f.Uint = WireFixed32, d.uint(uint64(v))
		case protowire.Fixed64Type:
			var v uint64
			v, k = protowire.ConsumeFixed64(b)
			f.Wire, f.Uint = WireFixed64, d.uint(v)
		case protowire.BytesType:
			var v []byte
			v, k = protowire.ConsumeBytes(b)
			f.Wire = WireBytes
			if k < 0 {
				return nil, -1
			}
			if !d.bytes(&f, v, depth) {
				return nil, -1
			}
		case protowire.StartGroupType:
			if depth >= MaxDepth {
				return nil, -1
			}
			// Not scanned again: the scan of the enclosing message
			// checked the group.
			f.Wire = WireGroup
			f.Message, k = d.fields(b, depth+1, num, 0)
		default:
			return nil, -1
		}
		if k < 0 {
			return nil, -1
		}
		b = b[k:]
		fs = append(fs, f)
	}
	if group != 0 {
		return nil, -1
	}
	return fs, n0
}

// bytes sets the value of a length-delimited field f at depth: a message,
// a string or bytes. It reports false when there are too many fields.
func (d *decoder) bytes(f *capture.ProtoField, v []byte, depth int) bool {
	if len(v) > 0 && depth < MaxDepth {
		if n, c := scan(v, depth+1, 0); n == len(v) {
			m, k := d.fields(v, depth+1, 0, c)
			f.Message = m
			return k == len(v)
		}
	}
	if printable(v) {
		s := string(v)
		f.String = &s
		return true
	}
	f.Bytes = append([]byte(nil), v...)
	return true
}

// printable reports whether b is valid UTF-8 of graphic characters, tabs,
// and line ends.
func printable(b []byte) bool {
	for i := 0; i < len(b); {
		c := b[i]
		if c < utf8.RuneSelf {
			if (c < 0x20 || c == 0x7f) && c != '\t' && c != '\n' && c != '\r' {
				return false
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size == 1 || !unicode.IsGraphic(r) {
			return false
		}
		i += size
	}
	return true
}

// Encode writes fields in the protobuf wire format, with every varint
// (tags, values, lengths) in its shortest form. For fields that Decode
// returned it gives the input back, unless that input had longer varints
// than needed: then Decode of the result gives the same fields again.
//
// A field is written from the value its Wire calls for: Uint for varint,
// fixed32 (its low 32 bits) and fixed64 (zero when nil); for bytes,
// Message when it is not nil, else String when it is not nil, else Bytes;
// Message for group. A field with another Wire is left out.
func Encode(fields []capture.ProtoField) []byte {
	return appendFields(nil, fields)
}

func appendFields(b []byte, fields []capture.ProtoField) []byte {
	for i := range fields {
		f := &fields[i]
		num := protowire.Number(f.Num)
		var u uint64
		if f.Uint != nil {
			u = *f.Uint
		}
		switch f.Wire {
		case WireVarint:
			b = protowire.AppendTag(b, num, protowire.VarintType)
			b = protowire.AppendVarint(b, u)
		case WireFixed32:
			b = protowire.AppendTag(b, num, protowire.Fixed32Type)
			b = protowire.AppendFixed32(b, uint32(u))
		case WireFixed64:
			b = protowire.AppendTag(b, num, protowire.Fixed64Type)
			b = protowire.AppendFixed64(b, u)
		case WireBytes:
			b = protowire.AppendTag(b, num, protowire.BytesType)
			switch {
			case f.Message != nil:
				b = protowire.AppendBytes(b, appendFields(nil, f.Message))
			case f.String != nil:
				b = protowire.AppendString(b, *f.String)
			default:
				b = protowire.AppendBytes(b, f.Bytes)
			}
		case WireGroup:
			b = protowire.AppendTag(b, num, protowire.StartGroupType)
			b = appendFields(b, f.Message)
			b = protowire.AppendTag(b, num, protowire.EndGroupType)
		}
	}
	return b
}
