package ecs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
)

// A JSON value as this package holds it: *Object, []any, string,
// json.Number, bool or nil. Objects keep their keys in order, so that a
// task definition comes out in the order it went in and uninject gives
// back the same text, not only the same data.

// Object is a JSON object that keeps its keys in order.
type Object struct {
	keys []string
	vals map[string]any
}

// NewObject returns an object with the given key, value pairs.
func NewObject(kv ...any) *Object {
	o := &Object{vals: map[string]any{}}
	for i := 0; i+1 < len(kv); i += 2 {
		o.Set(kv[i].(string), kv[i+1])
	}
	return o
}

// Keys returns the keys in order.
func (o *Object) Keys() []string { return slices.Clone(o.keys) }

// Get returns the value of key.
func (o *Object) Get(key string) (any, bool) {
	v, ok := o.vals[key]
	return v, ok
}

// Has says whether key is present.
func (o *Object) Has(key string) bool { _, ok := o.vals[key]; return ok }

// Set sets key to v, in place if present, else at the end.
func (o *Object) Set(key string, v any) {
	if _, ok := o.vals[key]; !ok {
		o.keys = append(o.keys, key)
	}
	o.vals[key] = v
}

// Delete removes key.
func (o *Object) Delete(key string) {
	if _, ok := o.vals[key]; !ok {
		return
	}
	delete(o.vals, key)
	o.keys = slices.DeleteFunc(o.keys, func(k string) bool { return k == key })
}

// String returns the value of key if it is a string.
func (o *Object) String(key string) string {
	s, _ := o.vals[key].(string)
	return s
}

// Array returns the value of key if it is an array.
func (o *Object) Array(key string) []any {
	a, _ := o.vals[key].([]any)
	return a
}

// Clone returns a deep copy.
func (o *Object) Clone() *Object { return clone(o).(*Object) }

func clone(v any) any {
	switch v := v.(type) {
	case *Object:
		c := &Object{keys: slices.Clone(v.keys), vals: make(map[string]any, len(v.vals))}
		for k, x := range v.vals {
			c.vals[k] = clone(x)
		}
		return c
	case []any:
		c := make([]any, len(v))
		for i, x := range v {
			c[i] = clone(x)
		}
		return c
	default:
		return v
	}
}

// Decode parses one JSON value, keeping object keys in order. A
// duplicated key is an error (encoding/json would keep the last silently).
func Decode(data []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	v, err := decodeValue(d)
	if err != nil {
		return nil, err
	}
	if _, err := d.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("data after the JSON value at offset %d", d.InputOffset())
	}
	return v, nil
}

func decodeValue(d *json.Decoder) (any, error) {
	tok, err := d.Token()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, io.ErrUnexpectedEOF
		}
		return nil, err
	}
	switch tok := tok.(type) {
	case json.Delim:
		switch tok {
		case '{':
			o := NewObject()
			for d.More() {
				kt, err := d.Token()
				if err != nil {
					return nil, err
				}
				k := kt.(string) // the decoder allows only strings here
				if o.Has(k) {
					return nil, fmt.Errorf("duplicate key %q at offset %d", k, d.InputOffset())
				}
				v, err := decodeValue(d)
				if err != nil {
					return nil, err
				}
				o.Set(k, v)
			}
			_, err := d.Token() // '}'
			return o, err
		case '[':
			a := []any{}
			for d.More() {
				v, err := decodeValue(d)
				if err != nil {
					return nil, err
				}
				a = append(a, v)
			}
			_, err := d.Token() // ']'
			return a, err
		}
		return nil, fmt.Errorf("unexpected %v", tok)
	default:
		return tok, nil // string, json.Number, bool, nil
	}
}

// Encode writes v as JSON indented by two spaces, with a final newline.
// Unlike encoding/json it does not escape <, > and & (shell commands in
// a task definition are full of &&).
func Encode(v any) []byte {
	var b bytes.Buffer
	encode(&b, v, "")
	b.WriteByte('\n')
	return b.Bytes()
}

func encode(b *bytes.Buffer, v any, indent string) {
	switch v := v.(type) {
	case *Object:
		if len(v.keys) == 0 {
			b.WriteString("{}")
			return
		}
		b.WriteString("{\n")
		for i, k := range v.keys {
			b.WriteString(indent + "  ")
			encodeString(b, k)
			b.WriteString(": ")
			encode(b, v.vals[k], indent+"  ")
			if i < len(v.keys)-1 {
				b.WriteByte(',')
			}
			b.WriteByte('\n')
		}
		b.WriteString(indent + "}")
	case []any:
		if len(v) == 0 {
			b.WriteString("[]")
			return
		}
		b.WriteString("[\n")
		for i, x := range v {
			b.WriteString(indent + "  ")
			encode(b, x, indent+"  ")
			if i < len(v)-1 {
				b.WriteByte(',')
			}
			b.WriteByte('\n')
		}
		b.WriteString(indent + "]")
	case string:
		encodeString(b, v)
	case json.Number:
		b.WriteString(v.String())
	case int:
		fmt.Fprint(b, v)
	case bool:
		fmt.Fprint(b, v)
	case nil:
		b.WriteString("null")
	default:
		panic(fmt.Sprintf("ecs: cannot encode %T", v))
	}
}

// Compact returns v as JSON on one line, without escaping <, > and &.
func Compact(v any) []byte {
	var b bytes.Buffer
	compact(&b, v)
	return b.Bytes()
}

func compact(b *bytes.Buffer, v any) {
	switch v := v.(type) {
	case *Object:
		b.WriteByte('{')
		for i, k := range v.keys {
			if i > 0 {
				b.WriteByte(',')
			}
			encodeString(b, k)
			b.WriteByte(':')
			compact(b, v.vals[k])
		}
		b.WriteByte('}')
	case []any:
		b.WriteByte('[')
		for i, x := range v {
			if i > 0 {
				b.WriteByte(',')
			}
			compact(b, x)
		}
		b.WriteByte(']')
	default:
		encode(b, v, "")
	}
}

func encodeString(b *bytes.Buffer, s string) {
	var sb strings.Builder
	e := json.NewEncoder(&sb)
	e.SetEscapeHTML(false)
	_ = e.Encode(s) // a string always encodes
	b.WriteString(strings.TrimSuffix(sb.String(), "\n"))
}
