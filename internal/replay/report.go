package replay

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is what a replay did and found. Its JSON form is what --report writes (and what the hub will
// store); docs/replay.md describes it.
type Report struct {
	Target string `json:"target"`
	// Snapshot is the hub snapshot whose records were replayed (--snapshot), the first when there were
	// several (all in Snapshots); absent for files.
	Snapshot  string    `json:"snapshot,omitempty"`
	Snapshots []string  `json:"snapshots,omitempty"`
	Started   time.Time `json:"started"`
	Seconds   float64   `json:"seconds"`  // from the first request sent to the last answer
	Requests  int       `json:"requests"` // in one pass of the recording

	Sent            int       `json:"sent"`
	Answered        int       `json:"answered"`
	Errors          int       `json:"errors"` // sent without an answer (refused, reset, timed out)
	StatusMatched   int       `json:"status_matched"`
	BodyCompared    int       `json:"body_compared"` // answered with a recorded body captured whole
	BodyMatched     int       `json:"body_matched"`
	HeadersCompared int       `json:"headers_compared,omitempty"`
	HeadersMatched  int       `json:"headers_matched,omitempty"`
	Latency         Latency   `json:"latency_ms"`
	RPS             float64   `json:"rps"`
	Endpoints       []EPStats `json:"endpoints"`
	Diffs           []EPDiffs `json:"diffs"`
	// Noise lists the response fields learned as noise ("endpoint field"), at most 100.
	Noise []string `json:"noise,omitempty"`
	// Answers are the answers to each recorded request (the first answer, or the first that differed
	// when it was sent several times), in recorded order, at most MaxAnswers; AnswersLeftOut counts
	// the requests beyond. The live side of an answer that differed is kept (Answer.Live), bounded.
	Answers        []Answer    `json:"answers"`
	AnswersLeftOut int         `json:"answers_left_out,omitempty"`
	Assertions     []Assertion `json:"assertions"`
	Passed         bool        `json:"passed"`
}

// Latency are quantiles of the answers' latency in ms (within 1.6%), from the send time (the scheduled one
// with a rate) to the answer's last byte.
type Latency struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// EPStats are one endpoint's counts.
type EPStats struct {
	Endpoint      string  `json:"endpoint"`
	Sent          int     `json:"sent"`
	Answered      int     `json:"answered"`
	Errors        int     `json:"errors"`
	StatusMatched int     `json:"status_matched"`
	BodyCompared  int     `json:"body_compared"`
	BodyMatched   int     `json:"body_matched"`
	Latency       Latency `json:"latency_ms"`
}

// EPDiffs are the differences found at one endpoint: how many answers differed, with a few examples.
type EPDiffs struct {
	Endpoint string    `json:"endpoint"`
	Count    int       `json:"count"`
	Examples []Example `json:"examples"`
	Errors   []string  `json:"errors,omitempty"` // a few transport errors, when there were
}

// Example is one answer that differed from its recording.
type Example struct {
	Record   string      `json:"record"`  // the recorded record's id
	Request  string      `json:"request"` // METHOD path?query as recorded
	Recorded Side        `json:"recorded"`
	Live     Side        `json:"live"`
	Fields   []FieldDiff `json:"fields"`
}

// Side is the recorded or the live answer, shortly.
type Side struct {
	Status int    `json:"status"`
	Body   string `json:"body,omitempty"` // the first bytes, when the bodies differ
}

// Answer is what the target answered to one recorded request, and how it compared.
type Answer struct {
	Record   string `json:"record"`   // the recorded record's id
	Endpoint string `json:"endpoint"` // as in Endpoints
	Request  string `json:"request"`  // METHOD path?query as recorded
	Status   int    `json:"status"`   // the live status; 0 after an error
	Error    string `json:"error,omitempty"`
	// StatusMatched and BodyMatched say how it compared; BodyMatched is absent when the body was not
	// compared (the recorded body was not captured whole).
	StatusMatched bool        `json:"status_matched"`
	BodyMatched   *bool       `json:"body_matched,omitempty"`
	Fields        []FieldDiff `json:"fields,omitempty"` // the differences, when it differed
	Live          *LiveAnswer `json:"live,omitempty"`   // when it differed
}

// LiveAnswer is the live side of an answer that differed: its headers and its body, with its content
// coding undone, bounded by MaxLiveBody each and MaxLiveBytes for the whole report.
type LiveAnswer struct {
	Headers map[string][]string `json:"headers"`
	Body    string              `json:"body,omitempty"`
	// BodyBase64 says Body is base64: the body is not UTF-8 text.
	BodyBase64 bool `json:"body_base64,omitempty"`
	BodySize   int  `json:"body_size"` // the body's bytes after decoding, all of them
	// BodyCut says Body holds less than BodySize bytes: cut to MaxLiveBody, or left out when the
	// report's MaxLiveBytes were spent.
	BodyCut bool `json:"body_cut,omitempty"`
}

// Bounds of the answers a report keeps.
const (
	MaxAnswers   = 10000    // answers kept, in recorded order
	MaxLiveBody  = 64 << 10 // bytes of one live body kept
	MaxLiveBytes = 4 << 20  // bytes of live headers and bodies kept in all
)

// Assertion is one condition that fails the replay when it holds, and how it came out.
type Assertion struct {
	Expr   string  `json:"expr"`   // as written: status_match<100%
	Value  float64 `json:"value"`  // the measured value, in the unit of the metric
	Failed bool    `json:"failed"` // the condition held
}

func quantiles(h *histogram) Latency {
	ms := func(us int64) float64 { return math.Round(float64(us)/10) / 100 }
	return Latency{P50: ms(h.quantile(.5)), P90: ms(h.quantile(.9)), P99: ms(h.quantile(.99)), Max: ms(h.max)}
}

// report builds the report of what was counted so far.
func (r *Replay) report(start time.Time) *Report {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.stats
	rep := &Report{
		Target: r.cfg.Target, Started: start.UTC(), Requests: len(r.items),
		Sent: s.sent, Answered: s.answered, Errors: s.errors, StatusMatched: s.statusMatched,
		BodyCompared: s.bodyCompared, BodyMatched: s.bodyMatched,
		HeadersCompared: s.headersCompared, HeadersMatched: s.headersMatched,
		Latency: quantiles(&r.hist), Endpoints: []EPStats{}, Diffs: []EPDiffs{},
	}
	if !r.first.IsZero() && r.last.After(r.first) {
		d := r.last.Sub(r.first).Seconds()
		rep.Seconds = math.Round(d*1000) / 1000
		rep.RPS = math.Round(float64(s.sent)/d*10) / 10
	}
	for _, ep := range r.eps {
		es := ep.stats
		rep.Endpoints = append(rep.Endpoints, EPStats{Endpoint: ep.name, Sent: es.sent, Answered: es.answered,
			Errors: es.errors, StatusMatched: es.statusMatched, BodyCompared: es.bodyCompared,
			BodyMatched: es.bodyMatched, Latency: quantiles(&ep.hist)})
		if ep.diffs > 0 || len(ep.errs) > 0 {
			rep.Diffs = append(rep.Diffs, EPDiffs{Endpoint: ep.name, Count: ep.diffs,
				Examples: append([]Example{}, ep.examples...), Errors: slices.Clone(ep.errs)})
		}
	}
	for _, it := range r.items {
		if it.answer == nil {
			continue
		}
		if len(rep.Answers) == MaxAnswers {
			rep.AnswersLeftOut++
			continue
		}
		rep.Answers = append(rep.Answers, *it.answer)
	}
	if rep.Answers == nil {
		rep.Answers = []Answer{}
	}
	if l, ok := r.noise.(*Learner); ok {
		rep.Noise = l.Volatile()
		if len(rep.Noise) > 100 {
			rep.Noise = rep.Noise[:100]
		}
	}
	return rep
}

// Metric values of a report, by the names --fail-if uses.
func (rep *Report) metric(name string) (float64, bool) {
	pct := func(n, of int) float64 {
		if of == 0 {
			return 100
		}
		return math.Floor(float64(n)/float64(of)*10000) / 100 // floor: 99.999% is not 100%
	}
	switch name {
	case "status_match":
		return pct(rep.StatusMatched, rep.Sent), true
	case "body_match":
		return pct(rep.BodyMatched, rep.BodyCompared), true
	case "header_match", "headers_match":
		return pct(rep.HeadersMatched, rep.HeadersCompared), true
	case "errors":
		return float64(rep.Errors), true
	case "error_rate":
		if rep.Sent == 0 {
			return 0, true
		}
		return math.Round(float64(rep.Errors)/float64(rep.Sent)*10000) / 100, true
	case "p50":
		return rep.Latency.P50, true
	case "p90":
		return rep.Latency.P90, true
	case "p99":
		return rep.Latency.P99, true
	case "max":
		return rep.Latency.Max, true
	case "rps":
		return rep.RPS, true
	case "sent":
		return float64(rep.Sent), true
	}
	return 0, false
}

// Condition is a parsed --fail-if: METRIC OP VALUE.
type Condition struct {
	Expr   string
	metric string
	op     string
	value  float64
}

// Metrics are the names a condition may use, with their units.
const Metrics = "status_match, body_match, header_match, error_rate (%), errors, sent (count), p50, p90, p99, max (ms), rps"

// DefaultCondition is the assertion every replay has: the status equals the recorded one.
const DefaultCondition = "status_match<100%"

// ParseCondition reads a condition such as status_match<100%, body_match<95%, p99>200ms, errors>0 or
// rps<500. Percentages take %, latencies ms or s.
func ParseCondition(s string) (Condition, error) {
	expr := strings.Join(strings.Fields(s), "")
	bad := func(why string) (Condition, error) {
		return Condition{}, fmt.Errorf("%w: --fail-if %q: %s", ErrUsage, s, why)
	}
	i := strings.IndexAny(expr, "<>=!")
	if i <= 0 {
		return bad("want METRIC OP VALUE, such as p99>200ms (metrics: " + Metrics + ")")
	}
	c := Condition{Expr: expr, metric: expr[:i]}
	rest := expr[i:]
	for _, op := range []string{"<=", ">=", "==", "!=", "<", ">", "="} {
		if strings.HasPrefix(rest, op) {
			c.op, rest = op, rest[len(op):]
			break
		}
	}
	if c.op == "" {
		return bad("the operator must be <, <=, >, >=, == or !=")
	}
	if c.op == "=" {
		c.op = "=="
	}
	if _, ok := (&Report{}).metric(c.metric); !ok {
		return bad("unknown metric " + strconv.Quote(c.metric) + " (metrics: " + Metrics + ")")
	}
	unit := ""
	num := strings.TrimRightFunc(rest, func(r rune) bool { return r == '%' || r >= 'a' && r <= 'z' })
	unit = rest[len(num):]
	v, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return bad("the value " + strconv.Quote(rest) + " is not a number")
	}
	switch c.metric {
	case "status_match", "body_match", "header_match", "headers_match", "error_rate":
		if unit != "%" && unit != "" {
			return bad("a percentage: want % or no unit")
		}
	case "p50", "p90", "p99", "max":
		switch unit {
		case "ms", "":
		case "s":
			v *= 1000
		case "us", "µs":
			v /= 1000
		default:
			return bad("a latency: want ms or s")
		}
	default:
		if unit != "" {
			return bad("a count: want no unit")
		}
	}
	c.value = v
	return c, nil
}

// Check evaluates the conditions on the report (the default one first), sets Assertions and Passed, and
// returns the failed ones.
func (rep *Report) Check(conds []Condition) []Assertion {
	def, _ := ParseCondition(DefaultCondition)
	all := append([]Condition{def}, conds...)
	rep.Assertions = nil
	var failed []Assertion
	for _, c := range all {
		v, _ := rep.metric(c.metric)
		var hold bool
		switch c.op {
		case "<":
			hold = v < c.value
		case "<=":
			hold = v <= c.value
		case ">":
			hold = v > c.value
		case ">=":
			hold = v >= c.value
		case "==":
			hold = v == c.value
		case "!=":
			hold = v != c.value
		}
		a := Assertion{Expr: c.Expr, Value: v, Failed: hold}
		rep.Assertions = append(rep.Assertions, a)
		if hold {
			failed = append(failed, a)
		}
	}
	rep.Passed = len(failed) == 0
	return failed
}

// WriteJSON writes the report as --report writes it: indented, HTML characters as they are.
func (rep *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// WriteTable writes the per-endpoint table and the totals, then the first example of each endpoint's
// differences.
func (rep *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "endpoint\tsent\tstatus ok\tbody ok\terrors\tp50 ms\tp99 ms\t")
	row := func(name string, sent, status, bodyOK, bodyOf, errs int, l Latency) {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%d\t%.1f\t%.1f\t\n", name, sent, pctOf(status, sent), pctOf(bodyOK, bodyOf), errs, l.P50, l.P99)
	}
	for _, e := range rep.Endpoints {
		row(e.Endpoint, e.Sent, e.StatusMatched, e.BodyMatched, e.BodyCompared, e.Errors, e.Latency)
	}
	row("total", rep.Sent, rep.StatusMatched, rep.BodyMatched, rep.BodyCompared, rep.Errors, rep.Latency)
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "%d sent, %d answered, %d errors in %.1fs: %.0f req/s; latency p50 %.1fms p90 %.1fms p99 %.1fms max %.1fms\n",
		rep.Sent, rep.Answered, rep.Errors, rep.Seconds, rep.RPS, rep.Latency.P50, rep.Latency.P90, rep.Latency.P99, rep.Latency.Max)
	for _, d := range rep.Diffs {
		fmt.Fprintf(w, "\n%s: %d answers differ", d.Endpoint, d.Count)
		if len(d.Errors) > 0 {
			fmt.Fprintf(w, "; error: %s", d.Errors[0])
		}
		fmt.Fprintln(w)
		if len(d.Examples) > 0 {
			ex := d.Examples[0]
			fmt.Fprintf(w, "  e.g. %s (record %s)\n", ex.Request, ex.Record)
			for i, f := range ex.Fields {
				if i == 5 {
					fmt.Fprintf(w, "    ... %d more\n", len(ex.Fields)-5)
					break
				}
				fmt.Fprintf(w, "    %s: recorded %s, live %s\n", f.Field, strconv.Quote(f.Recorded), strconv.Quote(f.Live))
			}
		}
	}
	return nil
}

func pctOf(n, of int) string {
	if of == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", math.Floor(float64(n)/float64(of)*1000)/10)
}
