package volatile

import (
	"bytes"
	"encoding/json"
	"hash/maphash"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"unicode/utf8"

	"github.com/valyala/fastjson"
)

// Field is one named value of a request: a query parameter (query.NAME), a leaf of a JSON body
// (body.a.b.0.c), a form field (form.NAME), a header (header.name, lower case), a path segment (path.N),
// or the whole body when it is neither JSON nor a form (body).
type Field struct {
	Name  string
	Value string
}

// maxFields bounds how many fields Flatten returns for one request; the rest of a larger body is one field
// (body.rest) holding what was left unread, so that it still counts.
const maxFields = 512

// AddQuery appends the parameters of a raw query, each name once with its values joined by NUL.
func AddQuery(dst []Field, rawQuery string) []Field {
	if rawQuery == "" {
		return dst
	}
	q, err := url.ParseQuery(rawQuery)
	if err != nil && len(q) == 0 {
		return append(dst, Field{"query", rawQuery})
	}
	return addValues(dst, "query.", q)
}

// addValues appends each name of q once, in name order, with its values joined by NUL.
func addValues(dst []Field, prefix string, q url.Values) []Field {
	names := make([]string, 0, len(q))
	for k := range q {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		dst = append(dst, Field{prefix + k, strings.Join(q[k], "\x00")})
	}
	return dst
}

// AddBody appends the fields of a body: the leaves of a JSON document, the fields of a form, or else the
// whole body as one field named "body" (nothing for an empty body).
func AddBody(dst []Field, contentType string, body []byte) []Field {
	if len(body) == 0 {
		return dst
	}
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) > 0 && (trimmed[0] == '{' || trimmed[0] == '[') && json.Valid(trimmed) {
		n := len(dst)
		dst = addJSON(dst, trimmed, "body")
		if len(dst) > n {
			return dst
		}
	}
	if strings.HasPrefix(contentType, "application/x-www-form-urlencoded") {
		if q, err := url.ParseQuery(string(body)); err == nil && len(q) > 0 { // "&" parses to nothing: then the body counts whole
			return addValues(dst, "form.", q)
		}
	}
	return append(dst, Field{"body", string(body)})
}

// parsers are fastjson's parsers, reused: a live request's body is parsed into a tree without the
// allocations of encoding/json's tokens (the flattening was most of a mock's match).
var parsers fastjson.ParserPool

// addJSON appends the leaves of a valid JSON document under prefix, in document order: strings by their
// text, other scalars as written, empty objects and arrays as {} and []. A document of more than
// maxFields leaves is flattened by addJSONTokens, which keeps what is past the bound as one field.
func addJSON(dst []Field, doc []byte, prefix string) []Field {
	p := parsers.Get()
	defer parsers.Put(p)
	v, err := p.ParseBytes(doc)
	if err != nil {
		return addJSONTokens(dst, doc, prefix)
	}
	n := leaves(v, maxFields-len(dst)+1)
	if n > maxFields-len(dst) {
		return addJSONTokens(dst, doc, prefix)
	}
	var name [128]byte
	return appendLeaves(slices.Grow(dst, n), v, append(name[:0], prefix...))
}

// leaves counts the leaves of v, stopping past limit.
func leaves(v *fastjson.Value, limit int) int {
	switch v.Type() {
	case fastjson.TypeObject:
		o, _ := v.Object()
		n := 0
		o.Visit(func(_ []byte, c *fastjson.Value) {
			if n <= limit {
				n += leaves(c, limit-n)
			}
		})
		return max(n, 1)
	case fastjson.TypeArray:
		a, _ := v.Array()
		n := 0
		for _, c := range a {
			if n > limit {
				break
			}
			n += leaves(c, limit-n)
		}
		return max(n, 1)
	}
	return 1
}

// appendLeaves appends the leaves of v under the name in name, as addJSON describes.
func appendLeaves(dst []Field, v *fastjson.Value, name []byte) []Field {
	switch v.Type() {
	case fastjson.TypeObject:
		o, _ := v.Object()
		if o.Len() == 0 {
			return append(dst, Field{intern(name), "{}"})
		}
		o.Visit(func(k []byte, c *fastjson.Value) {
			dst = appendLeaves(dst, c, appendText(append(name, '.'), k))
		})
		return dst
	case fastjson.TypeArray:
		a, _ := v.Array()
		if len(a) == 0 {
			return append(dst, Field{intern(name), "[]"})
		}
		for i, c := range a {
			dst = appendLeaves(dst, c, strconv.AppendInt(append(name, '.'), int64(i), 10))
		}
		return dst
	case fastjson.TypeString:
		return append(dst, Field{intern(name), text(v.GetStringBytes())})
	}
	var num [32]byte
	return append(dst, Field{intern(name), string(v.MarshalTo(num[:0]))}) // numbers as written, true, false, null
}

// fieldNames interns field names: the leaf names of an endpoint's bodies recur in every request, so a name is
// made once and found again by its bytes (a slot per hash; a collision only costs a new string).
var fieldNames [4096]atomic.Pointer[string]

var nameSeed = maphash.MakeSeed()

func intern(b []byte) string {
	slot := &fieldNames[maphash.Bytes(nameSeed, b)%uint64(len(fieldNames))]
	if p := slot.Load(); p != nil && *p == string(b) {
		return *p
	}
	s := string(b)
	slot.Store(&s)
	return s
}

// text is a JSON string's text as encoding/json gives it: each byte that is
// not valid UTF-8 replaced by U+FFFD.
func text(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	return string(appendText(nil, b))
}

// appendText appends text(b) to dst.
func appendText(dst, b []byte) []byte {
	if utf8.Valid(b) {
		return append(dst, b...)
	}
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		if r == utf8.RuneError && n == 1 {
			dst = utf8.AppendRune(dst, utf8.RuneError)
		} else {
			dst = append(dst, b[:n]...)
		}
		b = b[n:]
	}
	return dst
}

// addJSONTokens is addJSON by encoding/json's tokens, for documents past maxFields leaves.
func addJSONTokens(dst []Field, doc []byte, prefix string) []Field {
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var walk func(prefix string) bool
	walk = func(prefix string) bool {
		if len(dst) >= maxFields {
			return false
		}
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{':
				empty := true
				for dec.More() {
					k, err := dec.Token()
					if err != nil {
						return false
					}
					key, _ := k.(string)
					empty = false
					if !walk(prefix + "." + key) {
						return false
					}
				}
				if empty {
					dst = append(dst, Field{prefix, "{}"})
				}
			case '[':
				i := 0
				for dec.More() {
					if !walk(prefix + "." + strconv.Itoa(i)) {
						return false
					}
					i++
				}
				if i == 0 {
					dst = append(dst, Field{prefix, "[]"})
				}
			}
			_, err := dec.Token() // the closing delimiter
			return err == nil
		case string:
			dst = append(dst, Field{prefix, t})
		case json.Number:
			dst = append(dst, Field{prefix, t.String()})
		case bool:
			dst = append(dst, Field{prefix, strconv.FormatBool(t)})
		case nil:
			dst = append(dst, Field{prefix, "null"})
		}
		return true
	}
	if !walk(prefix) && len(dst) >= maxFields {
		dst = append(dst, Field{prefix + ".rest", string(doc[dec.InputOffset():])})
	}
	return dst
}
