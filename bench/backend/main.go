// Command backend is the upstream of bench/run and bench/run-h2: an HTTP/1.1
// server on loopback that answers every request 200 with the same 1 KiB body
// over keep-alive connections, so that the proxies in front of it are what
// the load comparison measures.
//
// With -h2c it also speaks cleartext HTTP/2 with prior knowledge on the same
// port, as bench/run-h2 needs: h2load reaches it directly over h2c (target a),
// while nginx (proxy_http_version 1.1) and goproxy, which forwards non-gRPC
// HTTP/2 to the app as HTTP/1.1 (docs/http2.md), reach it over HTTP/1.1.
//
// With -count it counts the requests it answers (bench/replay's rate figure is counted here, at the target).
//
// With -json the body is an API's JSON answer of about -size bytes (orders
// with ids, prices, times and e-mail addresses, application/json) instead of
// -size bytes of "x": what capture's redaction meets in real traffic (bench/ab
// BACKEND_ARGS=-json).
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	size := flag.Int("size", 1024, "response body bytes")
	h2c := flag.Bool("h2c", false, "also serve cleartext HTTP/2 (prior knowledge) on the same port")
	asJSON := flag.Bool("json", false, "answer an API's JSON (orders with ids, prices, times, e-mail addresses) of about -size bytes instead of -size bytes of x")
	chunked := flag.Bool("chunked", false, "answer with Transfer-Encoding: chunked (no Content-Length; the body flushed as one chunk)")
	count := flag.Bool("count", false, "count the requests: GET /_count (not counted) answers the count and the first and last arrival times, in Unix ns, as three numbers; POST /_count resets them")
	flag.Parse()
	body, ctype := bytes.Repeat([]byte("x"), *size), "text/plain"
	if *asJSON {
		body, ctype = jsonBody(*size), "application/json"
	}
	if err := run(*addr, body, ctype, *h2c, *count, *chunked); err != nil {
		fmt.Fprintln(os.Stderr, "backend:", err)
		os.Exit(1)
	}
}

// counter counts requests where they arrive, for bench/replay's rate figure.
type counter struct {
	mu          sync.Mutex
	n           int64
	first, last int64 // Unix ns
}

func (c *counter) add() {
	now := time.Now().UnixNano()
	c.mu.Lock()
	if c.n == 0 {
		c.first = now
	}
	c.n++
	c.last = now
	c.mu.Unlock()
}

// jsonBody is a JSON answer of orders, as many as make about size bytes.
func jsonBody(size int) []byte {
	var b bytes.Buffer
	b.WriteString(`{"orders":[`)
	for i := 0; b.Len() < size-200 || i == 0; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":"ord_%08d","customer":{"id":%d,"email":"user%d@example.com","name":"Jane Doe"},"total":%d.%02d,`+
			`"currency":"EUR","items":[{"sku":"SKU-%05d","qty":%d}],"created":"2026-12-0%dT10:%02d:00Z"}`,
			48213+i, 1000+i, i, 10+i*7, i%100, 300+i, 1+i%3, 1+i%7, i%60)
	}
	b.WriteString(`]}`)
	return b.Bytes()
}

func run(addr string, body []byte, ctype string, h2c, count, chunked bool) error {
	clen := strconv.Itoa(len(body))
	var cnt counter
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if count {
			if r.URL.Path == "/_count" {
				cnt.mu.Lock()
				if r.Method == http.MethodPost {
					cnt.n, cnt.first, cnt.last = 0, 0, 0
				}
				fmt.Fprintf(w, "%d %d %d\n", cnt.n, cnt.first, cnt.last)
				cnt.mu.Unlock()
				return
			}
			cnt.add()
		}
		hd := w.Header()
		hd["Content-Type"] = []string{ctype}
		if chunked {
			// Without a length, a flush before the end makes net/http chunk
			// the body (HTTP/1.1).
			w.Write(body)
			w.(http.Flusher).Flush()
			return
		}
		hd["Content-Length"] = []string{clen}
		w.Write(body)
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
	if h2c {
		srv.Protocols = new(http.Protocols)
		srv.Protocols.SetHTTP1(true)
		srv.Protocols.SetUnencryptedHTTP2(true)
	}
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}
