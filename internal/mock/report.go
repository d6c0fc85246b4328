package mock

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
)

// maxMisses bounds the misses a report lists; the rest are counted.
const maxMisses = 1000

// Report counts what the server answered: requests, matches, misses (the first maxMisses of them, each
// distinct method and URL once, with how many times it missed), and the counts per endpoint.
type Report struct {
	ix          *Index
	requests    atomic.Int64
	matches     atomic.Int64
	missed      atomic.Int64
	passthrough atomic.Int64

	mu     sync.Mutex
	misses []Miss
	seen   map[string]int // method+url → index in misses
}

// Miss is one request no recording matched.
type Miss struct {
	Method  string `json:"method"`
	URL     string `json:"url"`
	Closest string `json:"closest"` // the closest recorded request, "" if none
	Why     string `json:"why"`     // what differed from it
	Count   int    `json:"count"`   // how many times this method and URL missed
}

// Summary is the report as JSON (--report FILE).
type Summary struct {
	Requests    int64           `json:"requests"`
	Matched     int64           `json:"matched"`
	Missed      int64           `json:"missed"`
	Passthrough int64           `json:"passthrough"` // misses forwarded to the real upstream
	Records     int             `json:"records"`     // recordings the mock served from
	Endpoints   []EndpointStats `json:"endpoints"`
	Misses      []Miss          `json:"misses"` // at most 1000, each method and URL once
}

func newReport(ix *Index) *Report { return &Report{ix: ix, seen: map[string]int{}} }

func (r *Report) matched(string) {
	r.requests.Add(1)
	r.matches.Add(1)
}

func (r *Report) miss(req *Request, res Result) {
	r.requests.Add(1)
	r.missed.Add(1)
	key := req.Method + " " + req.URL()
	r.mu.Lock()
	defer r.mu.Unlock()
	if i, ok := r.seen[key]; ok {
		r.misses[i].Count++
		return
	}
	if len(r.misses) >= maxMisses {
		return
	}
	r.seen[key] = len(r.misses)
	r.misses = append(r.misses, Miss{Method: req.Method, URL: req.URL(), Closest: res.Closest, Why: strings.Join(res.Why, "; "), Count: 1})
}

// Summary returns the report so far.
func (r *Report) Summary() Summary {
	r.mu.Lock()
	misses := append([]Miss{}, r.misses...)
	r.mu.Unlock()
	return Summary{Requests: r.requests.Load(), Matched: r.matches.Load(), Missed: r.missed.Load(), Passthrough: r.passthrough.Load(),
		Records: r.ix.Records(), Endpoints: r.ix.Stats(), Misses: misses}
}

// Line is the one-line status: totals and the busiest endpoints.
func (r *Report) Line() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d requests, %d matched, %d missed", r.requests.Load(), r.matches.Load(), r.missed.Load())
	n := 0
	for _, e := range r.ix.Stats() {
		if e.Requests == 0 || n == 3 {
			break
		}
		if n == 0 {
			b.WriteString(" |")
		}
		fmt.Fprintf(&b, " %s %d", e.Endpoint, e.Requests)
		if e.Missed > 0 {
			fmt.Fprintf(&b, " (%d missed)", e.Missed)
		}
		n++
	}
	return b.String()
}

// WriteTable writes the summary table: one row per endpoint that was recorded or asked for, then the
// misses.
func (s Summary) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ENDPOINT\tRECORDED\tREQUESTS\tMATCHED\tMISSED")
	for _, e := range s.Endpoints {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\n", e.Endpoint, e.Recordings, e.Requests, e.Matched, e.Missed)
	}
	fmt.Fprintf(tw, "total\t%d\t%d\t%d\t%d\n", s.Records, s.Requests, s.Matched, s.Missed)
	if err := tw.Flush(); err != nil {
		return err
	}
	for i, m := range s.Misses {
		if i == 20 {
			fmt.Fprintf(w, "... and %d more distinct misses (--report FILE lists them)\n", len(s.Misses)-i)
			break
		}
		fmt.Fprintf(w, "miss ×%d: %s %s\n", m.Count, m.Method, m.URL)
		if m.Closest != "" {
			fmt.Fprintf(w, "  closest: %s\n", m.Closest)
		}
		if m.Why != "" {
			fmt.Fprintf(w, "  differs: %s\n", m.Why)
		}
	}
	return nil
}

// WriteJSON writes the summary as indented JSON.
func (s Summary) WriteJSON(w io.Writer) error {
	if s.Misses == nil {
		s.Misses = []Miss{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(s)
}
