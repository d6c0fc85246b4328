package wire_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/format/jsonl"
	"github.com/tapwire/tapwire/internal/wire"
	"github.com/tapwire/tapwire/internal/wire/wiretest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func records(n int) []*capture.Record {
	recs := make([]*capture.Record, n)
	for i := range recs {
		recs[i] = &capture.Record{
			Schema: capture.SchemaVersion, ID: capture.NewID(), Kind: capture.KindTCP, Direction: capture.DirOut,
			Start: time.Now().UTC(), TCP: &capture.TCP{BytesUp: int64(i)},
		}
	}
	return recs
}

func newSink(t *testing.T, addr string, opts wire.ClientOptions) *wire.Client {
	t.Helper()
	s, err := wire.NewClient(addr, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestWrite(t *testing.T) {
	fwd := wiretest.New(t)
	fwd.RequireToken("s3cret")
	s := newSink(t, fwd.Addr(), wire.ClientOptions{Token: "s3cret"})
	recs := records(7)
	if err := s.Write(context.Background(), recs); err != nil {
		t.Fatalf("Write: %v", err)
	}
	got := fwd.Records()
	if len(got) != 7 {
		t.Fatalf("forwarder got %d records, want 7", len(got))
	}
	for i := range got {
		if got[i].ID != recs[i].ID {
			t.Errorf("record %d id %s, want %s (order kept)", i, got[i].ID, recs[i].ID)
		}
	}
	req := fwd.Requests()[0]
	if req.BatchID != wire.BatchID(recs) || req.Records != 7 {
		t.Errorf("request batch id %q records %d, want %q and 7", req.BatchID, req.Records, wire.BatchID(recs))
	}
}

// TestWriteFastCompression: goproxy's client (zstd's fastest level) posts
// batches and lines that a server decodes as any other.
func TestWriteFastCompression(t *testing.T) {
	fwd := wiretest.New(t)
	s := newSink(t, fwd.Addr(), wire.ClientOptions{FastCompression: true})
	recs := records(50)
	if err := s.Write(context.Background(), recs); err != nil {
		t.Fatalf("Write: %v", err)
	}
	var lines bytes.Buffer
	if err := jsonl.Append(&lines, records(3)); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteLines(context.Background(), lines.Bytes(), 3); err != nil {
		t.Fatalf("WriteLines: %v", err)
	}
	got := fwd.Records()
	if len(got) != 53 || got[49].ID != recs[49].ID {
		t.Fatalf("forwarder got %d records, want 53 in order", len(got))
	}
}

// TestWriteYields: while goproxy's client encodes a batch, it calls Yield
// between records once wire.YieldEvery of encoding has passed, and the batch
// arrives whole and in order.
func TestWriteYields(t *testing.T) {
	fwd := wiretest.New(t)
	yields := 0
	s := newSink(t, fwd.Addr(), wire.ClientOptions{FastCompression: true, Yield: func() {
		yields++
		time.Sleep(wire.YieldEvery) // what runs meanwhile does not count as encoding, but the clock does
	}})
	recs := records(4000)
	start := time.Now()
	if err := s.Write(context.Background(), recs); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if yields == 0 {
		t.Fatalf("no yield while encoding 4,000 records (%s)", time.Since(start))
	}
	if got := fwd.Records(); len(got) != 4000 || got[3999].ID != recs[3999].ID {
		t.Fatalf("forwarder got %d records, want 4000 in order", len(got))
	}
}

func TestWriteErrors(t *testing.T) {
	tests := []struct {
		name          string
		status        int
		wait          time.Duration
		wantPermanent bool
	}{
		{"bad request", http.StatusBadRequest, 0, true},
		{"unauthorized", http.StatusUnauthorized, 0, true},
		{"unsupported media", http.StatusUnsupportedMediaType, 0, true},
		{"too many requests", http.StatusTooManyRequests, 3 * time.Second, false},
		{"unavailable", http.StatusServiceUnavailable, 2 * time.Second, false},
		{"internal", http.StatusInternalServerError, 0, false},
		{"bad gateway", http.StatusBadGateway, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fwd := wiretest.New(t)
			fwd.Refuse(func(*http.Request, int) *wire.ServerError {
				return &wire.ServerError{Status: tt.status, Message: "test says no", Wait: tt.wait}
			})
			err := newSink(t, fwd.Addr(), wire.ClientOptions{}).Write(context.Background(), records(3))
			var perm *capture.PermanentError
			if errors.As(err, &perm) != tt.wantPermanent {
				t.Errorf("err = %v: permanent %t, want %t", err, !tt.wantPermanent, tt.wantPermanent)
			}
			var se *wire.ServerError
			if !errors.As(err, &se) || se.Status != tt.status || se.Message != "test says no" {
				t.Fatalf("err = %v, want a *wire.ServerError %d with the server's message", err, tt.status)
			}
			var ra interface{ RetryAfter() time.Duration }
			if !errors.As(err, &ra) || ra.RetryAfter() != tt.wait {
				t.Errorf("RetryAfter = %v, want %v", ra, tt.wait)
			}
		})
	}
}

func TestWrongTokenIsPermanent(t *testing.T) {
	fwd := wiretest.New(t)
	fwd.RequireToken("right")
	err := newSink(t, fwd.Addr(), wire.ClientOptions{Token: "wrong"}).Write(context.Background(), records(1))
	var perm *capture.PermanentError
	var se *wire.ServerError
	if !errors.As(err, &perm) || !errors.As(err, &se) || se.Status != http.StatusUnauthorized {
		t.Errorf("err = %v, want a permanent 401", err)
	}
}

func TestTooLargeSplits(t *testing.T) {
	fwd := wiretest.New(t)
	fwd.Refuse(func(r *http.Request, _ int) *wire.ServerError {
		if n, _ := strconv.Atoi(r.Header.Get(wire.HeaderRecords)); n > 3 {
			return wire.Errorf(http.StatusRequestEntityTooLarge, "at most 3")
		}
		return nil
	})
	s := newSink(t, fwd.Addr(), wire.ClientOptions{})
	recs := records(10)
	if err := s.Write(context.Background(), recs); err != nil {
		t.Fatalf("Write: %v", err)
	}
	got := fwd.Records()
	if len(got) != 10 {
		t.Fatalf("got %d records, want 10", len(got))
	}
	for i := range got {
		if got[i].ID != recs[i].ID {
			t.Errorf("record %d arrived out of order", i)
		}
	}
	// 10 -> 5+5 -> (2+3)+(2+3): 1 + 2 refused, then 4 accepted.
	var refused, accepted int
	for _, r := range fwd.Requests() {
		switch r.Status {
		case http.StatusRequestEntityTooLarge:
			refused++
		case http.StatusOK:
			accepted++
		}
	}
	if refused != 3 || accepted != 4 {
		t.Errorf("%d refused and %d accepted requests, want 3 and 4", refused, accepted)
	}
}

func TestTooLargeSingleRecordIsPermanent(t *testing.T) {
	fwd := wiretest.New(t)
	fwd.Refuse(func(*http.Request, int) *wire.ServerError { return wire.Errorf(http.StatusRequestEntityTooLarge, "no") })
	err := newSink(t, fwd.Addr(), wire.ClientOptions{}).Write(context.Background(), records(2))
	var perm *capture.PermanentError
	if !errors.As(err, &perm) {
		t.Errorf("err = %v, want permanent once a single record is too large", err)
	}
}

func TestRetryKeepsBatchID(t *testing.T) {
	fwd := wiretest.New(t)
	fwd.Refuse(func(_ *http.Request, n int) *wire.ServerError {
		if n == 1 {
			return wire.Errorf(http.StatusBadGateway, "later")
		}
		return nil
	})
	s := newSink(t, fwd.Addr(), wire.ClientOptions{})
	recs := records(4)
	if err := s.Write(context.Background(), recs); err == nil {
		t.Fatal("first Write = nil, want the 502")
	}
	if err := s.Write(context.Background(), recs); err != nil {
		t.Fatalf("retry: %v", err)
	}
	reqs := fwd.Requests()
	if len(reqs) != 2 || reqs[0].BatchID != reqs[1].BatchID || reqs[0].BatchID == "" {
		t.Errorf("requests %+v, want two with the same batch id", reqs)
	}
}

func TestIgnoresProxyEnvironment(t *testing.T) {
	t.Setenv("HTTP_PROXY", "http://127.0.0.1:1")
	t.Setenv("http_proxy", "http://127.0.0.1:1")
	s := newSink(t, "forwarder.ecs.local:8888", wire.ClientOptions{})
	req, _ := http.NewRequest(http.MethodPost, s.URL(), nil)
	if proxy := wire.TransportProxy(s); proxy != nil {
		u, _ := proxy(req)
		t.Errorf("transport uses proxy %v for %s, want none", u, s.URL())
	}
}

func TestNewAddress(t *testing.T) {
	tests := []struct {
		addr    string
		want    string
		wantErr bool
	}{
		{"forwarder.ecs.local:8888", "http://forwarder.ecs.local:8888/v1/batches", false},
		{" 10.0.0.1:8888 ", "http://10.0.0.1:8888/v1/batches", false},
		{"http://fwd:8888/", "http://fwd:8888/v1/batches", false},
		{"[::1]:8888", "http://[::1]:8888/v1/batches", false},
		{"forwarder.ecs.local", "", true},
		{"https://fwd:8888", "https://fwd:8888/v1/batches", false},
		{"ftp://fwd:8888", "", true},
		{"", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			s, err := wire.NewClient(tt.addr, wire.ClientOptions{})
			if (err != nil) != tt.wantErr {
				t.Fatalf("wire.NewClient(%q) err = %v, want error %t", tt.addr, err, tt.wantErr)
			}
			if err == nil && s.URL() != tt.want {
				t.Errorf("URL = %q, want %q", s.URL(), tt.want)
			}
		})
	}
}

func TestForwarderDown(t *testing.T) {
	s := newSink(t, "127.0.0.1:1", wire.ClientOptions{Timeout: time.Second})
	err := s.Write(context.Background(), records(1))
	var perm *capture.PermanentError
	if err == nil || errors.As(err, &perm) {
		t.Errorf("err = %v, want a retryable transport error", err)
	}
}

func TestNewURL(t *testing.T) {
	tests := []struct {
		base, want string
		wantErr    bool
	}{
		{"https://hub.example.com", "https://hub.example.com/v1/batches", false},
		{"http://127.0.0.1:8080/", "http://127.0.0.1:8080/v1/batches", false},
		{"https://example.com/tapwire", "https://example.com/tapwire/v1/batches", false},
		{"hub.example.com", "", true},
		{"ftp://x", "", true},
		{"https://x/?a=1", "", true},
	}
	for _, tt := range tests {
		s, err := wire.NewClientURL(tt.base, wire.ClientOptions{})
		if (err != nil) != tt.wantErr {
			t.Errorf("wire.NewClientURL(%q) err = %v, want error %t", tt.base, err, tt.wantErr)
			continue
		}
		if err == nil {
			if s.URL() != tt.want {
				t.Errorf("wire.NewClientURL(%q).URL() = %q, want %q", tt.base, s.URL(), tt.want)
			}
			s.Close()
		}
	}
}

func TestProbe(t *testing.T) {
	fwd := wiretest.New(t)
	fwd.RequireToken("key")
	if err := newSink(t, fwd.Addr(), wire.ClientOptions{Token: "key"}).Probe(context.Background()); err != nil {
		t.Errorf("Probe with the right token: %v", err)
	}
	err := newSink(t, fwd.Addr(), wire.ClientOptions{Token: "nope"}).Probe(context.Background())
	var se *wire.ServerError
	if !errors.As(err, &se) || se.Status != http.StatusUnauthorized {
		t.Errorf("Probe with a wrong token: %v, want 401", err)
	}
	if n := len(fwd.Records()); n != 0 {
		t.Errorf("probes delivered %d records, want 0", n)
	}
}

// TestWriteLinesSplits: lines already encoded go as they are, a 413 splits
// them at line boundaries, and every record arrives once, in order.
func TestWriteLinesSplits(t *testing.T) {
	fwd := wiretest.New(t)
	fwd.Refuse(func(r *http.Request, _ int) *wire.ServerError {
		if n, _ := strconv.Atoi(r.Header.Get(wire.HeaderRecords)); n > 3 {
			return wire.Errorf(http.StatusRequestEntityTooLarge, "at most 3")
		}
		return nil
	})
	s := newSink(t, fwd.Addr(), wire.ClientOptions{})
	recs := records(10)
	var lines bytes.Buffer
	if err := jsonl.Append(&lines, recs); err != nil {
		t.Fatal(err)
	}
	a, err := s.PostLines(context.Background(), lines.Bytes(), len(recs))
	if err != nil {
		t.Fatalf("PostLines: %v", err)
	}
	if a.Accepted != 10 {
		t.Errorf("accepted %d, want 10", a.Accepted)
	}
	got := fwd.Records()
	if len(got) != 10 {
		t.Fatalf("got %d records, want 10", len(got))
	}
	for i := range got {
		if got[i].ID != recs[i].ID {
			t.Errorf("record %d: got %s, want %s", i, got[i].ID, recs[i].ID)
		}
	}
	for _, r := range fwd.Requests() {
		if r.Status == http.StatusOK && r.Records > 3 {
			t.Errorf("a request of %d records was accepted past the limit", r.Records)
		}
	}
}

// TestWriteLinesSingleTooLargeIsPermanent: one line that is too large
// cannot be split: the error says retrying cannot help.
func TestWriteLinesSingleTooLargeIsPermanent(t *testing.T) {
	fwd := wiretest.New(t)
	fwd.Refuse(func(*http.Request, int) *wire.ServerError {
		return wire.Errorf(http.StatusRequestEntityTooLarge, "too large")
	})
	s := newSink(t, fwd.Addr(), wire.ClientOptions{})
	var lines bytes.Buffer
	if err := jsonl.Append(&lines, records(1)); err != nil {
		t.Fatal(err)
	}
	err := s.WriteLines(context.Background(), lines.Bytes(), 1)
	var pe *capture.PermanentError
	if !errors.As(err, &pe) {
		t.Errorf("WriteLines of one too-large line = %v, want a permanent error", err)
	}
}

// TestS2Negotiation: goproxy's client (FastCompression) sends zstd until
// the server's answer lists s2 in Accept-Encoding (RFC 7694), then s2, for
// records and for lines; a probe teaches it as well, so the first batch
// after one is s2. The forwarder's hub sink (no FastCompression) and
// ZstdOnly (SHIP_COMPRESSION=zstd) keep zstd. Every record arrives once,
// in order.
func TestS2Negotiation(t *testing.T) {
	ctx := context.Background()
	fwd := wiretest.New(t)
	fast := newSink(t, fwd.Addr(), wire.ClientOptions{FastCompression: true})
	var want []*capture.Record
	for range 3 {
		recs := records(20)
		if err := fast.Write(ctx, recs); err != nil {
			t.Fatalf("Write: %v", err)
		}
		want = append(want, recs...)
	}
	var lines bytes.Buffer
	line := records(2)
	if err := jsonl.Append(&lines, line); err != nil {
		t.Fatal(err)
	}
	if err := fast.WriteLines(ctx, lines.Bytes(), 2); err != nil {
		t.Fatalf("WriteLines: %v", err)
	}
	want = append(want, line...)
	wantEncodings(t, fwd.Requests(), "zstd", "s2", "s2", "s2")

	probed := newSink(t, fwd.Addr(), wire.ClientOptions{FastCompression: true})
	if err := probed.Probe(ctx); err != nil {
		t.Fatal(err)
	}
	recs := records(5)
	if err := probed.Write(ctx, recs); err != nil {
		t.Fatal(err)
	}
	want = append(want, recs...)

	plain := newSink(t, fwd.Addr(), wire.ClientOptions{})
	zstdOnly := newSink(t, fwd.Addr(), wire.ClientOptions{FastCompression: true, ZstdOnly: true})
	for _, c := range []*wire.Client{plain, plain, zstdOnly, zstdOnly} {
		recs := records(5)
		if err := c.Write(ctx, recs); err != nil {
			t.Fatal(err)
		}
		want = append(want, recs...)
	}
	wantEncodings(t, fwd.Requests()[4:], "zstd" /* the probe */, "s2", "zstd", "zstd", "zstd", "zstd")
	wantRecords(t, fwd.Records(), want)
}

// TestS2FallbackToOlderServer: when the server behind the address stops
// taking s2 (an older forwarder answers 415 and lists nothing), the batch
// sent in s2 is sent again in zstd at once, Write succeeds, the client
// sends zstd from then on, and no record is lost or doubled. Answers that
// list s2 again (a newer forwarder beside the older one) are not believed
// before the cooldown has passed. A client that meets an older server
// first never sends s2.
func TestS2FallbackToOlderServer(t *testing.T) {
	ctx := context.Background()
	fwd := wiretest.New(t)
	var mu sync.Mutex
	var changes []string
	s := newSink(t, fwd.Addr(), wire.ClientOptions{FastCompression: true, OnEncoding: func(enc string, refused bool) {
		mu.Lock()
		changes = append(changes, fmt.Sprintf("%s %v", enc, refused))
		mu.Unlock()
	}})
	var want []*capture.Record
	write := func() {
		t.Helper()
		recs := records(10)
		if err := s.Write(ctx, recs); err != nil {
			t.Fatalf("Write: %v", err)
		}
		want = append(want, recs...)
	}
	write()
	write()
	fwd.WithoutS2(true)
	write()
	write()
	var lines bytes.Buffer
	line := records(3)
	if err := jsonl.Append(&lines, line); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteLines(ctx, lines.Bytes(), 3); err != nil {
		t.Fatalf("WriteLines: %v", err)
	}
	want = append(want, line...)
	reqs := fwd.Requests()
	wantEncodings(t, reqs, "zstd", "s2", "s2", "zstd", "zstd", "zstd")
	if reqs[2].Status != http.StatusUnsupportedMediaType || reqs[3].BatchID != reqs[2].BatchID {
		t.Errorf("third request %d, fourth batch %s: want the refused s2 batch (415) sent again (%s)", reqs[2].Status, reqs[3].BatchID, reqs[2].BatchID)
	}
	wantRecords(t, fwd.Records(), want)

	fwd.WithoutS2(false) // a newer forwarder answers now: it lists s2
	write()
	write()
	wire.ExpireS2Cooldown(s) // 5 minutes later
	write()
	write()
	wantEncodings(t, fwd.Requests()[6:], "zstd", "zstd", "zstd", "s2")
	wantRecords(t, fwd.Records(), want)
	mu.Lock()
	if got, want := strings.Join(changes, ", "), "s2 false, zstd true, s2 false"; got != want {
		t.Errorf("OnEncoding calls %q, want %q (each change once: learnt, refused, learnt again after the cooldown)", got, want)
	}
	mu.Unlock()

	old := wiretest.New(t)
	old.WithoutS2(true)
	s = newSink(t, old.Addr(), wire.ClientOptions{FastCompression: true})
	if err := s.Probe(ctx); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := s.Write(ctx, records(4)); err != nil {
			t.Fatal(err)
		}
	}
	wantEncodings(t, old.Requests(), "zstd", "zstd", "zstd", "zstd")
}

func wantEncodings(t *testing.T, reqs []wiretest.Request, want ...string) {
	t.Helper()
	var got []string
	for _, r := range reqs {
		got = append(got, r.Encoding)
	}
	if len(got) != len(want) {
		t.Fatalf("Content-Encoding of the requests %q, want %q", got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("Content-Encoding of the requests %q, want %q", got, want)
		}
	}
}

func wantRecords(t *testing.T, got, want []*capture.Record) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("server got %d records, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i].ID != want[i].ID {
			t.Fatalf("record %d is %s, want %s (each once, in order)", i, got[i].ID, want[i].ID)
		}
	}
}
