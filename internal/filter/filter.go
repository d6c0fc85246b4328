// Package filter decides which capture records to keep, with the vendor's
// filter shape: conditions of criteria over host, path, URL, method,
// direction, protocol, service, cluster, namespace, status, header and
// time, joined by AND or OR. The forwarder drops what a filter does not
// keep (SPEEDSCALE_FILTER_RULE); the built-in filter "standard" drops
// health checks and metrics scrapes. docs/forwarder.md describes it.
package filter

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tapwire/tapwire/internal/capture"
)

// Filter is the vendor's filter shape:
//
//	{"id": "f", "operator": "AND", "conditions": [
//	  {"operator": "OR", "filters": [{"include": true, "operator": "EQUAL", "service": "orders"}]}]}
//
// A record is kept when the conditions, joined by Operator, hold; a
// condition holds when its filters, joined by its operator, hold; a filter
// (Criterion) holds when its criterion matches the record and Include is
// true, or does not match and Include is false. No conditions keep
// everything.
type Filter struct {
	ID         string      `json:"id"`
	Operator   string      `json:"operator,omitempty"` // AND (the default) or OR
	Conditions []Condition `json:"conditions"`
}

// Condition is a group of criteria.
type Condition struct {
	Operator string      `json:"operator,omitempty"` // AND (the default) or OR
	Filters  []Criterion `json:"filters"`
}

// Criterion tests one fact of a record. Exactly one of the fact fields is
// set; Value goes with Header.
type Criterion struct {
	Include  bool   `json:"include"`
	Operator string `json:"operator,omitempty"` // EQUAL (the default) or CONTAINS; text compares ignore case

	Host      string `json:"host,omitempty"`      // the request's host, without port (or net.serverHost)
	Path      string `json:"path,omitempty"`      // the URL's path, without query
	URL       string `json:"url,omitempty"`       // the whole request URL
	Method    string `json:"method,omitempty"`    // GET, POST...
	Direction string `json:"direction,omitempty"` // in or out
	Protocol  string `json:"protocol,omitempty"`  // http, https (the URL's scheme) or tcp
	Service   string `json:"service,omitempty"`   // labels.service
	Cluster   string `json:"cluster,omitempty"`   // labels.cluster
	Namespace string `json:"namespace,omitempty"` // labels.namespace
	Status    string `json:"status,omitempty"`    // the response status code, as text ("200"; CONTAINS "5" ...)
	Header    string `json:"header,omitempty"`    // a request header's name: matches when Value matches one of its values (or, without Value, when it is present)
	Value     string `json:"value,omitempty"`
	Time      *Span  `json:"time,omitempty"` // the record's start is within [from, to)
}

// Span is a time interval; a zero end is open.
type Span struct {
	From time.Time `json:"from,omitzero"`
	To   time.Time `json:"to,omitzero"`
}

// Standard is the built-in filter "standard": it drops health checks and
// metrics scrapes, by path or by the prober's User-Agent, in either
// direction. docs/forwarder.md lists them.
func Standard() *Filter {
	var drops []Criterion
	for _, p := range StandardPaths {
		drops = append(drops, Criterion{Include: false, Operator: "EQUAL", Path: p})
	}
	for _, ua := range StandardAgents {
		drops = append(drops, Criterion{Include: false, Operator: "CONTAINS", Header: "User-Agent", Value: ua})
	}
	return &Filter{ID: "standard", Operator: "AND", Conditions: []Condition{{Operator: "AND", Filters: drops}}}
}

// StandardPaths are the request paths the standard filter drops.
var StandardPaths = []string{
	"/health", "/healthz", "/healthcheck", "/health-check", "/_health", "/health/live", "/health/ready",
	"/livez", "/readyz", "/ready", "/live", "/liveness", "/readiness",
	"/metrics", "/actuator/health", "/actuator/prometheus", "/favicon.ico",
}

// StandardAgents are User-Agent fragments of probers and scrapers the
// standard filter drops.
var StandardAgents = []string{"kube-probe/", "ELB-HealthChecker/", "Prometheus/", "Consul Health Check", "GoogleHC/"}

// Parse reads SPEEDSCALE_FILTER_RULE's value: "standard" (also ""), "none"
// (keep everything), a filter as JSON, or the path of a file holding it.
func Parse(v string) (*Filter, error) {
	v = strings.TrimSpace(v)
	switch v {
	case "", "standard":
		return Standard(), nil
	case "none":
		return &Filter{ID: "none"}, nil
	}
	data := []byte(v)
	if v[0] != '{' {
		b, err := os.ReadFile(v)
		if err != nil {
			return nil, fmt.Errorf("read filter (a name is standard or none; else JSON or a file): %w", err)
		}
		data = b
	}
	var f Filter
	d := json.NewDecoder(bytes.NewReader(data))
	d.DisallowUnknownFields()
	if err := d.Decode(&f); err != nil {
		return nil, fmt.Errorf("parse filter: %w", err)
	}
	if err := f.Validate(); err != nil {
		return nil, err
	}
	return &f, nil
}

// Errors of Validate.
var (
	ErrOperator  = errors.New("operator must be AND or OR")
	ErrMatch     = errors.New("criterion operator must be EQUAL or CONTAINS")
	ErrCriterion = errors.New("criterion must set exactly one of host, path, url, method, direction, protocol, service, cluster, namespace, status, header, time")
)

// Validate checks the operators and that each criterion tests one fact.
func (f *Filter) Validate() error {
	if !joinOK(f.Operator) {
		return fmt.Errorf("filter %q: %w, not %q", f.ID, ErrOperator, f.Operator)
	}
	for i, c := range f.Conditions {
		if !joinOK(c.Operator) {
			return fmt.Errorf("filter %q condition %d: %w, not %q", f.ID, i+1, ErrOperator, c.Operator)
		}
		for j, cr := range c.Filters {
			switch strings.ToUpper(cr.Operator) {
			case "", "EQUAL", "EQUALS", "CONTAINS":
			default:
				return fmt.Errorf("filter %q condition %d criterion %d: %w, not %q", f.ID, i+1, j+1, ErrMatch, cr.Operator)
			}
			n := 0
			for _, s := range []string{cr.Host, cr.Path, cr.URL, cr.Method, cr.Direction, cr.Protocol, cr.Service, cr.Cluster, cr.Namespace, cr.Status, cr.Header} {
				if s != "" {
					n++
				}
			}
			if cr.Time != nil {
				n++
			}
			if n != 1 || (cr.Value != "" && cr.Header == "") {
				return fmt.Errorf("filter %q condition %d criterion %d: %w", f.ID, i+1, j+1, ErrCriterion)
			}
		}
	}
	return nil
}

func joinOK(op string) bool {
	switch strings.ToUpper(op) {
	case "", "AND", "OR":
		return true
	}
	return false
}

// KeepsAll reports whether the filter keeps every record without reading
// it (nil, "none", or no conditions).
func (f *Filter) KeepsAll() bool { return f == nil || len(f.Conditions) == 0 }

// Keep reports whether the filter keeps rec.
func (f *Filter) Keep(rec *capture.Record) bool {
	if len(f.Conditions) == 0 {
		return true
	}
	fs := facts{rec: rec}
	or := strings.EqualFold(f.Operator, "OR")
	for i := range f.Conditions {
		if f.Conditions[i].holds(&fs) == or {
			return or
		}
	}
	return !or
}

// facts are the derived facts of one record, computed once per Keep.
type facts struct {
	rec            *capture.Record
	path, host     string
	havePath, have bool
}

func (fs *facts) pathOf() string {
	if !fs.havePath {
		fs.path, fs.havePath = path(fs.rec.HTTP.Req.URL), true
	}
	return fs.path
}

func (fs *facts) hostOf() string {
	if !fs.have {
		fs.host, fs.have = host(fs.rec), true
	}
	return fs.host
}

func (c *Condition) holds(fs *facts) bool {
	if len(c.Filters) == 0 {
		return true
	}
	or := strings.EqualFold(c.Operator, "OR")
	for i := range c.Filters {
		if c.Filters[i].holds(fs) == or {
			return or
		}
	}
	return !or
}

func (cr *Criterion) holds(fs *facts) bool {
	return cr.matches(fs) == cr.Include
}

func (cr *Criterion) match(got, want string) bool {
	if strings.EqualFold(cr.Operator, "CONTAINS") {
		return containsFold(got, want)
	}
	return strings.EqualFold(got, want)
}

// matches reports whether the record has the criterion's fact. A fact the
// record does not have (the URL of a TCP record) does not match.
func (cr *Criterion) matches(fs *facts) bool {
	rec := fs.rec
	var req *capture.Request
	if rec.HTTP != nil {
		req = &rec.HTTP.Req
	}
	switch {
	case cr.Time != nil:
		return !rec.Start.Before(cr.Time.From) && (cr.Time.To.IsZero() || rec.Start.Before(cr.Time.To))
	case cr.Direction != "":
		return cr.match(string(rec.Direction), cr.Direction)
	case cr.Service != "":
		return cr.match(rec.Labels.Service, cr.Service)
	case cr.Cluster != "":
		return cr.match(rec.Labels.Cluster, cr.Cluster)
	case cr.Namespace != "":
		return cr.match(rec.Labels.Namespace, cr.Namespace)
	case cr.Protocol != "":
		return cr.match(protocol(rec), cr.Protocol)
	case cr.Host != "":
		return cr.match(fs.hostOf(), cr.Host)
	case req == nil:
		return false
	case cr.Path != "":
		return cr.match(fs.pathOf(), cr.Path)
	case cr.URL != "":
		return cr.match(req.URL, cr.URL)
	case cr.Method != "":
		return cr.match(req.Method, cr.Method)
	case cr.Status != "":
		if rec.HTTP.Res == nil {
			return false
		}
		return cr.match(strconv.Itoa(rec.HTTP.Res.Status), cr.Status)
	case cr.Header != "":
		for _, h := range req.Headers {
			if strings.EqualFold(h.Name, cr.Header) && (cr.Value == "" || cr.match(h.Value, cr.Value)) {
				return true
			}
		}
	}
	return false
}

func protocol(rec *capture.Record) string {
	if rec.Kind == capture.KindTCP || rec.HTTP == nil {
		return "tcp"
	}
	if i := strings.Index(rec.HTTP.Req.URL, "://"); i > 0 {
		return rec.HTTP.Req.URL[:i]
	}
	return "http"
}

func host(rec *capture.Record) string {
	h := ""
	if rec.HTTP != nil {
		h = rec.HTTP.Req.Host
	}
	if h == "" {
		h = rec.Net.ServerHost
	}
	if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.Contains(h[i:], "]") {
		h = h[:i]
	}
	return strings.Trim(h, "[]")
}

// path returns the path of a URL (absolute or not) without its query.
func path(u string) string {
	if i := strings.Index(u, "://"); i >= 0 {
		rest := u[i+3:]
		j := indexAny3(rest, '/', '?', '#')
		if j < 0 {
			return "/"
		}
		u = rest[j:]
	}
	if i := indexAny3(u, '?', '#', '#'); i >= 0 {
		u = u[:i]
	}
	if strings.IndexByte(u, '%') >= 0 {
		if p, err := url.PathUnescape(u); err == nil {
			u = p
		}
	}
	if u == "" {
		return "/"
	}
	return u
}

// indexAny3 is strings.IndexAny for three ASCII bytes, without building
// a set per call.
func indexAny3(s string, a, b, c byte) int {
	for i := 0; i < len(s); i++ {
		if x := s[i]; x == a || x == b || x == c {
			return i
		}
	}
	return -1
}

// containsFold is strings.Contains without regard to ASCII case.
func containsFold(s, sub string) bool {
	if len(sub) == 0 {
		return true
	}
	first := lower(sub[0])
	for i := 0; i+len(sub) <= len(s); i++ {
		// Two ASCII first bytes that differ in lower case cannot fold
		// to each other; anything else is left to EqualFold (ſ folds to s).
		if c := s[i]; c < utf8.RuneSelf && first < utf8.RuneSelf && lower(c) != first {
			continue
		}
		if strings.EqualFold(s[i:i+len(sub)], sub) {
			return true
		}
	}
	return false
}

// lower is the ASCII lower case of c.
func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
