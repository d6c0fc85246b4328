// Command h2backend is the upstream of bench/run-h2: bench/backend's
// answer (200 with the same 1 KiB body) served over both HTTP/1.1 and
// cleartext HTTP/2 with prior knowledge (h2c) on one loopback port.
//
// It has to speak both: h2load reaches it directly over h2c (target a of
// bench/run-h2), while nginx (proxy_http_version 1.1) and goproxy, which
// forwards non-gRPC HTTP/2 to the app as HTTP/1.1 (docs/http2.md), reach it
// over HTTP/1.1 keep-alive connections.
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
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	size := flag.Int("size", 1024, "response body bytes")
	flag.Parse()
	if err := run(*addr, *size); err != nil {
		fmt.Fprintln(os.Stderr, "h2backend:", err)
		os.Exit(1)
	}
}

func run(addr string, size int) error {
	body := bytes.Repeat([]byte("x"), size)
	clen := strconv.Itoa(len(body))
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd["Content-Type"] = []string{"text/plain"}
		hd["Content-Length"] = []string{clen}
		w.Write(body)
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}
