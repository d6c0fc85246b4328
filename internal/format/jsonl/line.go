package jsonl

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math/bits"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	gojson "github.com/goccy/go-json"
	b64 "github.com/segmentio/asm/base64"

	"github.com/tapwire/tapwire/internal/capture"
)

// Field is a member of a record's line that a server may change before it
// stores the line (see Line).
type Field uint16

// The members a Line can replace.
const (
	FieldLabels     Field = 1 << iota // labels
	FieldTags                         // tags
	FieldRedactions                   // redactions
	FieldURL                          // http.req.url
	FieldReqHeaders                   // http.req.headers
	FieldReqBody                      // http.req.body.data
	FieldResHeaders                   // http.res.headers
	FieldTrailers                     // http.res.trailers
	FieldResBody                      // http.res.body.data
	FieldChunks                       // tcp.chunks
	numFields       = iota
)

// fieldPaths are the members' places, by Field bit.
var fieldPaths = [numFields][]string{
	{"labels"}, {"tags"}, {"redactions"},
	{"http", "req", "url"}, {"http", "req", "headers"}, {"http", "req", "body", "data"},
	{"http", "res", "headers"}, {"http", "res", "trailers"}, {"http", "res", "body", "data"},
	{"tcp", "chunks"},
}

// Line is one record's JSON line as it was received, and where in it the
// members a server may change are. A server that changed some of those
// members of the decoded record (stamped labels, redacted a header) stores
// the line with only those members written again (AppendTo), instead of
// encoding the whole record: the bodies, most of a line, are copied, not
// encoded to base64 again.
//
// Only a line that holds exactly what the decoded record holds is used
// (ParseLine): members the decoder ignores (unknown, duplicated, or matched
// only without regard to case) could carry data that a server's redaction
// never saw, and re-encoding the record drops them.
type Line struct {
	b     []byte
	end   int               // index of the record's closing brace
	spans [numFields][2]int // [start, end) of each member's value; end 0 when absent
	order [numFields]int    // scratch: indexes of the changed members, in the order of the line
	vals  [numFields][]byte // scratch: the new values
	lazy  Field             // body data members left out of the decoded record (see Decode)
	blank []byte            // scratch: the line with those members null
	// the typed check (see Typed): untyped is set by the first value that
	// fails it; root holds the spans of the record's members, by position
	untyped bool
	root    [maxRootMembers][2]int
	facts   [numFacts][2]int // the spans of the members of factPaths
	partial bool             // Decode passed a partial record for this line (Want.Partial)
	hdrs    capture.Headers  // scratch: a partial record's request headers (plainHeaders)
	last    [numFacts]string // decodeFacts: the facts' strings of the line before
	lastURL string           // and its URL
	labels  []byte           // decodeMembers: the labels member of the line before, as written,
	lastLab capture.Labels   // and as it decoded
	http    capture.HTTP     // decodeFacts: a partial record's HTTP block
	res     capture.Response // and response
	enc     *bytes.Buffer    // scratch: encoder output
	b64     []byte           // scratch: validBase64's output
	minute  string           // parseTime: the last time parsed in full, up to its seconds, with its quote
	minuteT time.Time        // and that minute
	je      *gojson.Encoder  // encodes into enc
	_       [0]func()        // not comparable
}

// ParseLine finds the members of b, one record's JSON line (without its
// newline). It reports false unless b is valid UTF-8 and one JSON object in
// which every member, at any depth, is a member of the record's form
// (docs/record.md) spelt exactly, present at most once, and the record has
// no vendor block. It does not check values: AppendTo is for a line that
// also decoded to its record. l keeps b: b must not change while l is used.
func (l *Line) ParseLine(b []byte) bool {
	l.b = b
	l.spans = [numFields][2]int{}
	l.lazy = 0
	l.untyped, l.partial = false, false
	l.root = [maxRootMembers][2]int{}
	l.facts = [numFacts][2]int{}
	if !utf8.Valid(b) {
		return false
	}
	i := skipWS(b, 0)
	if skipWS(b, i+1) < len(b) && b[skipWS(b, i+1)] == '}' {
		return false // no member: nothing to add one after
	}
	end, ok := l.scan(recordNode, b, i, 0)
	if !ok || skipWS(b, end) != len(b) {
		return false
	}
	l.end = end - 1 // the closing brace
	return true
}

// AppendTo appends the record's line to dst, followed by a newline: the
// line as received, with the members in changed replaced by their values
// in rec, the record the line decoded to. A top-level member the line does
// not have is added at its end. It reports false, having appended nothing,
// when a changed member the line does not have is not top-level; the
// caller then encodes rec in full.
func (l *Line) AppendTo(dst *bytes.Buffer, rec *capture.Record, changed Field) (bool, error) {
	n := 0
	for f := range numFields {
		bit := Field(1) << f
		if changed&bit == 0 {
			continue
		}
		if l.spans[f][1] == 0 && bit > FieldRedactions || l.lazy&bit != 0 {
			return false, nil
		}
		v, err := l.value(bit, rec)
		if err != nil {
			return false, err
		}
		l.vals[f] = v
		l.order[n] = f
		n++
	}
	// Replace in the order of the line; insertions go last, at the end.
	ord := l.order[:n]
	pos := func(f int) int {
		if l.spans[f][1] == 0 {
			return len(l.b)
		}
		return l.spans[f][0]
	}
	for i := 1; i < len(ord); i++ {
		for j := i; j > 0 && pos(ord[j]) < pos(ord[j-1]); j-- {
			ord[j], ord[j-1] = ord[j-1], ord[j]
		}
	}
	last := 0
	for _, f := range ord {
		if sp := l.spans[f]; sp[1] != 0 {
			dst.Write(l.b[last:sp[0]])
			dst.Write(l.vals[f])
			last = sp[1]
			continue
		}
		dst.Write(l.b[last:l.end])
		dst.WriteByte(',')
		dst.WriteByte('"')
		dst.WriteString(fieldPaths[f][0])
		dst.WriteString(`":`)
		dst.Write(l.vals[f])
		last = l.end
	}
	dst.Write(l.b[last:])
	dst.WriteByte('\n')
	return true, nil
}

// Raw returns the line as received.
func (l *Line) Raw() []byte { return l.b }

// Lazy reports whether body data was left out of the decoded record
// (Decode with lazyBodies): FillBodies puts it in.
func (l *Line) Lazy() bool { return l.lazy != 0 }

// blankBodies returns the line with each body's data member that is plain,
// valid base64 (nearly all) replaced by null, and notes them in l.lazy; or
// the line itself when there is none. A data member that is not plain
// base64 is left for the decoder, which decodes it or refuses it as it
// always does.
func (l *Line) blankBodies() []byte {
	l.lazy = 0
	req, res := l.spans[bitIndex(FieldReqBody)], l.spans[bitIndex(FieldResBody)]
	first, second := FieldReqBody, FieldResBody
	if res[0] < req[0] {
		first, second = second, first
	}
	out := l.blank[:0]
	last := 0
	for _, f := range [2]Field{first, second} {
		sp := l.spans[bitIndex(f)]
		if sp[1] == 0 || sp[1]-sp[0] < 3 || l.b[sp[0]] != '"' || !l.validBase64(l.b[sp[0]+1:sp[1]-1]) {
			continue
		}
		out = append(out, l.b[last:sp[0]]...)
		out = append(out, "null"...)
		last = sp[1]
		l.lazy |= f
	}
	if l.lazy == 0 {
		return l.b
	}
	out = append(out, l.b[last:]...)
	l.blank = out
	return out
}

// FillBodies puts the body data that Decode left out into rec,
// the record decoded from the line, exactly as the decoder would have.
func (l *Line) FillBodies(rec *capture.Record) {
	for _, f := range [2]Field{FieldReqBody, FieldResBody} {
		if l.lazy&f == 0 || rec.HTTP == nil {
			continue
		}
		sp := l.spans[bitIndex(f)]
		text := l.b[sp[0]+1 : sp[1]-1]
		data := make([]byte, base64.StdEncoding.DecodedLen(len(text)))
		n, _ := b64.StdEncoding.Decode(data, text) // checked by validBase64
		if f == FieldReqBody {
			rec.HTTP.Req.Body.Data = data[:n]
		} else if rec.HTTP.Res != nil {
			rec.HTTP.Res.Body.Data = data[:n]
		}
	}
	l.lazy = 0
}

func bitIndex(f Field) int { return bits.TrailingZeros16(uint16(f)) }

// validBase64 reports whether s is standard base64 with padding that
// base64.StdEncoding decodes: whole quads of the alphabet, the last ending
// in at most two '='. It is false for anything else the decoder would
// take too (line breaks), which is then left to it. scratch, of at least
// base64Step*3/4 bytes, receives the decoded bytes, which are not kept.
//
// The decoder of github.com/segmentio/asm checks it, 32 bytes a step with
// AVX2 (a table lookup a byte was most of a forwarder's line check),
// base64Step bytes at a time. Padding, which the decoder takes at the end
// of any input, and line breaks, which it skips, are told by the decoded
// length: a step other than the last that ends in padding decodes to fewer
// bytes than a step's, and a text with line breaks to at least three
// bytes fewer than its length says.
func validBase64(s, scratch []byte) bool {
	// The vector decoder writes whole blocks without looking at the
	// length of its output: a short scratch is a panic here, not memory
	// written over.
	_ = scratch[base64Step/4*3-1]
	if len(s) == 0 || len(s)%4 != 0 {
		return false
	}
	for len(s) > base64Step {
		if n, err := b64.StdEncoding.Decode(scratch, s[:base64Step]); err != nil || n != base64Step/4*3 {
			return false
		}
		s = s[base64Step:]
	}
	want := len(s) / 4 * 3
	if s[len(s)-1] == '=' {
		want--
		if s[len(s)-2] == '=' {
			want--
		}
	}
	n, err := b64.StdEncoding.Decode(scratch, s)
	return err == nil && n == want
}

// base64Step is how much of a text validBase64 decodes at a time, a
// multiple of 4.
const base64Step = 4 << 10

// validBase64 is validBase64 with l's scratch buffer.
func (l *Line) validBase64(s []byte) bool {
	if l.b64 == nil {
		l.b64 = make([]byte, base64Step/4*3)
	}
	return validBase64(s, l.b64)
}

// value encodes member f of rec as Append would.
func (l *Line) value(f Field, rec *capture.Record) ([]byte, error) {
	var v any
	switch f {
	case FieldLabels:
		v = &rec.Labels
	case FieldTags:
		v = rec.Tags
	case FieldRedactions:
		v = rec.Redactions
	case FieldURL, FieldReqHeaders, FieldReqBody, FieldResHeaders, FieldTrailers, FieldResBody:
		h := rec.HTTP
		if h == nil || (f >= FieldResHeaders && h.Res == nil) {
			return nil, fmt.Errorf("encode record %s: no %s to write", rec.ID, fieldName(f))
		}
		switch f {
		case FieldURL:
			v = h.Req.URL
		case FieldReqHeaders:
			v = h.Req.Headers
		case FieldReqBody:
			return appendBase64(nil, h.Req.Body.Data), nil
		case FieldResHeaders:
			v = h.Res.Headers
		case FieldTrailers:
			v = h.Res.Trailers
		case FieldResBody:
			return appendBase64(nil, h.Res.Body.Data), nil
		}
	case FieldChunks:
		if rec.TCP == nil {
			return nil, fmt.Errorf("encode record %s: no tcp block to write", rec.ID)
		}
		v = rec.TCP.Chunks
	}
	if out, ok := appendPlain(nil, v); ok {
		return out, nil
	}
	if l.je == nil {
		l.enc = new(bytes.Buffer)
		l.je = gojsonEncoder(l.enc)
	}
	l.enc.Reset()
	if err := l.je.Encode(v); err != nil {
		return nil, fmt.Errorf("encode record %s: %s: %w", rec.ID, fieldName(f), err)
	}
	return bytes.TrimSuffix(bytes.Clone(l.enc.Bytes()), []byte{'\n'}), nil
}

// appendPlain appends the JSON of v, a string, a list of strings or
// headers, without the encoder when every string in it is printable ASCII
// without a quote or backslash, which any encoder writes as it is. It
// reports false, appending nothing, otherwise.
func appendPlain(dst []byte, v any) ([]byte, bool) {
	switch v := v.(type) {
	case string:
		if !plain(v) {
			return dst, false
		}
		return append(append(append(dst, '"'), v...), '"'), true
	case []string:
		if v == nil {
			return append(dst, "null"...), true
		}
		n := len(dst)
		dst = append(dst, '[')
		for i, s := range v {
			if !plain(s) {
				return dst[:n], false
			}
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(append(append(dst, '"'), s...), '"')
		}
		return append(dst, ']'), true
	case capture.Headers:
		if v == nil {
			return append(dst, "null"...), true
		}
		n := len(dst)
		dst = append(dst, '[')
		for i, h := range v {
			if !plainHeader(h.Name) || !plainHeader(h.Value) {
				return dst[:n], false
			}
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(append(append(dst, `["`...), h.Name...), `","`...)
			dst = append(append(dst, h.Value...), `"]`...)
		}
		return append(dst, ']'), true
	}
	return dst, false
}

// plain reports whether s is printable ASCII without a quote or backslash.
func plain(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// plainHeader is plain without <, > and &, which Header.MarshalJSON
// escapes as encoding/json does.
func plainHeader(s string) bool {
	return plain(s) && strings.IndexAny(s, "<>&") < 0
}

func fieldName(f Field) string {
	for i := range numFields {
		if f == Field(1)<<i {
			return fmt.Sprint(fieldPaths[i])
		}
	}
	return "?"
}

// appendBase64 writes data as a JSON string of standard base64, or null
// when data is nil, as the encoder writes a []byte.
func appendBase64(dst, data []byte) []byte {
	if data == nil {
		return append(dst, "null"...)
	}
	n := b64.StdEncoding.EncodedLen(len(data))
	dst = slices.Grow(append(dst, '"'), n+1)
	b64.StdEncoding.Encode(dst[len(dst):len(dst)+n], data)
	return append(dst[:len(dst)+n], '"')
}

// A node is the shape of a JSON value of the record's form.
type node struct {
	kind   nodeKind
	fields map[string]*member // object: the struct's members by JSON name
	order  []*member          // object: the members in the order the encoder writes them
	elem   *node              // array and map: the elements
	typ    scalarType         // scalar: its type, for the typed check
	max    [2]string          // tInt, tUint: the largest magnitude that fits, in decimal: positive, negative
	pair   bool               // array: a header, exactly two strings
}

// scalarType is the JSON type of a scalar member of the record's form, as
// the typed check (Line.Typed) takes it: only the forms that the decoder
// certainly decodes into the member's Go type.
type scalarType uint8

const (
	tOther  scalarType = iota // not checked: a line holding one is not typed (floats: none in the record)
	tString                   // a string whose escapes are all valid
	tBool                     // true or false
	tInt                      // -?(0|[1-9][0-9]*) that fits (max)
	tUint                     // 0|[1-9][0-9]* that fits (max)
	tTime                     // a string time.Time.UnmarshalJSON takes
	tBytes                    // "" or plain padded base64 (validBase64), or null
)

type member struct {
	name string
	pos  int    // index in order
	bit  uint64 // this member's bit among its object's members
	node *node
	span int // Field index whose value this is, or -1
	fact int // factPaths index whose value this is, or -1
	// For a name of at most 7 bytes: the name and its closing quote as a
	// little-endian word (key) and the mask of their bytes, which a key
	// is compared to without a call (most of a record's names are short).
	key, keyMask uint64
}

type nodeKind uint8

const (
	kindScalar nodeKind = iota // a string, number, true, false or null
	kindObject
	kindArray
	kindMap    // an object of any string keys
	kindRefuse // a value a Line does not take (the vendor block)
)

// maxLineDepth bounds the nesting ParseLine follows (decoded protobuf
// fields nest); a deeper line is encoded in full.
const maxLineDepth = 64

// maxRootMembers bounds the record's top-level members (buildNodes checks).
const maxRootMembers = 32

var recordNode = buildNodes()

// The positions of the record's members that Record.Validate reads.
var rootID, rootSchema, rootKind, rootDirection, rootHTTP, rootTCP, rootStart = func() (int, int, int, int, int, int, int) {
	pos := func(name string) int { return recordNode.fields[name].pos }
	return pos("id"), pos("schema"), pos("kind"), pos("direction"), pos("http"), pos("tcp"), pos("start")
}()

// intMax is the largest magnitudes, positive and negative, of an integer
// of bits bits, in decimal (an unsigned one has no negative: "").
func intMax(signed bool, bits int) [2]string {
	if !signed {
		return [2]string{strconv.FormatUint(1<<bits-1, 10), ""}
	}
	return [2]string{strconv.FormatInt(1<<(bits-1)-1, 10), strconv.FormatUint(1<<(bits-1), 10)}
}

// buildNodes derives the record's shape from the capture types' JSON tags
// and marks the members of fieldPaths.
func buildNodes() *node {
	building := map[reflect.Type]*node{}
	var build func(t reflect.Type) *node
	timeType := reflect.TypeFor[time.Time]()
	headerType := reflect.TypeFor[capture.Header]()
	unmarshaler := reflect.TypeFor[json.Unmarshaler]()
	build = func(t reflect.Type) *node {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		switch {
		case t == timeType:
			return &node{kind: kindScalar, typ: tTime}
		case t == headerType: // ["name", "value"]: both strings are the header
			return &node{kind: kindArray, elem: &node{kind: kindScalar, typ: tString}, pair: true}
		case reflect.PointerTo(t).Implements(unmarshaler) || t.Kind() == reflect.Interface:
			return &node{kind: kindRefuse} // reads the JSON its own way
		}
		switch t.Kind() {
		case reflect.Struct:
			if n := building[t]; n != nil {
				return n // a recursive type (ProtoField)
			}
			n := &node{kind: kindObject, fields: map[string]*member{}}
			building[t] = n
			for i := range t.NumField() {
				sf := t.Field(i)
				name, _, _ := bytes.Cut([]byte(sf.Tag.Get("json")), []byte(","))
				if !sf.IsExported() || string(name) == "-" {
					continue
				}
				if len(name) == 0 || sf.Anonymous {
					delete(building, t)
					return &node{kind: kindRefuse} // names this scan does not model
				}
				m := &member{name: string(name), pos: len(n.order), bit: 1 << len(n.fields), node: build(sf.Type), span: -1, fact: -1}
				if len(name) < 8 {
					var w [8]byte
					copy(w[:], string(name)+`"`)
					m.key, m.keyMask = binary.LittleEndian.Uint64(w[:]), 1<<(8*(len(name)+1))-1
				}
				n.fields[m.name] = m
				n.order = append(n.order, m)
			}
			if len(n.fields) > 64 {
				panic("jsonl: too many fields in " + t.Name())
			}
			delete(building, t)
			return n
		case reflect.Slice:
			if t.Elem().Kind() == reflect.Uint8 {
				return &node{kind: kindScalar, typ: tBytes} // base64
			}
			return &node{kind: kindArray, elem: build(t.Elem())}
		case reflect.Map:
			if t.Key().Kind() != reflect.String {
				return &node{kind: kindRefuse}
			}
			return &node{kind: kindMap, elem: build(t.Elem())}
		case reflect.String:
			return &node{kind: kindScalar, typ: tString}
		case reflect.Bool:
			return &node{kind: kindScalar, typ: tBool}
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			return &node{kind: kindScalar, typ: tInt, max: intMax(true, t.Bits())}
		case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			return &node{kind: kindScalar, typ: tUint, max: intMax(false, t.Bits())}
		}
		return &node{kind: kindScalar}
	}
	root := build(reflect.TypeFor[capture.Record]())
	if len(root.order) > maxRootMembers {
		panic("jsonl: too many members in capture.Record")
	}
	root.fields["vendor"].node = &node{kind: kindRefuse}
	find := func(path []string) *member {
		n := root
		var m *member
		for _, name := range path {
			m = n.fields[name]
			if m == nil {
				panic(fmt.Sprintf("jsonl: no record member %v", path))
			}
			n = m.node
		}
		return m
	}
	for f, path := range fieldPaths {
		find(path).span = f
	}
	for f, path := range factPaths {
		find(path).fact = f
	}
	return root
}

// factPaths are the places of the members a filter reads (besides the
// record's start, kind, direction and labels, and the request's URL and
// headers, which Line finds anyway): see Want.Facts.
var factPaths = [numFacts][]string{{"http", "req", "method"}, {"http", "req", "host"}, {"http", "res"}, {"http", "res", "status"},
	{"net", "serverHost"}}

const (
	factMethod = iota
	factHost
	factRes
	factStatus
	factServerHost
	numFacts
)

// scan reads the value of shape n at b[i] and returns the index after it.
func (l *Line) scan(n *node, b []byte, i, depth int) (int, bool) {
	if i >= len(b) || depth > maxLineDepth {
		return 0, false
	}
	if c := b[i]; c == 'n' && n.kind != kindRefuse {
		if n.typ != tBytes {
			l.untyped = true // null leaves a member as it was, or fails (a header): not checked
		}
		return literal(b, i, "null")
	}
	switch n.kind {
	case kindScalar:
		// (A plain string member or element was read by its object's or
		// array's loop: what comes here is not one.)
		j, ok := scalar(b, i)
		if ok && !l.untyped && !l.typed(n, b[i:j]) {
			l.untyped = true
		}
		return j, ok
	case kindArray:
		if b[i] != '[' {
			return 0, false
		}
		i = skipWS(b, i+1)
		if i < len(b) && b[i] == ']' {
			if n.pair {
				l.untyped = true
			}
			return i + 1, true
		}
		plain := n.elem.typ == tString && n.elem.kind == kindScalar && depth < maxLineDepth // as for an object's members
		for elems := 1; ; elems++ {
			j := 0
			if plain && i < len(b) && b[i] == '"' {
				j = plainString(b, i+1) + 1 // 0: not plain
			}
			if j > 0 {
				i = j
			} else {
				var ok bool
				if i, ok = l.scan(n.elem, b, i, depth+1); !ok {
					return 0, false
				}
			}
			// (Lines seldom have whitespace: the byte expected is tested
			// before skipWS, here and in the object's loop.)
			if i >= len(b) || b[i] != ',' && b[i] != ']' {
				if i = skipWS(b, i); i >= len(b) {
					return 0, false
				}
			}
			switch b[i] {
			case ',':
				if i++; i >= len(b) || b[i] <= ' ' {
					i = skipWS(b, i)
				}
			case ']':
				if n.pair && elems != 2 {
					l.untyped = true
				}
				return i + 1, true
			default:
				return 0, false
			}
		}
	case kindObject, kindMap:
		if b[i] != '{' {
			return 0, false
		}
		var seen uint64
		next := 0 // the member expected next: lines usually hold them in order
		var keyBuf [16]int
		keys := keyBuf[:0]
		i = skipWS(b, i+1)
		if i < len(b) && b[i] == '}' {
			return i + 1, true
		}
		for {
			// The member expected next, spelt out and closed by a quote, is
			// the key (no quote search; a name has no escape).
			var ks, ke int
			var m *member
			if n.kind == kindObject && next < len(n.order) && i < len(b) && b[i] == '"' {
				want := n.order[next]
				if want.keyMask != 0 && i+9 <= len(b) {
					if binary.LittleEndian.Uint64(b[i+1:])&want.keyMask == want.key {
						ks, ke, m = i+1, i+1+len(want.name), want
					}
				} else if e := i + 1 + len(want.name); e < len(b) && b[e] == '"' && string(b[i+1:e]) == want.name {
					ks, ke, m = i+1, e, want
				}
			}
			if m == nil {
				var ok bool
				if ks, ke, ok = plainKey(b, i); !ok {
					return 0, false
				}
			}
			child := n.elem
			if n.kind == kindObject {
				if m == nil {
					m = n.fields[string(b[ks:ke])]
				}
				if m == nil || seen&m.bit != 0 {
					return 0, false // unknown (or not spelt exactly), or twice
				}
				seen |= m.bit
				next = m.pos + 1
				child = m.node
			} else {
				key := b[ks:ke]
				for k := 0; k < len(keys); k += 2 {
					if bytes.Equal(b[keys[k]:keys[k+1]], key) {
						return 0, false // a key twice
					}
				}
				keys = append(keys, ks, ke)
				for _, c := range key {
					if c < 0x20 {
						l.untyped = true // a raw control character: the decoders refuse it (plainKey does not look)
						break
					}
				}
			}
			if i = ke + 1; i >= len(b) || b[i] != ':' {
				if i = skipWS(b, i); i >= len(b) || b[i] != ':' {
					return 0, false
				}
			}
			vs := skipWS(b, i+1)
			ve := -1
			// A string without escapes or control characters (most
			// members' values) is read here, as scan would read it,
			// without the call.
			if child.typ == tString && child.kind == kindScalar && depth < maxLineDepth && vs < len(b) && b[vs] == '"' {
				ve = plainString(b, vs+1) + 1 // 0: not plain
			}
			if ve <= 0 {
				var ok bool
				if ve, ok = l.scan(child, b, vs, depth+1); !ok {
					return 0, false
				}
			}
			if m != nil && m.span >= 0 {
				l.spans[m.span] = [2]int{vs, ve}
			}
			if n == recordNode {
				l.root[m.pos] = [2]int{vs, ve}
			}
			if m != nil && m.fact >= 0 {
				l.facts[m.fact] = [2]int{vs, ve}
			}
			if i = ve; i >= len(b) || b[i] != ',' && b[i] != '}' {
				if i = skipWS(b, i); i >= len(b) {
					return 0, false
				}
			}
			switch b[i] {
			case ',':
				if i++; i >= len(b) || b[i] <= ' ' {
					i = skipWS(b, i)
				}
			case '}':
				return i + 1, true
			default:
				return 0, false
			}
		}
	}
	return 0, false // kindRefuse
}

// typed reports whether v, a scalar of the line, has the type of n in a
// form the decoder certainly takes (see scalarType).
func (l *Line) typed(n *node, v []byte) bool {
	switch n.typ {
	case tString:
		return validString(v)
	case tBool:
		return v[0] != '"' && (string(v) == "true" || string(v) == "false")
	case tInt, tUint:
		d, max := v, n.max[0]
		if d[0] == '-' {
			d, max = d[1:], n.max[1]
			if len(d) == 1 && d[0] == '0' {
				return false // -0
			}
		}
		if len(d) == 0 || len(d) > len(max) || len(d) > 1 && d[0] == '0' {
			return false // max is "" for a negative unsigned
		}
		for _, c := range d {
			if c < '0' || c > '9' {
				return false
			}
		}
		return len(d) < len(max) || string(d) <= max
	case tTime:
		if v[0] != '"' {
			return false // UnmarshalJSON takes null as no change
		}
		_, err := l.parseTime(v)
		return err == nil
	case tBytes:
		return len(v) >= 2 && v[0] == '"' && (len(v) == 2 || l.validBase64(v[1:len(v)-1]))
	}
	return false
}

// validString reports whether v, a quoted string as scalar reads it, has
// no control character and only valid escapes (the line is valid UTF-8:
// ParseLine checks it).
func validString(v []byte) bool {
	if len(v) < 2 || v[0] != '"' {
		return false
	}
	v = v[1 : len(v)-1]
	// Eight bytes a step while none is a control character or a
	// backslash (most strings have neither): a byte below 0x20 or equal to
	// 0x5C, tested on its low seven bits (exact for each byte: no carry
	// or borrow crosses a byte), bytes of 0x80 and above passing.
	const low7, high, ones = 0x7f7f7f7f7f7f7f7f, 0x8080808080808080, 0x0101010101010101
	i := 0
	for ; i+8 <= len(v); i += 8 {
		w := binary.LittleEndian.Uint64(v[i:])
		t := w & low7
		ctl := (ones*0x9f - t)          // high bit set where t <= 0x1F
		bs := ^((t ^ ones*'\\') + low7) // high bit set where t == 0x5C
		if (ctl|bs)&^w&high != 0 {
			break
		}
	}
	for ; i < len(v); i++ {
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

// parseTime is time.Time's UnmarshalJSON of v, a time with its quotes.
// A time in the same minute as the last one it parsed in full, written as
// this package's encoder writes times (UTC, Z, a fraction of 1 to 9
// digits, or none), is that minute and its seconds: a line's start is
// checked (Typed) and read (decodeFacts), and a sender's records start in
// the same minute, while a full parse was over a thousand instructions.
func (l *Line) parseTime(v []byte) (time.Time, error) {
	const prefix = len(`"2006-01-02T15:04:`)
	if len(v) > prefix && l.minute != "" && string(v[:prefix]) == l.minute {
		if ns, ok := secondsZ(v[prefix:]); ok {
			return l.minuteT.Add(time.Duration(ns)), nil
		}
	}
	var t time.Time
	if err := t.UnmarshalJSON(v); err != nil {
		return time.Time{}, err
	}
	if len(v) > prefix && v[0] == '"' {
		if ns, ok := secondsZ(v[prefix:]); ok {
			l.minute, l.minuteT = string(v[:prefix]), t.Add(-time.Duration(ns))
		}
	}
	return t, nil
}

// secondsZ reads r, the end of a time after its minute, when it is two
// digits of seconds (00 to 59), maybe a fraction of 1 to 9 digits, and
// `Z"`; it returns the nanoseconds r says.
func secondsZ(r []byte) (int64, bool) {
	if len(r) < 4 || r[len(r)-1] != '"' || r[len(r)-2] != 'Z' {
		return 0, false
	}
	r = r[:len(r)-2]
	if r[0] < '0' || r[0] > '5' || r[1] < '0' || r[1] > '9' {
		return 0, false
	}
	ns := int64(r[0]-'0')*10 + int64(r[1]-'0')
	ns *= 1e9
	if len(r) == 2 {
		return ns, true
	}
	frac := r[2:]
	if frac[0] != '.' || len(frac) < 2 || len(frac) > 10 {
		return 0, false
	}
	var f int64
	for _, c := range frac[1:] {
		if c < '0' || c > '9' {
			return 0, false
		}
		f = f*10 + int64(c-'0')
	}
	for range 10 - len(frac) {
		f *= 10
	}
	return ns + f, true
}

// Typed reports whether the line ParseLine took also has every value of
// the type its member has in the record's form, in a form the decoder
// certainly takes (no null but for body data, integers that fit, valid
// string escapes, times time.Time takes, plain base64, headers of two
// strings), and passes Record.Validate: decoding it in full would succeed
// (FuzzTyped checks that against the decoder). Lines this package's
// encoder writes are typed. ParseLine must have reported true.
func (l *Line) Typed() bool {
	if l.untyped {
		return false
	}
	b, r := l.b, &l.root
	if sp := r[rootID]; sp[1]-sp[0] <= 2 { // absent or ""
		return false
	}
	if sp := r[rootSchema]; sp[1] != 0 {
		n, err := strconv.Atoi(string(b[sp[0]:sp[1]]))
		if err != nil || n > capture.SchemaVersion {
			return false
		}
	}
	if d := b[r[rootDirection][0]:r[rootDirection][1]]; string(d) != `"`+string(capture.DirIn)+`"` &&
		string(d) != `"`+string(capture.DirOut)+`"` {
		return false
	}
	switch k := b[r[rootKind][0]:r[rootKind][1]]; {
	case string(k) == `"`+string(capture.KindHTTP)+`"`:
		return r[rootHTTP][1] != 0 // not null: that is not typed
	case string(k) == `"`+string(capture.KindTCP)+`"`:
		return r[rootTCP][1] != 0
	}
	return false
}

// Partial reports whether Decode passed a partial record for this line
// (Want.Partial): one that holds only the members asked for, which must
// not be encoded in full.
func (l *Line) Partial() bool { return l.partial }

// decodeMembers decodes into rec, zero, the members of the typed line in
// members (FieldLabels, FieldTags; the others are not decoded), and with
// facts the members a filter reads: the record's start, kind, direction,
// labels and server host, and its request's method, URL, host and headers
// and its response's status (internal/filter).
func (l *Line) decodeMembers(rec *capture.Record, members Field, facts bool) error {
	if facts {
		if err := l.decodeFacts(rec); err != nil {
			return err
		}
		members |= FieldLabels | FieldReqHeaders
	}
	for _, m := range [...]Field{FieldLabels, FieldTags, FieldReqHeaders} {
		sp := l.spans[bitIndex(m)]
		if members&m == 0 || sp[1] == 0 {
			continue
		}
		var v any
		switch m {
		case FieldLabels:
			// One sender's records carry the same labels.
			raw := l.b[sp[0]:sp[1]]
			if l.labels != nil && bytes.Equal(raw, l.labels) {
				rec.Labels = l.lastLab
				continue
			}
			if err := gojson.Unmarshal(raw, &rec.Labels); err != nil {
				l.labels = nil
				return err
			}
			l.labels, l.lastLab = append(l.labels[:0], raw...), rec.Labels
			continue
		case FieldTags:
			v = &rec.Tags
		default:
			if rec.HTTP == nil {
				continue // a TCP record's, or no facts asked for
			}
			if hs, ok := plainHeaders(l.hdrs[:0], l.b[sp[0]:sp[1]]); ok {
				rec.HTTP.Req.Headers, l.hdrs = hs, hs
				continue
			}
			v = &rec.HTTP.Req.Headers
		}
		if err := gojson.Unmarshal(l.b[sp[0]:sp[1]], v); err != nil {
			return err
		}
	}
	return nil
}

// plainHeaders appends to dst the headers of b, a list of [name, value]
// pairs (white space allowed between tokens), when no string in it has an
// escape or a control byte: those decode to their bytes as they are (the
// line is valid UTF-8: ParseLine). The names and values share one string.
// It reports false for any other input, which the decoder then reads; the
// request's headers are what a filter reads most, and the decoder's
// per-element calls cost more than the rest of a partial record.
func plainHeaders(dst capture.Headers, b []byte) (capture.Headers, bool) {
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '[' {
		return nil, false
	}
	s := string(b) // wasted on the rare list that is not plain
	dst = dst[:0]
	if dst == nil {
		dst = capture.Headers{} // [] is empty, not absent, as decoded
	}
	if i = skipWS(b, i+1); i < len(b) && b[i] == ']' {
		return dst, skipWS(b, i+1) == len(b)
	}
	for {
		if i >= len(b) || b[i] != '[' {
			return nil, false
		}
		var pair [2]string
		for k := range pair {
			i = skipWS(b, i+1)
			if i >= len(b) || b[i] != '"' {
				return nil, false
			}
			j := plainString(b, i+1)
			if j < 0 {
				return nil, false
			}
			pair[k] = s[i+1 : j]
			if i = skipWS(b, j+1); i >= len(b) || b[i] != ",]"[k] {
				return nil, false
			}
		}
		dst = append(dst, capture.Header{Name: pair[0], Value: pair[1]})
		if i = skipWS(b, i+1); i < len(b) && b[i] == ',' {
			i = skipWS(b, i+1)
			continue
		}
		if i >= len(b) || b[i] != ']' || skipWS(b, i+1) != len(b) {
			return nil, false
		}
		return dst, true
	}
}

// decodeFacts sets the facts decodeMembers names but the labels and
// headers: from the typed line's canonical forms (Typed checked them).
func (l *Line) decodeFacts(rec *capture.Record) error {
	b := l.b
	// A string like the one of the same member in the line before (one
	// sender's records share their hosts, methods, often their URLs) is
	// that line's string, not a new one.
	str := func(sp [2]int, last *string) (string, error) {
		v := b[sp[0]:sp[1]]
		if sp[1] == 0 || len(v) < 2 {
			return "", nil
		}
		if bytes.IndexByte(v, '\\') < 0 {
			if v = v[1 : len(v)-1]; string(v) != *last {
				*last = string(v)
			}
			return *last, nil
		}
		var s string
		err := gojson.Unmarshal(v, &s)
		return s, err
	}
	rec.Kind = capture.KindTCP
	if string(b[l.root[rootKind][0]:l.root[rootKind][1]]) == `"`+string(capture.KindHTTP)+`"` {
		rec.Kind = capture.KindHTTP
	}
	if l.root[rootHTTP][1] != 0 { // whatever the kind, as the decoder does
		l.http = capture.HTTP{} // a partial record is valid until the next line's
		rec.HTTP = &l.http
	}
	rec.Direction = capture.DirOut
	if string(b[l.root[rootDirection][0]:l.root[rootDirection][1]]) == `"`+string(capture.DirIn)+`"` {
		rec.Direction = capture.DirIn
	}
	if sp := l.root[rootStart]; sp[1] != 0 {
		var err error
		if rec.Start, err = l.parseTime(b[sp[0]:sp[1]]); err != nil {
			return err
		}
	}
	var err error
	if rec.Net.ServerHost, err = str(l.facts[factServerHost], &l.last[factServerHost]); err != nil {
		return err
	}
	if rec.HTTP == nil {
		return nil
	}
	req := &rec.HTTP.Req
	if req.Method, err = str(l.facts[factMethod], &l.last[factMethod]); err != nil {
		return err
	}
	if req.Host, err = str(l.facts[factHost], &l.last[factHost]); err != nil {
		return err
	}
	if req.URL, err = str(l.spans[bitIndex(FieldURL)], &l.lastURL); err != nil {
		return err
	}
	if l.facts[factRes][1] == 0 {
		return nil
	}
	l.res = capture.Response{}
	rec.HTTP.Res = &l.res
	if sp := l.facts[factStatus]; sp[1] != 0 {
		if rec.HTTP.Res.Status, err = strconv.Atoi(string(b[sp[0]:sp[1]])); err != nil {
			return err
		}
	}
	return nil
}

// plainKey reads the key string at b[i] and returns the bounds of its
// text; it refuses a key with an escape, which could spell a member's name
// differently.
func plainKey(b []byte, i int) (int, int, bool) {
	if i >= len(b) || b[i] != '"' {
		return 0, 0, false
	}
	if q := quoteOrEscape(b, i+1); q >= 0 {
		return i + 1, q, b[q] == '"'
	}
	j := bytes.IndexByte(b[i+1:], '"')
	if j < 0 || bytes.IndexByte(b[i+1:i+1+j], '\\') >= 0 {
		return 0, 0, false
	}
	return i + 1, i + 1 + j, true
}

// quoteOrEscape returns the index of the first quote or backslash of b at
// or after j, when it is within shortString bytes of j; -1 when there is
// none that close (a longer string is left to bytes.IndexByte, which
// passes over long ones faster, but costs a call and a setup for each of
// the short strings that are most of a record's: keys, methods, times).
// A word at a time: the lowest byte a zero-byte test marks is the first
// match (a borrow only carries past a real zero byte, to higher ones).
func quoteOrEscape(b []byte, j int) int {
	const ones, high = 0x0101010101010101, 0x8080808080808080
	end := min(len(b), j+shortString)
	for ; j+8 <= end; j += 8 {
		w := binary.LittleEndian.Uint64(b[j:])
		q, e := w^(ones*'"'), w^(ones*'\\')
		if m := ((q-ones)&^q | (e-ones)&^e) & high; m != 0 {
			return j + bits.TrailingZeros64(m)>>3
		}
	}
	if end == len(b) {
		for ; j < end; j++ {
			if b[j] == '"' || b[j] == '\\' {
				return j
			}
		}
	}
	return -1
}

// plainString returns the index of the quote that ends the string whose
// text begins at b[j], when the text has neither an escape nor a control
// character (most strings of a record: they are then found and checked in
// one pass, as scalar and validString would find and check them); -1 when
// it has one, or no end. Eight bytes a step, each test exact for each byte
// (no carry or borrow crosses a byte: see validString), the lowest byte
// marked being the first of them.
func plainString(b []byte, j int) int {
	const low7, high, ones = 0x7f7f7f7f7f7f7f7f, 0x8080808080808080, 0x0101010101010101
	for ; j+8 <= len(b); j += 8 {
		w := binary.LittleEndian.Uint64(b[j:])
		t := w & low7
		ctl := ones*0x9f - t            // high bit set where t <= 0x1F
		bs := ^((t ^ ones*'\\') + low7) // where t == '\\'
		qt := ^((t ^ ones*'"') + low7)  // where t == '"'
		if m := (ctl | bs | qt) &^ w & high; m != 0 {
			if k := j + bits.TrailingZeros64(m)>>3; b[k] == '"' {
				return k
			}
			return -1
		}
	}
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

// shortString is how far quoteOrEscape looks.
const shortString = 32

// scalar reads a string, number or literal at b[i].
func scalar(b []byte, i int) (int, bool) {
	switch c := b[i]; {
	case c == '"':
		if q := quoteOrEscape(b, i+1); q >= 0 && b[q] == '"' {
			return q + 1, true // a short string without an escape
		}
		for j := i + 1; ; {
			q := bytes.IndexByte(b[j:], '"')
			if q < 0 {
				return 0, false
			}
			s := bytes.IndexByte(b[j:j+q], '\\')
			if s < 0 {
				return j + q + 1, true
			}
			j += s + 2 // skip the escape and the byte it escapes
			if j > len(b) {
				return 0, false
			}
		}
	case c == 't':
		return literal(b, i, "true")
	case c == 'f':
		return literal(b, i, "false")
	case c == '-' || '0' <= c && c <= '9':
		j := i + 1
		for j < len(b) && (b[j] >= '0' && b[j] <= '9' || b[j] == '.' || b[j] == 'e' || b[j] == 'E' || b[j] == '+' || b[j] == '-') {
			j++
		}
		return j, true
	}
	return 0, false
}

func literal(b []byte, i int, lit string) (int, bool) {
	if !bytes.HasPrefix(b[i:], []byte(lit)) {
		return 0, false
	}
	return i + len(lit), true
}

// skipWS returns the index of the first byte at or after i that is not
// JSON whitespace. Lines seldom have any: a byte above the space is the
// first test.
func skipWS(b []byte, i int) int {
	for i < len(b) && b[i] <= ' ' && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n') {
		i++
	}
	return i
}

// gojsonEncoder returns the encoder Append uses, writing to w.
func gojsonEncoder(w io.Writer) *gojson.Encoder {
	je := gojson.NewEncoder(w)
	je.SetEscapeHTML(false)
	return je
}
