package mock

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/format"
)

var t0 = time.Date(2026, 6, 25, 18, 0, 0, 0, time.UTC)

// rec makes an outbound recording answered with status 200 and body res.
func rec(i int, method, url, body, res string, headers ...string) *capture.Record {
	r := &capture.Record{Direction: capture.DirOut, Kind: capture.KindHTTP, Start: t0.Add(time.Duration(i) * time.Second),
		HTTP: &capture.HTTP{
			Req: capture.Request{Method: method, URL: url, Body: capture.Body{Data: []byte(body), Size: int64(len(body))}},
			Res: &capture.Response{Status: 200, Body: capture.Body{Data: []byte(res), Size: int64(len(res))}},
		}}
	if body != "" {
		r.HTTP.Req.Headers = append(r.HTTP.Req.Headers, capture.Header{Name: "Content-Type", Value: "application/json"})
	}
	for i := 0; i+1 < len(headers); i += 2 {
		r.HTTP.Req.Headers = append(r.HTTP.Req.Headers, capture.Header{Name: headers[i], Value: headers[i+1]})
	}
	return r
}

// live makes a live request like rec's.
func live(method, url, body string, headers ...string) *Request {
	r := recordRequest(rec(0, method, url, body, ""))
	for i := 0; i+1 < len(headers); i += 2 {
		r.Headers = append(r.Headers, capture.Header{Name: headers[i], Value: headers[i+1]})
	}
	return r
}

func answer(t *testing.T, ix *Index, r *Request) string {
	t.Helper()
	res := ix.Match(r)
	if !res.Matched() {
		t.Fatalf("Match(%s %s) missed: closest %s, why %q", r.Method, r.URL(), res.Closest, res.Why)
	}
	return string(res.Record.HTTP.Res.Body.Data)
}

func TestMatchVolatileShapes(t *testing.T) {
	ix := NewIndex([]*capture.Record{
		rec(0, "POST", "https://pay.example.com/v1/charges",
			`{"amount":100,"nonce":"9f86d081884c7d65a1b2","at":"2026-06-25T18:00:00Z","id":"550e8400-e29b-41d4-a716-446655440000"}`, "charged",
			"X-Request-Token", "dGhpcyBpcyBhIHJhbmRvbSBub25jZQ==", "X-Sent-At", "1750875507"),
	}, nil)
	for i := range 3 {
		body := fmt.Sprintf(`{"amount":100,"nonce":"%016x","at":"%s","id":"%s"}`, 0xabcdef1234+i, t0.Add(time.Hour*time.Duration(i)).Format(time.RFC3339),
			fmt.Sprintf("6ba7b810-9dad-11d1-80b4-00c04fd430c%d", i))
		got := answer(t, ix, live("POST", "https://pay.example.com:443/v1/charges", body, "X-Request-Token", fmt.Sprintf("Zm9vYmFy%dYmF6cXV4cXV1eA==", i), "X-Sent-At", "1750879999"))
		if got != "charged" {
			t.Errorf("answer = %q, want charged", got)
		}
	}
	res := ix.Match(live("POST", "https://pay.example.com/v1/charges", `{"amount":200,"nonce":"x","at":"2026-06-25T18:00:00Z","id":"550e8400-e29b-41d4-a716-446655440000"}`))
	if res.Matched() {
		t.Fatalf("amount 200 matched; want a miss")
	}
	if want := `body.amount="200" (recorded "100")`; len(res.Why) == 0 || res.Why[0] != want {
		t.Errorf("why = %q, want %q first", res.Why, want)
	}
	if !strings.HasPrefix(res.Closest, "POST https://pay.example.com/v1/charges #1") {
		t.Errorf("closest = %q", res.Closest)
	}
}

func TestMatchLearnedAndOrder(t *testing.T) {
	var recs []*capture.Record
	for i := 1; i <= 3; i++ {
		recs = append(recs, rec(i, "GET", fmt.Sprintf("http://api.local/users/%d?fields=name", i), "", fmt.Sprintf("user %d", i)))
	}
	for i := 1; i <= 3; i++ {
		recs = append(recs, rec(10+i, "GET", "http://api.local/status", "", fmt.Sprintf("status %d", i)))
	}
	ix := NewIndex(recs, nil)
	tests := []struct{ name, url, want string }{
		{"exact id", "http://api.local/users/2?fields=name", "user 2"},
		{"same id again", "http://api.local/users/2?fields=name", "user 2"},
		{"unknown id: first unused", "http://api.local/users/99?fields=name", "user 1"},
		{"unknown id: next", "http://api.local/users/98?fields=name", "user 3"},
		{"unknown id: then the last", "http://api.local/users/97?fields=name", "user 3"},
		{"status 1", "http://api.local/status", "status 1"},
		{"status 2", "http://api.local/status", "status 2"},
		{"status 3", "http://api.local/status", "status 3"},
		{"status stays at the last", "http://api.local/status", "status 3"},
	}
	for _, tt := range tests {
		if got := answer(t, ix, live("GET", tt.url, "")); got != tt.want {
			t.Errorf("%s: GET %s = %q, want %q", tt.name, tt.url, got, tt.want)
		}
	}
	if res := ix.Match(live("GET", "http://api.local/users/1?fields=email", "")); res.Matched() || !strings.Contains(strings.Join(res.Why, ";"), `query.fields="email" (recorded "name")`) {
		t.Errorf("fields=email: matched %v, why %q; want a miss naming query.fields", res.Matched(), res.Why)
	}
	if res := ix.Match(live("DELETE", "http://api.local/status", "")); res.Matched() || !strings.Contains(res.Why[0], "closest endpoint GET api.local/status") {
		t.Errorf("DELETE: why %q", res.Why)
	}
	if res := ix.Match(live("GET", "http://other.local/status", "")); res.Matched() || !strings.Contains(res.Why[0], "no recording for host other.local") {
		t.Errorf("other host: why %q", res.Why)
	}
}

func TestMatchSessions(t *testing.T) {
	var recs []*capture.Record
	for step := 1; step <= 3; step++ {
		for _, c := range []string{"alice", "bob"} {
			recs = append(recs, rec(len(recs), "GET", "http://bank.local/balance", "", fmt.Sprintf("%s %d", c, step), "Authorization", "Bearer "+c))
		}
	}
	ix := NewIndex(recs, nil)
	for step := 1; step <= 3; step++ {
		for _, c := range []string{"bob", "alice"} {
			if got, want := answer(t, ix, live("GET", "http://bank.local/balance", "", "Authorization", "Bearer "+c)), fmt.Sprintf("%s %d", c, step); got != want {
				t.Errorf("%s step %d = %q, want %q", c, step, got, want)
			}
		}
	}
	// Sessions whose tokens are new are bound to recorded ones, in order of arrival.
	ix = NewIndex(recs, nil)
	for step := 1; step <= 3; step++ {
		for _, c := range []string{"carol", "dave"} {
			want := map[string]string{"carol": "alice", "dave": "bob"}[c]
			if got, want := answer(t, ix, live("GET", "http://bank.local/balance", "", "Authorization", "Bearer "+c)), fmt.Sprintf("%s %d", want, step); got != want {
				t.Errorf("%s step %d = %q, want %q", c, step, got, want)
			}
		}
	}
}

func TestMatchRules(t *testing.T) {
	recs := []*capture.Record{rec(0, "POST", "http://api.local/v1/orders", `{"item":"book","client":"v1.2","meta":{"trace":"a"}}`, "ok", "X-Tenant", "acme")}
	rules := &Rules{Endpoints: []EndpointRule{{Match: "POST api.local/v1/*", Ignore: []string{"body.client", "body.meta.*"}, Require: []string{"header.x-tenant"}}}}
	if err := rules.Validate(); err != nil {
		t.Fatal(err)
	}
	ix := NewIndex(recs, rules)
	tests := []struct {
		name, body, tenant string
		match              bool
	}{
		{"ignored fields differ", `{"item":"book","client":"v9","meta":{"trace":"b","x":1}}`, "acme", true},
		{"required header differs", `{"item":"book","client":"v1.2","meta":{"trace":"a"}}`, "other", false},
		{"stable field differs", `{"item":"pen","client":"v1.2","meta":{"trace":"a"}}`, "acme", false},
	}
	for _, tt := range tests {
		if got := ix.Match(live("POST", "http://api.local/v1/orders", tt.body, "X-Tenant", tt.tenant)).Matched(); got != tt.match {
			t.Errorf("%s: matched %v, want %v", tt.name, got, tt.match)
		}
	}
}

// TestMatchDynamoDBRaw mocks 45 real outbound DynamoDB records from the vendor's raw.jsonl and sends their
// requests again: each must be answered with its own recording.
func TestMatchDynamoDBRaw(t *testing.T) {
	var recs []*capture.Record
	if err := format.ReadPath("../format/raw/testdata/dynamodb-raw.jsonl", func(r *capture.Record) error {
		recs = append(recs, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	ix := NewIndex(recs, nil)
	if ix.Records() != 45 {
		t.Fatalf("indexed %d records, want 45", ix.Records())
	}
	for i, r := range ix.sortedRecords() {
		res := ix.Match(recordRequest(r))
		if !res.Matched() {
			t.Errorf("record %d (%s) missed: %q", i, r.HTTP.Req.Headers.Get("X-Amz-Target"), res.Why)
		} else if res.Record != r {
			t.Errorf("record %d (%s) answered with another recording (#%d)", i, r.HTTP.Req.Headers.Get("X-Amz-Target"), res.Nth)
		}
	}
}

// BenchmarkMatch is one live request with fresh volatile values against an endpoint of 100 recordings.
func BenchmarkMatch(b *testing.B) {
	var recs []*capture.Record
	for i := range 10000 {
		ep := i % 100
		recs = append(recs, rec(i, "POST", fmt.Sprintf("https://api.bench.local/v1/e%d/items", ep),
			fmt.Sprintf(`{"account":"acct-%d","currency":"EUR","id":%d,"nonce":"%016x","ts":"2026-06-25T18:00:00Z","token":"%032x"}`, ep, i/100, uint64(i)*0x9e3779b97f4a7c15, uint64(i)*0xbf58476d1ce4e5b9), "ok",
			"X-Request-Nonce", fmt.Sprintf("%016x", uint64(i)*0x94d049bb133111eb)))
	}
	ix := NewIndex(recs, nil)
	r := live("POST", "https://api.bench.local/v1/e7/items", `{"account":"acct-7","currency":"EUR","id":3,"nonce":"fedcba9876543210","ts":"2026-07-01T00:00:00Z","token":"0123456789abcdef0123456789abcdef"}`, "X-Request-Nonce", "0123456789abcdef")
	b.ReportAllocs()
	for b.Loop() {
		if !ix.Match(r).Matched() {
			b.Fatal("missed")
		}
	}
}

// BenchmarkMatchFresh is BenchmarkMatch with fresh volatile values in
// every request (a nonce, a token, a header), as bench/mock's load sends
// them, over the 100 endpoints in turn.
func BenchmarkMatchFresh(b *testing.B) {
	var recs []*capture.Record
	for i := range 10000 {
		ep := i % 100
		recs = append(recs, rec(i, "POST", fmt.Sprintf("https://api.bench.local/v1/e%d/items", ep),
			fmt.Sprintf(`{"account":"acct-%d","currency":"EUR","id":%d,"nonce":"%016x","ts":"2026-06-25T18:00:00Z","token":"%032x"}`, ep, i/100, uint64(i)*0x9e3779b97f4a7c15, uint64(i)*0xbf58476d1ce4e5b9), "ok",
			"X-Request-Nonce", fmt.Sprintf("%016x", uint64(i)*0x94d049bb133111eb)))
	}
	ix := NewIndex(recs, nil)
	var reqs []*Request
	for i := range 1000 {
		ep := i % 100
		reqs = append(reqs, live("POST", fmt.Sprintf("https://api.bench.local/v1/e%d/items", ep),
			fmt.Sprintf(`{"account":"acct-%d","currency":"EUR","id":%d,"nonce":"%016x","ts":"2026-07-01T00:00:00Z","token":"%032x"}`, ep, i%100, uint64(i)*0x2545F4914F6CDD1D, uint64(i)*0x9E3779B97F4A7C15),
			"X-Request-Nonce", fmt.Sprintf("%016x", uint64(i)*0xD6E8FEB86659FD93)))
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		if !ix.Match(reqs[i%len(reqs)]).Matched() {
			b.Fatal("missed")
		}
	}
}

// TestClosestEqualsNaive checks the counting by sorted columns against the plain definition: score every
// recording column by column (a hard difference outweighs any number of soft ones) and keep the best, in
// recorded order, on random recordings (repeated values, cut-short bodies, headers) and live requests.
func TestClosestEqualsNaive(t *testing.T) {
	naive := func(ep *endpoint, live []string, extra int) (score, []*recording) {
		best := score{hard: 1 << 30}
		var tied []*recording
		for _, rc := range ep.recs {
			s := score{hard: extra}
			for c, k := range ep.kinds {
				if k == colIgnored || rc.vals[c] == live[c] || ep.body[c] && rc.anyBody {
					continue
				}
				s.add(k)
			}
			switch {
			case s.less(best):
				best, tied = s, []*recording{rc}
			case s == best:
				tied = append(tied, rc)
			}
		}
		return best, tied
	}
	rules := &Rules{Endpoints: []EndpointRule{{Match: "POST api.local/v1/x", Require: []string{"body.n", "header.x-trace-note"}}}}
	compared, misses, many := 0, 0, 0
	for round := range 20 {
		rnd := rand.New(rand.NewPCG(uint64(round), 7))
		pick := func(vals ...string) string { return vals[rnd.IntN(len(vals))] }
		var recs []*capture.Record
		for i := range 100 + round*20 {
			body := fmt.Sprintf(`{"kind":%q,"n":%d,"nonce":"%016x","opt":%s,"cur":"EUR"}`, pick("a", "b", "c"), rnd.IntN(4), rnd.Uint64(), pick(`1`, `2`, `null`))
			r := rec(i, pick("GET", "POST"), "https://api.local/v1/"+pick("x", "y")+"?q="+pick("1", "2", "3"), body, fmt.Sprintf("answer %d", i),
				"Authorization", pick("Bearer s1", "Bearer s2", "Bearer s3"), "X-Trace-Note", pick("p", "q"))
			if rnd.IntN(10) == 0 {
				r.HTTP.Req.Body.Truncated = true
			}
			recs = append(recs, r)
		}
		ix := NewIndex(recs, rules)
		for range 400 {
			body := fmt.Sprintf(`{"kind":%q,"n":%d,"nonce":"%016x","opt":%s%s,"cur":%q}`, pick("a", "b", "c", "d"), rnd.IntN(5), rnd.Uint64(), pick(`1`, `2`, `null`), pick("", "", "", `,"new":"field"`), pick("EUR", "EUR", "USD"))
			r := live(pick("GET", "POST"), "https://api.local/v1/"+pick("x", "y", "z")+"?q="+pick("1", "2", "3", "4"), body,
				"Authorization", pick("Bearer s1", "Bearer s2", "Bearer s3", "Bearer s4"), "X-Trace-Note", pick("p", "q", "r"))
			p := parse(r, ix.sessHdrs)
			ep := ix.endpoints[p.key]
			if ep == nil {
				continue
			}
			live, extra := ep.values(p.fields)
			gs, gt := ep.closest(live, len(extra))
			ws, wt := naive(ep, live, len(extra))
			if gs != ws || !slices.Equal(gt, wt) {
				t.Fatalf("round %d: %s %s %s: closest %v %d recordings, naive %v %d recordings", round, r.Method, r.URL(), body, gs, len(gt), ws, len(wt))
			}
			compared++
			if gs.hard > 0 {
				misses++
			}
			if len(gt) > 1 {
				many++
			}
		}
	}
	if compared < 1000 || misses == 0 || many == 0 || misses == compared {
		t.Fatalf("the random requests compared %d cases, %d misses, %d ties: not enough of each", compared, misses, many)
	}
}

// BenchmarkMatchOneEndpoint is one endpoint recorded 10,000 times whose bodies share most values: a field of
// two values (half of the recordings have the live one), a constant, an id and a nonce, so that thousands of
// recordings are counted for each request and hundreds tie.
func BenchmarkMatchOneEndpoint(b *testing.B) {
	var recs []*capture.Record
	for i := range 10000 {
		recs = append(recs, rec(i, "POST", "https://api.bench.local/v1/search",
			fmt.Sprintf(`{"kind":%q,"currency":"EUR","page":%d,"nonce":"%016x"}`, []string{"a", "b"}[i%2], i%20, uint64(i)*0x9e3779b97f4a7c15), "ok"))
	}
	ix := NewIndex(recs, nil)
	r := live("POST", "https://api.bench.local/v1/search", `{"kind":"a","currency":"EUR","page":4,"nonce":"0123456789abcdef"}`)
	b.ReportAllocs()
	for b.Loop() {
		if !ix.Match(r).Matched() {
			b.Fatal("missed")
		}
	}
}
