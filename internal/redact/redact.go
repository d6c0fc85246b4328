// Package redact removes secrets from capture records before they leave the
// cluster: values of named headers, query parameters, and JSON, form or
// multipart fields at any depth, and values that look like card numbers
// (with a Luhn check), e-mail addresses or bearer tokens, anywhere in a
// header, a URL or a body. A redacted string becomes the token
// REDACTED-<rule id> (a JSON value keeps its type), and the record's
// Redactions list the ids of the rules that changed it. Rules come in the
// vendor's redactlist form; the default rules also know credentials by the
// shape of their names. docs/forwarder.md describes them.
package redact

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"unsafe"

	"github.com/tapwire/tapwire/internal/capture"
)

// DefaultRuleID is the id of the default rule for credentials: in headers,
// query parameters and (unless bodies are left out) body fields.
const DefaultRuleID = "std-auth"

// CardRuleID is the id of the default rule for card numbers (Luhn-valid)
// anywhere, bodies included.
const CardRuleID = "std-card"

// TokenPrefix starts every value a rule replaced.
const TokenPrefix = "REDACTED-"

// Pattern names a rule may list under entries.patterns.
const (
	PatternCard   = "card"   // 13 to 19 digits, spaces or dashes between groups allowed, passing the Luhn check
	PatternEmail  = "email"  // local@domain.tld
	PatternBearer = "bearer" // "Bearer <token>": the token is replaced
)

// Rule is one redaction rule in the vendor's form:
//
//	{"id": "pii", "redactlist": {"entries": {"http": ["x-session"], "all": ["password"]}}}
//
// Entries map a kind to names: "http" (also "headers") header names;
// "query" query parameter names; "json" (also "body", "form") field names
// in JSON and form bodies, at any depth; "all" names of every kind above;
// "patterns" pattern names (card, email, bearer). Names are matched
// without regard to case.
type Rule struct {
	ID         string `json:"id"`
	RedactList struct {
		Entries map[string][]string `json:"entries"`
	} `json:"redactlist"`

	// credentials also matches names by their shape (names.go): headers
	// and query parameters with credHeaders, body fields with credFields.
	// Only the default rules set it.
	credentials credKinds
}

type credKinds uint8

const (
	credHeaders credKinds = 1 << iota // header names and query parameters
	credFields                        // JSON, form and multipart field names
)

// DefaultRules returns the rules that are on unless switched off
// (SPEEDSCALE_REDACT=false): std-auth, credentials in headers and query
// parameters found by their names, and with bodies, std-auth's credential
// fields in JSON, form and multipart bodies and std-card, card numbers
// anywhere. Without bodies (SPEEDSCALE_REDACT_BODIES=false) no default
// rule reads a body or a TCP chunk. docs/forwarder.md lists the names.
func DefaultRules(bodies bool) []Rule {
	var auth Rule
	auth.ID = DefaultRuleID
	auth.credentials = credHeaders
	if !bodies {
		return []Rule{auth}
	}
	auth.credentials |= credFields
	var card Rule
	card.ID = CardRuleID
	card.RedactList.Entries = map[string][]string{"patterns": {PatternCard}}
	return []Rule{auth, card}
}

// ParseRules reads rules from SPEEDSCALE_DLP_CONFIG's value: one rule
// object or an array of them as JSON, or the path of a file that holds
// that JSON. "" and "standard" mean no rules beyond the default.
func ParseRules(v string) ([]Rule, error) {
	v = strings.TrimSpace(v)
	if v == "" || v == "standard" {
		return nil, nil
	}
	data := []byte(v)
	if v[0] != '{' && v[0] != '[' {
		b, err := os.ReadFile(v)
		if err != nil {
			return nil, fmt.Errorf("read redaction rules: %w", err)
		}
		data = bytes.TrimSpace(b)
	}
	var rules []Rule
	if len(data) > 0 && data[0] == '{' {
		var r Rule
		if err := strictJSON(data, &r); err != nil {
			return nil, fmt.Errorf("parse redaction rule: %w", err)
		}
		rules = []Rule{r}
	} else if err := strictJSON(data, &rules); err != nil {
		return nil, fmt.Errorf("parse redaction rules: %w", err)
	}
	return rules, nil
}

func strictJSON(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	return d.Decode(v)
}

// Redactor applies a set of rules. It is safe for concurrent use.
type Redactor struct {
	ids     []string       // rule ids by index
	tokens  [][]byte       // REDACTED-<id> by rule index
	strs    []string       // the same tokens as strings
	quoted  [][]byte       // "REDACTED-<id>" (JSON strings) by rule index
	headers map[string]int // lower-case name -> first rule
	query   map[string]int
	fields  map[string]int
	// rules whose credentials match headers and query parameters, and
	// body fields, by the shape of their names; -1 if none
	credHeader, credField int
	card                  int // rule of the card pattern, or -1
	email                 int
	bearer                int
	// starts marks the bytes a pattern can begin at (digits, '@', 'B' and
	// 'b'): the scan skips every other byte in a tight loop.
	starts [256]uint8
	// strClass classifies a JSON string's bytes for scanStr: its quote,
	// its backslash and the bytes of starts.
	strClass [256]uint8
	fp       string    // Fingerprint
	keys     *keyCache // the verdicts on body field names (JSON keys, form fields)
	hkeys    *keyCache // on header names
	qkeys    *keyCache // on query parameter names
}

// New compiles rules; an earlier rule wins where two name the same thing.
func New(rules []Rule) (*Redactor, error) {
	r := &Redactor{headers: map[string]int{}, query: map[string]int{}, fields: map[string]int{},
		credHeader: -1, credField: -1, card: -1, email: -1, bearer: -1,
		keys: new(keyCache), hkeys: new(keyCache), qkeys: new(keyCache)}
	seen := map[string]bool{}
	for i, rule := range rules {
		if rule.ID == "" || strings.ContainsAny(rule.ID, " \t\r\n\"\\") {
			return nil, fmt.Errorf("redaction rule %d: id %q: want a non-empty id without spaces or quotes", i+1, rule.ID)
		}
		if seen[rule.ID] {
			return nil, fmt.Errorf("redaction rule %q given twice", rule.ID)
		}
		seen[rule.ID] = true
		r.ids = append(r.ids, rule.ID)
		r.tokens = append(r.tokens, []byte(TokenPrefix+rule.ID))
		r.strs = append(r.strs, TokenPrefix+rule.ID)
		r.quoted = append(r.quoted, []byte(`"`+TokenPrefix+rule.ID+`"`))
		if rule.credentials&credHeaders != 0 && r.credHeader < 0 {
			r.credHeader = i
		}
		if rule.credentials&credFields != 0 && r.credField < 0 {
			r.credField = i
		}
		add := func(m map[string]int, names []string) {
			for _, n := range names {
				n = strings.ToLower(strings.TrimSpace(n))
				if _, ok := m[n]; !ok && n != "" {
					m[n] = i
				}
			}
		}
		for kind, names := range rule.RedactList.Entries {
			switch strings.ToLower(kind) {
			case "http", "headers", "header":
				add(r.headers, names)
			case "query":
				add(r.query, names)
			case "json", "body", "form", "fields":
				add(r.fields, names)
			case "all":
				add(r.headers, names)
				add(r.query, names)
				add(r.fields, names)
			case "patterns":
				for _, p := range names {
					var slot *int
					switch strings.ToLower(strings.TrimSpace(p)) {
					case PatternCard:
						slot = &r.card
					case PatternEmail:
						slot = &r.email
					case PatternBearer:
						slot = &r.bearer
					default:
						return nil, fmt.Errorf("redaction rule %q: unknown pattern %q (want card, email or bearer)", rule.ID, p)
					}
					if *slot < 0 {
						*slot = i
					}
				}
			default:
				return nil, fmt.Errorf("redaction rule %q: unknown entry kind %q (want http, query, json, all or patterns)", rule.ID, kind)
			}
		}
	}
	if r.card >= 0 {
		for c := '0'; c <= '9'; c++ {
			r.starts[c] = 1
		}
	}
	if r.email >= 0 {
		r.starts['@'] = 1
	}
	if r.bearer >= 0 {
		r.starts['B'], r.starts['b'] = 1, 1
	}
	for c := range r.starts {
		if r.starts[c] != 0 {
			r.strClass[c] = classStart
		}
	}
	r.strClass['"'], r.strClass['\\'] = classQuote, classEscape
	r.fp = fingerprint(rules)
	return r, nil
}

// Rules returns the ids of the rules, in order.
func (r *Redactor) Rules() []string { return slices.Clone(r.ids) }

// hits collects the rules that changed one record, as a bit set over rule
// indexes (the first 64) plus a slice for the rest.
type hits struct {
	bits uint64
	more []int
}

func (h *hits) add(i int) {
	if i < 64 {
		h.bits |= 1 << i
	} else if !slices.Contains(h.more, i) {
		h.more = append(h.more, i)
	}
}

func (h *hits) any() bool { return h.bits != 0 || len(h.more) > 0 }

// Part is a set of the parts of a record that redaction may change.
type Part uint16

// The parts of a record that redaction may change.
const (
	PartURL        Part = 1 << iota // http.req.url
	PartReqHeaders                  // http.req.headers
	PartReqBody                     // http.req.body.data
	PartResHeaders                  // http.res.headers
	PartTrailers                    // http.res.trailers
	PartResBody                     // http.res.body.data
	PartChunks                      // tcp.chunks
	PartRedactions                  // redactions
)

// Redact changes rec in place and returns the ids of the rules that
// changed it (nil if none), which it also adds to rec.Redactions.
func (r *Redactor) Redact(rec *capture.Record) []string {
	ids, _ := r.RedactParts(rec)
	return ids
}

// RedactParts is Redact that also returns the parts of rec it changed:
// a part outside the set is as it was.
func (r *Redactor) RedactParts(rec *capture.Record) ([]string, Part) {
	var h hits
	var parts Part
	if x := rec.HTTP; x != nil {
		if r.redactHeaders(x.Req.Headers, &h) {
			parts |= PartReqHeaders
		}
		if u := r.redactURL(x.Req.URL, &h); u != x.Req.URL {
			x.Req.URL = u
			parts |= PartURL
		}
		if d := r.redactBody(x.Req.Body.Data, x.Req.Headers, &h); !sameBytes(d, x.Req.Body.Data) {
			x.Req.Body.Data = d
			parts |= PartReqBody
		}
		if res := x.Res; res != nil {
			if r.redactHeaders(res.Headers, &h) {
				parts |= PartResHeaders
			}
			if r.redactHeaders(res.Trailers, &h) {
				parts |= PartTrailers
			}
			if d := r.redactBody(res.Body.Data, res.Headers, &h); !sameBytes(d, res.Body.Data) {
				res.Body.Data = d
				parts |= PartResBody
			}
		}
	}
	if t := rec.TCP; t != nil && r.anyPattern() {
		for i := range t.Chunks {
			if out := r.patterns(t.Chunks[i].Data, &h); out != nil {
				t.Chunks[i].Data = out
				parts |= PartChunks
			}
		}
	}
	if !h.any() {
		return nil, parts
	}
	var ids []string
	for i := range r.ids {
		if (i < 64 && h.bits&(1<<i) != 0) || slices.Contains(h.more, i) {
			ids = append(ids, r.ids[i])
			if !slices.Contains(rec.Redactions, r.ids[i]) {
				rec.Redactions = append(rec.Redactions, r.ids[i])
				parts |= PartRedactions
			}
		}
	}
	return ids, parts
}

// sameBytes reports whether a and b are the same slice of memory (not
// merely equal bytes).
func sameBytes(a, b []byte) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// ReadsBodies reports whether the rules look into bodies (field names or
// patterns); if not, Redact neither reads nor changes body data.
func (r *Redactor) ReadsBodies() bool { return r.readsFields() || r.anyPattern() }

func (r *Redactor) readsFields() bool { return len(r.fields) > 0 || r.credField >= 0 }

func (r *Redactor) anyPattern() bool { return r.card >= 0 || r.email >= 0 || r.bearer >= 0 }

// lookup finds name in m without allocating for short names.
func lookup[S string | []byte](m map[string]int, name S) (int, bool) {
	if len(m) == 0 {
		return 0, false
	}
	var buf [64]byte
	if len(name) > len(buf) {
		i, ok := m[strings.ToLower(string(name))]
		return i, ok
	}
	b := buf[:len(name)]
	for i := 0; i < len(name); i++ {
		c := name[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b[i] = c
	}
	i, ok := m[string(b)]
	return i, ok
}

// The kinds of name a rule matches.
type nameKind uint8

const (
	kindHeader nameKind = iota
	kindQuery
	kindField
)

// ruleFor returns the rule that names name of kind: the earliest of a rule
// that lists it and a default rule that knows it by its shape.
func (r *Redactor) ruleFor(kind nameKind, name string) (int, bool) { return ruleFor(r, kind, name) }

// ruleFor is Redactor.ruleFor for a name as a string or as bytes (a JSON key without escapes), without
// allocating for short names.
func ruleFor[S string | []byte](r *Redactor, kind nameKind, name S) (int, bool) {
	var m map[string]int
	cred, known := -1, false
	switch kind {
	case kindHeader:
		m, cred = r.headers, r.credHeader
		known = cred >= 0 && credentialHeader(name)
	case kindQuery:
		m, cred = r.query, r.credHeader
		known = cred >= 0 && credentialQuery(name)
	default:
		m, cred = r.fields, r.credField
		known = cred >= 0 && credentialField(name)
	}
	rule, ok := lookup(m, name)
	if known && (!ok || cred < rule) {
		return cred, true
	}
	return rule, ok
}

// redactHeaders changes hs in place and reports whether it changed any.
func (r *Redactor) redactHeaders(hs capture.Headers, h *hits) bool {
	changed := false
	for i := range hs {
		if rule, ok := r.cachedRule(r.hkeys, kindHeader, readOnly(hs[i].Name)); ok {
			if hs[i].Value != r.strs[rule] {
				hs[i].Value = r.strs[rule]
				h.add(rule)
				changed = true
			}
			continue
		}
		if r.anyPattern() {
			if out := r.patterns(readOnly(hs[i].Value), h); out != nil {
				hs[i].Value = string(out)
				changed = true
			}
		}
	}
	return changed
}

// readOnly is s's bytes without a copy, for the scans of this package that
// only read their input (patterns, redactPairs: a change is written to a
// new slice, never into the input, which must not change: s's bytes are
// immutable). A copy per header value and URL was most of what redacting
// a record allocated.
func readOnly(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// redactURL redacts named query parameters and patterns in the URL.
func (r *Redactor) redactURL(u string, h *hits) string {
	if q := strings.IndexByte(u, '?'); q >= 0 && (len(r.query) > 0 || r.credHeader >= 0 || r.anyPattern()) {
		end := len(u)
		if f := strings.IndexByte(u[q:], '#'); f >= 0 {
			end = q + f
		}
		if out, changed := r.redactPairs(readOnly(u[q+1:end]), kindQuery, h); changed {
			u = u[:q+1] + string(out) + u[end:]
		}
	}
	if r.anyPattern() {
		if out := r.patterns(readOnly(u), h); out != nil {
			u = string(out)
		}
	}
	return u
}

// redactPairs redacts the values of name=value pairs separated by '&'
// (a query string or a form body) whose unescaped name a rule of kind
// names, and patterns in values as they read once unescaped (a card
// number written 4111+1111+1111+1111).
func (r *Redactor) redactPairs(b []byte, kind nameKind, h *hits) ([]byte, bool) {
	var out []byte
	last := 0
	for start := 0; start <= len(b); {
		end := bytes.IndexByte(b[start:], '&')
		if end < 0 {
			end = len(b)
		} else {
			end += start
		}
		pair := b[start:end]
		if eq := bytes.IndexByte(pair, '='); eq >= 0 {
			vs, ve := start+eq+1, end
			if rule, ok := r.pairRule(kind, pair[:eq]); ok {
				if !bytes.Equal(b[vs:ve], r.tokens[rule]) {
					out = append(out, b[last:vs]...)
					out = append(out, r.tokens[rule]...)
					last = ve
					h.add(rule)
				}
			} else if v := b[vs:ve]; r.anyPattern() && bytes.ContainsAny(v, "%+") {
				if red := r.patterns([]byte(unescape(v)), h); red != nil {
					out = append(out, b[last:vs]...)
					out = append(out, url.QueryEscape(string(red))...)
					last = ve
				}
			}
		}
		start = end + 1
	}
	if out == nil {
		return b, false
	}
	return append(out, b[last:]...), true
}

// pairRule is ruleFor for the name of a pair as redactPairs reads it
// (escaped), decided once for every spelling without escapes.
func (r *Redactor) pairRule(kind nameKind, name []byte) (int, bool) {
	if bytes.IndexByte(name, '%') >= 0 || bytes.IndexByte(name, '+') >= 0 {
		return ruleFor(r, kind, unescape(name))
	}
	c := r.keys
	if kind == kindQuery {
		c = r.qkeys
	}
	return r.cachedRule(c, kind, name)
}

// unescape decodes %XX and '+' in a query name; bad escapes stay as
// they are.
func unescape(b []byte) string {
	if bytes.IndexByte(b, '%') < 0 && bytes.IndexByte(b, '+') < 0 {
		return string(b)
	}
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		switch {
		case b[i] == '+':
			out = append(out, ' ')
		case b[i] == '%' && i+2 < len(b) && isHex(b[i+1]) && isHex(b[i+2]):
			out = append(out, unhex(b[i+1])<<4|unhex(b[i+2]))
			i += 2
		default:
			out = append(out, b[i])
		}
	}
	return string(out)
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// redactBody redacts a captured body: fields of a JSON or form body by
// name, then patterns anywhere. It returns data itself when nothing
// changed.
func (r *Redactor) redactBody(data []byte, hs capture.Headers, h *hits) []byte {
	if len(data) == 0 {
		return data
	}
	if enc := strings.TrimSpace(hs.Get("Content-Encoding")); enc != "" && !strings.EqualFold(enc, "identity") {
		// Compressed bytes: names and patterns cannot be seen. See
		// docs/forwarder.md.
		return data
	}
	return r.redactContent(data, hs.Get("Content-Type"), 0, h)
}

// redactContent redacts data of type contentType: a body (depth 0), or a
// part of a multipart body (depth 1, where multipart is not followed
// again). It returns data itself when nothing changed.
func (r *Redactor) redactContent(data []byte, contentType string, depth int, h *hits) []byte {
	ct := strings.ToLower(contentType)
	switch {
	case (r.readsFields() || r.anyPattern()) && strings.Contains(ct, "x-www-form-urlencoded"):
		if out, changed := r.redactPairs(data, kindField, h); changed {
			data = out
		}
	case depth == 0 && r.ReadsBodies() && strings.HasPrefix(strings.TrimSpace(ct), "multipart/"):
		// Each part is redacted on its own, patterns included.
		if out, ok := r.redactMultipart(data, contentType, h); ok {
			if out != nil {
				return out
			}
			return data
		}
	case (r.readsFields() || r.anyPattern()) && (strings.Contains(ct, "json") || looksJSON(data)):
		// The walker runs the patterns inside strings itself, so that a
		// replacement never breaks the JSON.
		if out := r.redactJSON(data, h); out != nil {
			return out
		}
		return data
	}
	if r.anyPattern() {
		if out := r.patterns(data, h); out != nil {
			data = out
		}
	}
	return data
}

// looksJSON reports whether data starts, after white space, with { or [.
func looksJSON(data []byte) bool {
	for _, c := range data {
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		case '{', '[':
			return true
		}
		return false
	}
	return false
}

// errNotJSON stops the JSON walker; patterns still run over the body.
var errNotJSON = errors.New("not JSON")
