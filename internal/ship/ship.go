// Package ship moves capture records from goproxy's hot path to a sink in
// batches: Emit queues a record without ever blocking, and one goroutine
// batches and hands each batch to a writer (two at once by default) that
// retries it with capped backoff. The queue is bounded in
// bytes; what does not fit is dropped and counted. docs/shipping.md
// describes the behaviour.
package ship

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/retry"
	"github.com/tapwire/tapwire/internal/wire"
)

// Config tunes a Shipper. The zero value is ready to use.
type Config struct {
	// QueueBytes bounds the estimated encoded size (wire.EstimateSize) of
	// the records held: queued and in flight. If zero, 16 MiB.
	QueueBytes int64
	// BatchRecords is the most records in one batch. If zero, 512.
	BatchRecords int
	// BatchBytes is the most estimated uncompressed bytes in one batch; a
	// single larger record goes alone. If zero, 7/8 of wire.FrameBytes
	// (896 KiB): a batch then fits in one of the forwarder's spool frames,
	// which it appends with one write, where a larger batch is staged on
	// disk and copied (512 records with 1 KiB bodies, about 1.05 MB, were).
	BatchBytes int64
	// FlushInterval is how long a partial batch waits for more records,
	// counted from when its oldest record was queued (or, for records left
	// over from a full batch, from when that batch was taken). If zero, 1s.
	FlushInterval time.Duration
	// InFlight is the most batches written at once. A sink that makes each
	// write durable before answering (the forwarder fsyncs before its 200,
	// sharing one fsync among the batches that arrive together) ships twice
	// as many records per round trip with two. If zero, 2.
	InFlight int
	// MinBackoff and MaxBackoff bound the wait between failed writes. The
	// wait doubles from MinBackoff up to MaxBackoff, with jitter; a longer
	// Retry-After from the sink wins. If zero, 250ms and 30s.
	MinBackoff, MaxBackoff time.Duration
	// Logger receives failures and recoveries. If nil, slog.Default().
	Logger *slog.Logger
	// Prepare, if not nil, is called by the batch loop once for each batch,
	// before its first write, and may change the records: goproxy redacts
	// there, in the loop's goroutine rather than on the request's path. A
	// record's size was estimated at Emit, before Prepare.
	Prepare func(batch []*capture.Record)
}

func (c *Config) setDefaults() {
	if c.QueueBytes <= 0 {
		c.QueueBytes = 16 << 20
	}
	if c.BatchRecords <= 0 {
		c.BatchRecords = 512
	}
	if c.BatchBytes <= 0 {
		c.BatchBytes = wire.FrameBytes - wire.FrameBytes/8
	}
	if c.FlushInterval <= 0 {
		c.FlushInterval = time.Second
	}
	if c.InFlight <= 0 {
		c.InFlight = 2
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = 250 * time.Millisecond
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 30 * time.Second
	}
	if c.MaxBackoff < c.MinBackoff {
		c.MaxBackoff = c.MinBackoff
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Stats are a Shipper's counters. At rest (no Emit running),
// Emitted = Shipped + Dropped + QueueRecords.
type Stats struct {
	Emitted int64 `json:"emitted"` // records given to Emit
	Shipped int64 `json:"shipped"` // records the sink accepted
	Dropped int64 `json:"dropped"` // the sum of the Dropped* reasons

	DroppedQueueFull int64 `json:"droppedQueueFull"` // the byte bound would have been exceeded
	DroppedInvalid   int64 `json:"droppedInvalid"`   // Record.Validate failed; the forwarder would refuse the whole batch
	DroppedPermanent int64 `json:"droppedPermanent"` // the sink refused their batch for good
	DroppedShutdown  int64 `json:"droppedShutdown"`  // emitted after Shutdown began, or still held when it ended

	QueueBytes   int64 `json:"queueBytes"`   // estimated bytes held, queued and in flight
	QueueRecords int64 `json:"queueRecords"` // records held, queued and in flight

	Batches  int64 `json:"batches"`  // batches the sink accepted
	Failures int64 `json:"failures"` // failed sink writes, retried or not
}

var errLoopStopped = errors.New("batch loop was not running")

// Shipper is a capture.Emitter that ships records to a capture.Sink.
type Shipper struct {
	cfg  Config
	sink capture.Sink
	log  *slog.Logger

	mu      sync.Mutex
	queue   []item    // oldest first; not yet taken by the loop
	firstAt time.Time // when queue[0] became the oldest queued record
	queued  int64     // estimated bytes in queue
	held    int64     // estimated bytes in queue and in flight: bounded by cfg.QueueBytes
	closing bool      // Shutdown began: Emit drops

	wake chan struct{} // cap 1: a batch may be ready
	stop chan struct{} // closed by Shutdown: drain and return

	startOnce, shutOnce sync.Once
	cancel              context.CancelFunc // cancels the loop's context
	done                chan struct{}      // closed when the loop returns
	started             atomic.Bool

	emitted, shipped                                   atomic.Int64
	dropFull, dropInvalid, dropPermanent, dropShutdown atomic.Int64
	heldRecords, batches, failures                     atomic.Int64
}

type item struct {
	r    *capture.Record
	size int64
	done func() // EmitRelease's: called once the Shipper is done with r
}

var _ capture.ReleasingEmitter = (*Shipper)(nil)

// New returns a Shipper that writes to sink once started. It owns sink:
// Shutdown closes it.
func New(cfg Config, sink capture.Sink) *Shipper {
	cfg.setDefaults()
	return &Shipper{
		cfg:  cfg,
		sink: sink,
		log:  cfg.Logger,
		wake: make(chan struct{}, 1),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
}

// Emit queues r for shipping. It never blocks on I/O and never fails: a
// record that is invalid, does not fit the byte bound, or comes after
// Shutdown began is dropped and counted. The Shipper keeps r; the caller
// must not change it afterwards.
func (s *Shipper) Emit(r *capture.Record) { s.EmitRelease(r, nil) }

// EmitRelease is Emit that calls done, if not nil, once the Shipper is done
// with r: after the sink took it, or when it was dropped (at once when it
// is dropped here). Nothing of the Shipper's refers to r then, and the
// caller may reuse its memory; until then it must not change it. A record
// left in the queue when Shutdown gives up is dropped, and done is called.
func (s *Shipper) EmitRelease(r *capture.Record, done func()) {
	s.emitted.Add(1)
	if r == nil || r.Validate() != nil {
		s.dropInvalid.Add(1)
		call(done)
		return
	}
	size := wire.EstimateSize(r)

	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		s.dropShutdown.Add(1)
		call(done)
		return
	}
	if s.held+size > s.cfg.QueueBytes {
		s.mu.Unlock()
		s.dropFull.Add(1)
		call(done)
		return
	}
	s.held += size
	s.queued += size
	if len(s.queue) == 0 {
		s.firstAt = time.Now() // once per batch: time.Now is most of a drop's cost
	}
	s.queue = append(s.queue, item{r: r, size: size, done: done})
	// Wake the loop when a batch starts (to arm its flush timer) and when
	// one is full; other Emits need not.
	signal := len(s.queue) == 1 || len(s.queue) == s.cfg.BatchRecords ||
		(s.queued >= s.cfg.BatchBytes && s.queued-size < s.cfg.BatchBytes)
	s.mu.Unlock()
	s.heldRecords.Add(1)

	if signal {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// Stats returns the counters.
func (s *Shipper) Stats() Stats {
	st := Stats{
		Emitted:          s.emitted.Load(),
		Shipped:          s.shipped.Load(),
		DroppedQueueFull: s.dropFull.Load(),
		DroppedInvalid:   s.dropInvalid.Load(),
		DroppedPermanent: s.dropPermanent.Load(),
		DroppedShutdown:  s.dropShutdown.Load(),
		QueueRecords:     s.heldRecords.Load(),
		Batches:          s.batches.Load(),
		Failures:         s.failures.Load(),
	}
	st.Dropped = st.DroppedQueueFull + st.DroppedInvalid + st.DroppedPermanent + st.DroppedShutdown
	s.mu.Lock()
	st.QueueBytes = s.held
	s.mu.Unlock()
	return st
}

// Backlogged reports whether records are waiting beyond what the batches
// in flight and the next full batch hold (full by BatchRecords or by
// BatchBytes): the shipper is falling behind the traffic. goproxy's
// shipper then stops making way for the network (internal/netyield) until
// it has caught up, so that a saturated proxy still gives its records the
// CPU they need rather than drop them.
func (s *Shipper) Backlogged() bool {
	batches := int64(s.cfg.InFlight + 1)
	if s.heldRecords.Load() > batches*int64(s.cfg.BatchRecords) {
		return true
	}
	s.mu.Lock()
	held := s.held
	s.mu.Unlock()
	return held > batches*s.cfg.BatchBytes
}

// Start runs the batch loop in a goroutine until Shutdown, or until ctx
// is done (then without draining). It does nothing when called again.
func (s *Shipper) Start(ctx context.Context) {
	s.startOnce.Do(func() {
		ctx, s.cancel = context.WithCancel(ctx)
		s.started.Store(true)
		go s.loop(ctx)
	})
}

// Shutdown stops accepting records, ships what is held until ctx is done,
// then stops the loop, counts what is left as dropped, and closes the
// sink. It returns ctx's error if records were left, else the sink's Close
// error. Call it once Emit is no longer called; a later call returns nil.
func (s *Shipper) Shutdown(ctx context.Context) error {
	var err error
	s.shutOnce.Do(func() { err = s.shutdown(ctx) })
	return err
}

func (s *Shipper) shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	close(s.stop)

	if s.started.Load() {
		select {
		case <-s.done:
		case <-ctx.Done():
			s.cancel() // abort the write in flight and the backoff
			<-s.done
		}
		s.cancel()
	}

	// Whatever is still held now will never be shipped.
	s.mu.Lock()
	left := int64(len(s.queue))
	rest := s.queue
	s.queue, s.queued, s.held = nil, 0, 0
	s.mu.Unlock()
	for _, it := range rest {
		call(it.done)
	}
	if left > 0 {
		s.heldRecords.Add(-left)
		s.dropShutdown.Add(left)
		s.log.Warn("capture shipping stopped with records unsent", "dropped", left)
	}
	cerr := s.sink.Close()
	if left > 0 {
		cause := context.Cause(ctx)
		if cause == nil {
			cause = errLoopStopped
		}
		return fmt.Errorf("shutdown: %d records dropped: %w", left, cause)
	}
	if cerr != nil {
		return fmt.Errorf("close sink: %w", cerr)
	}
	return nil
}

// loop owns batching: it takes a batch when it is full, when its oldest
// record has waited FlushInterval, or at once while draining, and writes
// it until it is shipped, refused for good, or ctx is done.
func (s *Shipper) loop(ctx context.Context) {
	defer close(s.done)
	slots := make(chan struct{}, s.cfg.InFlight) // a token per batch being written
	var sending sync.WaitGroup
	defer sending.Wait() // before done: a batch still being written may go back to the queue
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	draining := false
	st := retryState{log: retry.Log{Logger: s.log}}

	for {
		if !draining {
			select {
			case <-s.stop:
				draining = true
			default:
			}
		}
		batch, dones, size, wait := s.take(draining)
		if batch != nil {
			if s.cfg.Prepare != nil {
				s.cfg.Prepare(batch)
			}
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				s.putBack(batch, dones, size)
				return
			}
			sending.Add(1)
			go func() {
				defer sending.Done()
				if !s.send(ctx, batch, dones, size, &st) {
					s.putBack(batch, dones, size) // the context ended first: the batch goes back to the queue
				}
				<-slots
			}()
			if ctx.Err() != nil {
				return
			}
			continue
		}
		if draining {
			return // nothing left
		}
		if wait > 0 {
			timer.Reset(wait)
		}
		select {
		case <-ctx.Done():
			return
		case <-s.stop:
			draining = true
		case <-s.wake:
		case <-timer.C:
		}
		if !timer.Stop() {
			select { // drain a fire we did not consume
			case <-timer.C:
			default:
			}
		}
	}
}

// take removes the next batch from the queue if one is due, with the
// records' done functions (nil when none has one). Otherwise it returns how
// long until the oldest record's flush deadline (0: queue empty, wait for
// a signal).
func (s *Shipper) take(all bool) (batch []*capture.Record, dones []func(), size int64, wait time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.queue) == 0 {
		return nil, nil, 0, 0
	}
	full := len(s.queue) >= s.cfg.BatchRecords || s.queued >= s.cfg.BatchBytes
	if !full && !all {
		if age := time.Since(s.firstAt); age < s.cfg.FlushInterval {
			return nil, nil, 0, s.cfg.FlushInterval - age
		}
	}
	n := 0
	for n < len(s.queue) && n < s.cfg.BatchRecords {
		if n > 0 && size+s.queue[n].size > s.cfg.BatchBytes {
			break
		}
		size += s.queue[n].size
		n++
	}
	batch = make([]*capture.Record, n)
	for i := range n {
		batch[i] = s.queue[i].r
		if d := s.queue[i].done; d != nil {
			if dones == nil {
				dones = make([]func(), n)
			}
			dones[i] = d
		}
		s.queue[i] = item{} // let the GC have it once shipped
	}
	// A rest no longer than the batch moves to the front of the array,
	// which the next records fill again: the queue does not grow a new
	// array for every batch (about 32 KiB of garbage a batch of 512). A
	// backlog is taken from the front instead, not moved whole for every
	// batch under the lock Emit takes. An array a backlog grew past four
	// batches is let go once it is empty.
	rest := len(s.queue) - n
	if rest <= n {
		copy(s.queue, s.queue[n:])
		clear(s.queue[rest:])
		s.queue = s.queue[:rest]
	} else {
		s.queue = s.queue[n:]
	}
	if rest > 0 {
		s.firstAt = time.Now() // the rest start a new batch
	} else if cap(s.queue) > 4*s.cfg.BatchRecords {
		s.queue = nil
	}
	s.queued -= size
	return batch, dones, size, 0
}

// putBack returns an unsent batch to the front of the queue, so Shutdown
// counts it.
func (s *Shipper) putBack(batch []*capture.Record, dones []func(), size int64) {
	s.mu.Lock()
	items := make([]item, 0, len(batch)+len(s.queue))
	for i, r := range batch {
		it := item{r: r}
		if dones != nil {
			it.done = dones[i]
		}
		items = append(items, it)
	}
	s.queue = append(items, s.queue...)
	s.queued += size
	s.mu.Unlock()
}

// release forgets a batch that was shipped or dropped, and hands its
// records back to whoever asked (EmitRelease).
func (s *Shipper) release(n int, dones []func(), size int64) {
	s.mu.Lock()
	s.held -= size
	s.mu.Unlock()
	s.heldRecords.Add(-int64(n))
	for _, d := range dones {
		call(d)
	}
}

// call calls done unless it is nil.
func call(done func()) {
	if done != nil {
		done()
	}
}

// retryState is the loop's memory of failures, for backoff and for
// logging a failure once and its recovery.
type retryState struct {
	mu        sync.Mutex // the batches in flight share it
	log       retry.Log
	lastDrops int64 // queue-full drops already logged

	// After a failed write, its batch alone is written (with backoff and
	// Retry-After) until the sink takes it: a sink that is down or
	// overloaded gets one batch at a time, not InFlight. prober is that
	// batch, known by its array (each take makes its own; its records may
	// be used again, by the proxy, once released), nil when writes
	// succeed; clear is closed when it is done.
	prober **capture.Record
	clear  chan struct{}
}

// turn waits until batch may be written: no other batch is probing a
// failing sink. It reports false if ctx ended first.
func (st *retryState) turn(ctx context.Context, batch []*capture.Record) bool {
	st.mu.Lock()
	if st.prober == nil || st.prober == &batch[0] {
		st.mu.Unlock()
		return true
	}
	clear := st.clear
	st.mu.Unlock()
	select {
	case <-clear:
		return true
	case <-ctx.Done():
		return false
	}
}

// probe makes batch the one written while the sink fails, unless another is.
func (st *retryState) probe(batch []*capture.Record) {
	if st.prober == nil {
		st.prober, st.clear = &batch[0], make(chan struct{})
	}
}

// done ends batch's probing, if it was probing; st.mu is held.
func (st *retryState) done(batch []*capture.Record) {
	if st.prober == &batch[0] {
		st.prober = nil
		close(st.clear)
	}
}

// send writes batch until it is shipped or refused for good (true), or ctx
// is done first (false: the batch is still the caller's).
func (s *Shipper) send(ctx context.Context, batch []*capture.Record, dones []func(), size int64, st *retryState) bool {
	for {
		if !st.turn(ctx, batch) {
			return false
		}
		err := s.sink.Write(ctx, batch)
		if err == nil {
			s.shipped.Add(int64(len(batch)))
			s.batches.Add(1)
			st.mu.Lock()
			st.done(batch)
			st.log.Succeeded("capture shipping recovered")
			s.logDrops(st)
			st.mu.Unlock()
			s.release(len(batch), dones, size)
			return true
		}
		if ctx.Err() != nil {
			return false // shutting down: the batch goes back to the queue
		}
		s.failures.Add(1)
		if retry.Permanent(err) {
			s.dropPermanent.Add(int64(len(batch)))
			st.mu.Lock()
			st.done(batch)
			st.mu.Unlock()
			s.release(len(batch), dones, size)
			s.log.Error("capture batch refused, dropped", "records", len(batch), "err", err)
			return true
		}
		st.mu.Lock()
		st.probe(batch)
		if st.prober != &batch[0] {
			// Another batch probes the sink: this one waits for its turn.
			st.mu.Unlock()
			continue
		}
		n := st.log.Failed("capture shipping failing", err, "records", len(batch))
		s.logDrops(st)
		st.mu.Unlock()

		wait := retry.Backoff{Min: s.cfg.MinBackoff, Max: s.cfg.MaxBackoff}.Wait(n, err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
	}
}

// logDrops logs queue-full drops since the last such line; st.mu is held.
func (s *Shipper) logDrops(st *retryState) {
	if n := s.dropFull.Load(); n > st.lastDrops {
		s.log.Warn("capture queue full, records dropped", "dropped", n-st.lastDrops, "total", n, "queueBytes", s.cfg.QueueBytes)
		st.lastDrops = n
	}
}
