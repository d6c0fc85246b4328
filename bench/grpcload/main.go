// Command grpcload is the gRPC half of bench/run-h2: a unary-call load
// client, and with -serve the server it calls. Neither needs generated
// code: messages are protobuf bytes built with protowire and passed through
// a raw codec named "proto", and the service is a hand-written
// grpc.ServiceDesc, as internal/proxy/grpc_test.go does.
//
//	grpcload -serve 127.0.0.1:9000 [-size 1024] [-fill text] &
//	grpcload -addr 127.0.0.1:9000 -c 32 -conns 4 -d 10s -warmup 2s
//
// The client prints one line of key=value pairs (calls, errors, seconds,
// calls_per_s, mean_ms, p50_ms, p99_ms, max_ms); latencies are of the calls
// completed in the measured window (the warm-up is not counted).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"slices"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protowire"
)

// method is the one unary method of the service.
const method = "/bench.Echo/Unary"

// rawCodec passes message bytes through as they are.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(b []byte, v any) error {
	*(v.(*[]byte)) = append((*(v.(*[]byte)))[:0], b...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

// payload is a protobuf message {1: n bytes of filler}. The filler "text"
// is English-like prose, which a schema-less decoder (goproxy's
// internal/protoraw, like protoc --decode_raw) reads as a string; "x" is a
// run of 'x', which also parses, whole, as a message of n/2 varint fields
// {15: 120} and so is decoded as one: the costly case for capture.
func payload(n int, fill string) ([]byte, error) {
	var unit string
	switch fill {
	case "text":
		unit = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor. "
	case "x":
		unit = "x"
	default:
		return nil, fmt.Errorf("-fill %q: want text or x", fill)
	}
	x := make([]byte, n)
	for i := range x {
		x[i] = unit[i%len(unit)]
	}
	b := protowire.AppendTag(nil, 1, protowire.BytesType)
	return protowire.AppendBytes(b, x), nil
}

func main() {
	serve := flag.String("serve", "", "serve the benchmark service on this address instead of calling it")
	addr := flag.String("addr", "", "the server (or proxy) to call, host:port")
	workers := flag.Int("c", 32, "concurrent workers, each making one call at a time")
	conns := flag.Int("conns", 4, "gRPC client connections (HTTP/2 connections) the workers share")
	dur := flag.Duration("d", 10*time.Second, "measured duration")
	warmup := flag.Duration("warmup", 2*time.Second, "unmeasured load before the measured duration (0 skips)")
	reqSize := flag.Int("req", 64, "request payload bytes")
	size := flag.Int("size", 1024, "response payload bytes (with -serve)")
	fill := flag.String("fill", "text", "payload bytes: text (prose) or x (a run of 'x', which parses as a nested message)")
	flag.Parse()
	var err error
	switch {
	case *serve != "":
		err = runServer(*serve, *size, *fill)
	case *addr != "":
		err = runClient(*addr, *workers, *conns, *dur, *warmup, *reqSize, *fill)
	default:
		err = errors.New("want -serve ADDR or -addr HOST:PORT")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "grpcload:", err)
		os.Exit(1)
	}
}

func runServer(addr string, size int, fill string) error {
	out, err := payload(size, fill)
	if err != nil {
		return err
	}
	desc := &grpc.ServiceDesc{
		ServiceName: "bench.Echo",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{
			MethodName: "Unary",
			Handler: func(_ any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
				var in []byte
				if err := dec(&in); err != nil {
					return nil, err
				}
				return &out, nil
			},
		}},
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	s := grpc.NewServer(grpc.ForceServerCodec(rawCodec{}))
	s.RegisterService(desc, nil)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	go func() {
		<-sig
		s.Stop()
	}()
	return s.Serve(ln)
}

func runClient(addr string, workers, nconns int, dur, warmup time.Duration, reqSize int, fill string) error {
	if workers < 1 || nconns < 1 || dur <= 0 {
		return errors.New("-c, -conns and -d must be positive")
	}
	ccs := make([]*grpc.ClientConn, nconns)
	for i := range ccs {
		cc, err := grpc.NewClient("passthrough:///"+addr,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})))
		if err != nil {
			return err
		}
		defer cc.Close()
		ccs[i] = cc
	}
	in, err := payload(reqSize, fill)
	if err != nil {
		return err
	}

	// One call on each connection first, so that connecting is in neither phase.
	for _, cc := range ccs {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		var out []byte
		err := cc.Invoke(ctx, method, &in, &out, grpc.WaitForReady(true))
		cancel()
		if err != nil {
			return fmt.Errorf("first call: %w", err)
		}
	}

	// phase runs the workers until end; with record, it keeps each call's latency.
	type result struct {
		lat    []time.Duration
		errs   int
		errMsg error
	}
	phase := func(d time.Duration, record bool) ([]result, time.Duration) {
		start := time.Now()
		end := start.Add(d)
		// In-flight calls at the cut-off may finish; none may hang.
		ctx, cancel := context.WithDeadline(context.Background(), end.Add(10*time.Second))
		defer cancel()
		res := make([]result, workers)
		var wg sync.WaitGroup
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := &res[w]
				cc := ccs[w%nconns]
				var out []byte
				if record {
					r.lat = make([]time.Duration, 0, 1<<14)
				}
				for {
					t0 := time.Now()
					if !t0.Before(end) {
						return
					}
					err := cc.Invoke(ctx, method, &in, &out)
					if err != nil {
						r.errs++
						if r.errMsg == nil {
							r.errMsg = err
						}
						if ctx.Err() != nil {
							return
						}
						continue
					}
					if record {
						r.lat = append(r.lat, time.Since(t0))
					}
				}
			}()
		}
		wg.Wait()
		return res, time.Since(start)
	}

	if warmup > 0 {
		phase(warmup, false)
	}
	res, elapsed := phase(dur, true)

	var lat []time.Duration
	errs := 0
	var firstErr error
	for _, r := range res {
		lat = append(lat, r.lat...)
		errs += r.errs
		if firstErr == nil {
			firstErr = r.errMsg
		}
	}
	if firstErr != nil {
		fmt.Fprintf(os.Stderr, "grpcload: %d calls failed, the first: %v\n", errs, firstErr)
	}
	if len(lat) == 0 {
		return errors.New("no call succeeded")
	}
	slices.Sort(lat)
	var sum time.Duration
	for _, d := range lat {
		sum += d
	}
	ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
	pct := func(p float64) time.Duration {
		i := int(p*float64(len(lat))+0.5) - 1
		return lat[max(0, min(i, len(lat)-1))]
	}
	fmt.Printf("calls=%d errors=%d seconds=%.2f calls_per_s=%.1f mean_ms=%.3f p50_ms=%.3f p99_ms=%.3f max_ms=%.3f\n",
		len(lat), errs, elapsed.Seconds(), float64(len(lat))/elapsed.Seconds(),
		ms(sum/time.Duration(len(lat))), ms(pct(0.50)), ms(pct(0.99)), ms(lat[len(lat)-1]))
	return nil
}
