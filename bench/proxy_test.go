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
//	off      capture off (CAPTURE_ENABLE=false)
//	capture  records made and dropped by the emitter
//	ship     records made, batched and zstd-encoded as for the forwarder
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
		{"ship", func(b *testing.B) (capture.Emitter, func()) {
			sink := &encodeSink{}
			sh := ship.New(ship.Config{FlushInterval: 500 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)}, sink)
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
			tr := &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr}

			b.ReportAllocs()
			b.SetParallelism(8) // 8 × GOMAXPROCS clients, like wrk -c16 on two cores
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					res, err := client.Get(url)
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
