package replay

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"
)

// Transforms change recorded requests before they are sent. docs/replay.md documents the file form, with
// examples.
type Transforms struct {
	// Rules set and delete headers, query parameters and JSON body fields, in order.
	Rules []Rule `yaml:"rules" json:"rules"`
	// Timestamps shifts the timestamps of requests by the recording's age.
	Timestamps *Timestamps `yaml:"timestamps" json:"timestamps"`
	// JWT re-signs the JSON Web Tokens of requests with new iat, nbf and exp claims.
	JWT *JWT `yaml:"jwt" json:"jwt"`
	// Chain takes values from live answers and puts them where the recorded values were in later
	// requests.
	Chain []Chain `yaml:"chain" json:"chain"`
}

// Rule changes the requests it matches.
type Rule struct {
	// Match picks requests: "METHOD /path/*", "/path/*" or "METHOD"; * is one path segment, {} too (as
	// the report names endpoints). If empty, every request.
	Match         string            `yaml:"match" json:"match"`
	SetHeaders    map[string]string `yaml:"set_headers" json:"set_headers"`
	DeleteHeaders []string          `yaml:"delete_headers" json:"delete_headers"`
	SetQuery      map[string]string `yaml:"set_query" json:"set_query"`
	DeleteQuery   []string          `yaml:"delete_query" json:"delete_query"`
	// SetBody sets JSON body fields by path (a.b, a.items.0.id, $.a.b, $.items[0].id) to JSON values,
	// creating the objects on the way; requests without a JSON body are left alone.
	SetBody    map[string]any `yaml:"set_body" json:"set_body"`
	DeleteBody []string       `yaml:"delete_body" json:"delete_body"`
}

// Timestamps shifts timestamps by the recording's age (the replay's start less the first recorded request's),
// so every timestamp keeps its offset from its request.
type Timestamps struct {
	// Shift turns it on. RFC 3339 timestamps are shifted wherever they are a whole value: a query
	// parameter, a JSON body string, a header named in Headers.
	Shift bool `yaml:"shift" json:"shift"`
	// Headers are headers whose RFC 3339 or HTTP-date values are shifted.
	Headers []string `yaml:"headers" json:"headers"`
	// Unix are fields holding Unix time in seconds or milliseconds (query.NAME or body.a.b) shifted too.
	Unix []string `yaml:"unix" json:"unix"`
}

// JWT re-signs tokens found in headers: every JWT (eyJ...) in a header value keeps its claims and gets
// iat and nbf now and exp now plus its recorded lifetime (exp-iat, else 1h). Tokens that chaining replaced by
// live ones are left alone.
type JWT struct {
	// Key is the HMAC key; KeyEnv names an environment variable that holds it instead.
	Key    string `yaml:"key" json:"key"`
	KeyEnv string `yaml:"key_env" json:"key_env"`
	// Alg is "keep" (the default: the token's own HS256, HS384 or HS512) or HS256, HS384, HS512.
	Alg string `yaml:"alg" json:"alg"`
	// Headers name the headers searched. If empty, Authorization.
	Headers []string `yaml:"headers" json:"headers"`
}

// Chain takes one value from the answers to the requests it matches, live and recorded, and from then on
// replaces the recorded value by the live one wherever it appears in a request (path, query, headers, body),
// as a whole token (not inside a longer word or number).
type Chain struct {
	// Match picks the requests whose answers hold the value, as Rule.Match.
	Match string `yaml:"match" json:"match"`
	// Exactly one of JSON (a path into a JSON body: token, data.id, $.items[0].id), Header (a response
	// header) or Regex (its first group, else its match, in the body) says where the value is.
	JSON   string `yaml:"json" json:"json"`
	Header string `yaml:"header" json:"header"`
	Regex  string `yaml:"regex" json:"regex"`
}

// LoadTransforms reads transforms from a YAML (.yaml, .yml) or JSON file. Unknown keys are an error, so that
// a misspelt one is not silently ignored.
func LoadTransforms(file string) (*Transforms, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("%w: --transforms: %w", ErrUsage, err)
	}
	var t Transforms
	switch strings.ToLower(filepath.Ext(file)) {
	case ".json":
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		err = dec.Decode(&t)
	default:
		dec := yaml.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(true)
		if err = dec.Decode(&t); err != nil && err.Error() == "EOF" {
			err = nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%w: --transforms %s: %w", ErrUsage, file, err)
	}
	if err := t.Validate(); err != nil {
		return nil, fmt.Errorf("%w: --transforms %s: %w", ErrUsage, file, err)
	}
	return &t, nil
}

// Validate checks the transforms and compiles what it can.
func (t *Transforms) Validate() error {
	for i, r := range t.Rules {
		if _, err := parseMatch(r.Match); err != nil {
			return fmt.Errorf("rules[%d].match: %w", i, err)
		}
	}
	for i, c := range t.Chain {
		n := 0
		for _, s := range []string{c.JSON, c.Header, c.Regex} {
			if s != "" {
				n++
			}
		}
		if n != 1 {
			return fmt.Errorf("chain[%d]: want exactly one of json, header and regex", i)
		}
		if _, err := parseMatch(c.Match); err != nil {
			return fmt.Errorf("chain[%d].match: %w", i, err)
		}
		if c.Regex != "" {
			if _, err := regexp.Compile(c.Regex); err != nil {
				return fmt.Errorf("chain[%d].regex: %w", i, err)
			}
		}
	}
	if j := t.JWT; j != nil {
		if j.KeyEnv != "" {
			j.Key = os.Getenv(j.KeyEnv)
			if j.Key == "" {
				return fmt.Errorf("jwt.key_env: $%s is empty", j.KeyEnv)
			}
		}
		if j.Key == "" {
			return fmt.Errorf("jwt: a key (key or key_env) is needed to sign")
		}
		switch j.Alg {
		case "", "keep", "HS256", "HS384", "HS512":
		default:
			return fmt.Errorf("jwt.alg %q: want keep, HS256, HS384 or HS512", j.Alg)
		}
	}
	return nil
}

// matcher picks requests by method and path.
type matcher struct {
	method string // "" any
	path   string // a path.Match pattern; "" any
}

func parseMatch(s string) (matcher, error) {
	var m matcher
	f := strings.Fields(s)
	switch len(f) {
	case 0:
	case 1:
		if strings.HasPrefix(f[0], "/") {
			m.path = f[0]
		} else {
			m.method = strings.ToUpper(f[0])
		}
	case 2:
		m.method, m.path = strings.ToUpper(f[0]), f[1]
	default:
		return m, fmt.Errorf("%q: want METHOD /path, /path or METHOD", s)
	}
	m.path = strings.ReplaceAll(m.path, "{}", "*")
	if _, err := path.Match(m.path, "/"); err != nil {
		return m, fmt.Errorf("%q: %w", s, err)
	}
	return m, nil
}

func (m matcher) match(method, p string) bool {
	if m.method != "" && m.method != method {
		return false
	}
	if m.path == "" {
		return true
	}
	ok, _ := path.Match(m.path, p)
	return ok
}

// transformer applies transforms to items. What does not change during a run (rules, timestamps) is applied
// once, when it is made; chaining and JWT signing are applied to each request.
type transformer struct {
	t      *Transforms
	prep   map[*item]*prepared
	chains []chainRule
	jwt    *signer
	now    func() time.Time

	mu   sync.RWMutex
	live map[string]string // recorded value → live value
}

// prepared is an item after the static transforms, with the recorded values it holds that chaining may
// replace.
type prepared struct {
	path, rawQuery string
	header         http.Header
	body           []byte
	uses           []string // recorded chain values in the request, longest first
	chains         []int    // the chain rules that match it
}

type chainRule struct {
	Chain
	m  matcher
	re *regexp.Regexp
}

func newTransformer(t *Transforms, items []*item) *transformer {
	tf := &transformer{t: t, prep: make(map[*item]*prepared, len(items)), live: map[string]string{}, now: time.Now}
	if t.JWT != nil {
		tf.jwt = &signer{key: []byte(t.JWT.Key), alg: t.JWT.Alg, headers: t.JWT.Headers}
		if len(tf.jwt.headers) == 0 {
			tf.jwt.headers = []string{"Authorization"}
		}
	}
	for _, c := range t.Chain {
		cr := chainRule{Chain: c}
		cr.m, _ = parseMatch(c.Match)
		if c.Regex != "" {
			cr.re = regexp.MustCompile(c.Regex)
		}
		tf.chains = append(tf.chains, cr)
	}
	var age time.Duration
	if len(items) > 0 {
		age = tf.now().Sub(items[0].rec.Start)
	}
	// The recorded values chaining will replace, and where each first appears.
	firstAt := map[string]int{}
	for i, it := range items {
		p := &prepared{path: it.path, rawQuery: it.rawQuery, header: it.header, body: it.body}
		tf.static(it, p, age)
		for k, cr := range tf.chains {
			if !cr.m.match(it.method, it.path) {
				continue
			}
			p.chains = append(p.chains, k)
			if v := cr.extract(it.resHeaderMap(), it.resBody); v != "" {
				if _, ok := firstAt[v]; !ok {
					firstAt[v] = i
				}
			}
		}
		tf.prep[it] = p
	}
	for i, it := range items {
		p := tf.prep[it]
		text := p.path + "?" + p.rawQuery + "\n" + string(p.body)
		for _, vs := range p.header {
			text += "\n" + strings.Join(vs, "\n")
		}
		for v, at := range firstAt {
			if at < i && containsToken(text, v) {
				p.uses = append(p.uses, v)
			}
		}
		// Longest first, so that a value inside another is replaced after it.
		sortByLenDesc(p.uses)
	}
	return tf
}

func sortByLenDesc(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && (len(s[j]) > len(s[j-1]) || len(s[j]) == len(s[j-1]) && s[j] < s[j-1]); j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// resHeaderMap is the recorded response headers as an http.Header.
func (it *item) resHeaderMap() http.Header {
	h := http.Header{}
	for _, f := range it.resHeaders {
		h.Add(f.Name, f.Value)
	}
	return h
}

// static applies the rules and the timestamp shift to p.
func (tf *transformer) static(it *item, p *prepared, age time.Duration) {
	cloned := false
	hdr := func() http.Header {
		if !cloned {
			p.header, cloned = p.header.Clone(), true
		}
		return p.header
	}
	for _, r := range tf.t.Rules {
		m, _ := parseMatch(r.Match)
		if !m.match(it.method, it.path) {
			continue
		}
		for k, v := range r.SetHeaders {
			hdr().Set(k, v)
		}
		for _, k := range r.DeleteHeaders {
			hdr().Del(k)
		}
		if len(r.SetQuery) > 0 || len(r.DeleteQuery) > 0 {
			q, _ := url.ParseQuery(p.rawQuery)
			for k, v := range r.SetQuery {
				q.Set(k, v)
			}
			for _, k := range r.DeleteQuery {
				q.Del(k)
			}
			p.rawQuery = q.Encode()
		}
		if len(r.SetBody) > 0 || len(r.DeleteBody) > 0 {
			if doc, ok := parseJSON(p.body); ok {
				for k, v := range r.SetBody {
					doc = setPath(doc, splitPath(k), v)
				}
				for _, k := range r.DeleteBody {
					doc = deletePath(doc, splitPath(k))
				}
				p.body = marshal(doc)
			}
		}
	}
	if ts := tf.t.Timestamps; ts != nil && ts.Shift && age != 0 {
		unix := map[string]bool{}
		for _, f := range ts.Unix {
			unix[f] = true
		}
		if p.rawQuery != "" {
			q, err := url.ParseQuery(p.rawQuery)
			changed := false
			for k, vs := range q {
				for i, v := range vs {
					if nv, ok := shiftValue(v, age, unix["query."+k]); ok {
						vs[i], changed = nv, true
					}
				}
			}
			if changed && err == nil {
				p.rawQuery = q.Encode()
			}
		}
		if doc, ok := parseJSON(p.body); ok {
			changed := false
			doc = walkLeaves(doc, "body", func(name string, v any) any {
				var s string
				switch t := v.(type) {
				case string:
					s = t
				case json.Number:
					if !unix[name] {
						return v
					}
					s = t.String()
				default:
					return v
				}
				nv, ok := shiftValue(s, age, unix[name])
				if !ok {
					return v
				}
				changed = true
				if _, num := v.(json.Number); num {
					return json.Number(nv)
				}
				return nv
			})
			if changed {
				p.body = marshal(doc)
			}
		}
		for _, h := range ts.Headers {
			if v := p.header.Get(h); v != "" {
				if t, err := http.ParseTime(v); err == nil {
					hdr().Set(h, t.Add(age).UTC().Format(http.TimeFormat))
				} else if nv, ok := shiftValue(v, age, false); ok {
					hdr().Set(h, nv)
				}
			}
		}
	}
}

// shiftValue shifts an RFC 3339 timestamp, or with unix a Unix time in seconds (10 digits) or ms (13).
func shiftValue(v string, age time.Duration, unix bool) (string, bool) {
	if unix {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return v, false
		}
		switch len(v) {
		case 10:
			return strconv.FormatInt(n+int64(age/time.Second), 10), true
		case 13:
			return strconv.FormatInt(n+int64(age/time.Millisecond), 10), true
		}
		return v, false
	}
	if len(v) < 20 || v[4] != '-' || v[10] != 'T' {
		return v, false
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return v, false
	}
	layout := time.RFC3339
	if i := strings.IndexByte(v, '.'); i > 0 {
		frac := 0
		for _, c := range v[i+1:] {
			if c < '0' || c > '9' {
				break
			}
			frac++
		}
		layout = "2006-01-02T15:04:05." + strings.Repeat("0", frac) + "Z07:00"
	}
	return t.Add(age).Format(layout), true
}

// apply returns the request to send for it: its static transforms, the live values of chaining, and fresh
// JWTs.
func (tf *transformer) apply(it *item) (string, string, http.Header, []byte) {
	p := tf.prep[it]
	pth, q, hdr, body := p.path, p.rawQuery, p.header, p.body
	var repl []string
	if len(p.uses) > 0 {
		tf.mu.RLock()
		for _, v := range p.uses {
			if l, ok := tf.live[v]; ok && l != v {
				repl = append(repl, v, l)
			}
		}
		tf.mu.RUnlock()
	}
	cloned := false
	if len(repl) > 0 {
		sub := func(s string) string {
			for i := 0; i < len(repl); i += 2 {
				s = replaceToken(s, repl[i], repl[i+1])
			}
			return s
		}
		pth, q = sub(pth), sub(q)
		body = []byte(sub(string(body)))
		hdr, cloned = hdr.Clone(), true
		for k, vs := range hdr {
			for i, v := range vs {
				vs[i] = sub(v)
			}
			hdr[k] = vs
		}
	}
	if tf.jwt != nil {
		for _, name := range tf.jwt.headers {
			vs := hdr.Values(name)
			for i, v := range vs {
				if nv, ok := tf.jwt.resignAll(v, p.header.Values(name), tf.now()); ok {
					if !cloned {
						hdr, cloned = hdr.Clone(), true
						vs = hdr.Values(name)
					}
					vs[i] = nv
				}
			}
		}
	}
	return pth, q, hdr, body
}

// chained reports whether live is what chaining replaces recorded with.
func (tf *transformer) chained(recorded, live string) bool {
	tf.mu.RLock()
	defer tf.mu.RUnlock()
	l, ok := tf.live[recorded]
	return ok && l == live
}

// learn takes the chained values from a live answer to it.
func (tf *transformer) learn(it *item, live http.Header, body []byte) {
	p := tf.prep[it]
	for _, k := range p.chains {
		cr := tf.chains[k]
		rec := cr.extract(it.resHeaderMap(), it.resBody)
		got := cr.extract(live, body)
		if rec == "" || got == "" {
			continue
		}
		tf.mu.Lock()
		tf.live[rec] = got
		tf.mu.Unlock()
	}
}

// extract finds the rule's value in an answer ("" if it is not there).
func (cr chainRule) extract(h http.Header, body []byte) string {
	switch {
	case cr.Header != "":
		return h.Get(cr.Header)
	case cr.re != nil:
		m := cr.re.FindSubmatch(body)
		switch {
		case m == nil:
			return ""
		case len(m) > 1:
			return string(m[1])
		}
		return string(m[0])
	}
	doc, ok := parseJSON(body)
	if !ok {
		return ""
	}
	v, ok := getPath(doc, splitPath(cr.JSON))
	if !ok {
		return ""
	}
	switch v.(type) {
	case map[string]any, []any, nil:
		return ""
	}
	return scalar(v)
}

// isWord reports whether c continues a token: a letter, a digit, or one of -_.
func isWord(c byte) bool {
	return c == '_' || c == '-' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

// containsToken reports whether v is in s as a whole token.
func containsToken(s, v string) bool {
	for off := 0; ; {
		i := strings.Index(s[off:], v)
		if i < 0 {
			return false
		}
		i += off
		if (i == 0 || !isWord(s[i-1])) && (i+len(v) == len(s) || !isWord(s[i+len(v)])) {
			return true
		}
		off = i + 1
	}
}

// replaceToken replaces every whole-token occurrence of old in s by repl.
func replaceToken(s, old, repl string) string {
	var b strings.Builder
	last := 0
	for off := 0; ; {
		i := strings.Index(s[off:], old)
		if i < 0 {
			break
		}
		i += off
		if (i == 0 || !isWord(s[i-1])) && (i+len(old) == len(s) || !isWord(s[i+len(old)])) {
			b.WriteString(s[last:i])
			b.WriteString(repl)
			last = i + len(old)
			off = last
			continue
		}
		off = i + 1
	}
	if last == 0 {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}

// splitPath reads a JSON path: a.b.0.c, $.a.b[0].c, body.a.
func splitPath(p string) []string {
	p = strings.TrimPrefix(strings.TrimPrefix(p, "$"), ".")
	p = strings.TrimPrefix(p, "body.")
	p = strings.NewReplacer("[", ".", "]", "").Replace(p)
	var out []string
	for _, s := range strings.Split(p, ".") {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

func getPath(v any, segs []string) (any, bool) {
	for _, s := range segs {
		switch t := v.(type) {
		case map[string]any:
			e, ok := t[s]
			if !ok {
				return nil, false
			}
			v = e
		case []any:
			i, err := strconv.Atoi(s)
			if err != nil || i < 0 || i >= len(t) {
				return nil, false
			}
			v = t[i]
		default:
			return nil, false
		}
	}
	return v, true
}

// setPath sets the value at segs, making objects where there are none.
func setPath(v any, segs []string, val any) any {
	if len(segs) == 0 {
		return val
	}
	switch t := v.(type) {
	case []any:
		if i, err := strconv.Atoi(segs[0]); err == nil && i >= 0 && i < len(t) {
			t[i] = setPath(t[i], segs[1:], val)
			return t
		}
		return t
	case map[string]any:
		t[segs[0]] = setPath(t[segs[0]], segs[1:], val)
		return t
	}
	return map[string]any{segs[0]: setPath(nil, segs[1:], val)}
}

func deletePath(v any, segs []string) any {
	if len(segs) == 0 {
		return v
	}
	parent, ok := getPath(v, segs[:len(segs)-1])
	if !ok {
		return v
	}
	last := segs[len(segs)-1]
	switch t := parent.(type) {
	case map[string]any:
		delete(t, last)
	case []any:
		if i, err := strconv.Atoi(last); err == nil && i >= 0 && i < len(t) {
			nt := append(t[:i:i], t[i+1:]...)
			if len(segs) == 1 {
				return nt
			}
			setPath(v, segs[:len(segs)-1], nt)
		}
	}
	return v
}

// walkLeaves replaces each scalar leaf of v by fn(name, leaf).
func walkLeaves(v any, name string, fn func(string, any) any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			t[k] = walkLeaves(e, name+"."+k, fn)
		}
		return t
	case []any:
		for i, e := range t {
			t[i] = walkLeaves(e, name+"."+strconv.Itoa(i), fn)
		}
		return t
	}
	return fn(name, v)
}

func marshal(v any) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
	return bytes.TrimRight(b.Bytes(), "\n")
}
