package replay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/testca"
)

var quiet = log.New(io.Discard, "", 0)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// t0 is when the test recordings were made.
var t0 = time.Date(2025, 2, 11, 21, 0, 0, 0, time.UTC)

// rec makes an inbound record: method and target (path?query), the request body, the client, the recorded
// status and body, at t0 plus at.
func rec(method, target, reqBody, client string, status int, resBody string, at time.Duration) *capture.Record {
	r := &capture.Record{
		Schema: 1, ID: capture.NewID(), Kind: capture.KindHTTP, Direction: capture.DirIn, Start: t0.Add(at),
		Labels: capture.Labels{Service: "orders"},
		Net:    capture.Net{ClientAddr: client + ":40000"},
		HTTP: &capture.HTTP{
			Req: capture.Request{Method: method, URL: "http://orders.shop:4143" + target, Proto: "HTTP/1.1", Host: "orders.shop:4143",
				Headers: capture.Headers{{Name: "Host", Value: "orders.shop:4143"}, {Name: "Connection", Value: "keep-alive"}, {Name: "X-Client", Value: client}},
				Body:    capture.Body{Data: []byte(reqBody), Size: int64(len(reqBody))}},
			Res: &capture.Response{Status: status, Headers: capture.Headers{{Name: "Content-Type", Value: "application/json"}},
				Body: capture.Body{Data: []byte(resBody), Size: int64(len(resBody))}},
		},
	}
	if reqBody != "" {
		r.HTTP.Req.Headers = append(r.HTTP.Req.Headers, capture.Header{Name: "Content-Type", Value: "application/json"})
	}
	return r
}

// arrivals counts the requests a target received, with their arrival times.
type arrivals struct {
	mu    sync.Mutex
	times []time.Time
	reqs  []*http.Request
}

func (a *arrivals) add(r *http.Request) {
	a.mu.Lock()
	a.times = append(a.times, time.Now())
	a.reqs = append(a.reqs, r)
	a.mu.Unlock()
}

func (a *arrivals) n() int { a.mu.Lock(); defer a.mu.Unlock(); return len(a.times) }

// ordersApp is the service the recordings are of: GET /orders/N answers {"id":N,"total":10}, POST /orders
// answers 201.
func ordersApp(a *arrivals) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a != nil {
			a.add(r)
		}
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.Method == "GET" && strings.HasPrefix(r.URL.Path, "/orders/"):
			fmt.Fprintf(w, `{"id":%s,"total":10}`, strings.TrimPrefix(r.URL.Path, "/orders/"))
		case r.Method == "POST" && r.URL.Path == "/orders":
			w.WriteHeader(201)
			fmt.Fprint(w, `{"ok":true}`)
		default:
			http.NotFound(w, r)
		}
	})
}

func ordersRecording(n int) []*capture.Record {
	var recs []*capture.Record
	for i := range n {
		client := fmt.Sprintf("10.0.0.%d", i%5)
		if i%2 == 0 {
			recs = append(recs, rec("GET", fmt.Sprintf("/orders/%d", i), "", client, 200, fmt.Sprintf(`{"id":%d,"total":10}`, i), time.Duration(i)*10*time.Millisecond))
		} else {
			recs = append(recs, rec("POST", "/orders", `{"item":"x"}`, client, 201, `{"ok":true}`, time.Duration(i)*10*time.Millisecond))
		}
	}
	return recs
}

func run(t *testing.T, cfg Config, recs []*capture.Record) (*Report, error) {
	t.Helper()
	r, err := New(cfg, recs)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer r.Close()
	if err := r.Probe(context.Background()); err != nil {
		t.Fatalf("Probe: %v", err)
	}
	return r.Run(context.Background())
}

func TestProtocols(t *testing.T) {
	ca := testca.New(t)
	tests := []struct {
		name      string
		start     func(h http.Handler) *httptest.Server
		scheme    string
		wantProto int
	}{
		{"HTTP/1.1", httptest.NewServer, "http", 1},
		{"HTTP/2 over TLS", func(h http.Handler) *httptest.Server {
			s := httptest.NewUnstartedServer(h)
			s.EnableHTTP2 = true
			s.TLS = ca.ServerTLS(t, "127.0.0.1")
			s.Config.ErrorLog = quiet // Probe's bare connection fails its handshake
			s.StartTLS()
			return s
		}, "https", 2},
		{"HTTPS with HTTP/1.1 only", func(h http.Handler) *httptest.Server {
			s := httptest.NewUnstartedServer(h)
			s.TLS = ca.ServerTLS(t, "127.0.0.1")
			s.Config.ErrorLog = quiet // Probe's bare connection fails its handshake
			s.StartTLS()
			return s
		}, "https", 1},
		{"h2c", func(h http.Handler) *httptest.Server {
			s := httptest.NewUnstartedServer(h)
			s.Config.Protocols = new(http.Protocols)
			s.Config.Protocols.SetUnencryptedHTTP2(true)
			s.Start()
			return s
		}, "h2c", 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var a arrivals
			srv := tc.start(ordersApp(&a))
			defer srv.Close()
			target := tc.scheme + "://" + srv.Listener.Addr().String()
			rep, err := run(t, Config{Target: target, TLS: ca.ClientConfig()}, ordersRecording(20))
			if err != nil {
				t.Fatal(err)
			}
			if rep.Sent != 20 || rep.StatusMatched != 20 || rep.BodyMatched != 20 || rep.Errors != 0 {
				t.Errorf("sent %d, status matched %d, body matched %d, errors %d; want 20, 20, 20, 0 (%+v)", rep.Sent, rep.StatusMatched, rep.BodyMatched, rep.Errors, rep.Diffs)
			}
			if a.n() != 20 {
				t.Fatalf("target got %d requests, want 20", a.n())
			}
			for _, r := range a.reqs {
				if r.ProtoMajor != tc.wantProto {
					t.Fatalf("request over %s, want HTTP/%d", r.Proto, tc.wantProto)
				}
				if r.Host != srv.Listener.Addr().String() {
					t.Errorf("Host %q, want the target's %q", r.Host, srv.Listener.Addr())
				}
				if r.Header.Get("Connection") != "" || r.Header.Get("X-Client") == "" {
					t.Errorf("headers %v: want X-Client kept and Connection dropped", r.Header)
				}
			}
			if got := len(rep.Endpoints); got != 2 || rep.Endpoints[0].Endpoint != "GET /orders/{}" {
				t.Errorf("endpoints %+v, want GET /orders/{} and POST /orders", rep.Endpoints)
			}
		})
	}
}

// TestSessionOrder checks that each recorded client's requests arrive in their recorded order, one at a time,
// while several clients are sent at once.
func TestSessionOrder(t *testing.T) {
	var mu sync.Mutex
	next := map[string]int{}
	inflight := map[string]bool{}
	var bad []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := r.Header.Get("X-Client")
		var seq int
		fmt.Sscanf(r.URL.Query().Get("seq"), "%d", &seq)
		mu.Lock()
		if seq != next[c] || inflight[c] {
			bad = append(bad, fmt.Sprintf("%s: got seq %d, want %d (in flight %v)", c, seq, next[c], inflight[c]))
		}
		next[c], inflight[c] = seq+1, true
		mu.Unlock()
		time.Sleep(time.Millisecond)
		mu.Lock()
		inflight[c] = false
		mu.Unlock()
	}))
	defer srv.Close()
	var recs []*capture.Record
	for i := range 60 {
		c := fmt.Sprintf("10.0.0.%d", i%6)
		recs = append(recs, rec("GET", fmt.Sprintf("/x?seq=%d", i/6), "", c, 200, "", time.Duration(i)*time.Millisecond))
	}
	for _, cfg := range []Config{{VUs: 3}, {Rate: 500}} {
		mu.Lock()
		clear(next)
		mu.Unlock()
		cfg.Target = srv.URL
		rep, err := run(t, cfg, recs)
		if err != nil || rep.StatusMatched != 60 {
			t.Fatalf("%+v: %v, %d status matches, want 60", cfg, err, rep.StatusMatched)
		}
	}
	if len(bad) > 0 {
		t.Errorf("out of order: %q", bad)
	}
}

// The pacing tests count requests where they arrive, at the target, never by the replayer's clock, from an
// origin taken before the replay starts. Requests are never sent before their scheduled time, so the count
// that has arrived by any moment is at most what the schedule allows by then: that bound is exact on any
// machine, and is what a rate control that does nothing (or a flat ramp) breaks. A starved machine (several
// compilers on two cores) can only delay requests, and the dispatcher then sends the late ones at once, so the
// lower bounds are checked from 1 s on and allow 40% less: enough to tell pacing from none, and robust to a
// stall of 400 ms.

// checkPacing checks the arrivals counted by each of the moments against the schedule.
func checkPacing(t *testing.T, a *arrivals, origin time.Time, s schedule, moments ...time.Duration) {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, m := range moments {
		allowed := 0
		for s.at(allowed) < m {
			allowed++
		}
		got := 0
		for _, at := range a.times {
			if at.Before(origin.Add(m)) {
				got++
			}
		}
		if got > allowed {
			t.Errorf("requests at the target by %v: %d, want at most %d (the schedule)", m, got, allowed)
		}
		if m >= time.Second && float64(got) < 0.6*float64(allowed) {
			t.Errorf("requests at the target by %v: %d, want at least 60%% of the %d scheduled", m, got, allowed)
		}
	}
}

func TestRate(t *testing.T) {
	var a arrivals
	srv := httptest.NewServer(ordersApp(&a))
	defer srv.Close()
	// 200/s for 2 s: 400 requests, looping the 20 recorded ones.
	cfg := Config{Target: srv.URL, Rate: 200, Duration: 2 * time.Second}
	origin := time.Now()
	rep, err := run(t, cfg, ordersRecording(20))
	if err != nil {
		t.Fatal(err)
	}
	if a.n() != 400 || rep.Sent != 400 {
		t.Fatalf("target got %d requests, report says %d sent; want 400 (200/s for 2s)", a.n(), rep.Sent)
	}
	checkPacing(t, &a, origin, newSchedule(cfg, nil), 250*time.Millisecond, 500*time.Millisecond, time.Second, 1500*time.Millisecond, 1900*time.Millisecond)
	if rep.StatusMatched != 400 {
		t.Errorf("status matched %d of 400", rep.StatusMatched)
	}
}

func TestRateRamp(t *testing.T) {
	var a arrivals
	srv := httptest.NewServer(ordersApp(&a))
	defer srv.Close()
	// Ramp to 400/s over 1 s, then 1 s at 400/s: 200 + 400 requests; a linear ramp sends a quarter of
	// its requests in its first half (50), where a flat rate would send 150.
	cfg := Config{Target: srv.URL, Rate: 400, Ramp: time.Second, Duration: 2 * time.Second}
	origin := time.Now()
	if _, err := run(t, cfg, ordersRecording(10)); err != nil {
		t.Fatal(err)
	}
	if a.n() != 600 {
		t.Fatalf("target got %d requests, want 600", a.n())
	}
	checkPacing(t, &a, origin, newSchedule(cfg, nil), 250*time.Millisecond, 500*time.Millisecond, time.Second, 1500*time.Millisecond, 1900*time.Millisecond)
}

func TestLoops(t *testing.T) {
	var a arrivals
	srv := httptest.NewServer(ordersApp(&a))
	defer srv.Close()
	rep, err := run(t, Config{Target: srv.URL, Times: 3}, ordersRecording(20))
	if err != nil {
		t.Fatal(err)
	}
	if a.n() != 60 || rep.Sent != 60 || rep.StatusMatched != 60 {
		t.Errorf("--times 3: target got %d, sent %d, matched %d; want 60", a.n(), rep.Sent, rep.StatusMatched)
	}

	// Closed loop for a duration: the recording is sent again and again, and nothing starts after it.
	a = arrivals{}
	rep, err = run(t, Config{Target: srv.URL, Duration: time.Second, VUs: 2}, ordersRecording(4))
	if err != nil {
		t.Fatal(err)
	}
	if a.n() <= 8 || a.n() != rep.Sent {
		t.Errorf("--duration: target got %d, report %d; want more than two passes (8), and the same", a.n(), rep.Sent)
	}
}

// TestUserRamp: with --ramp, user k of N starts k/N of the ramp after the first; counted at the target by
// each user's first request. Timers never fire early, so lower bounds hold on any machine.
func TestUserRamp(t *testing.T) {
	var a arrivals
	srv := httptest.NewServer(ordersApp(&a))
	defer srv.Close()
	recs := ordersRecording(20)
	for i, r := range recs { // four clients, one per user
		c := fmt.Sprintf("10.0.0.%d", i%4)
		r.Net.ClientAddr = c + ":40000"
		r.HTTP.Req.Headers[2].Value = c
	}
	if _, err := run(t, Config{Target: srv.URL, VUs: 4, Ramp: 600 * time.Millisecond}, recs); err != nil {
		t.Fatal(err)
	}
	firsts := map[string]time.Time{}
	for i, r := range a.reqs {
		if _, ok := firsts[r.Header.Get("X-Client")]; !ok {
			firsts[r.Header.Get("X-Client")] = a.times[i]
		}
	}
	var starts []time.Duration
	for _, t := range firsts {
		starts = append(starts, t.Sub(a.times[0]))
	}
	slices.Sort(starts)
	if len(starts) != 4 {
		t.Fatalf("%d clients seen, want 4", len(starts))
	}
	// The users start at 0, 150, 300 and 450 ms.
	for k := 1; k < 4; k++ {
		if min := time.Duration(k) * 150 * time.Millisecond; starts[k] < min-5*time.Millisecond {
			t.Errorf("user %d started %v after the first, want at least %v", k, starts[k], min)
		}
	}
}

func TestNoiseAndDiffs(t *testing.T) {
	n := 0
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		n++
		id := n
		mu.Unlock()
		w.Header().Set("X-Version", "2")
		switch r.URL.Path {
		case "/stable":
			// A fresh id and time on every call, as in the recordings: noise.
			fmt.Fprintf(w, `{"id":"live-%d","at":"%s","name":"widget","price":5}`, id, time.Now().Format(time.RFC3339Nano))
		case "/changed":
			fmt.Fprintf(w, `{"id":"live-%d","name":"widget","price":6}`, id)
		}
	}))
	defer srv.Close()
	var recs []*capture.Record
	for i := range 4 {
		recs = append(recs,
			rec("GET", "/stable", "", "10.0.0.1", 200, fmt.Sprintf(`{"id":"rec-%d","at":"2025-02-11T21:00:0%dZ","name":"widget","price":5}`, i, i), time.Duration(i)),
			rec("GET", "/changed", "", "10.0.0.1", 200, fmt.Sprintf(`{"id":"rec-%d","name":"widget","price":5}`, i), time.Duration(i)))
		recs[len(recs)-2].HTTP.Res.Headers = append(recs[len(recs)-2].HTTP.Res.Headers, capture.Header{Name: "X-Version", Value: "2"})
		recs[len(recs)-1].HTTP.Res.Headers = append(recs[len(recs)-1].HTTP.Res.Headers, capture.Header{Name: "X-Version", Value: "1"})
	}
	rep, err := run(t, Config{Target: srv.URL, CompareHeaders: []string{"X-Version"}}, recs)
	if err != nil {
		t.Fatal(err)
	}
	if rep.StatusMatched != 8 || rep.BodyMatched != 4 || rep.HeadersMatched != 4 {
		t.Errorf("status %d, body %d, headers %d matched; want 8, 4 (the /stable ones, noise aside), 4", rep.StatusMatched, rep.BodyMatched, rep.HeadersMatched)
	}
	if len(rep.Diffs) != 1 || rep.Diffs[0].Endpoint != "GET /changed" || rep.Diffs[0].Count != 4 {
		t.Fatalf("diffs %+v, want GET /changed, 4", rep.Diffs)
	}
	ex := rep.Diffs[0].Examples[0]
	want := []FieldDiff{{"header.x-version", "1", "2"}, {"body.price", "5", "6"}}
	if !slices.Equal(ex.Fields, want) {
		t.Errorf("example fields %q, want %q (the id is noise)", ex.Fields, want)
	}
	if failed := rep.Check(nil); len(failed) != 0 {
		t.Errorf("default assertion failed: %+v", failed)
	}
	c, _ := ParseCondition("body_match<95%")
	if failed := rep.Check([]Condition{c}); len(failed) != 1 || rep.Passed {
		t.Errorf("body_match<95%% with 50%% matched: %+v, passed %v", failed, rep.Passed)
	}
}

func TestWrongTarget(t *testing.T) {
	var a arrivals
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.add(r)
		http.NotFound(w, r)
	}))
	defer srv.Close()
	rep, err := run(t, Config{Target: srv.URL, VUs: 1}, ordersRecording(100))
	if !errors.Is(err, ErrWrongTarget) {
		t.Fatalf("err %v, want ErrWrongTarget", err)
	}
	if a.n() > 25 || rep.Answered < 20 {
		t.Errorf("target got %d requests, %d answered: want it stopped after the first 20 answers", a.n(), rep.Answered)
	}
}

func TestUnreachableAndUsage(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	r, err := New(Config{Target: "http://" + addr}, ordersRecording(2))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Probe(context.Background()); !errors.Is(err, ErrUnreachable) {
		t.Errorf("Probe of a closed port: %v, want ErrUnreachable", err)
	}
	r.Close()
	two := ordersRecording(2)
	two[1].Labels.Service = "payments"
	for _, tc := range []struct {
		name string
		cfg  Config
		recs []*capture.Record
		want string
	}{
		{"no scheme", Config{Target: "localhost:80"}, ordersRecording(1), "want a URL"},
		{"ftp", Config{Target: "ftp://x"}, ordersRecording(1), "scheme"},
		{"rate and timing", Config{Target: "http://x", Rate: 1, Timing: 1}, ordersRecording(1), "choose one"},
		{"no inbound", Config{Target: "http://x"}, nil, "no inbound HTTP request"},
		{"two services", Config{Target: "http://x"}, two, `"orders" (1), "payments" (1): choose one with --service`},
		{"session", Config{Target: "http://x", Session: "ip"}, ordersRecording(1), "--session"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg, tc.recs)
			if !errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want ErrUsage containing %q", err, tc.want)
			}
		})
	}
}

func TestTiming(t *testing.T) {
	var a arrivals
	srv := httptest.NewServer(ordersApp(&a))
	defer srv.Close()
	// 10 requests recorded 100 ms apart, replayed twice as fast: 50 ms apart, 450 ms in all.
	var recs []*capture.Record
	for i := range 10 {
		recs = append(recs, rec("GET", fmt.Sprintf("/orders/%d", i), "", "10.0.0.1", 200, fmt.Sprintf(`{"id":%d,"total":10}`, i), time.Duration(i)*100*time.Millisecond))
	}
	// Arrivals are compared with an origin taken before the replay starts: a request is never sent before
	// its time, so the i-th arrives at least 50·i ms after it, however loaded the machine.
	origin := time.Now()
	if _, err := run(t, Config{Target: srv.URL, Timing: 2}, recs); err != nil {
		t.Fatal(err)
	}
	if a.n() != 10 {
		t.Fatalf("target got %d, want 10", a.n())
	}
	for i, at := range a.times {
		if d := at.Sub(origin); d < time.Duration(i)*50*time.Millisecond {
			t.Errorf("request %d arrived %v after the start, want at least %v (recorded 100 ms apart, x2)", i, d, time.Duration(i)*50*time.Millisecond)
		}
	}
}

func TestReportJSONKeys(t *testing.T) {
	b, _ := json.Marshal(&Report{})
	for _, k := range []string{"sent", "answered", "errors", "status_matched", "body_matched", "latency_ms", "rps", "diffs"} {
		if !strings.Contains(string(b), `"`+k+`"`) {
			t.Errorf("report JSON lacks %q: %s", k, b)
		}
	}
}
