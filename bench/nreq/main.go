// Command nreq is bench/run's fixed-size HTTP/1.1 client, for the two
// measurements a duration-based load tool like wrk cannot make:
//
//	nreq -url http://127.0.0.1:8080/ -n 2000 [-c 1]
//
// sends exactly -n GET requests over -c keep-alive connections (one request
// at a time on each) and fails unless every answer is a 200: what bench/run
// counts the proxy's instructions over under callgrind.
//
//	nreq -url http://127.0.0.1:8080/ -idle 2000 -hold 10s
//
// opens -idle connections, sends one request on each, and keeps them all
// open and idle; it prints "open N" once they are, holds them for -hold, then
// checks that the server closed none of them meanwhile and prints
// "held N closed_by_server K": what bench/run reads the proxy's memory during.
//
//	nreq -url http://127.0.0.1:8080/ -rate 10000 -d 10s [-c 64]
//
// sends requests at a fixed rate, spread evenly over -c keep-alive
// connections (each paces its own share; one request at a time on each),
// for -d, and prints "requests N seconds S rate R p50_ms A p99_ms B late L":
// the latency is counted from the moment a request was due, not when it
// went out, so a server that falls behind shows it (L: requests sent more
// than 10 ms after they were due). What bench/run compares the servers'
// CPU per request at, all at the same load: under wrk's closed loop each
// runs at its own rate, and a server kept half idle wakes more often per
// request.
//
// The request is wrk's: "GET / HTTP/1.1" with only a Host header.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sync"
	"time"
)

func main() {
	rawURL := flag.String("url", "", "http://host:port/path to request")
	n := flag.Int("n", 0, "requests to send in all (request mode)")
	c := flag.Int("c", 1, "keep-alive connections the -n requests are spread over")
	idle := flag.Int("idle", 0, "connections to open, use once and hold idle (idle mode)")
	hold := flag.Duration("hold", 10*time.Second, "how long idle mode holds its connections")
	rate := flag.Float64("rate", 0, "requests per second in all (rate mode, with -d)")
	dur := flag.Duration("d", 10*time.Second, "how long rate mode sends")
	timeout := flag.Duration("timeout", 60*time.Second, "deadline of each dial and each request (slow under valgrind)")
	flag.Parse()
	if err := run(*rawURL, *n, *c, *idle, *rate, *hold, *dur, *timeout); err != nil {
		fmt.Fprintln(os.Stderr, "nreq:", err)
		os.Exit(1)
	}
}

func run(rawURL string, n, c, idle int, rate float64, hold, dur, timeout time.Duration) error {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return fmt.Errorf("-url %q: want http://host:port/path", rawURL)
	}
	path := u.RequestURI()
	req := []byte("GET " + path + " HTTP/1.1\r\nHost: " + u.Host + "\r\n\r\n")
	switch {
	case rate > 0 && n == 0 && idle == 0:
		if c < 1 || dur <= 0 {
			return fmt.Errorf("-c %d -d %s: want at least one connection and a duration", c, dur)
		}
		return paced(u.Host, req, rate, dur, c, timeout)
	case n > 0 && idle == 0 && rate == 0:
		if c < 1 || c > n {
			return fmt.Errorf("-c %d: want 1 to -n (%d)", c, n)
		}
		return requests(u.Host, req, n, c, timeout)
	case idle > 0 && n == 0:
		return holdIdle(u.Host, req, idle, hold, timeout)
	default:
		return errors.New("want exactly one of -n, -idle and -rate")
	}
}

// conn is one keep-alive client connection.
type conn struct {
	nc      net.Conn
	br      *bufio.Reader
	timeout time.Duration
}

func dial(addr string, timeout time.Duration) (*conn, error) {
	nc, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	return &conn{nc: nc, br: bufio.NewReaderSize(nc, 16<<10), timeout: timeout}, nil
}

// do sends one request and reads the whole answer, which must be a 200
// that leaves the connection open.
func (c *conn) do(req []byte) error {
	if err := c.nc.SetDeadline(time.Now().Add(c.timeout)); err != nil {
		return fmt.Errorf("set deadline: %w", err)
	}
	if _, err := c.nc.Write(req); err != nil {
		return fmt.Errorf("write request: %w", err)
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return fmt.Errorf("read response: %w", err)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("read body: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d, want 200", resp.StatusCode)
	}
	if resp.Close {
		return errors.New("the server closed the connection after a response")
	}
	return nil
}

// requests sends n requests over c connections, n/c on each (the first
// n%c connections send one more).
func requests(addr string, req []byte, n, c int, timeout time.Duration) error {
	start := time.Now()
	errs := make([]error, c)
	var wg sync.WaitGroup
	for i := range c {
		k := n / c
		if i < n%c {
			k++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cn, err := dial(addr, timeout)
			if err != nil {
				errs[i] = err
				return
			}
			defer cn.nc.Close()
			for j := range k {
				if err := cn.do(req); err != nil {
					errs[i] = fmt.Errorf("connection %d, request %d: %w", i, j+1, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	fmt.Printf("requests %d connections %d seconds %.3f\n", n, c, time.Since(start).Seconds())
	return nil
}

// paced sends rate requests per second for dur over c connections, each
// connection due to send one every c/rate seconds (offset so that the
// connections take turns), and prints what was sent and its latency from
// each request's due time.
func paced(addr string, req []byte, rate float64, dur time.Duration, c int, timeout time.Duration) error {
	every := time.Duration(float64(c) / rate * float64(time.Second))
	if every <= 0 {
		return fmt.Errorf("-rate %g over %d connections: too fast to pace", rate, c)
	}
	conns := make([]*conn, c)
	defer func() {
		for _, cn := range conns {
			if cn != nil {
				cn.nc.Close()
			}
		}
	}()
	for i := range conns {
		cn, err := dial(addr, timeout)
		if err != nil {
			return err
		}
		conns[i] = cn
	}
	lat := make([][]time.Duration, c)
	errs := make([]error, c)
	late := make([]int, c)
	start := time.Now().Add(10 * time.Millisecond)
	end := start.Add(dur)
	var wg sync.WaitGroup
	for i, cn := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			due := start.Add(every * time.Duration(i) / time.Duration(c))
			for ; due.Before(end); due = due.Add(every) {
				if d := time.Until(due); d > 0 {
					time.Sleep(d)
				} else if d < -10*time.Millisecond {
					late[i]++
				}
				if err := cn.do(req); err != nil {
					errs[i] = fmt.Errorf("connection %d: %w", i, err)
					return
				}
				lat[i] = append(lat[i], time.Since(due))
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return err
	}
	var all []time.Duration
	lateN := 0
	for i := range lat {
		all = append(all, lat[i]...)
		lateN += late[i]
	}
	slices.Sort(all)
	q := func(p float64) float64 {
		if len(all) == 0 {
			return 0
		}
		return float64(all[min(len(all)-1, int(p*float64(len(all))))]) / 1e6
	}
	fmt.Printf("requests %d seconds %.3f rate %.0f p50_ms %.3f p99_ms %.3f late %d\n",
		len(all), took.Seconds(), float64(len(all))/took.Seconds(), q(0.50), q(0.99), lateN)
	return nil
}

// holdIdle opens idle connections (at most 32 dials at a time), one
// request on each, holds them for hold, then counts those the server closed.
func holdIdle(addr string, req []byte, idle int, hold, timeout time.Duration) error {
	conns := make([]*conn, idle)
	errs := make([]error, idle)
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	for i := range idle {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			cn, err := dial(addr, timeout)
			if err == nil {
				err = cn.do(req)
			}
			if err != nil {
				errs[i] = fmt.Errorf("connection %d: %w", i, err)
				if cn != nil {
					cn.nc.Close()
				}
				return
			}
			conns[i] = cn
		}()
	}
	wg.Wait()
	defer func() {
		for _, cn := range conns {
			if cn != nil {
				cn.nc.Close()
			}
		}
	}()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	fmt.Printf("open %d\n", idle)
	time.Sleep(hold)

	// A connection the server has closed reads EOF at once; an open one
	// times out.
	closed := 0
	var one [1]byte
	for _, cn := range conns {
		if err := cn.nc.SetReadDeadline(time.Now().Add(time.Millisecond)); err != nil {
			return fmt.Errorf("set deadline: %w", err)
		}
		if _, err := cn.br.Read(one[:]); !errors.Is(err, os.ErrDeadlineExceeded) {
			closed++
		}
	}
	fmt.Printf("held %d closed_by_server %d\n", idle, closed)
	return nil
}
