package bench

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/proxy"
	"github.com/tapwire/tapwire/internal/redact"
	"github.com/tapwire/tapwire/internal/ship"
	"github.com/tapwire/tapwire/internal/wire"
)

// encodeSink encodes every batch as the forwarder sink does (zstd JSON
// lines) and throws the bytes away: the cost of shipping without a network.
type encodeSink struct{ records atomic.Int64 }

func (s *encodeSink) Write(_ context.Context, recs []*capture.Record) error {
	s.records.Add(int64(len(recs)))
	return wire.EncodeBatch(io.Discard, recs)
}

func (s *encodeSink) Close() error { return nil }

var _ capture.Sink = (*encodeSink)(nil)

// BenchmarkInbound sends GETs through proxy.Inbound (sniffing on, as
// PROXY_PROTOCOL=tcp:http, goproxy's default) to a backend answering 1 KiB,
// over keep-alive connections. The client and the backend run in the same
// process, so allocs/op counts theirs too: compare the cases, not the
// absolute numbers.
//
//	off          capture off (CAPTURE_ENABLE=false)
//	capture      records made and dropped by the emitter
//	ship         records made, batched and zstd-encoded as for the forwarder
//	ship-redact  ship, with goproxy's default redaction in the shipper's goroutine
//
// Every request carries an Authorization header, a secret for redaction to find.
func BenchmarkInbound(b *testing.B) {
	body := strings.Repeat("x", 1024)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, body)
	}))
	defer backend.Close()

	cases := []struct {
		name string
		emit func(b *testing.B) (capture.Emitter, func())
	}{
		{"off", func(*testing.B) (capture.Emitter, func()) { return nil, func() {} }},
		{"capture", func(*testing.B) (capture.Emitter, func()) {
			return capture.EmitterFunc(func(*capture.Record) {}), func() {}
		}},
		{"ship", func(b *testing.B) (capture.Emitter, func()) { return shipper(b, nil) }},
		{"ship-redact", func(b *testing.B) (capture.Emitter, func()) {
			red, err := (&redact.Settings{Redact: "true", RedactBodies: "true"}).Redactor()
			if err != nil {
				b.Fatal(err)
			}
			return shipper(b, func(batch []*capture.Record) {
				for _, r := range batch {
					red.Redact(r)
				}
			})
		}},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			em, stop := tc.emit(b)
			in, err := proxy.NewInbound(backend.URL, proxy.InboundSniff, proxy.Options{
				Emitter: em,
				Logger:  slog.New(slog.DiscardHandler),
			})
			if err != nil {
				b.Fatal(err)
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			go in.Serve(ln)
			defer func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				in.Shutdown(ctx) // every record emitted before the shipper stops
				stop()
			}()
			url := "http://" + ln.Addr().String() + "/"
			req, _ := http.NewRequest("GET", url, nil)
			req.Header.Set("Authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.e30.c2lnbmF0dXJl") // a secret for redaction to find
			tr := &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr}

			b.ReportAllocs()
			b.SetParallelism(8) // 8 × GOMAXPROCS clients, like wrk -c16 on two cores
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				req := req.Clone(context.Background()) // one per goroutine, reused once each answer is read
				for pb.Next() {
					res, err := client.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, res.Body)
					res.Body.Close()
					if res.StatusCode != http.StatusOK {
						b.Errorf("status %d, want 200", res.StatusCode)
						return
					}
				}
			})
		})
	}
}

// shipper is goproxy's shipper over an encodeSink, with prepare as its
// Prepare (goproxy's redaction), and the function that stops it.
func shipper(b *testing.B, prepare func([]*capture.Record)) (capture.Emitter, func()) {
	sink := &encodeSink{}
	sh := ship.New(ship.Config{FlushInterval: 500 * time.Millisecond, Logger: slog.New(slog.DiscardHandler), Prepare: prepare}, sink)
	ctx, cancel := context.WithCancel(context.Background())
	sh.Start(ctx)
	return sh, func() {
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		sh.Shutdown(sctx)
		cancel()
		if st := sh.Stats(); st.Dropped > 0 {
			b.Logf("shipper dropped %d of %d records", st.Dropped, st.Emitted)
		}
	}
}

// BenchmarkRedactRecord is the default redaction of one record like
// BenchmarkInbound's (a GET with an Authorization header, a 1 KiB text
// answer): what goproxy's shipper spends per record on redaction.
func BenchmarkRedactRecord(b *testing.B) {
	red, err := (&redact.Settings{Redact: "true", RedactBodies: "true"}).Redactor()
	if err != nil {
		b.Fatal(err)
	}
	body := []byte(strings.Repeat("x", 1024))
	b.ReportAllocs()
	for b.Loop() {
		r := &capture.Record{HTTP: &capture.HTTP{
			Req: capture.Request{Method: "GET", URL: "http://127.0.0.1:8080/", Headers: capture.Headers{
				{Name: "Accept-Encoding", Value: "gzip"}, {Name: "Authorization", Value: "Bearer eyJhbGciOiJIUzI1NiJ9.e30.c2lnbmF0dXJl"},
				{Name: "User-Agent", Value: "Go-http-client/1.1"}}},
			Res: &capture.Response{Status: 200, Headers: capture.Headers{
				{Name: "Content-Length", Value: "1024"}, {Name: "Content-Type", Value: "text/plain"}, {Name: "Date", Value: "Mon, 02 Mar 2026 10:00:00 GMT"}},
				Body: capture.Body{Data: body, Size: 1024}},
		}}
		if red.Redact(r) == nil {
			b.Fatal("nothing redacted")
		}
	}
}
