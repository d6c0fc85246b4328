// Package wiretest is a fake forwarder for tests: a real HTTP server on a
// loopback socket that speaks the batch protocol with wire.ReadBatch,
// keeps what it receives, and refuses batches when a test asks it to.
package wiretest

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/wire"
)

// Request is what the fake saw of one batch POST.
type Request struct {
	At       time.Time
	BatchID  string
	Records  int    // Tapwire-Records as sent
	Encoding string // Content-Encoding as sent
	Status   int    // what the fake answered
}

// Forwarder is a fake forwarder. Its zero value is not usable; call New.
type Forwarder struct {
	Server *httptest.Server

	mu       sync.Mutex
	refuse   func(r *http.Request, n int) *wire.ServerError
	token    string
	noS2     bool
	records  []*capture.Record
	requests []Request
	arrived  chan struct{} // signalled after every accepted batch
}

// New starts a fake forwarder, closed when the test ends.
func New(t testing.TB) *Forwarder { return NewTLS(t, nil) }

// NewTLS starts a fake forwarder serving TLS with tlsConfig (plain HTTP
// when nil); its URL is then Server.URL, https://127.0.0.1:PORT.
func NewTLS(t testing.TB, tlsConfig *tls.Config) *Forwarder {
	f := &Forwarder{arrived: make(chan struct{}, 1)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("Connected\n"))
	})
	mux.HandleFunc(wire.Path, f.serveBatch)
	f.Server = httptest.NewUnstartedServer(mux)
	if tlsConfig != nil {
		f.Server.TLS = tlsConfig
		f.Server.StartTLS()
	} else {
		f.Server.Start()
	}
	t.Cleanup(f.Server.Close)
	return f
}

// Addr returns the fake's host:port, a FORWARDER_ADDR.
func (f *Forwarder) Addr() string { return strings.TrimPrefix(f.Server.URL, "http://") }

// Refuse makes the fake call fn for every batch request (n counts them
// from 1) before decoding it; a non-nil result is the answer.
func (f *Forwarder) Refuse(fn func(r *http.Request, n int) *wire.ServerError) {
	f.mu.Lock()
	f.refuse = fn
	f.mu.Unlock()
}

// RequireToken makes the fake answer 401 to requests without this bearer
// token.
func (f *Forwarder) RequireToken(token string) {
	f.mu.Lock()
	f.token = token
	f.mu.Unlock()
}

// WithoutS2 makes the fake answer as a server older than S2 does (no
// Accept-Encoding in its answers, and 415 to a batch in s2) when without
// is set, and as it does by default when not.
func (f *Forwarder) WithoutS2(without bool) {
	f.mu.Lock()
	f.noS2 = without
	f.mu.Unlock()
}

// withoutAcceptEncoding drops the Accept-Encoding its handler set.
type withoutAcceptEncoding struct{ http.ResponseWriter }

func (w withoutAcceptEncoding) WriteHeader(code int) {
	w.Header().Del("Accept-Encoding")
	w.ResponseWriter.WriteHeader(code)
}

// Records returns the records accepted so far, in arrival order.
func (f *Forwarder) Records() []*capture.Record {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*capture.Record(nil), f.records...)
}

// Requests returns every batch request seen so far.
func (f *Forwarder) Requests() []Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Request(nil), f.requests...)
}

// WaitRecords waits until at least n records arrived, and fails the test
// if they do not within timeout.
func (f *Forwarder) WaitRecords(t testing.TB, n int, timeout time.Duration) []*capture.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		recs := f.Records()
		if len(recs) >= n {
			return recs
		}
		select {
		case <-f.arrived:
		case <-ctx.Done():
			t.Fatalf("fake forwarder got %d records in %s, want %d", len(recs), timeout, n)
			return nil
		}
	}
}

func (f *Forwarder) serveBatch(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	n := len(f.requests) + 1
	refuse, token, noS2 := f.refuse, f.token, f.noS2
	f.requests = append(f.requests, Request{At: time.Now(), BatchID: r.Header.Get(wire.HeaderBatchID),
		Encoding: r.Header.Get("Content-Encoding")})
	f.mu.Unlock()
	answer := func(status int) {
		f.mu.Lock()
		f.requests[n-1].Status = status
		f.requests[n-1].Records = atoi(r.Header.Get(wire.HeaderRecords))
		f.mu.Unlock()
	}

	if token != "" && r.Header.Get("Authorization") != "Bearer "+token {
		answer(http.StatusUnauthorized)
		wire.WriteError(w, wire.Errorf(http.StatusUnauthorized, "bad token"))
		return
	}
	if noS2 {
		w = withoutAcceptEncoding{w}
		if strings.EqualFold(r.Header.Get("Content-Encoding"), wire.EncodingS2) {
			answer(http.StatusUnsupportedMediaType)
			wire.WriteError(w, wire.Errorf(http.StatusUnsupportedMediaType, "unsupported content encoding: %q", wire.EncodingS2))
			return
		}
	}
	if refuse != nil {
		if se := refuse(r, n); se != nil {
			answer(se.Status)
			wire.WriteError(w, se)
			return
		}
	}
	var got []*capture.Record
	info, err := wire.ReadBatch(r, wire.Limits{}, func(rec *capture.Record) error {
		got = append(got, rec)
		return nil
	})
	if err != nil {
		se := wire.StatusOf(err)
		answer(se.Status)
		wire.WriteError(w, err)
		return
	}
	answer(http.StatusOK)
	f.mu.Lock()
	f.records = append(f.records, got...)
	f.mu.Unlock()
	wire.WriteAccepted(w, info.Records)
	select {
	case f.arrived <- struct{}{}:
	default:
	}
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			return -1
		}
		n = n*10 + int(c-'0')
	}
	return n
}
