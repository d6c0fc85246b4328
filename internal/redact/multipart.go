package redact

import (
	"bytes"
	"mime"
	"strings"
)

var crlf = []byte("\r\n")

// redactMultipart redacts a multipart body (RFC 2046, multipart/form-data
// among them) part by part, keeping every delimiter and part header byte
// for byte: the content of a part whose name (Content-Disposition's name
// parameter) a rule names becomes the token; any other part is redacted as
// content of its own Content-Type (text/plain if it has none), patterns
// included. A body cut short at the capture cap is followed as far as it
// goes, and what cannot be read as parts is searched for patterns as text.
// ok is false when contentType has no boundary or data holds no delimiter:
// the caller then treats data as text. out is nil when nothing changed.
func (r *Redactor) redactMultipart(data []byte, contentType string, h *hits) (out []byte, ok bool) {
	_, params, err := mime.ParseMediaType(contentType)
	if err != nil || params["boundary"] == "" {
		return nil, false
	}
	delim := []byte("--" + params["boundary"])
	next := append(append([]byte(nil), crlf...), delim...) // a delimiter after the first
	pos := -1
	if bytes.HasPrefix(data, delim) {
		pos = len(delim)
	} else if i := bytes.Index(data, next); i >= 0 {
		pos = i + len(next)
	}
	if pos < 0 {
		return nil, false
	}
	e := editor{data: data}
	text := func(start, end int) { // patterns over data[start:end], read as text
		if start < end && r.anyPattern() {
			if red := r.patterns(data[start:end], h); red != nil {
				e.replace(start, end, red)
			}
		}
	}
	text(0, pos-len(delim)) // the preamble
	for pos < len(data) && !bytes.HasPrefix(data[pos:], []byte("--")) {
		// The rest of the delimiter line (transport padding), then the part.
		nl := bytes.Index(data[pos:], crlf)
		if nl < 0 {
			break
		}
		start := pos + nl + len(crlf)
		end, after := len(data), len(data)
		if i := bytes.Index(data[start:], next); i >= 0 {
			end, after = start+i, start+i+len(next)
		}
		var header []byte
		body := start
		if bytes.HasPrefix(data[start:end], crlf) {
			body += len(crlf) // no part headers
		} else if i := bytes.Index(data[start:end], []byte("\r\n\r\n")); i >= 0 {
			header, body = data[start:start+i], start+i+4
		} else {
			break // cut short inside the part's headers
		}
		name, ct := partHeader(header)
		if rule, named := r.ruleFor(kindField, name); name != "" && named {
			if !bytes.Equal(data[body:end], r.tokens[rule]) {
				e.replace(body, end, r.tokens[rule])
				h.add(rule)
			}
		} else if red := r.redactContent(data[body:end], ct, 1, h); !sameBytes(red, data[body:end]) {
			e.replace(body, end, red)
		}
		pos = after
	}
	if pos < len(data) && !bytes.HasPrefix(data[pos:], []byte("--")) {
		text(pos, len(data)) // what could not be read as parts
	}
	return e.result(), true
}

// partHeader returns the name parameter of a part's Content-Disposition
// and its Content-Type (text/plain if none).
func partHeader(header []byte) (name, contentType string) {
	contentType = "text/plain"
	for _, line := range bytes.Split(header, crlf) {
		k, v, found := bytes.Cut(line, []byte(":"))
		if !found {
			continue
		}
		switch strings.ToLower(strings.TrimSpace(string(k))) {
		case "content-disposition":
			if _, p, err := mime.ParseMediaType(string(v)); err == nil {
				name = p["name"]
			}
		case "content-type":
			contentType = strings.TrimSpace(string(v))
		}
	}
	return name, contentType
}
