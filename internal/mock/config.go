package mock

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"gopkg.in/yaml.v3"
)

// Rules override how requests are matched: fields to ignore or to require, everywhere or per endpoint, and
// the headers that tell client sessions apart. They are read from a YAML or JSON file (LoadRules). The zero
// Rules match by the defaults alone.
type Rules struct {
	// Session names the headers whose value tells one client session from another, in order of preference;
	// if empty, Authorization then Cookie. A request without any of them belongs to its client address.
	Session []string `yaml:"session" json:"session"`
	// Ignore lists fields that never count, on every endpoint.
	Ignore []string `yaml:"ignore" json:"ignore"`
	// Endpoints are the rules of the endpoints their Match selects; every rule that selects an endpoint applies.
	Endpoints []EndpointRule `yaml:"endpoints" json:"endpoints"`
}

// EndpointRule is the override of the endpoints Match selects.
type EndpointRule struct {
	// Match selects endpoints by their name as the report prints it, "METHOD host/path" with {} for an id
	// segment and [operation] for an X-Amz-Target or SOAPAction; * matches any run of characters.
	// Examples: "POST api.example.com/v1/orders", "GET *.stripe.com/v1/*", "* dynamodb.*[*.PutItem]".
	Match string `yaml:"match" json:"match"`
	// Ignore lists fields that never count: query.NAME, body.a.b (a JSON body's leaf; array items by index,
	// body.items.0.id), form.NAME, header.name, path.N (the N-th segment, from 1), grpc.0.1 (field 1 of the
	// first message). A name ending in * is a prefix: body.meta.* ignores the whole object.
	Ignore []string `yaml:"ignore" json:"ignore"`
	// Require lists fields that must be equal to the recording's, even if they vary between recordings or
	// look volatile (and headers, which otherwise only break ties).
	Require []string `yaml:"require" json:"require"`
}

// LoadRules reads rules from a YAML (.yaml, .yml) or JSON file. Unknown keys are an error, so that a typo
// does not silently change nothing.
func LoadRules(path string) (*Rules, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Rules
	switch strings.ToLower(filepath.Ext(path)) {
	case ".json":
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		err = dec.Decode(&r)
	default:
		dec := yaml.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(true)
		err = dec.Decode(&r)
		if errors.Is(err, io.EOF) {
			err = nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("read rules %s: %w", path, err)
	}
	if err := r.Validate(); err != nil {
		return nil, fmt.Errorf("rules %s: %w", path, err)
	}
	return &r, nil
}

// Validate reports the first rule that cannot work.
func (r *Rules) Validate() error {
	for i, e := range r.Endpoints {
		if strings.TrimSpace(e.Match) == "" {
			return fmt.Errorf("endpoints[%d].match is empty: want e.g. \"POST api.example.com/v1/orders\"", i)
		}
		for _, f := range append(append([]string{}, e.Ignore...), e.Require...) {
			if err := checkFieldName(f); err != nil {
				return fmt.Errorf("endpoints[%d] (%s): %w", i, e.Match, err)
			}
		}
	}
	for _, f := range r.Ignore {
		if err := checkFieldName(f); err != nil {
			return fmt.Errorf("ignore: %w", err)
		}
	}
	return nil
}

var fieldKinds = []string{"query", "body", "form", "header", "path", "grpc"}

func checkFieldName(f string) error {
	kind, _, _ := strings.Cut(f, ".")
	for _, k := range fieldKinds {
		if kind == k || kind == k+"*" {
			return nil
		}
	}
	return fmt.Errorf("field %q: want a name starting with one of %s (query.page, body.user.id, header.x-tenant)", f, strings.Join(fieldKinds, ", "))
}

func (r *Rules) sessionHeaders() []string {
	if r == nil || len(r.Session) == 0 {
		return []string{"Authorization", "Cookie"}
	}
	return r.Session
}

// fieldRule is what the rules say of one field of one endpoint.
type fieldRule uint8

const (
	ruleNone fieldRule = iota
	ruleIgnore
	ruleRequire
)

// ruleSet is the rules that apply to one endpoint.
type ruleSet struct {
	ignore, require []string
}

func (r *Rules) forEndpoint(key string) ruleSet {
	var rs ruleSet
	if r == nil {
		return rs
	}
	rs.ignore = append(rs.ignore, r.Ignore...)
	for _, e := range r.Endpoints {
		if glob(e.Match, key) {
			rs.ignore = append(rs.ignore, e.Ignore...)
			rs.require = append(rs.require, e.Require...)
		}
	}
	return rs
}

func (rs ruleSet) of(field string) fieldRule {
	for _, p := range rs.require {
		if fieldMatch(p, field) {
			return ruleRequire
		}
	}
	for _, p := range rs.ignore {
		if fieldMatch(p, field) {
			return ruleIgnore
		}
	}
	return ruleNone
}

func fieldMatch(pattern, field string) bool {
	if p, ok := strings.CutSuffix(pattern, "*"); ok {
		return strings.HasPrefix(field, p) || field == strings.TrimSuffix(p, ".")
	}
	return pattern == field
}

// glob matches s against pattern, where * matches any run of characters (slashes included). Case is
// ignored.
func glob(pattern, s string) bool {
	pattern, s = strings.ToLower(strings.TrimSpace(pattern)), strings.ToLower(s)
	parts := strings.Split(pattern, "*")
	if len(parts) == 1 {
		return pattern == s
	}
	if !strings.HasPrefix(s, parts[0]) {
		return false
	}
	s = s[len(parts[0]):]
	for _, p := range parts[1 : len(parts)-1] {
		i := strings.Index(s, p)
		if i < 0 {
			return false
		}
		s = s[i+len(p):]
	}
	return strings.HasSuffix(s, parts[len(parts)-1])
}
