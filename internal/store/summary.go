package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// MaxSummaryRows bounds the records one summary reads: it keeps the
// duration of each (8 bytes) to compute exact percentiles. A wider
// selection is refused with ErrTooMany.
const MaxSummaryRows = 4_000_000

// ErrTooMany is returned by the summaries when the filter selects more
// than MaxSummaryRows records.
var ErrTooMany = errors.New("too many records for one summary: narrow the time range")

// Stats describe a group of exchanges.
type Stats struct {
	Count     int64   `json:"count"`
	Errors    int64   `json:"errors"`    // Row.Failed
	ErrorRate float64 `json:"errorRate"` // Errors / Count
	P50Us     int64   `json:"p50Us"`     // duration percentiles in µs, nearest rank
	P95Us     int64   `json:"p95Us"`
	P99Us     int64   `json:"p99Us"`
}

// ServiceSummary is one service's traffic and its endpoints.
type ServiceSummary struct {
	Service string `json:"service"` // labels.service; "" when unlabelled
	Stats
	Endpoints []EndpointSummary `json:"endpoints"` // by count, most first
}

// EndpointSummary is the traffic of one endpoint of a service: inbound,
// the routes it serves; outbound, the routes it calls on each host.
type EndpointSummary struct {
	Direction string `json:"direction"`
	Method    string `json:"method,omitempty"`
	Host      string `json:"host,omitempty"`
	Route     string `json:"route"` // Row.Route; "" for tcp
	Stats
}

// acc accumulates Stats.
type acc struct {
	n, errs int64
	durs    []int64
}

func (a *acc) add(r *Row) {
	a.n++
	if r.Failed {
		a.errs++
	}
	a.durs = append(a.durs, r.DurUs)
}

func (a *acc) stats() Stats {
	s := Stats{Count: a.n, Errors: a.errs}
	if a.n > 0 {
		s.ErrorRate = float64(a.errs) / float64(a.n)
		slices.Sort(a.durs)
		s.P50Us, s.P95Us, s.P99Us = rank(a.durs, 50), rank(a.durs, 95), rank(a.durs, 99)
	}
	return s
}

// rank returns the p-th percentile of sorted by nearest rank: the smallest
// value that at least p% of the values are at or below.
func rank(sorted []int64, p int) int64 {
	i := (len(sorted)*p + 99) / 100 // ceil(n*p/100)
	return sorted[max(i, 1)-1]
}

func scanBounded(ctx context.Context, s Store, tenant string, f Filter, fn func(*Row)) error {
	n := 0
	return s.Scan(ctx, tenant, f, func(r *Row) error {
		if n++; n > MaxSummaryRows {
			return ErrTooMany
		}
		fn(r)
		return nil
	})
}

// Summarize returns, for each service, the stats of its records that match
// f and of each of its endpoints, by service name.
func Summarize(ctx context.Context, s Store, tenant string, f Filter) ([]ServiceSummary, error) {
	type epKey struct{ service, dir, method, host, route string }
	services := map[string]*acc{}
	eps := map[epKey]*acc{}
	err := scanBounded(ctx, s, tenant, f, func(r *Row) {
		sa := services[r.Service]
		if sa == nil {
			sa = &acc{}
			services[r.Service] = sa
		}
		sa.add(r)
		k := epKey{r.Service, r.Direction, r.Method, r.Host, r.Route}
		if r.Direction == "in" {
			k.host = "" // the service's own host names are one endpoint
		}
		ea := eps[k]
		if ea == nil {
			ea = &acc{}
			eps[k] = ea
		}
		ea.add(r)
	})
	if err != nil {
		return nil, fmt.Errorf("summarize: %w", err)
	}
	out := make([]ServiceSummary, 0, len(services))
	idx := map[string]int{}
	names := make([]string, 0, len(services))
	for name := range services {
		names = append(names, name)
	}
	slices.Sort(names)
	for i, name := range names {
		idx[name] = i
		out = append(out, ServiceSummary{Service: name, Stats: services[name].stats(), Endpoints: []EndpointSummary{}})
	}
	for k, a := range eps {
		ss := &out[idx[k.service]]
		ss.Endpoints = append(ss.Endpoints, EndpointSummary{Direction: k.dir, Method: k.method, Host: k.host, Route: k.route, Stats: a.stats()})
	}
	for i := range out {
		slices.SortFunc(out[i].Endpoints, func(a, b EndpointSummary) int {
			if c := cmp.Compare(b.Count, a.Count); c != 0 {
				return c
			}
			return cmp.Or(cmp.Compare(a.Direction, b.Direction), cmp.Compare(a.Host, b.Host),
				cmp.Compare(a.Route, b.Route), cmp.Compare(a.Method, b.Method))
		})
	}
	return out, nil
}

// ServiceMap is which service calls which hosts.
type ServiceMap struct {
	Services []MapService `json:"services"` // by name
	Edges    []Edge       `json:"edges"`    // by From, then To
}

// MapService is a service with the traffic it received (inbound records)
// and the calls it made (outbound records).
type MapService struct {
	Name     string `json:"name"`
	Inbound  Stats  `json:"inbound"`
	Outbound Stats  `json:"outbound"`
}

// Edge is the calls of a service to one host, from its outbound records.
// ToService names the captured service that host is, when the host is a
// service's name or starts with it and a dot (orders.shop.svc.cluster.local).
type Edge struct {
	From      string `json:"from"`
	To        string `json:"to"`
	ToService string `json:"toService,omitempty"`
	Stats
}

// Map returns the service map of the records that match f.
func Map(ctx context.Context, s Store, tenant string, f Filter) (*ServiceMap, error) {
	type svc struct{ in, out acc }
	services := map[string]*svc{}
	type edgeKey struct{ from, to string }
	edges := map[edgeKey]*acc{}
	err := scanBounded(ctx, s, tenant, f, func(r *Row) {
		sv := services[r.Service]
		if sv == nil {
			sv = &svc{}
			services[r.Service] = sv
		}
		if r.Direction == "in" {
			sv.in.add(r)
			return
		}
		sv.out.add(r)
		k := edgeKey{r.Service, r.Host}
		a := edges[k]
		if a == nil {
			a = &acc{}
			edges[k] = a
		}
		a.add(r)
	})
	if err != nil {
		return nil, fmt.Errorf("service map: %w", err)
	}
	m := &ServiceMap{Services: []MapService{}, Edges: []Edge{}}
	for name, sv := range services {
		m.Services = append(m.Services, MapService{Name: name, Inbound: sv.in.stats(), Outbound: sv.out.stats()})
	}
	slices.SortFunc(m.Services, func(a, b MapService) int { return cmp.Compare(a.Name, b.Name) })
	for k, a := range edges {
		e := Edge{From: k.from, To: k.to, Stats: a.stats()}
		for name := range services {
			if name != "" && (k.to == name || strings.HasPrefix(k.to, name+".")) && len(name) > len(e.ToService) {
				e.ToService = name
			}
		}
		m.Edges = append(m.Edges, e)
	}
	slices.SortFunc(m.Edges, func(a, b Edge) int { return cmp.Or(cmp.Compare(a.From, b.From), cmp.Compare(a.To, b.To)) })
	return m, nil
}

// Bucket is one step of a Histogram.
type Bucket struct {
	Start  time.Time `json:"start"`
	Count  int64     `json:"count"`
	Errors int64     `json:"errors"`
}

// MaxBuckets bounds a Histogram.
const MaxBuckets = 10_000

// Histogram counts the records that match f and the failed ones per step,
// from f.From (or the first record) to f.To (or the last). Steps start at
// multiples of step since the Unix epoch; empty steps are included.
func Histogram(ctx context.Context, s Store, tenant string, f Filter, step time.Duration) ([]Bucket, error) {
	if step < time.Millisecond {
		return nil, fmt.Errorf("histogram step %s: want at least 1ms", step)
	}
	if !f.From.IsZero() && !f.To.IsZero() && f.To.Sub(f.From)/step > MaxBuckets {
		return nil, fmt.Errorf("histogram of %s in steps of %s: more than %d steps", f.To.Sub(f.From), step, MaxBuckets)
	}
	counts, err := s.Count(ctx, tenant, f, step)
	if err != nil {
		return nil, fmt.Errorf("histogram: %w", err)
	}
	stepUs := step.Microseconds()
	lo, hi := int64(0), int64(-1)
	if len(counts) > 0 {
		lo, hi = counts[0].Start.UnixMicro(), counts[len(counts)-1].Start.UnixMicro()
	}
	if !f.From.IsZero() {
		us := f.From.UnixMicro()
		lo = us - mod(us, stepUs)
	}
	if !f.To.IsZero() {
		us := f.To.UnixMicro() - 1
		hi = us - mod(us, stepUs)
	}
	if (hi-lo)/stepUs > MaxBuckets {
		return nil, fmt.Errorf("histogram: more than %d steps of %s: use a longer step", MaxBuckets, step)
	}
	out := []Bucket{}
	for k := lo; k <= hi; k += stepUs {
		b := Bucket{Start: time.UnixMicro(k).UTC()}
		if len(counts) > 0 && counts[0].Start.UnixMicro() == k {
			b = counts[0]
			counts = counts[1:]
		}
		out = append(out, b)
	}
	return out, nil
}

// StepStart returns the start of the step of length stepUs that us is in.
func StepStart(us, stepUs int64) int64 { return us - mod(us, stepUs) }

func mod(a, b int64) int64 {
	m := a % b
	if m < 0 {
		m += b
	}
	return m
}

// Counts is how many records of a set (a snapshot's) there are by
// direction, service, host and endpoint, each by count, most first, then
// by name.
type Counts struct {
	Directions []Count         `json:"directions"`
	Services   []Count         `json:"services"`
	Hosts      []Count         `json:"hosts"`
	Endpoints  []EndpointCount `json:"endpoints"`
}

// Count is a name and how many records have it.
type Count struct {
	Name  string `json:"name"`
	Count int64  `json:"count"`
}

// EndpointCount is how many records an endpoint has: a direction, method,
// host and route.
type EndpointCount struct {
	Direction string `json:"direction"`
	Method    string `json:"method,omitempty"`
	Host      string `json:"host"`
	Route     string `json:"route"`
	Count     int64  `json:"count"`
}

// CountRecords returns the Counts of the tenant's records that f selects
// (a snapshot's, with f.Snapshot), at most MaxSummaryRows of them.
func CountRecords(ctx context.Context, s Store, tenant string, f Filter) (*Counts, error) {
	dirs, services, hosts := map[string]int64{}, map[string]int64{}, map[string]int64{}
	endpoints := map[EndpointCount]int64{}
	err := scanBounded(ctx, s, tenant, f, func(r *Row) {
		dirs[r.Direction]++
		services[r.Service]++
		hosts[r.Host]++
		endpoints[EndpointCount{Direction: r.Direction, Method: r.Method, Host: r.Host, Route: r.Route}]++
	})
	if err != nil {
		return nil, err
	}
	c := &Counts{Directions: counts(dirs), Services: counts(services), Hosts: counts(hosts), Endpoints: []EndpointCount{}}
	for e, n := range endpoints {
		e.Count = n
		c.Endpoints = append(c.Endpoints, e)
	}
	slices.SortFunc(c.Endpoints, func(a, b EndpointCount) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Direction, b.Direction), cmp.Compare(a.Host, b.Host),
			cmp.Compare(a.Route, b.Route), cmp.Compare(a.Method, b.Method))
	})
	return c, nil
}

func counts(m map[string]int64) []Count {
	out := make([]Count, 0, len(m))
	for name, n := range m {
		out = append(out, Count{Name: name, Count: n})
	}
	slices.SortFunc(out, func(a, b Count) int { return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Name, b.Name)) })
	return out
}
