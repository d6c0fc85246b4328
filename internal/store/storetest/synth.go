package storetest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/store"
)

// Synth makes realistic records for benchmarks: a few services, inbound
// and outbound HTTP with JSON bodies of a few hundred bytes and the usual
// headers, about 2% failing, starts spread over the last span before end.
type Synth struct {
	rng   *rand.Rand
	end   time.Time
	span  time.Duration
	count int
}

// NewSynth returns a generator of n records starting within span before
// end, deterministic for a seed.
func NewSynth(seed uint64, end time.Time, span time.Duration, n int) *Synth {
	return &Synth{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), end: end, span: span, count: n}
}

var (
	synthServices = []string{"orders", "users", "payments", "catalog", "search", "gateway", "inventory", "shipping"}
	synthHosts    = []string{"api.stripe.com", "db.internal", "cache.internal", "auth.example.com", "users.shop", "s3.amazonaws.com"}
	synthRoutes   = []string{"/v1/orders", "/v1/orders/%d", "/v1/users/%d", "/v1/items", "/v1/items/%d/stock", "/healthz", "/v2/search", "/v1/charges"}
)

// Next returns record i of n: starts rise with i (with jitter), as a
// capture does.
func (s *Synth) Next(i int) *capture.Record {
	r := s.rng
	svc := synthServices[r.IntN(len(synthServices))]
	dir := capture.DirIn
	host := svc + ".shop"
	if r.IntN(3) == 0 {
		dir = capture.DirOut
		host = synthHosts[r.IntN(len(synthHosts))]
	}
	route := synthRoutes[r.IntN(len(synthRoutes))]
	path := route
	if strings.Contains(route, "%d") {
		path = fmt.Sprintf(route, r.IntN(100000))
	}
	method := "GET"
	var reqBody []byte
	if r.IntN(4) == 0 {
		method = "POST"
		reqBody = fmt.Appendf(nil, `{"customer":"c-%d","items":[{"sku":"sku-%d","qty":%d},{"sku":"sku-%d","qty":1}],"note":"deliver before noon"}`,
			r.IntN(1e6), r.IntN(1e4), 1+r.IntN(5), r.IntN(1e4))
	}
	status := 200
	switch x := r.IntN(100); {
	case x < 2:
		status = 500 + r.IntN(4)
	case x < 7:
		status = 404
	case method == "POST":
		status = 201
	}
	resBody := fmt.Appendf(nil, `{"id":"%d","status":"ok","total":%d.%02d,"items":[{"sku":"sku-%d","name":"Widget %d","price":%d}],"updatedAt":"2025-03-01T12:00:00Z"}`,
		r.IntN(1e9), r.IntN(500), r.IntN(100), r.IntN(1e4), r.IntN(1000), r.IntN(100))
	start := s.end.Add(-s.span + time.Duration(float64(s.span)*float64(i)/float64(s.count)) + time.Duration(r.IntN(1000))*time.Microsecond)
	dur := int64(500 + r.ExpFloat64()*8000)
	scheme := "http"
	if dir == capture.DirOut && r.IntN(2) == 0 {
		scheme = "https"
	}
	return &capture.Record{
		Schema: capture.SchemaVersion, ID: capture.NewID(), Kind: capture.KindHTTP, Direction: dir,
		Start: start.UTC(), TTFBMicros: dur * 8 / 10, DurMicros: dur,
		Labels: capture.Labels{Cluster: "prod", Namespace: "shop", Service: svc, Pod: fmt.Sprintf("%s-7c88-%d", svc, r.IntN(4))},
		Net: capture.Net{ClientAddr: fmt.Sprintf("10.0.%d.%d:%d", r.IntN(8), r.IntN(250), 30000+r.IntN(30000)),
			ServerAddr: host + ":443", ServerHost: host, ConnID: fmt.Sprintf("c-%d", r.IntN(1000)), Proxy: map[capture.Direction]string{"in": "reverse", "out": "forward"}[dir]},
		HTTP: &capture.HTTP{
			Req: capture.Request{Method: method, URL: scheme + "://" + host + path + "?page=1", Proto: "HTTP/1.1", Host: host,
				Headers: capture.Headers{{Name: "User-Agent", Value: "Go-http-client/1.1"}, {Name: "Accept", Value: "application/json"},
					{Name: "X-Request-Id", Value: fmt.Sprintf("%016x", r.Uint64())}, {Name: "Authorization", Value: "REDACTED-authorization"}},
				Body: capture.Body{Data: reqBody, Size: int64(len(reqBody))}},
			Res: &capture.Response{Status: status, StatusText: "OK", Proto: "HTTP/1.1",
				Headers: capture.Headers{{Name: "Content-Type", Value: "application/json"}, {Name: "Date", Value: "Sat, 01 Mar 2025 12:00:00 GMT"},
					{Name: "Content-Length", Value: fmt.Sprint(len(resBody))}},
				Body: capture.Body{Data: resBody, Size: int64(len(resBody))}},
		},
		Tags: capture.Tags{"captureMode": "proxy", "proxyType": "dual"},
	}
}

// BenchInsert inserts b.N realistic records in batches of 512 and reports
// records/s.
func BenchInsert(b *testing.B, s store.Store) {
	const batch = 512
	gen := NewSynth(1, time.Now(), time.Hour, b.N)
	all := make([]*capture.Record, b.N)
	for i := range all {
		all[i] = gen.Next(i)
	}
	b.ResetTimer()
	start, cpu0 := time.Now(), CPUTime()
	for len(all) > 0 {
		n := min(batch, len(all))
		if _, err := s.Insert(context.Background(), "bench", all[:n]); err != nil {
			b.Fatal(err)
		}
		all = all[n:]
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "records/s")
	b.ReportMetric(float64(b.N)/(CPUTime()-cpu0).Seconds(), "records/cpu-s")
}

// CPUTime returns the user and system CPU time of this process so far. On
// a shared machine, records per CPU second is steadier than per second.
func CPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
