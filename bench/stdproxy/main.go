// Command stdproxy is the floor bench/run measures goproxy against: Go's
// own httputil.ReverseProxy with the same transport settings and pooled
// 32 KiB copy buffers as goproxy's inbound proxy, and nothing else (no
// capture, no sniffing, no connection tracking). The gap from it to nginx is Go's net/http; the gap from
// goproxy to it is goproxy's own.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"sync"
	"time"
)

// bufPool lends the proxy its copy buffers; without it each response
// allocates 32 KiB, and that, not the proxying, is what one would measure.
type bufPool struct{ p sync.Pool }

func (b *bufPool) Get() []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, 32<<10)
}

func (b *bufPool) Put(buf []byte) { b.p.Put(&buf) }

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	target := flag.String("target", "", "upstream URL, e.g. http://127.0.0.1:8080")
	flag.Parse()
	if err := run(*addr, *target); err != nil {
		fmt.Fprintln(os.Stderr, "stdproxy:", err)
		os.Exit(1)
	}
}

func run(addr, target string) error {
	u, err := url.Parse(target)
	if err != nil || u.Host == "" {
		return fmt.Errorf("-target %q: want http://host:port", target)
	}
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			pr.Out.Host = pr.In.Host
			pr.SetXForwarded()
		},
		Transport: &http.Transport{
			DialContext:         d.DialContext,
			MaxIdleConns:        1024,
			MaxIdleConnsPerHost: 256,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
		BufferPool: &bufPool{},
		ErrorLog:   log.New(io.Discard, "", 0), // wrk's cut-off cancels requests: not news
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	srv := &http.Server{Handler: rp, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}
