package volatile

import (
	"bytes"
	"encoding/json"
	"net/url"
	"sort"
	"strconv"
	"strings"
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
		if q, err := url.ParseQuery(string(body)); err == nil {
			return addValues(dst, "form.", q)
		}
	}
	return append(dst, Field{"body", string(body)})
}

// addJSON appends the leaves of a valid JSON document under prefix, in document order: strings by their
// text, other scalars as written, empty objects and arrays as {} and [].
func addJSON(dst []Field, doc []byte, prefix string) []Field {
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
