package ship_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/format/jsonl"
	"github.com/tapwire/tapwire/internal/ship"
	"github.com/tapwire/tapwire/internal/wire"
	"github.com/tapwire/tapwire/internal/wire/wiretest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func record(i, bodyLen int) *capture.Record {
	return &capture.Record{
		Schema:    capture.SchemaVersion,
		ID:        capture.NewID(),
		Kind:      capture.KindHTTP,
		Direction: capture.DirIn,
		Start:     time.Now().UTC(),
		Labels:    capture.Labels{Service: "cart"},
		HTTP: &capture.HTTP{
			Req: capture.Request{Method: "GET", URL: fmt.Sprintf("http://cart/items/%d", i), Proto: "HTTP/1.1", Host: "cart",
				Body: capture.Body{Data: make([]byte, bodyLen), Size: int64(bodyLen)}},
			Res: &capture.Response{Status: 200},
		},
	}
}

func newSink(t *testing.T, addr string) *wire.Client {
	t.Helper()
	// Not shorter: a batch retried after a timeout on a stalled machine
	// would arrive twice, and the tests count records and failures.
	s, err := wire.NewClient(addr, wire.ClientOptions{Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func shutdown(t *testing.T, s *ship.Shipper, d time.Duration) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return s.Shutdown(ctx)
}

func checkBalance(t *testing.T, st ship.Stats) {
	t.Helper()
	if got := st.Shipped + st.Dropped + st.QueueRecords; got != st.Emitted {
		t.Errorf("shipped %d + dropped %d + queued %d = %d, want emitted %d", st.Shipped, st.Dropped, st.QueueRecords, got, st.Emitted)
	}
}

func ids(recs []*capture.Record) map[string]bool {
	m := make(map[string]bool, len(recs))
	for _, r := range recs {
		m[r.ID] = true
	}
	return m
}

func TestBatchesArrive(t *testing.T) {
	fwd := wiretest.New(t)
	s := ship.New(ship.Config{BatchRecords: 10, FlushInterval: 50 * time.Millisecond, Logger: quiet()}, newSink(t, fwd.Addr()))
	s.Start(context.Background())

	var sent []*capture.Record
	for i := range 95 {
		r := record(i, 100)
		sent = append(sent, r)
		s.Emit(r)
	}
	got := fwd.WaitRecords(t, len(sent), 5*time.Second)
	if err := shutdown(t, s, 5*time.Second); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}

	gotIDs := ids(got)
	for _, r := range sent {
		if !gotIDs[r.ID] {
			t.Errorf("record %s did not arrive", r.ID)
		}
	}
	if len(got) != len(sent) {
		t.Errorf("forwarder got %d records, want %d", len(got), len(sent))
	}
	for _, req := range fwd.Requests() {
		if req.Records > 10 {
			t.Errorf("batch of %d records, want at most BatchRecords 10", req.Records)
		}
	}
	st := s.Stats()
	if st.Shipped != 95 || st.Batches < 10 || st.Dropped != 0 || st.QueueBytes != 0 {
		t.Errorf("stats = %+v, want 95 shipped in at least 10 batches, none dropped, empty queue", st)
	}
	checkBalance(t, st)
}

func TestFlushIntervalSendsPartialBatch(t *testing.T) {
	fwd := wiretest.New(t)
	s := ship.New(ship.Config{BatchRecords: 100, FlushInterval: 100 * time.Millisecond, Logger: quiet()}, newSink(t, fwd.Addr()))
	s.Start(context.Background())
	defer shutdown(t, s, time.Second)

	start := time.Now() // before the Emit: the wait counts from it
	s.Emit(record(0, 10))
	fwd.WaitRecords(t, 1, 3*time.Second)
	if d := time.Since(start); d < 80*time.Millisecond {
		t.Errorf("partial batch sent after %s, want it to wait about FlushInterval (100ms)", d)
	}
}

// deadAddr returns a loopback address where nothing listens.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestForwarderAbsentEmitNeverBlocks(t *testing.T) {
	const bound = 256 << 10
	s := ship.New(ship.Config{QueueBytes: bound, BatchRecords: 64, FlushInterval: 10 * time.Millisecond,
		MinBackoff: 5 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, Logger: quiet()},
		newSink(t, deadAddr(t)))
	s.Start(context.Background())

	// Watch the bound while Emit runs.
	var maxSeen atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			if qb := s.Stats().QueueBytes; qb > maxSeen.Load() {
				maxSeen.Store(qb)
			}
			select {
			case <-stop:
				return
			default:
				time.Sleep(100 * time.Microsecond)
			}
		}
	})

	const n = 100_000
	start := time.Now()
	var emitters sync.WaitGroup
	for g := range 4 {
		emitters.Go(func() {
			for i := range n / 4 {
				s.Emit(record(g*n+i, 200))
			}
		})
	}
	emitters.Wait()
	t.Logf("%d Emits with the forwarder absent took %s", n, time.Since(start))
	close(stop)
	wg.Wait()

	st := s.Stats()
	if st.Emitted != n {
		t.Errorf("Emitted = %d, want %d", st.Emitted, n)
	}
	if st.DroppedQueueFull == 0 {
		t.Errorf("DroppedQueueFull = 0, want drops once %d bytes are queued", bound)
	}
	if st.Shipped != 0 {
		t.Errorf("Shipped = %d with no forwarder, want 0", st.Shipped)
	}
	if maxSeen.Load() > bound || st.QueueBytes > bound {
		t.Errorf("queue bytes reached %d (now %d), want at most the bound %d", maxSeen.Load(), st.QueueBytes, bound)
	}
	if st.QueueBytes < bound/2 {
		t.Errorf("queue bytes %d, want the queue nearly full (bound %d) while the forwarder is down", st.QueueBytes, bound)
	}
	if st.Failures == 0 {
		t.Errorf("Failures = 0, want failed writes counted")
	}
	checkBalance(t, st)

	err := shutdown(t, s, 100*time.Millisecond)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown = %v, want the deadline error for records left unsent", err)
	}
	st = s.Stats()
	if st.DroppedShutdown == 0 || st.QueueRecords != 0 || st.QueueBytes != 0 {
		t.Errorf("after Shutdown: %+v, want the held records dropped for shutdown", st)
	}
	checkBalance(t, st)
}

func TestRetryAfterThenRecover(t *testing.T) {
	fwd := wiretest.New(t)
	fwd.Refuse(func(_ *http.Request, n int) *wire.ServerError {
		if n <= 2 {
			return &wire.ServerError{Status: http.StatusServiceUnavailable, Message: "spool full", Wait: time.Second}
		}
		return nil
	})
	// One batch in flight: the retries of the refused batch are the forwarder's only requests.
	s := ship.New(ship.Config{BatchRecords: 20, InFlight: 1, FlushInterval: 10 * time.Millisecond,
		MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond, Logger: quiet()},
		newSink(t, fwd.Addr()))
	s.Start(context.Background())

	var sent []*capture.Record
	for i := range 50 {
		r := record(i, 50)
		sent = append(sent, r)
		s.Emit(r)
	}
	got := fwd.WaitRecords(t, len(sent), 10*time.Second)
	if err := shutdown(t, s, 5*time.Second); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if len(ids(got)) != len(sent) {
		t.Errorf("got %d distinct records, want %d", len(ids(got)), len(sent))
	}
	reqs := fwd.Requests()
	if len(reqs) < 3 {
		t.Fatalf("forwarder saw %d requests, want at least 3", len(reqs))
	}
	for i := 1; i < 3; i++ {
		if gap := reqs[i].At.Sub(reqs[i-1].At); gap < 900*time.Millisecond {
			t.Errorf("request %d came %s after a 503 with Retry-After: 1, want at least 1s", i+1, gap)
		}
	}
	if reqs[0].BatchID != reqs[1].BatchID || reqs[1].BatchID != reqs[2].BatchID {
		t.Errorf("retried batch ids %q, %q, %q: want one idempotency key for the retried batch", reqs[0].BatchID, reqs[1].BatchID, reqs[2].BatchID)
	}
	st := s.Stats()
	if st.Failures != 2 || st.Shipped != 50 || st.Dropped != 0 {
		t.Errorf("stats = %+v, want 2 failures, 50 shipped, none dropped", st)
	}
	checkBalance(t, st)
}

func TestPermanentErrorDropsBatchAndContinues(t *testing.T) {
	fwd := wiretest.New(t)
	fwd.Refuse(func(_ *http.Request, n int) *wire.ServerError {
		if n == 1 {
			return wire.Errorf(http.StatusBadRequest, "no")
		}
		return nil
	})
	s := ship.New(ship.Config{BatchRecords: 5, FlushInterval: time.Hour, MinBackoff: time.Millisecond, Logger: quiet()},
		newSink(t, fwd.Addr()))
	s.Start(context.Background())
	for i := range 5 {
		s.Emit(record(i, 10))
	}
	// The first batch is refused; wait for that before the second.
	for deadline := time.Now().Add(5 * time.Second); s.Stats().DroppedPermanent == 0; {
		if time.Now().After(deadline) {
			t.Fatal("first batch was not refused in 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	for i := range 5 {
		s.Emit(record(i, 10))
	}
	fwd.WaitRecords(t, 5, 5*time.Second)
	if err := shutdown(t, s, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	if st.DroppedPermanent != 5 || st.Shipped != 5 || st.Failures != 1 {
		t.Errorf("stats = %+v, want 5 dropped for good, 5 shipped, 1 failure", st)
	}
	checkBalance(t, st)
}

func TestShutdownFlushes(t *testing.T) {
	fwd := wiretest.New(t)
	s := ship.New(ship.Config{FlushInterval: time.Hour, Logger: quiet()}, newSink(t, fwd.Addr()))
	s.Start(context.Background())
	for i := range 30 {
		s.Emit(record(i, 10))
	}
	if err := shutdown(t, s, 5*time.Second); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if got := len(fwd.Records()); got != 30 {
		t.Errorf("forwarder got %d records after Shutdown, want 30", got)
	}
	s.Emit(record(99, 10))
	st := s.Stats()
	if st.Shipped != 30 || st.DroppedShutdown != 1 {
		t.Errorf("stats = %+v, want 30 shipped and the Emit after Shutdown dropped", st)
	}
	checkBalance(t, st)
	if err := shutdown(t, s, time.Second); err != nil {
		t.Errorf("second Shutdown = %v, want nil", err)
	}
}

func TestInvalidAndOversizedRecordsDropped(t *testing.T) {
	fwd := wiretest.New(t)
	s := ship.New(ship.Config{QueueBytes: 4096, FlushInterval: 10 * time.Millisecond, Logger: quiet()}, newSink(t, fwd.Addr()))
	s.Start(context.Background())
	s.Emit(nil)
	s.Emit(&capture.Record{ID: "x", Kind: capture.KindHTTP, Direction: "sideways"})
	s.Emit(record(0, 8192)) // larger than the whole queue
	s.Emit(record(1, 10))
	fwd.WaitRecords(t, 1, 5*time.Second)
	if err := shutdown(t, s, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	if st.DroppedInvalid != 2 || st.DroppedQueueFull != 1 || st.Shipped != 1 {
		t.Errorf("stats = %+v, want 2 invalid, 1 queue-full, 1 shipped", st)
	}
	checkBalance(t, st)
}

func TestShutdownWithoutStart(t *testing.T) {
	fwd := wiretest.New(t)
	s := ship.New(ship.Config{Logger: quiet()}, newSink(t, fwd.Addr()))
	s.Emit(record(0, 10))
	if err := shutdown(t, s, time.Second); err == nil {
		t.Error("Shutdown of a never started Shipper with a queued record = nil, want an error")
	}
	if st := s.Stats(); st.DroppedShutdown != 1 {
		t.Errorf("DroppedShutdown = %d, want 1", st.DroppedShutdown)
	}
}

func BenchmarkEmit(b *testing.B) {
	r := record(0, 1024)
	// queue: the loop ships to a sink that returns at once.
	b.Run("queue", func(b *testing.B) {
		s := ship.New(ship.Config{Logger: quiet()}, nopSink{})
		s.Start(context.Background())
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				s.Emit(r)
			}
		})
		b.StopTimer()
		s.Shutdown(context.Background())
	})
	// drop: the queue is full (the loop never started): the cost when the
	// forwarder is away.
	b.Run("drop", func(b *testing.B) {
		s := ship.New(ship.Config{QueueBytes: 1, Logger: quiet()}, nopSink{})
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				s.Emit(r)
			}
		})
		b.StopTimer()
		s.Shutdown(context.Background())
	})
}

type nopSink struct{}

func (nopSink) Write(context.Context, []*capture.Record) error { return nil }
func (nopSink) Close() error                                   { return nil }

// eachOnce checks that a sink took every record of sent exactly once (got: takes by record id).
func eachOnce(t *testing.T, got map[string]int, sent []*capture.Record) {
	t.Helper()
	for _, r := range sent {
		if n := got[r.ID]; n != 1 {
			t.Errorf("record %s taken %d times, want once", r.ID, n)
		}
	}
}

// slowSink answers each write after a pause, like a forwarder that fsyncs before its 200, and counts how many
// writes overlap and which records it got.
type slowSink struct {
	pause     time.Duration
	mu        sync.Mutex
	now, most int
	got       map[string]int
	writes    int
}

func (k *slowSink) Write(ctx context.Context, recs []*capture.Record) error {
	k.mu.Lock()
	k.now++
	k.most = max(k.most, k.now)
	k.writes++
	for _, r := range recs {
		k.got[r.ID]++
	}
	k.mu.Unlock()
	time.Sleep(k.pause)
	k.mu.Lock()
	k.now--
	k.mu.Unlock()
	return nil
}

func (k *slowSink) Close() error { return nil }

// TestInFlightBatches: with a sink that takes 30 ms per write, InFlight batches are written at once (never
// more), and every record arrives exactly once.
func TestInFlightBatches(t *testing.T) {
	for _, inFlight := range []int{1, 2, 3} {
		t.Run(fmt.Sprint(inFlight), func(t *testing.T) {
			sink := &slowSink{pause: 30 * time.Millisecond, got: map[string]int{}}
			s := ship.New(ship.Config{BatchRecords: 10, InFlight: inFlight, FlushInterval: 20 * time.Millisecond, Logger: quiet()}, sink)
			s.Start(context.Background())
			var sent []*capture.Record
			for i := range 200 {
				r := record(i, 10)
				sent = append(sent, r)
				s.Emit(r)
			}
			if err := shutdown(t, s, 10*time.Second); err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
			sink.mu.Lock()
			defer sink.mu.Unlock()
			eachOnce(t, sink.got, sent)
			if sink.most != inFlight {
				t.Errorf("at most %d writes at once, want %d (InFlight)", sink.most, inFlight)
			}
			st := s.Stats()
			if st.Shipped != 200 || st.Dropped != 0 || st.Batches != int64(sink.writes) {
				t.Errorf("stats = %+v after %d writes, want 200 shipped in as many batches as writes, none dropped", st, sink.writes)
			}
			checkBalance(t, st)
		})
	}
}

// failingSink fails its first writes, then takes them; it logs each write's start, end, first record and
// outcome.
type failingSink struct {
	fails int
	mu    sync.Mutex
	n     int
	log   []write
	got   map[string]int
}

type write struct {
	start, end time.Time
	first      string
	ok         bool
}

func (k *failingSink) Write(ctx context.Context, recs []*capture.Record) error {
	k.mu.Lock()
	k.n++
	fail := k.n <= k.fails
	k.mu.Unlock()
	w := write{start: time.Now(), first: recs[0].ID, ok: !fail}
	time.Sleep(5 * time.Millisecond)
	w.end = time.Now()
	k.mu.Lock()
	defer k.mu.Unlock()
	k.log = append(k.log, w)
	if fail {
		return errors.New("sink down")
	}
	for _, r := range recs {
		k.got[r.ID]++
	}
	return nil
}

func (k *failingSink) Close() error { return nil }

// TestInFlightProbeAfterFailure: with two batches in flight, once a write fails only that batch is written
// (with backoff) until the sink takes it; then the others follow, and every record arrives once.
func TestInFlightProbeAfterFailure(t *testing.T) {
	sink := &failingSink{fails: 4, got: map[string]int{}}
	s := ship.New(ship.Config{BatchRecords: 10, InFlight: 2, FlushInterval: 10 * time.Millisecond,
		MinBackoff: 50 * time.Millisecond, MaxBackoff: 100 * time.Millisecond, Logger: quiet()}, sink)
	s.Start(context.Background())
	var sent []*capture.Record
	for i := range 100 {
		r := record(i, 10)
		sent = append(sent, r)
		s.Emit(r)
	}
	deadline := time.Now().Add(10 * time.Second)
	for s.Stats().Shipped < 100 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if err := shutdown(t, s, 5*time.Second); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	eachOnce(t, sink.got, sent)
	// Each batch's failed writes are spaced by a backoff (at least MinBackoff/2 after the 5 ms write): no batch
	// is written again at once beside the probing one.
	last := map[string]time.Time{}
	var firstOK time.Time
	for _, w := range sink.log { // in the order the writes ended; one batch's writes never overlap
		if w.ok {
			if firstOK.IsZero() {
				firstOK = w.end
			}
			continue
		}
		if l, ok := last[w.first]; ok && w.start.Sub(l) < 25*time.Millisecond {
			t.Errorf("a batch was written again %s after it failed: without backoff", w.start.Sub(l))
		}
		last[w.first] = w.start
	}
	// Once some batch is written a second time (the probe), only it is written until the sink takes it.
	seen := map[string]bool{}
	prober := ""
	for _, w := range sink.log {
		switch {
		case prober == "" && seen[w.first]:
			prober = w.first
		case prober != "" && w.first != prober && w.end.Before(firstOK):
			t.Errorf("batch %s written while batch %s was probing the failing sink", w.first, prober)
		}
		seen[w.first] = true
	}
	checkBalance(t, s.Stats())
}

// TestBacklogged: the shipper reports it is behind once more records are held than the batches in flight and
// the next one hold, and not once they are shipped.
func TestBacklogged(t *testing.T) {
	s := ship.New(ship.Config{BatchRecords: 4, InFlight: 2, FlushInterval: time.Hour, Logger: quiet()}, nopSink{})
	for i := range 12 { // (InFlight + 1) * BatchRecords
		s.Emit(record(i, 10))
		if s.Backlogged() {
			t.Fatalf("Backlogged with %d records held, want not until more than 12", i+1)
		}
	}
	s.Emit(record(12, 10))
	if !s.Backlogged() {
		t.Fatal("not Backlogged with 13 records held and nothing shipped")
	}
	s.Start(context.Background())
	deadline := time.Now().Add(10 * time.Second)
	for s.Backlogged() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if s.Backlogged() {
		t.Fatalf("still Backlogged after the loop ran: %+v", s.Stats())
	}
	if err := shutdown(t, s, 5*time.Second); err != nil {
		t.Fatal(err)
	}

	// Full batches by bytes: three of them are 3 * BatchBytes held.
	s = ship.New(ship.Config{BatchRecords: 512, BatchBytes: 10_000, InFlight: 2, FlushInterval: time.Hour, Logger: quiet()}, nopSink{})
	var held int64
	for i := 0; ; i++ {
		r := record(i, 1000)
		size := wire.EstimateSize(r)
		s.Emit(r)
		held += size
		if held > 30_000 {
			break
		}
		if s.Backlogged() {
			t.Fatalf("Backlogged with %d bytes held, want not until more than 30000", held)
		}
	}
	if !s.Backlogged() {
		t.Fatalf("not Backlogged with %d bytes held (%d records) and nothing shipped", held, s.Stats().QueueRecords)
	}
	s.Start(context.Background())
	if err := shutdown(t, s, 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

// batchSizes is a sink that notes the size of each batch's lines, as the
// forwarder spools them.
type batchSizes struct {
	mu      sync.Mutex
	records []int
	bytes   []int
}

func (k *batchSizes) Write(_ context.Context, recs []*capture.Record) error {
	var b bytes.Buffer
	if err := jsonl.Append(&b, recs); err != nil {
		return err
	}
	k.mu.Lock()
	k.records = append(k.records, len(recs))
	k.bytes = append(k.bytes, b.Len())
	k.mu.Unlock()
	return nil
}

func (k *batchSizes) Close() error { return nil }

// proxied is a record as goproxy makes it for a small request and a
// response of body bytes.
func proxied(i, body int) *capture.Record {
	r := record(i, 0)
	r.TTFBMicros, r.DurMicros = 6271, 6285
	r.Net = capture.Net{ClientAddr: "10.0.12.34:58568", ServerAddr: "127.0.0.1:8080", ServerHost: "127.0.0.1", Proxy: "reverse"}
	r.Tags = capture.Tags{"captureMode": "proxy", "proxyHost": "ip-10-0-12-34", "proxyProtocol": "tcp:http", "proxyType": "reverse"}
	r.HTTP.Req.Headers = capture.Headers{{Name: "Host", Value: "cart"}, {Name: "User-Agent", Value: "Go-http-client/1.1"}}
	r.HTTP.Res = &capture.Response{Status: 200, StatusText: "OK", Proto: "HTTP/1.1",
		Headers: capture.Headers{{Name: "Content-Length", Value: fmt.Sprint(body)}, {Name: "Content-Type", Value: "application/json"},
			{Name: "Date", Value: "Mon, 07 Dec 2026 00:34:53 GMT"}},
		Body: capture.Body{Data: bytes.Repeat([]byte("x"), body), Size: int64(body)}}
	return r
}

// TestDefaultBatchFitsOneFrame: with the default sizes, the lines of a
// batch stay under wire.FrameBytes, so that the forwarder spools it with
// one write rather than staging it on disk and copying it — what every
// 512-record batch of 1 KiB bodies cost it under the 2 MiB bound before
// (1.05 MB of lines). A record larger than that goes alone.
func TestDefaultBatchFitsOneFrame(t *testing.T) {
	for _, body := range []int{0, 100, 1024, 4000, 30_000, 2 << 20} {
		k := &batchSizes{}
		s := ship.New(ship.Config{FlushInterval: time.Hour, Logger: quiet()}, k)
		n := min(2000, (12<<20)/(body+1000))
		for i := range n {
			s.Emit(proxied(i, body))
		}
		s.Start(context.Background())
		if err := shutdown(t, s, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		total := 0
		for i, size := range k.bytes {
			total += k.records[i]
			if size >= wire.FrameBytes && k.records[i] > 1 {
				t.Errorf("%d-byte bodies: a batch of %d records is %d bytes of lines, want under wire.FrameBytes (%d)", body, k.records[i], size, wire.FrameBytes)
			}
		}
		if total != n {
			t.Errorf("%d-byte bodies: %d records shipped, want %d", body, total, n)
		}
		// Not needlessly small either: all but the remainder hold at least
		// half a frame or 512 records (the batches finish in any order).
		small := 0
		for i, size := range k.bytes {
			if size < wire.FrameBytes/2 && k.records[i] < 512 {
				small++
			}
		}
		if small > 1 {
			t.Errorf("%d-byte bodies: %d batches of under half a frame and 512 records (%v records, %v bytes), want the remainder only", body, small, k.records, k.bytes)
		}
	}
}

// scriptSink takes batches as a test says: each Write fails with the
// next of fail (nil: succeeds) and then, when fail runs out, with last.
type scriptSink struct {
	mu        sync.Mutex
	fail      []error
	last      error
	delivered map[string]bool
}

func (k *scriptSink) Write(ctx context.Context, recs []*capture.Record) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	err := k.last
	if len(k.fail) > 0 {
		err, k.fail = k.fail[0], k.fail[1:]
	}
	if err == nil {
		for _, r := range recs {
			k.delivered[r.ID] = true
		}
	}
	return err
}

func (k *scriptSink) Close() error { return nil }

func (k *scriptSink) has(id string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.delivered[id]
}

// TestEmitReleaseDone: EmitRelease's done is called exactly once for each
// record: only after the sink took it (not after a failed write of it),
// at once when the record is dropped at Emit, when a batch is refused for
// good, and for what Shutdown gives up on.
func TestEmitReleaseDone(t *testing.T) {
	type counter struct {
		mu    sync.Mutex
		calls map[string]int
		early []string // done before the sink had the record
	}
	track := func(c *counter, k *scriptSink, r *capture.Record, wantDelivered bool) func() {
		return func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			c.calls[r.ID]++
			if wantDelivered && !k.has(r.ID) {
				c.early = append(c.early, r.ID)
			}
		}
	}
	newCounter := func() *counter { return &counter{calls: map[string]int{}} }
	waitCalls := func(t *testing.T, c *counter, n int) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			c.mu.Lock()
			got := len(c.calls)
			c.mu.Unlock()
			if got >= n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("done called for %d records, want %d", got, n)
			}
		}
	}
	checkOnce := func(t *testing.T, c *counter, recs []*capture.Record) {
		t.Helper()
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, r := range recs {
			if n := c.calls[r.ID]; n != 1 {
				t.Errorf("done of %s called %d times, want 1", r.ID, n)
			}
		}
		if len(c.early) > 0 {
			t.Errorf("done called before the sink took %d records", len(c.early))
		}
	}

	// emit emits n records with done functions counted in c.
	emit := func(s *ship.Shipper, c *counter, k *scriptSink, n int, wantDelivered bool) []*capture.Record {
		var recs []*capture.Record
		for i := range n {
			r := record(i, 10)
			recs = append(recs, r)
			s.EmitRelease(r, track(c, k, r, wantDelivered))
		}
		return recs
	}

	t.Run("shipped after a failed write", func(t *testing.T) {
		k := &scriptSink{fail: []error{errors.New("connection refused")}, delivered: map[string]bool{}}
		s := ship.New(ship.Config{BatchRecords: 4, FlushInterval: 10 * time.Millisecond, MinBackoff: 5 * time.Millisecond,
			InFlight: 1, Logger: quiet()}, k)
		s.Start(context.Background())
		c := newCounter()
		recs := emit(s, c, k, 10, true)
		waitCalls(t, c, len(recs))
		if err := shutdown(t, s, 5*time.Second); err != nil {
			t.Fatal(err)
		}
		checkOnce(t, c, recs)
		if st := s.Stats(); st.Shipped != 10 || st.Failures != 1 {
			t.Errorf("stats = %+v, want 10 shipped after 1 failure", st)
		}
	})

	t.Run("dropped at emit", func(t *testing.T) {
		k := &scriptSink{delivered: map[string]bool{}}
		s := ship.New(ship.Config{QueueBytes: 4096, Logger: quiet()}, k)
		c := newCounter()
		invalid := &capture.Record{ID: "x", Kind: capture.KindHTTP, Direction: "sideways"}
		big := record(0, 8192) // larger than the whole queue
		for _, r := range []*capture.Record{invalid, big} {
			s.EmitRelease(r, track(c, k, r, false))
		}
		checkOnce(t, c, []*capture.Record{invalid, big}) // at once, before EmitRelease returned
		if err := shutdown(t, s, time.Second); err != nil {
			t.Fatal(err)
		}
		late := record(1, 10)
		s.EmitRelease(late, track(c, k, late, false))
		checkOnce(t, c, []*capture.Record{invalid, big, late})
	})

	t.Run("refused for good", func(t *testing.T) {
		k := &scriptSink{fail: []error{&capture.PermanentError{Err: errors.New("400 bad batch")}}, delivered: map[string]bool{}}
		s := ship.New(ship.Config{FlushInterval: 10 * time.Millisecond, Logger: quiet()}, k)
		s.Start(context.Background())
		c := newCounter()
		recs := []*capture.Record{record(0, 10), record(1, 10)}
		for _, r := range recs {
			s.EmitRelease(r, track(c, k, r, false))
		}
		waitCalls(t, c, len(recs))
		if err := shutdown(t, s, 5*time.Second); err != nil {
			t.Fatal(err)
		}
		checkOnce(t, c, recs)
		if st := s.Stats(); st.DroppedPermanent != 2 {
			t.Errorf("DroppedPermanent = %d, want 2", st.DroppedPermanent)
		}
	})

	t.Run("given up at shutdown", func(t *testing.T) {
		k := &scriptSink{last: errors.New("connection refused"), delivered: map[string]bool{}}
		s := ship.New(ship.Config{BatchRecords: 2, FlushInterval: 10 * time.Millisecond, MinBackoff: 5 * time.Millisecond,
			MaxBackoff: 10 * time.Millisecond, Logger: quiet()}, k)
		s.Start(context.Background())
		c := newCounter()
		recs := emit(s, c, k, 5, false)
		time.Sleep(50 * time.Millisecond) // some in flight, failing
		if err := shutdown(t, s, 50*time.Millisecond); err == nil {
			t.Fatal("Shutdown with a failing sink = nil, want the records left")
		}
		checkOnce(t, c, recs)
		checkBalance(t, s.Stats())
	})
}
