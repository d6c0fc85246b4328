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
	plan       *plan       // Parse's and Standard's (see Keep)
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
	f := &Filter{ID: "standard", Operator: "AND", Conditions: []Condition{{Operator: "AND", Filters: drops}}}
	f.plan = f.makePlan()
	return f
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
		return &Filter{ID: "none"}, nil // keeps all without a plan
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
	f.plan = f.makePlan()
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
			for _, tf := range textFacts {
				if tf.of(&cr) != "" {
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

// Keep reports whether the filter keeps rec. It reads the plan Parse and
// Standard make of the filter (a Filter built otherwise is planned on each
// call): a parsed Filter's fields must not change.
func (f *Filter) Keep(rec *capture.Record) bool {
	if len(f.Conditions) == 0 {
		return true
	}
	p := f.plan
	if p == nil {
		p = f.makePlan()
	}
	return p.keep(rec)
}

func (p *plan) keep(rec *capture.Record) bool {
	fs := facts{rec: rec}
	for i := range p.conds {
		if p.conds[i].holds(&fs) == p.or {
			return p.or
		}
	}
	return !p.or
}

// plan is a filter with its operators read and each criterion's fact
// named once, rather than on every record: the forwarder runs the
// standard filter's 22 criteria on every record it receives.
type plan struct {
	or    bool
	conds []condPlan
}

type condPlan struct {
	or    bool
	crits []critPlan
}

func (c *condPlan) holds(fs *facts) bool {
	if len(c.crits) == 0 {
		return true
	}
	for i := range c.crits {
		if c.crits[i].holds(fs) == c.or {
			return c.or
		}
	}
	return !c.or
}

// critPlan is a Criterion: the fact it tests, the text it wants (the
// header's value for a header), how it compares.
type critPlan struct {
	fact     fact
	include  bool
	contains bool
	want     string
	ascii    bool   // want is ASCII: an ASCII text of another length does not equal it
	header   string // factHeader: the header's name
	span     Span   // factTime
	// factPathSet: the paths of criteria EQUAL to a path, ASCII, of one
	// condition (see groupPaths), by length
	paths [][]string
}

type fact uint8

const (
	factNone fact = iota // a criterion with no fact set (only without Validate): never matches
	factTime
	factDirection
	factService
	factCluster
	factNamespace
	factProtocol
	factHost
	factPath
	factURL
	factMethod
	factStatus
	factHeader
	factPathSet // one of several paths (groupPaths)
)

// textFacts are a Criterion's text facts, in the order a plan looks for
// the one set.
var textFacts = [...]struct {
	fact fact
	of   func(*Criterion) string
}{
	{factDirection, func(c *Criterion) string { return c.Direction }},
	{factService, func(c *Criterion) string { return c.Service }},
	{factCluster, func(c *Criterion) string { return c.Cluster }},
	{factNamespace, func(c *Criterion) string { return c.Namespace }},
	{factProtocol, func(c *Criterion) string { return c.Protocol }},
	{factHost, func(c *Criterion) string { return c.Host }},
	{factPath, func(c *Criterion) string { return c.Path }},
	{factURL, func(c *Criterion) string { return c.URL }},
	{factMethod, func(c *Criterion) string { return c.Method }},
	{factStatus, func(c *Criterion) string { return c.Status }},
	{factHeader, func(c *Criterion) string { return c.Header }},
}

// makePlan plans f as it is now.
func (f *Filter) makePlan() *plan { return f.planned(true) }

// planned plans f, with each condition's path criteria grouped
// (groupPaths) or not.
func (f *Filter) planned(group bool) *plan {
	p := &plan{or: strings.EqualFold(f.Operator, "OR"), conds: make([]condPlan, len(f.Conditions))}
	for i, c := range f.Conditions {
		cp := &p.conds[i]
		cp.or = strings.EqualFold(c.Operator, "OR")
		for _, cr := range c.Filters {
			k := critPlan{include: cr.Include, contains: strings.EqualFold(cr.Operator, "CONTAINS")}
			// The first fact set is the criterion's (Validate allows one).
			if cr.Time != nil {
				k.fact, k.span = factTime, *cr.Time
			}
			for _, tf := range textFacts {
				if v := tf.of(&cr); v != "" && k.fact == factNone {
					k.fact, k.want = tf.fact, v
				}
			}
			if k.fact == factHeader {
				k.header, k.want = cr.Header, cr.Value
			}
			k.ascii = isASCII(k.want)
			cp.crits = append(cp.crits, k)
		}
		if group {
			cp.crits = groupPaths(cp.crits, cp.or)
		}
	}
	return p
}

// groupPaths returns crits, a condition's, with its criteria EQUAL to an
// ASCII path that hold when no path matches (include false, in an AND
// condition) or when one does (include true, in OR) made one criterion
// that looks only at the paths of the record's path's length: the
// standard filter's 17 paths were 17 criteria tested one by one on every
// record. The condition holds for the same records: an AND of "does not
// match" is "matches none", an OR of "matches" is "matches one". Fewer
// than two such criteria are left as they are.
func groupPaths(crits []critPlan, or bool) []critPlan {
	groupable := func(k *critPlan) bool {
		return k.fact == factPath && !k.contains && k.ascii && k.include == or
	}
	n := 0
	for i := range crits {
		if groupable(&crits[i]) {
			n++
		}
	}
	if n < 2 {
		return crits
	}
	out := make([]critPlan, 0, len(crits)-n+1)
	at := -1 // the set's place in out: where its first path was
	for i := range crits {
		k := &crits[i]
		if !groupable(k) {
			out = append(out, *k)
			continue
		}
		if at < 0 {
			at = len(out)
			out = append(out, critPlan{fact: factPathSet, include: or})
		}
		set := &out[at]
		for len(set.paths) <= len(k.want) {
			set.paths = append(set.paths, nil)
		}
		set.paths[len(k.want)] = append(set.paths[len(k.want)], k.want)
	}
	return out
}

// facts are the derived facts of one record, computed once per Keep.
type facts struct {
	rec            *capture.Record
	path, host     string
	havePath, have bool
	pathASCII      bool
	// the values of the request header named hname (the standard filter
	// asks for User-Agent five times); hmany: more than vals holds
	hname string
	vals  [4]string
	nvals int
	hmany bool
}

func (fs *facts) pathOf() string {
	if !fs.havePath {
		fs.path, fs.havePath = path(fs.rec.HTTP.Req.URL), true
		fs.pathASCII = isASCII(fs.path)
	}
	return fs.path
}

func (fs *facts) hostOf() string {
	if !fs.have {
		fs.host, fs.have = host(fs.rec), true
	}
	return fs.host
}

// headerValues returns the values of the request's headers named name
// (without regard to case), or false when there are more than it keeps.
func (fs *facts) headerValues(name string) ([]string, bool) {
	if fs.hname == "" || fs.hname != name {
		fs.hname, fs.nvals, fs.hmany = name, 0, false
		for _, h := range fs.rec.HTTP.Req.Headers {
			if !strings.EqualFold(h.Name, name) {
				continue
			}
			if fs.nvals == len(fs.vals) {
				fs.hmany = true
				break
			}
			fs.vals[fs.nvals] = h.Value
			fs.nvals++
		}
	}
	return fs.vals[:fs.nvals], !fs.hmany
}

func (k *critPlan) holds(fs *facts) bool {
	return k.matches(fs) == k.include
}

func (k *critPlan) match(got string) bool {
	if k.contains {
		return containsFold(got, k.want)
	}
	return strings.EqualFold(got, k.want)
}

// matches reports whether the record has the criterion's fact. A fact the
// record does not have (the URL of a TCP record) does not match.
func (k *critPlan) matches(fs *facts) bool {
	rec := fs.rec
	switch k.fact {
	case factTime:
		return !rec.Start.Before(k.span.From) && (k.span.To.IsZero() || rec.Start.Before(k.span.To))
	case factDirection:
		return k.match(string(rec.Direction))
	case factService:
		return k.match(rec.Labels.Service)
	case factCluster:
		return k.match(rec.Labels.Cluster)
	case factNamespace:
		return k.match(rec.Labels.Namespace)
	case factProtocol:
		return k.match(protocol(rec))
	case factHost:
		return k.match(fs.hostOf())
	}
	if rec.HTTP == nil {
		return false
	}
	req := &rec.HTTP.Req
	switch k.fact {
	case factPath:
		// Most of the standard filter's criteria: a path of another
		// length is not one of them. (Not so for all text: ſ folds to s.)
		if p := fs.pathOf(); k.contains || !k.ascii || !fs.pathASCII || len(p) == len(k.want) {
			return k.match(p)
		}
		return false
	case factPathSet:
		// An ASCII path equals (ignoring case) only paths of its length;
		// another may fold to an ASCII path of another length (ſ to s).
		p := fs.pathOf()
		if fs.pathASCII {
			if len(p) >= len(k.paths) {
				return false
			}
			for _, w := range k.paths[len(p)] {
				if strings.EqualFold(p, w) {
					return true
				}
			}
			return false
		}
		for _, ws := range k.paths {
			for _, w := range ws {
				if strings.EqualFold(p, w) {
					return true
				}
			}
		}
		return false
	case factURL:
		return k.match(req.URL)
	case factMethod:
		return k.match(req.Method)
	case factStatus:
		if rec.HTTP.Res == nil {
			return false
		}
		return k.match(strconv.Itoa(rec.HTTP.Res.Status))
	case factHeader:
		vals, ok := fs.headerValues(k.header)
		if !ok {
			for _, h := range req.Headers {
				if strings.EqualFold(h.Name, k.header) && (k.want == "" || k.match(h.Value)) {
					return true
				}
			}
			return false
		}
		for _, v := range vals {
			if k.want == "" || k.match(v) {
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

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// lower is the ASCII lower case of c.
func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
