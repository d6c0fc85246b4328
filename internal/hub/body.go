package hub

import (
	"bytes"
	"encoding/json"
	"errors"
	"mime"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/tapwire/tapwire/internal/apitype"
	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/content"
	"github.com/tapwire/tapwire/internal/store"
)

// Bounds of a decoded body: what decoding may produce, and how much of a
// binary body the answer carries.
const (
	maxDecodedBody = 8 << 20
	maxBinaryShown = 64 << 10
)

// viewBody decodes a body for display. A truncated compressed body
// decodes as far as its bytes go.
func viewBody(h capture.Headers, b capture.Body) apitype.BodyView {
	v := apitype.BodyView{ContentType: h.Get("Content-Type"), Size: b.Size, Captured: int64(len(b.Data)), Truncated: b.Truncated}
	data := b.Data
	if len(data) > 0 {
		ce := strings.Join(h.Values("Content-Encoding"), ", ")
		var err error
		data, err = content.Decode(ce, data, maxDecodedBody)
		var de *content.Error
		switch {
		case errors.As(err, &de):
			v.Encoding = strings.Join(de.Undone, ", ")
			v.Note = "not decoded: " + de.Error()
			if de.Partial {
				v.Note = "decoded in part: " + de.Error()
			}
		default:
			v.Encoding = strings.Join(content.Codings(ce), ", ")
		}
	}
	v.Bytes = int64(len(data))
	switch {
	case len(data) == 0:
		v.Kind = "empty"
	case isJSON(v.ContentType, data) && indentedSize(data) <= maxIndented:
		var buf bytes.Buffer
		if json.Indent(&buf, data, "", "  ") == nil {
			v.Kind, v.Text = "json", buf.String()
			break
		}
		fallthrough
	case utf8.Valid(data) && !bytes.ContainsAny(data, "\x00\x01\x02\x03\x04\x05\x06\x07\x08\x0e\x0f"):
		v.Kind, v.Text = "text", string(data)
	default:
		v.Kind = "binary"
		v.Data = data[:min(len(data), maxBinaryShown)]
	}
	return v
}

// maxIndented bounds the JSON the hub indents: indenting adds a newline
// and the depth's indentation to every element, so deep JSON of small
// elements grows many times over. Larger results are shown as they are.
const maxIndented = 16 << 20

// indentedSize returns at least the size json.Indent with two spaces
// would produce from data: each comma, colon-less bracket and element
// gets a newline and up to twice the deepest nesting in spaces.
func indentedSize(data []byte) int {
	depth, deepest, breaks, inString, escaped := 0, 0, 0, false, false
	for _, c := range data {
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			depth++
			deepest = max(deepest, depth)
			breaks++
		case c == '}' || c == ']':
			depth--
			breaks++
		case c == ',':
			breaks++
		}
	}
	return len(data) + breaks*(2*deepest+2)
}

func isJSON(contentType string, data []byte) bool {
	mt, _, _ := mime.ParseMediaType(contentType)
	if mt == "application/json" || strings.HasSuffix(mt, "+json") {
		return true
	}
	t := bytes.TrimSpace(data)
	return len(t) > 1 && (t[0] == '{' && t[len(t)-1] == '}' || t[0] == '[' && t[len(t)-1] == ']') && json.Valid(t)
}

// getBody answers GET /api/v1/records/{id}/body/{side}: the request's or
// the response's body, decoded for display.
func (s *Server) getBody(r *http.Request, key store.Key) (any, error) {
	id, side := r.PathValue("id"), r.PathValue("side")
	if side != "req" && side != "res" {
		return nil, errorf(http.StatusNotFound, "body side %q: want req or res", side)
	}
	rec, err := s.record(r, key)
	if err != nil {
		return nil, err
	}
	if rec.HTTP == nil {
		return nil, errorf(http.StatusNotFound, "record %s is not an HTTP exchange", id)
	}
	if side == "req" {
		return viewBody(rec.HTTP.Req.Headers, rec.HTTP.Req.Body), nil
	}
	if rec.HTTP.Res == nil {
		return apitype.BodyView{Kind: "empty", Note: "no response"}, nil
	}
	return viewBody(rec.HTTP.Res.Headers, rec.HTTP.Res.Body), nil
}
