package filter

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tapwire/tapwire/internal/capture"
)

var t0 = time.Date(2025, 2, 11, 21, 0, 0, 0, time.UTC)

func req(dir capture.Direction, method, url string, status int, hdr ...string) *capture.Record {
	r := &capture.Record{Schema: 1, ID: "x", Kind: capture.KindHTTP, Direction: dir, Start: t0,
		Labels: capture.Labels{Service: "orders", Cluster: "ecs", Namespace: "shop"},
		HTTP:   &capture.HTTP{Req: capture.Request{Method: method, URL: url, Proto: "HTTP/1.1"}}}
	if i := strings.Index(url, "://"); i >= 0 {
		host := url[i+3:]
		if j := strings.IndexAny(host, "/?"); j >= 0 {
			host = host[:j]
		}
		r.HTTP.Req.Host = host
	}
	for i := 0; i < len(hdr); i += 2 {
		r.HTTP.Req.Headers = append(r.HTTP.Req.Headers, capture.Header{Name: hdr[i], Value: hdr[i+1]})
	}
	if status > 0 {
		r.HTTP.Res = &capture.Response{Status: status}
	}
	return r
}

func tcp() *capture.Record {
	return &capture.Record{Schema: 1, ID: "t", Kind: capture.KindTCP, Direction: capture.DirOut, Start: t0,
		Labels: capture.Labels{Service: "orders"}, Net: capture.Net{ServerHost: "db.internal"}, TCP: &capture.TCP{}}
}

func TestStandard(t *testing.T) {
	f, err := Parse("")
	if err != nil || f.ID != "standard" {
		t.Fatalf("Parse(\"\") = %v, %v; want standard", f, err)
	}
	tests := []struct {
		name string
		rec  *capture.Record
		keep bool
	}{
		{"api call", req("in", "GET", "http://orders:4143/v1/orders?page=2", 200), true},
		{"post", req("in", "POST", "http://orders:4143/v1/orders", 201, "User-Agent", "curl/8.5"), true},
		{"healthz", req("in", "GET", "http://orders:4143/healthz", 200), false},
		{"health with query", req("in", "GET", "http://orders:4143/health?full=1", 200), false},
		{"HEALTH upper case", req("in", "GET", "http://orders:4143/HEALTH", 200), false},
		{"actuator", req("out", "GET", "http://payments:8080/actuator/health", 200), false},
		{"metrics scrape", req("in", "GET", "http://10.0.0.7:4143/metrics", 200, "User-Agent", "Prometheus/2.53.0"), false},
		{"kube probe on /", req("in", "GET", "http://10.0.0.7:4143/", 200, "User-Agent", "kube-probe/1.29"), false},
		{"elb", req("in", "GET", "http://10.0.0.7:4143/status", 200, "User-Agent", "ELB-HealthChecker/2.0"), false},
		{"health in a longer path is kept", req("in", "GET", "http://orders:4143/v1/health/records", 200), true},
		{"tcp", tcp(), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := f.Keep(tc.rec); got != tc.keep {
				t.Errorf("Keep = %t, want %t", got, tc.keep)
			}
			// A Filter built without Parse is planned on each call.
			if got := (&Filter{Operator: f.Operator, Conditions: f.Conditions}).Keep(tc.rec); got != tc.keep {
				t.Errorf("Keep of the unplanned filter = %t, want %t", got, tc.keep)
			}
		})
	}
	none, _ := Parse("none")
	if !none.Keep(req("in", "GET", "http://x/healthz", 200)) {
		t.Errorf("filter none dropped a record")
	}
}

func TestCustom(t *testing.T) {
	tests := []struct {
		name   string
		filter string
		rec    *capture.Record
		keep   bool
	}{
		{"only a service, kept", `{"id":"a","conditions":[{"filters":[{"include":true,"service":"orders"}]}]}`,
			req("in", "GET", "http://o/x", 200), true},
		{"only a service, other dropped", `{"id":"a","conditions":[{"filters":[{"include":true,"service":"cart"}]}]}`,
			req("in", "GET", "http://o/x", 200), false},
		{"drop outbound to a host", `{"id":"b","conditions":[{"operator":"OR","filters":[{"include":false,"host":"api.stripe.com"},{"include":true,"direction":"in"}]}]}`,
			req("out", "GET", "https://api.stripe.com:443/v1/charges", 200), false},
		{"other outbound host kept", `{"id":"b","conditions":[{"operator":"OR","filters":[{"include":false,"host":"api.stripe.com"},{"include":true,"direction":"in"}]}]}`,
			req("out", "GET", "https://api.example.com/v1", 200), true},
		{"contains url", `{"id":"c","conditions":[{"filters":[{"include":false,"operator":"CONTAINS","url":"/internal/"}]}]}`,
			req("in", "GET", "http://o/v1/internal/debug", 200), false},
		{"status 5xx only", `{"id":"d","conditions":[{"filters":[{"include":true,"operator":"CONTAINS","status":"5"}]}]}`,
			req("in", "GET", "http://o/x", 503), true},
		{"no response fails a status test", `{"id":"d","conditions":[{"filters":[{"include":true,"status":"200"}]}]}`,
			req("in", "GET", "http://o/x", 0), false},
		{"header present", `{"id":"e","conditions":[{"filters":[{"include":false,"header":"X-Synthetic"}]}]}`,
			req("in", "GET", "http://o/x", 200, "x-synthetic", "1"), false},
		{"header value", `{"id":"e","conditions":[{"filters":[{"include":false,"operator":"CONTAINS","header":"User-Agent","value":"bot"}]}]}`,
			req("in", "GET", "http://o/x", 200, "User-Agent", "GoodBot/1"), false},
		{"protocol https", `{"id":"f","conditions":[{"filters":[{"include":true,"protocol":"https"}]}]}`,
			req("out", "GET", "https://a/x", 200), true},
		{"protocol tcp", `{"id":"f","conditions":[{"filters":[{"include":false,"protocol":"tcp"}]}]}`, tcp(), false},
		{"tcp has no path", `{"id":"g","conditions":[{"filters":[{"include":true,"path":"/x"}]}]}`, tcp(), false},
		{"tcp host", `{"id":"g","conditions":[{"filters":[{"include":false,"host":"db.internal"}]}]}`, tcp(), false},
		{"time window", `{"id":"h","conditions":[{"filters":[{"include":true,"time":{"from":"2025-02-11T20:00:00Z","to":"2025-02-11T22:00:00Z"}}]}]}`,
			req("in", "GET", "http://o/x", 200), true},
		{"before the window", `{"id":"h","conditions":[{"filters":[{"include":true,"time":{"from":"2025-02-12T00:00:00Z"}}]}]}`,
			req("in", "GET", "http://o/x", 200), false},
		{"OR of conditions", `{"id":"i","operator":"OR","conditions":[{"filters":[{"include":true,"namespace":"other"}]},{"filters":[{"include":true,"cluster":"ecs"}]}]}`,
			req("in", "GET", "http://o/x", 200), true},
		{"AND of conditions", `{"id":"i","operator":"AND","conditions":[{"filters":[{"include":true,"namespace":"other"}]},{"filters":[{"include":true,"cluster":"ecs"}]}]}`,
			req("in", "GET", "http://o/x", 200), false},
		{"method", `{"id":"j","conditions":[{"filters":[{"include":false,"method":"OPTIONS"}]}]}`,
			req("in", "OPTIONS", "http://o/x", 204), false},
		{"no conditions keep all", `{"id":"k","conditions":[]}`, req("in", "GET", "http://o/healthz", 200), true},
		// The plan's shortcuts: a path of another length that is not ASCII
		// can still fold to the one wanted (ſ is s); a header's values past
		// the four a record's facts keep are still read; two header
		// criteria of different names each read their own.
		{"path folds from a longer text", `{"id":"l","conditions":[{"filters":[{"include":false,"path":"/status"}]}]}`,
			req("in", "GET", "http://o/\u017ftatus", 200), false},
		{"fifth value of a header", `{"id":"m","conditions":[{"filters":[{"include":false,"operator":"CONTAINS","header":"user-agent","value":"probe"}]}]}`,
			req("in", "GET", "http://o/x", 200, "User-Agent", "a", "User-Agent", "b", "User-Agent", "c", "User-Agent", "d", "User-Agent", "kube-probe/1"), false},
		{"two header names", `{"id":"n","conditions":[{"operator":"OR","filters":[{"include":true,"header":"X-A","value":"1"},{"include":true,"header":"X-B","value":"2"}]}]}`,
			req("in", "GET", "http://o/x", 200, "X-A", "2", "X-B", "2"), true},
		{"neither header name", `{"id":"n","conditions":[{"operator":"OR","filters":[{"include":true,"header":"X-A","value":"1"},{"include":true,"header":"X-B","value":"2"}]}]}`,
			req("in", "GET", "http://o/x", 200, "X-A", "2", "X-B", "1"), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Parse(tc.filter)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got := f.Keep(tc.rec); got != tc.keep {
				t.Errorf("Keep = %t, want %t", got, tc.keep)
			}
			// A Filter built without Parse is planned on each call.
			if got := (&Filter{Operator: f.Operator, Conditions: f.Conditions}).Keep(tc.rec); got != tc.keep {
				t.Errorf("Keep of the unplanned filter = %t, want %t", got, tc.keep)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "f.json")
	os.WriteFile(file, []byte(`{"id":"file","conditions":[{"filters":[{"include":false,"service":"x"}]}]}`), 0o600)
	if f, err := Parse(file); err != nil || f.ID != "file" {
		t.Errorf("Parse(file) = %v, %v", f, err)
	}
	tests := []struct {
		in      string
		wantErr error
		wantMsg string
	}{
		{`{"id":"a","operator":"XOR","conditions":[]}`, ErrOperator, ""},
		{`{"id":"a","conditions":[{"operator":"NAND","filters":[]}]}`, ErrOperator, ""},
		{`{"id":"a","conditions":[{"filters":[{"operator":"REGEX","host":"x"}]}]}`, ErrMatch, ""},
		{`{"id":"a","conditions":[{"filters":[{"include":true}]}]}`, ErrCriterion, ""},
		{`{"id":"a","conditions":[{"filters":[{"host":"a","path":"/b"}]}]}`, ErrCriterion, ""},
		{`{"id":"a","conditions":[{"filters":[{"value":"v","host":"a"}]}]}`, ErrCriterion, ""},
		{`{"id":"a","conditions":[{"filters":[{"hots":"a"}]}]}`, nil, "unknown field"},
		{`strict`, nil, "read filter"},
	}
	for _, tc := range tests {
		_, err := Parse(tc.in)
		if err == nil || (tc.wantErr != nil && !errors.Is(err, tc.wantErr)) || !strings.Contains(err.Error(), tc.wantMsg) {
			t.Errorf("Parse(%s) = %v, want %v %q", tc.in, err, tc.wantErr, tc.wantMsg)
		}
	}
}

// TestContainsFold: the same answers as a plain search with EqualFold at
// every offset, Unicode folding included (ſ is s, K is k).
func TestContainsFold(t *testing.T) {
	plain := func(s, sub string) bool {
		for i := 0; i+len(sub) <= len(s); i++ {
			if strings.EqualFold(s[i:i+len(sub)], sub) {
				return true
			}
		}
		return len(sub) == 0
	}
	for _, c := range [][2]string{{"kube-probe/1.29", "KUBE-PROBE/"}, {"Mozilla/5.0", "probe"}, {"", ""}, {"a", ""},
		{"sſ", "ſs"}, {"xsſ", "ſs"}, {"ſs", "sſ"}, {"\u212aube", "kub"}, {"kube", "\u212a"}, {"ABC", "c"}, {"ab", "abc"}} {
		if got, want := containsFold(c[0], c[1]), plain(c[0], c[1]); got != want {
			t.Errorf("containsFold(%q, %q) = %v, want %v", c[0], c[1], got, want)
		}
	}
}

// BenchmarkStandard: the standard filter on a record it keeps, with five
// request headers (the forwarder runs it on every record by default).
func BenchmarkStandard(b *testing.B) {
	f := Standard()
	rec := &capture.Record{Kind: capture.KindHTTP, Direction: capture.DirIn, HTTP: &capture.HTTP{Req: capture.Request{
		Method: "GET", URL: "/api/v1/orders/12345?expand=items", Host: "orders.internal:8080",
		Headers: capture.Headers{{Name: "Host", Value: "orders.internal:8080"}, {Name: "User-Agent", Value: "okhttp/4.12.0"},
			{Name: "Accept", Value: "application/json"}, {Name: "Authorization", Value: "REDACTED-std-auth"}, {Name: "X-Request-Id", Value: "9f1c"}}}}}
	b.ReportAllocs()
	for b.Loop() {
		if !f.Keep(rec) {
			b.Fatal("dropped")
		}
	}
}

// TestGroupedPaths: the standard filter's 17 path criteria are one
// (groupPaths), and a filter decides as it does with them tested one by
// one: with paths of every length and case, and paths that fold to
// another length (ſ to s, the Kelvin sign to k), in AND and OR
// conditions, with include true and false.
func TestGroupedPaths(t *testing.T) {
	if n := len(Standard().plan.conds[0].crits); n != 1+len(StandardAgents) {
		t.Errorf("the standard filter's plan has %d criteria, want %d (its paths as one)", n, 1+len(StandardAgents))
	}
	for _, f := range groupFilters {
		for _, p := range testPaths {
			checkGrouped(t, f, req(capture.DirIn, "GET", "http://svc"+p+"?q=1", 200, "User-Agent", "kube-probe/1.29"))
			checkGrouped(t, f, req(capture.DirIn, "GET", "http://svc"+p, 200))
		}
		checkGrouped(t, f, tcp())
	}
}

// testPaths are the paths TestGroupedPaths and FuzzGroupedPaths use.
var testPaths = []string{"/", "/health", "/HEALTH", "/healthz", "/Health/Live", "/metrics", "/metricsx", "/s", "/S", "/\u017f", "/k",
	"/\u212a", "/x/\u017fs", "/favicon.ico", "/%68ealth", "", "/ready", "/readyz"}

// groupFilters: for each operator and include, ASCII paths alone (all
// grouped), with others that are not (a non-ASCII path, CONTAINS, a
// method), and with includes mixed.
var groupFilters = func() []*Filter {
	var fs []*Filter
	paths := []string{"/health", "/s", "/k", "/metrics", "/x/ss", "/ready", "/readyz"}
	for _, op := range []string{"AND", "OR"} {
		for _, include := range []bool{false, true} {
			var alone, mixed []Criterion
			for i, p := range paths {
				alone = append(alone, Criterion{Include: include, Path: p})
				mixed = append(mixed, Criterion{Include: include == (i%3 != 0), Path: p})
			}
			others := append(append([]Criterion{}, alone...), Criterion{Include: include, Path: "/\u017f"},
				Criterion{Include: !include, Operator: "CONTAINS", Path: "ea"}, Criterion{Include: include, Method: "GET"})
			for _, crits := range [][]Criterion{alone, others, mixed} {
				fs = append(fs, &Filter{ID: "g", Operator: op, Conditions: []Condition{{Operator: op, Filters: crits}}})
			}
		}
	}
	return append(fs, Standard())
}()

// checkGrouped: f decides for rec as its plan without grouped paths does.
func checkGrouped(t *testing.T, f *Filter, rec *capture.Record) {
	t.Helper()
	url := ""
	if rec.HTTP != nil {
		url = rec.HTTP.Req.URL
	}
	if got, want := f.planned(true).keep(rec), f.planned(false).keep(rec); got != want {
		t.Errorf("%s %+v: keeps %s: %v with its paths grouped, %v one by one", f.Operator, f.Conditions, url, got, want)
	}
}

// FuzzGroupedPaths: filters of path criteria (EQUAL and CONTAINS, include
// true and false, in AND and OR conditions) and of a method decide with
// their paths grouped as one by one, on any path.
func FuzzGroupedPaths(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7}, "/health")
	f.Add([]byte{9, 3, 3, 130, 66}, "/\u017f")
	f.Add([]byte{255, 17, 34, 51, 68, 85}, "/K")
	f.Fuzz(func(t *testing.T, shape []byte, path string) {
		fl := &Filter{ID: "fuzz"}
		if len(shape) > 0 && shape[0]&1 != 0 {
			fl.Operator = "OR"
		}
		var cond *Condition
		for i, c := range shape {
			if i == 0 {
				continue
			}
			if cond == nil || c&0xC0 == 0xC0 {
				fl.Conditions = append(fl.Conditions, Condition{Operator: []string{"AND", "OR"}[c>>5&1]})
				cond = &fl.Conditions[len(fl.Conditions)-1]
			}
			cr := Criterion{Include: c&1 != 0, Path: testPaths[int(c>>1)%len(testPaths)]}
			switch {
			case c&0x30 == 0x30:
				cr.Path, cr.Method = "", "GET"
			case c&0x30 == 0x20:
				cr.Operator = "CONTAINS"
			}
			if cr.Path == "" && cr.Method == "" {
				cr.Path = "/"
			}
			cond.Filters = append(cond.Filters, cr)
		}
		for _, p := range []string{path, "/" + path} {
			checkGrouped(t, fl, req(capture.DirIn, "GET", "http://svc"+p, 200))
		}
	})
}
