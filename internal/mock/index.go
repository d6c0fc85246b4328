// Package mock answers an app's outbound calls from recorded ones: an index of the outbound records of a
// snapshot by endpoint (host, method, path template), the closest-match choice among an endpoint's
// recordings where volatile values do not count (internal/volatile), recorded order for repeated calls per
// client session, and the server that listens as goproxy's outbound port does (HTTP_PROXY, HTTPS_PROXY with
// TLS unwrap, reverse listeners), explains misses and counts what it answered.
package mock

import (
	"cmp"
	"fmt"
	"hash/maphash"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/volatile"
)

// absent is the value of a field a request does not have.
const absent = "\x00absent"

// Index holds the recordings of a snapshot by endpoint and chooses the one that answers a live request. It
// is safe for concurrent use; the choice of one endpoint is serialized, so that repeated calls get the
// recorded order whatever the interleaving of other clients.
type Index struct {
	rules     *Rules
	sessHdrs  []string
	endpoints map[string]*endpoint
	byHost    map[string][]*endpoint // host → its endpoints, for the closest one of a miss
	list      []*endpoint            // in order of first recording
	multi     bool                   // the recordings show more than one client session

	mu       sync.Mutex        // guards bound and claimed
	bound    map[string]string // live session → recorded session
	claimed  map[string]bool   // recorded sessions bound to a live one
	sessions []string          // recorded sessions, in order of first recording
	records  int
}

// endpoint is the recordings of one host, method, path template (and operation header).
type endpoint struct {
	key     string
	host    string
	recs    []*recording
	profile volatile.Profile
	rules   ruleSet
	cols    map[string]int // field name → column
	names   []string       // column → field name
	kinds   []colKind      // column → how it counts
	body    []bool         // column → a field of the request body (matches anything when a body was cut short)
	hashes  [][]uint64     // column → the hash of each recording's value, in recording order (while indexing)
	// keys: column → the value hashes of its recordings, sorted (a body column leaves out cutShort);
	// order: column → the recording of each key, in recorded order among equal keys.
	keys     [][]uint64
	order    [][]int32
	cutShort []int32 // the recordings whose request body was cut short, in recorded order
	ignored  map[string]bool

	requests, matched, missed atomic.Int64

	mu      sync.Mutex         // serializes choices among recs, guards cursors
	cursors map[string]*cursor // live session → the recordings it was answered with
	fifo    []string           // cursor keys in order of creation, to bound cursors
}

// maxCursors bounds the live sessions an endpoint remembers; the oldest is forgotten first.
const maxCursors = 10000

type cursor struct {
	used []bool // by recording
}

type colKind uint8

const (
	colHard    colKind = iota // must be equal for a match
	colSoft                   // a difference only makes a recording less close
	colIgnored                // never counts
)

// recording is one recorded exchange of an endpoint.
type recording struct {
	rec     *capture.Record
	n       int      // its position in the endpoint, in recorded order
	vals    []string // by column
	anyBody bool     // its request body was truncated: body fields match anything
	session string   // recorded session ("" when the recording shows one)
	url     string
}

// NewIndex indexes the outbound HTTP records among recs (others are skipped), in the order of their start
// time (stable for equal times). rules may be nil.
func NewIndex(recs []*capture.Record, rules *Rules) *Index {
	ix := &Index{rules: rules, sessHdrs: rules.sessionHeaders(), endpoints: map[string]*endpoint{}, byHost: map[string][]*endpoint{},
		bound: map[string]string{}, claimed: map[string]bool{}}
	var out []*capture.Record
	for _, r := range recs {
		if r != nil && r.Direction == capture.DirOut && r.HTTP != nil && r.HTTP.Res != nil {
			out = append(out, r)
		}
	}
	slices.SortStableFunc(out, func(a, b *capture.Record) int { return a.Start.Compare(b.Start) })
	type pending struct {
		ep     *endpoint
		p      parsed
		rec    *capture.Record
		anyBod bool
	}
	ps := make([]pending, 0, len(out))
	sessCount := map[string]int{}
	for _, r := range out {
		req := recordRequest(r)
		p := parse(req, ix.sessHdrs)
		ep := ix.endpoints[p.key]
		if ep == nil {
			ep = &endpoint{key: p.key, host: p.host, cols: map[string]int{}, cursors: map[string]*cursor{}}
			ep.rules = rules.forEndpoint(p.key)
			ix.endpoints[p.key] = ep
			ix.byHost[p.host] = append(ix.byHost[p.host], ep)
			ix.list = append(ix.list, ep)
		}
		anyBody := r.HTTP.Req.Body.Truncated || r.HTTP.MessagesTruncated
		if anyBody {
			p.fields = slices.DeleteFunc(p.fields, func(f volatile.Field) bool { return isBodyField(f.Name) })
		}
		ep.profile.Observe(p.fields)
		sessCount[p.session]++
		ps = append(ps, pending{ep, p, r, anyBody})
	}
	// A session is a value that recurs: a header that is fresh in every call is a token, not a session.
	for _, pe := range ps {
		if sessCount[pe.p.session] < 2 {
			continue
		}
		if !slices.Contains(ix.sessions, pe.p.session) {
			ix.sessions = append(ix.sessions, pe.p.session)
		}
	}
	ix.multi = len(ix.sessions) > 1
	for _, ep := range ix.list {
		ep.columns()
	}
	for _, pe := range ps {
		ep := pe.ep
		rc := &recording{rec: pe.rec, n: len(ep.recs), vals: make([]string, len(ep.names)), anyBody: pe.anyBod, url: pe.rec.HTTP.Req.URL}
		for i := range rc.vals {
			rc.vals[i] = absent
		}
		for _, f := range pe.p.fields {
			if c, ok := ep.cols[f.Name]; ok && rc.vals[c] == absent {
				rc.vals[c] = f.Value
			}
		}
		for c, v := range rc.vals {
			ep.hashes[c] = append(ep.hashes[c], maphash.String(seed, v))
		}
		if ix.multi && sessCount[pe.p.session] >= 2 {
			rc.session = pe.p.session
		}
		ep.recs = append(ep.recs, rc)
		ix.records++
	}
	for _, ep := range ix.list {
		ep.sortColumns()
	}
	return ix
}

// sortColumns orders each column's recordings by value, so that a match finds the recordings that have a
// live value by binary search instead of comparing every recording's.
func (ep *endpoint) sortColumns() {
	for i, rc := range ep.recs {
		if rc.anyBody {
			ep.cutShort = append(ep.cutShort, int32(i))
		}
	}
	ep.keys, ep.order = make([][]uint64, len(ep.names)), make([][]int32, len(ep.names))
	for c, k := range ep.kinds {
		if k == colIgnored {
			continue
		}
		h := ep.hashes[c]
		type pair struct {
			h uint64
			i int32
		}
		ps := make([]pair, 0, len(ep.recs))
		sorted := true
		for i, rc := range ep.recs {
			if !(ep.body[c] && rc.anyBody) {
				if n := len(ps); n > 0 && h[i] < ps[n-1].h {
					sorted = false
				}
				ps = append(ps, pair{h[i], int32(i)})
			}
		}
		if !sorted {
			slices.SortFunc(ps, func(a, b pair) int { return cmp.Or(cmp.Compare(a.h, b.h), cmp.Compare(a.i, b.i)) })
		}
		keys, o := make([]uint64, len(ps)), make([]int32, len(ps))
		for j, p := range ps {
			keys[j], o[j] = p.h, p.i
		}
		ep.keys[c], ep.order[c] = keys, o
	}
	ep.hashes = nil
}

// having returns the recordings of column c whose value hashes to h, in recorded order.
func (ep *endpoint) having(c int, h uint64) []int32 {
	keys := ep.keys[c]
	lo, hi := 0, len(keys) // the first key >= h is in keys[lo:hi+1]
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if keys[m] < h {
			lo = m + 1
		} else {
			hi = m
		}
	}
	hi = lo
	for hi < len(keys) && keys[hi] == h {
		hi++
	}
	return ep.order[c][lo:hi]
}

func isBodyField(name string) bool {
	return name == "body" || strings.HasPrefix(name, "body.") || strings.HasPrefix(name, "form.") || strings.HasPrefix(name, "grpc.")
}

// columns decides how each field the endpoint's recordings have counts.
func (ep *endpoint) columns() {
	for _, name := range ep.profile.Names() {
		ep.cols[name] = len(ep.names)
		ep.names = append(ep.names, name)
		ep.kinds = append(ep.kinds, ep.kindOf(name, ep.profile.Volatile(name)))
		ep.body = append(ep.body, isBodyField(name))
	}
	ep.hashes = make([][]uint64, len(ep.names))
}

func (ep *endpoint) kindOf(name string, vol bool) colKind {
	switch ep.rules.of(name) {
	case ruleIgnore:
		return colIgnored
	case ruleRequire:
		return colHard
	}
	if vol || strings.HasPrefix(name, "header.") {
		return colSoft
	}
	return colHard
}

// Records is how many recordings the index holds.
func (ix *Index) Records() int { return ix.records }

// Endpoints is how many endpoints the index holds.
func (ix *Index) Endpoints() int { return len(ix.list) }

// Result is the choice for one live request.
type Result struct {
	Record   *capture.Record // the recording that answers; nil on a miss
	Endpoint string          // the endpoint's name ("" when no recording has its host, method and path)
	Closest  string          // on a miss: the closest recorded request, "METHOD URL #n" ("" if none)
	Why      []string        // on a miss: what differed from the closest one
	Nth      int             // on a match: the recording's position among its endpoint's, from 1
}

// Matched reports whether a recording answers.
func (r Result) Matched() bool { return r.Record != nil }

// score is how far a recording is from a live request.
type score struct {
	hard, soft int
}

func (a score) less(b score) bool { return a.hard < b.hard || a.hard == b.hard && a.soft < b.soft }

// Match chooses the recording that answers req: among the recordings of its endpoint, those whose fields
// that count are all equal to the request's (hard differences: none), and among those the closest (fewest
// soft differences: volatile fields and headers); among equally close ones, the first that this client
// session has not been answered with yet, in recorded order, or else the last.
func (ix *Index) Match(req *Request) Result {
	p := parse(req, ix.sessHdrs)
	ep := ix.endpoints[p.key]
	if ep == nil {
		return ix.missNoEndpoint(req, p)
	}
	ep.requests.Add(1)
	live, extra := ep.values(p.fields)
	best, tied := ep.closest(live, len(extra))
	closest := tied[0]
	if best.hard > 0 {
		ep.missed.Add(1)
		return Result{Endpoint: ep.key, Closest: closest.name(ep), Why: ep.diff(live, extra, p.fields, closest)}
	}
	rc := ix.choose(ep, p.session, tied)
	ep.matched.Add(1)
	return Result{Record: rc.rec, Endpoint: ep.key, Nth: rc.n + 1}
}

// values returns a live request's value of each column (absent for those it has not) and the fields that
// count that no recording of the endpoint has.
func (ep *endpoint) values(fields []volatile.Field) (live, extra []string) {
	live = make([]string, len(ep.names))
	for i := range live {
		live[i] = absent
	}
	for _, f := range fields {
		c, ok := ep.cols[f.Name]
		if !ok {
			if !strings.HasPrefix(f.Name, "header.") && ep.rules.of(f.Name) != ruleIgnore && volatile.Classify(f.Value) == volatile.None {
				extra = append(extra, f.Name)
			}
			continue
		}
		if live[c] == absent {
			live[c] = f.Value
		}
	}
	return live, extra
}

// scratch is what closest counts per recording; pooled, as an endpoint can hold many recordings.
type scratch struct {
	hard, soft []int32 // by recording: the hard and soft columns whose value equals the live request's
	touched    []int32 // the recordings with a count, in the order first counted
}

var scratches = sync.Pool{New: func() any { return new(scratch) }}

// closest scores the recordings of the endpoint against a live request's values by column (extra: the
// counted fields no recording has) and returns the best score and the recordings that have it, in
// recorded order. For each column it counts only the recordings that have the live value (found by binary
// search); a column that every recording matches counts once for all. A recording never counted is as far
// as can be, so the best are among the counted ones, or else every recording is.
func (ep *endpoint) closest(live []string, extra int) (score, []*recording) {
	sc := scratches.Get().(*scratch)
	defer scratches.Put(sc)
	if len(sc.hard) < len(ep.recs) {
		sc.hard, sc.soft = make([]int32, len(ep.recs)), make([]int32, len(ep.recs))
	}
	var all, worst score // matches every recording has; the score of a recording that matches nothing
	worst.hard = extra
	for c, k := range ep.kinds {
		if k == colIgnored {
			continue
		}
		counter, total := sc.soft, &worst.soft
		if k == colHard {
			counter, total = sc.hard, &worst.hard
		}
		*total++
		have := ep.having(c, maphash.String(seed, live[c]))
		if ep.body[c] && len(ep.cutShort) > 0 {
			if len(have)+len(ep.cutShort) == len(ep.recs) {
				all.add(k)
				continue
			}
			sc.count(counter, ep.cutShort)
		} else if len(have) == len(ep.recs) {
			all.add(k)
			continue
		}
		sc.count(counter, have)
	}
	base := score{worst.hard - all.hard, worst.soft - all.soft}
	best := base
	var tied []int32
	for _, i := range sc.touched {
		switch s := (score{base.hard - int(sc.hard[i]), base.soft - int(sc.soft[i])}); {
		case s.less(best):
			best, tied = s, append(tied[:0], i)
		case s == best:
			tied = append(tied, i)
		}
		sc.hard[i], sc.soft[i] = 0, 0
	}
	sc.touched = sc.touched[:0]
	if len(tied) == 0 {
		return best, ep.recs
	}
	slices.Sort(tied)
	recs := make([]*recording, len(tied))
	for j, i := range tied {
		recs[j] = ep.recs[i]
	}
	return best, recs
}

// count adds one to counter (sc.hard or sc.soft) for each of recs, noting those counted for the first time.
func (sc *scratch) count(counter []int32, recs []int32) {
	for _, i := range recs {
		if sc.hard[i]+sc.soft[i] == 0 {
			sc.touched = append(sc.touched, i)
		}
		counter[i]++
	}
}

func (s *score) add(k colKind) {
	if k == colHard {
		s.hard++
	} else {
		s.soft++
	}
}

// choose picks among equally close recordings (in recorded order) for a live session: the recordings of
// the recorded session it is bound to, the first it has not been answered with, or else the last.
func (ix *Index) choose(ep *endpoint, live string, tied []*recording) *recording {
	if len(tied) == 1 {
		ep.mu.Lock()
		ep.cursor(live).used[tied[0].n] = true
		ep.mu.Unlock()
		return tied[0]
	}
	if ix.multi {
		if s := ix.bind(live, tied); s != "" {
			own := tied[:0:0]
			for _, rc := range tied {
				if rc.session == s {
					own = append(own, rc)
				}
			}
			if len(own) > 0 {
				tied = own
			}
		}
	}
	ep.mu.Lock()
	defer ep.mu.Unlock()
	cur := ep.cursor(live)
	for _, rc := range tied {
		if !cur.used[rc.n] {
			cur.used[rc.n] = true
			return rc
		}
	}
	return tied[len(tied)-1]
}

// bind returns the recorded session a live one stands for: itself when it was recorded (the same
// Authorization or cookie), else the one it was bound to, else the first session among the candidates that
// no live session has taken yet.
func (ix *Index) bind(live string, tied []*recording) string {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if s, ok := ix.bound[live]; ok {
		return s
	}
	if slices.Contains(ix.sessions, live) {
		ix.bound[live], ix.claimed[live] = live, true
		return live
	}
	for _, rc := range tied {
		if rc.session != "" && !ix.claimed[rc.session] && !slices.Contains(ix.sessions, live) {
			if len(ix.bound) < maxCursors {
				ix.bound[live] = rc.session
			}
			ix.claimed[rc.session] = true
			return rc.session
		}
	}
	return ""
}

func (ep *endpoint) cursor(live string) *cursor {
	c := ep.cursors[live]
	if c == nil {
		if len(ep.fifo) >= maxCursors {
			delete(ep.cursors, ep.fifo[0])
			ep.fifo = ep.fifo[1:]
		}
		c = &cursor{used: make([]bool, len(ep.recs))}
		ep.cursors[live] = c
		ep.fifo = append(ep.fifo, live)
	}
	return c
}

func (rc *recording) name(ep *endpoint) string {
	return fmt.Sprintf("%s %s #%d", rc.rec.HTTP.Req.Method, rc.url, rc.n+1)
}

// seed keys the value hashes of one process.
var seed = maphash.MakeSeed()

// maxWhy bounds the differences a miss lists.
const maxWhy = 5

// diff says what differs between a live request and a recording, hard differences first.
func (ep *endpoint) diff(live []string, extra []string, fields []volatile.Field, rc *recording) []string {
	var why []string
	for c, k := range ep.kinds {
		if k != colHard || live[c] == rc.vals[c] || rc.anyBody && isBodyField(ep.names[c]) {
			continue
		}
		switch {
		case live[c] == absent:
			why = append(why, fmt.Sprintf("%s missing (recorded %s)", ep.names[c], short(rc.vals[c])))
		case rc.vals[c] == absent:
			why = append(why, fmt.Sprintf("%s=%s not in that recording", ep.names[c], short(live[c])))
		default:
			why = append(why, fmt.Sprintf("%s=%s (recorded %s)", ep.names[c], short(live[c]), short(rc.vals[c])))
		}
	}
	for _, name := range extra {
		for _, f := range fields {
			if f.Name == name {
				why = append(why, fmt.Sprintf("%s=%s never recorded", name, short(f.Value)))
				break
			}
		}
	}
	if len(why) > maxWhy {
		why = append(why[:maxWhy], fmt.Sprintf("and %d more", len(why)-maxWhy))
	}
	return why
}

// short quotes a value for a miss's explanation, cut to 40 bytes.
func short(v string) string {
	if v == absent {
		return "nothing"
	}
	if len(v) > 40 {
		v = v[:37] + "..."
	}
	return fmt.Sprintf("%q", v)
}

// missNoEndpoint explains a request whose endpoint was never recorded: the closest endpoint of the same
// host (same method first, then the most path segments in common).
func (ix *Index) missNoEndpoint(req *Request, p parsed) Result {
	res := Result{}
	eps := ix.byHost[p.host]
	if len(eps) == 0 {
		hosts := make([]string, 0, len(ix.byHost))
		for h := range ix.byHost {
			hosts = append(hosts, h)
		}
		slices.Sort(hosts)
		if len(hosts) > 5 {
			hosts = append(hosts[:5], "...")
		}
		res.Why = []string{fmt.Sprintf("no recording for host %s (recorded hosts: %s)", p.host, strings.Join(hosts, ", "))}
		return res
	}
	method := strings.ToUpper(req.Method)
	best, bestScore := (*endpoint)(nil), -1
	for _, ep := range eps {
		_, a, _ := strings.Cut(ep.key, " ")
		_, b, _ := strings.Cut(p.key, " ")
		s := commonPrefix(a, b)
		if strings.HasPrefix(ep.key, method+" ") {
			s += 1000
		}
		if s > bestScore {
			best, bestScore = ep, s
		}
	}
	rc := best.recs[0]
	res.Closest = rc.name(best)
	res.Why = []string{fmt.Sprintf("no recording of %s; closest endpoint %s", p.key, best.key)}
	return res
}

func commonPrefix(a, b string) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}

// EndpointStats are the counts of one endpoint.
type EndpointStats struct {
	Endpoint   string `json:"endpoint"`
	Recordings int    `json:"recordings"`
	Requests   int64  `json:"requests"`
	Matched    int64  `json:"matched"`
	Missed     int64  `json:"missed"`
}

// Stats returns the counts of every endpoint, busiest first.
func (ix *Index) Stats() []EndpointStats {
	out := make([]EndpointStats, 0, len(ix.list))
	for _, ep := range ix.list {
		out = append(out, EndpointStats{Endpoint: ep.key, Recordings: len(ep.recs), Requests: ep.requests.Load(),
			Matched: ep.matched.Load(), Missed: ep.missed.Load()})
	}
	slices.SortStableFunc(out, func(a, b EndpointStats) int { return cmp.Compare(b.Requests, a.Requests) })
	return out
}

// Volatile describes the fields of every endpoint that do not count fully, for --explain: endpoint, field,
// and why.
func (ix *Index) Volatile() [][3]string {
	var out [][3]string
	for _, ep := range ix.list {
		for c, name := range ep.names {
			switch ep.kinds[c] {
			case colIgnored:
				out = append(out, [3]string{ep.key, name, "ignored by the rules"})
			case colSoft:
				why := ep.profile.Why(name)
				if why == "" {
					why = "a header: breaks ties only"
				}
				out = append(out, [3]string{ep.key, name, why})
			}
		}
	}
	return out
}

// sortedRecords returns the indexed records in recorded order.
func (ix *Index) sortedRecords() []*capture.Record {
	var out []*capture.Record
	for _, ep := range ix.list {
		for _, rc := range ep.recs {
			out = append(out, rc.rec)
		}
	}
	slices.SortStableFunc(out, func(a, b *capture.Record) int { return a.Start.Compare(b.Start) })
	return out
}
