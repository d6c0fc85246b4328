// Command replay writes the recording bench/replay/run replays: n inbound GET requests of c clients, each
// answered 200 with the body bench/backend answers (size bytes of 'x', text/plain), as our JSONL, so that a
// replay against bench/backend compares every answer and finds it equal.
//
//	go run ./bench/replay -n 20000 -c 64 -o rec.jsonl
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/format/jsonl"
)

func main() {
	n := flag.Int("n", 20000, "requests")
	clients := flag.Int("c", 64, "recorded clients (sessions)")
	size := flag.Int("size", 1024, "response body bytes, as bench/backend -size")
	out := flag.String("o", "", "output file (required)")
	flag.Parse()
	if err := write(*out, *n, *clients, *size); err != nil {
		fmt.Fprintln(os.Stderr, "replay:", err)
		os.Exit(1)
	}
}

func write(path string, n, clients, size int) error {
	if path == "" {
		return fmt.Errorf("-o FILE is required")
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	w := jsonl.NewWriter(bw)
	body := bytes.Repeat([]byte("x"), size)
	t0 := time.Date(2025, 2, 11, 21, 0, 0, 0, time.UTC)
	for i := range n {
		c := i % clients
		r := &capture.Record{Schema: 1, ID: capture.NewID(), Kind: capture.KindHTTP, Direction: capture.DirIn,
			Start: t0.Add(time.Duration(i) * time.Millisecond), DurMicros: 300,
			Labels: capture.Labels{Service: "bench"},
			Net:    capture.Net{ClientAddr: fmt.Sprintf("10.0.%d.%d:40000", c/250, c%250+1)},
			HTTP: &capture.HTTP{
				Req: capture.Request{Method: "GET", URL: fmt.Sprintf("http://bench:4143/items/%d?q=%d", i, i%7), Proto: "HTTP/1.1", Host: "bench:4143",
					Headers: capture.Headers{{Name: "User-Agent", Value: "bench"}, {Name: "Accept", Value: "*/*"}}},
				Res: &capture.Response{Status: 200, StatusText: "OK", Proto: "HTTP/1.1",
					Headers: capture.Headers{{Name: "Content-Type", Value: "text/plain"}, {Name: "Content-Length", Value: fmt.Sprint(size)}},
					Body:    capture.Body{Data: body, Size: int64(size)}},
			}}
		if err := w.Write(r); err != nil {
			return err
		}
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	return f.Close()
}
