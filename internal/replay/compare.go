package replay

import (
	"bytes"
	"encoding/json"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/content"
)

// Fields of a response are named as internal/volatile names a request's: "status", "header.NAME" (lower
// case), "body" for a whole body that is not JSON, and "body.a.b.0.c" for the leaves of a JSON body (array
// elements by index).

// Noise says which fields of an endpoint's responses are not compared: values that vary between recordings of
// the endpoint (ids, timestamps, tokens) are noise, not a difference. Learner is the implementation here; a
// better learner (internal/volatile's profiles) can take its place without touching the comparison.
type Noise interface {
	// Noisy reports whether field (or a field it is part of) of endpoint's responses is noise. endpoint is
	// the endpoint's name and the recorded status ("GET /orders/{} 200"): answers of one status are alike.
	Noisy(endpoint, field string) bool
}

// Learner learns noise from the recordings: a response field whose value differs between two recordings of
// one endpoint, or that some of its recordings lack, is noise; so is every field an Ignore pattern names.
type Learner struct {
	eps    map[string]*fieldSet
	ignore []pattern
}

var _ Noise = (*Learner)(nil)

type fieldSet struct {
	n      int // recordings observed
	fields map[string]*fieldStat
}

type fieldStat struct {
	first  string
	seen   int
	varies bool
}

// maxLearnBody bounds the response bodies Learner decodes; larger ones are learned as one field.
const maxLearnBody = 4 << 20

// NewLearner returns a Learner that ignores the fields matched by ignore patterns (see ParseIgnore).
func NewLearner(ignore []string) (*Learner, error) {
	l := &Learner{eps: map[string]*fieldSet{}}
	for _, s := range ignore {
		p, err := parsePattern(s)
		if err != nil {
			return nil, err
		}
		l.ignore = append(l.ignore, p)
	}
	return l, nil
}

// Observe adds the recorded response of rec, a recording of endpoint.
func (l *Learner) Observe(endpoint string, rec *capture.Record) {
	if rec.HTTP == nil || rec.HTTP.Res == nil {
		return
	}
	res := rec.HTTP.Res
	fs := l.eps[endpoint]
	if fs == nil {
		fs = &fieldSet{fields: map[string]*fieldStat{}}
		l.eps[endpoint] = fs
	}
	fs.n++
	seen := map[string]bool{}
	add := func(name, v string) {
		if seen[name] {
			return
		}
		seen[name] = true
		st := fs.fields[name]
		if st == nil {
			fs.fields[name] = &fieldStat{first: v, seen: 1}
			return
		}
		st.seen++
		if st.first != v {
			st.varies = true
		}
	}
	add("status", strconv.Itoa(res.Status))
	for _, h := range res.Headers {
		add("header."+strings.ToLower(h.Name), h.Value)
	}
	if isGRPC(rec.HTTP.Req.Headers) {
		if doc, ok := recordedGRPCDoc(rec.HTTP.Messages); ok {
			leaves(doc, "body", add)
		}
		return
	}
	if res.Body.Truncated {
		return
	}
	body, _ := content.Decode(res.Headers.Get("Content-Encoding"), res.Body.Data, maxLearnBody)
	if v, ok := parseJSON(body); ok {
		leaves(v, "body", add)
	} else {
		add("body", string(body))
	}
}

// Noisy implements Noise.
func (l *Learner) Noisy(endpoint, field string) bool {
	for _, p := range l.ignore {
		if p.match(field) {
			return true
		}
	}
	fs := l.eps[endpoint]
	if fs == nil || fs.n < 2 {
		return false
	}
	// The field, or an ancestor (an array whose length varies, an object some recordings lack).
	for name := field; ; {
		if st := fs.fields[name]; st != nil && (st.varies || st.seen < fs.n) {
			return true
		}
		i := strings.LastIndexByte(name, '.')
		if i < 0 {
			return false
		}
		name = name[:i]
	}
}

// Volatile lists the noisy fields learned, as "request status field", sorted; for the report.
func (l *Learner) Volatile() []string {
	var out []string
	for ep, fs := range l.eps {
		if fs.n < 2 {
			continue
		}
		for name, st := range fs.fields {
			if st.varies || st.seen < fs.n {
				out = append(out, ep+" "+name)
			}
		}
	}
	sort.Strings(out)
	return out
}

// pattern is an --ignore path: fields separated by dots, * standing for any one field. It matches the field
// it names and everything below it.
type pattern []string

// parsePattern reads an ignore path: body.a.b, header.date, status, a JSONPath-like $.a.b or $.items[*].id
// (a body path), or a bare a.b (a body path too).
func parsePattern(s string) (pattern, error) {
	p := strings.TrimSpace(s)
	if p == "" {
		return nil, errBadPath(s, "empty")
	}
	if rest, ok := strings.CutPrefix(p, "$"); ok {
		p = "body" + rest
	} else if !strings.HasPrefix(p, "body") && !strings.HasPrefix(p, "header.") && p != "status" {
		p = "body." + p
	}
	p = strings.NewReplacer("[", ".", "]", "").Replace(p)
	segs := strings.Split(p, ".")
	for i, s := range segs {
		if s == "" {
			return nil, errBadPath(s, "an empty field name")
		}
		if i == 1 && segs[0] == "header" {
			segs[i] = strings.ToLower(s)
		}
	}
	return pattern(segs), nil
}

func (p pattern) match(field string) bool {
	segs := strings.Split(field, ".")
	if len(segs) < len(p) {
		return false
	}
	for i, s := range p {
		if s != "*" && s != segs[i] {
			return false
		}
	}
	return true
}

// FieldDiff is one difference between the recorded and the live response.
type FieldDiff struct {
	Field    string `json:"field"`
	Recorded string `json:"recorded"`
	Live     string `json:"live"`
}

// maxDiffs bounds the differences kept for one request.
const maxDiffs = 20

// maxDiffValue bounds the length of a value in a FieldDiff.
const maxDiffValue = 256

// compareBody compares a recorded body with a live one: bytes, then after undoing their content codings, then,
// when both are JSON, structurally, field by field. Differences that noisy calls noise are dropped. It returns
// the differences left (nil: the bodies match). skip says which differences do not count.
func compareBody(rec []byte, recEnc string, live []byte, liveEnc string, skip func(FieldDiff) bool) []FieldDiff {
	if recEnc == liveEnc && bytes.Equal(rec, live) {
		return nil
	}
	rb, _ := content.Decode(recEnc, rec, maxLearnBody)
	lb, _ := content.Decode(liveEnc, live, maxLearnBody)
	if bytes.Equal(rb, lb) {
		return nil
	}
	rv, rok := parseJSON(rb)
	lv, lok := parseJSON(lb)
	if rok && lok {
		var diffs []FieldDiff
		diffJSON(rv, lv, "body", func(d FieldDiff) {
			if len(diffs) < maxDiffs && !skip(d) {
				diffs = append(diffs, d)
			}
		})
		return diffs
	}
	d := FieldDiff{Field: "body", Recorded: short(string(rb)), Live: short(string(lb))}
	if skip(d) {
		return nil
	}
	return []FieldDiff{d}
}

// sameShape reports whether two different values are both UUIDs or both RFC 3339 timestamps: values a
// server makes afresh, noise even when the recordings show them once.
func sameShape(a, b string) bool {
	uuid := func(s string) bool {
		if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
			return false
		}
		for i := 0; i < len(s); i++ {
			if c := s[i]; c != '-' && !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
		return true
	}
	stamp := func(s string) bool {
		if len(s) < 20 || s[4] != '-' || s[10] != 'T' {
			return false
		}
		_, err := time.Parse(time.RFC3339Nano, s)
		return err == nil
	}
	return uuid(a) && uuid(b) || stamp(a) && stamp(b)
}

// parseJSON decodes b when it is a JSON object or array.
func parseJSON(b []byte) (any, bool) {
	t := bytes.TrimSpace(b)
	if len(t) == 0 || (t[0] != '{' && t[0] != '[') {
		return nil, false
	}
	dec := json.NewDecoder(bytes.NewReader(t))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil || dec.More() {
		return nil, false
	}
	return v, true
}

// leaves calls fn with each leaf of a decoded JSON value under prefix: scalars as text, empty objects and
// arrays as {} and [].
func leaves(v any, prefix string, fn func(name, value string)) {
	switch t := v.(type) {
	case map[string]any:
		if len(t) == 0 {
			fn(prefix, "{}")
		}
		for k, e := range t {
			leaves(e, prefix+"."+k, fn)
		}
	case []any:
		if len(t) == 0 {
			fn(prefix, "[]")
		}
		for i, e := range t {
			leaves(e, prefix+"."+strconv.Itoa(i), fn)
		}
	default:
		fn(prefix, scalar(v))
	}
}

// scalar writes a JSON scalar as its text: strings unquoted, numbers as written, true, false, null.
func scalar(v any) string {
	switch t := v.(type) {
	case string:
		return t
	case json.Number:
		return t.String()
	case bool:
		return strconv.FormatBool(t)
	case nil:
		return "null"
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// compact writes any decoded JSON value shortly, for a diff.
func compact(v any) string {
	switch v.(type) {
	case map[string]any, []any:
		b, _ := json.Marshal(v)
		return short(string(b))
	case absent:
		return "(absent)"
	}
	return short(scalar(v))
}

// absent stands for a field one side lacks.
type absent struct{}

// diffJSON calls fn with each difference between two decoded JSON values, in a stable order: object keys
// sorted, array elements by index. Numbers are equal when their values are (1 and 1.0).
func diffJSON(rec, live any, path string, fn func(FieldDiff)) {
	switch r := rec.(type) {
	case map[string]any:
		l, ok := live.(map[string]any)
		if !ok {
			break
		}
		keys := make([]string, 0, len(r)+len(l))
		for k := range r {
			keys = append(keys, k)
		}
		for k := range l {
			if _, ok := r[k]; !ok {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		for _, k := range keys {
			rv, rok := r[k]
			lv, lok := l[k]
			switch {
			case !rok:
				fn(FieldDiff{path + "." + k, compact(absent{}), compact(lv)})
			case !lok:
				fn(FieldDiff{path + "." + k, compact(rv), compact(absent{})})
			default:
				diffJSON(rv, lv, path+"."+k, fn)
			}
		}
		return
	case []any:
		l, ok := live.([]any)
		if !ok {
			break
		}
		for i := 0; i < max(len(r), len(l)); i++ {
			p := path + "." + strconv.Itoa(i)
			switch {
			case i >= len(r):
				fn(FieldDiff{p, compact(absent{}), compact(l[i])})
			case i >= len(l):
				fn(FieldDiff{p, compact(r[i]), compact(absent{})})
			default:
				diffJSON(r[i], l[i], p, fn)
			}
		}
		return
	case json.Number:
		if l, ok := live.(json.Number); ok {
			if r == l {
				return
			}
			rf, err1 := r.Float64()
			lf, err2 := l.Float64()
			if err1 == nil && err2 == nil && rf == lf {
				return
			}
		}
	default:
		if rec == live {
			return
		}
	}
	fn(FieldDiff{path, compact(rec), compact(live)})
}

// short cuts a value to maxDiffValue bytes, on a rune boundary, marking the cut.
func short(s string) string {
	if len(s) <= maxDiffValue {
		return s
	}
	i := maxDiffValue
	for i > 0 && s[i]&0xC0 == 0x80 {
		i--
	}
	return s[:i] + "…"
}
