// Package testfwd is a test forwarder: a real HTTP server on loopback that
// speaks the batch protocol of docs/shipping.md through the wire package,
// keeps what it receives, and can be killed and restarted on the same
// address to test goproxy's behaviour when its forwarder goes away.
package testfwd

import (
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/wire"
)

// Receiver is a running test forwarder.
type Receiver struct {
	addr string

	mu      sync.Mutex
	srv     *http.Server
	recs    []*capture.Record
	batches int
	changed chan struct{} // closed and replaced on every new batch
}

// Start listens on addr ("" for any free loopback port) and serves until
// the test ends.
func Start(t testing.TB, addr string) *Receiver {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	r := &Receiver{changed: make(chan struct{})}
	if err := r.listen(addr); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Stop)
	return r
}

func (r *Receiver) listen(addr string) error {
	var ln net.Listener
	var err error
	// A restart may race the kernel releasing the port: retry briefly.
	for i := 0; i < 50; i++ {
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "Connected (test forwarder)\n")
	})
	mux.HandleFunc("POST "+wire.Path, func(w http.ResponseWriter, req *http.Request) {
		var got []*capture.Record
		_, err := wire.ReadBatch(req, wire.Limits{Bytes: 32 << 20}, func(rec *capture.Record) error {
			got = append(got, rec)
			return nil
		})
		if err != nil {
			wire.WriteError(w, err)
			return
		}
		r.mu.Lock()
		r.recs = append(r.recs, got...)
		r.batches++
		close(r.changed)
		r.changed = make(chan struct{})
		r.mu.Unlock()
		wire.WriteAccepted(w, len(got))
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	r.mu.Lock()
	r.addr = ln.Addr().String()
	r.srv = srv
	r.mu.Unlock()
	go srv.Serve(ln)
	return nil
}

// Addr is host:port, for FORWARDER_ADDR.
func (r *Receiver) Addr() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.addr
}

// Stop kills the forwarder: the listener and every connection close at once.
func (r *Receiver) Stop() {
	r.mu.Lock()
	srv := r.srv
	r.srv = nil
	r.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}

// Restart listens again on the same address.
func (r *Receiver) Restart(t testing.TB) {
	t.Helper()
	if err := r.listen(r.Addr()); err != nil {
		t.Fatalf("restart test forwarder: %v", err)
	}
}

// Records returns a copy of everything received so far.
func (r *Receiver) Records() []*capture.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*capture.Record(nil), r.recs...)
}

// ErrTimeout is returned by WaitFor when no record matched in time.
var ErrTimeout = errors.New("testfwd: no matching record in time")

// WaitFor waits until n records match pred, and returns them.
func (r *Receiver) WaitFor(n int, timeout time.Duration, pred func(*capture.Record) bool) ([]*capture.Record, error) {
	deadline := time.After(timeout)
	for {
		r.mu.Lock()
		var match []*capture.Record
		for _, rec := range r.recs {
			if pred(rec) {
				match = append(match, rec)
			}
		}
		ch := r.changed
		r.mu.Unlock()
		if len(match) >= n {
			return match, nil
		}
		select {
		case <-ch:
		case <-deadline:
			return match, ErrTimeout
		}
	}
}
