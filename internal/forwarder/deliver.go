package forwarder

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/retry"
	"github.com/tapwire/tapwire/internal/spool"
	"github.com/tapwire/tapwire/internal/wire"
)

// linesWriter is implemented by sinks that take records as the JSON lines
// the spool holds, without decoding them (the file sink).
type linesWriter interface {
	WriteLines(ctx context.Context, lines []byte, n int) error
}

// healthFresh is how long a delivery or probe result answers the health
// check before the sink is probed again.
const healthFresh = 10 * time.Second

// backoff is the wait between failed deliveries to one sink: doubling from
// 250ms to 30s, half of each wait random; a longer Retry-After from the
// sink wins (internal/retry).
var backoff = retry.Backoff{Min: 250 * time.Millisecond, Max: 30 * time.Second}

// destination is one sink with its own reader of the spool and its own
// delivery loop.
type destination struct {
	name  string // the spool reader's name and the metrics label: directory, hub, bucket
	desc  string // for the health text: "writing to /dir", "https://hub", "s3://bucket"
	sink  capture.Sink
	probe func(context.Context) error // checks the sink can be reached; nil: no probe
	fresh time.Duration               // how long a result answers the health check; if zero, healthFresh; < 0: probe every time

	rd         *spool.Reader
	log        *slog.Logger
	batchBytes int64
	draining   atomic.Bool // Serve is stopping: return once caught up

	delivered, failed, failures atomic.Int64
	lagNanos                    atomic.Int64 // append time of the oldest frame being delivered, 0 when idle

	mu      sync.Mutex
	lastErr error     // the last failure; nil after a success
	lastAt  time.Time // when the last delivery or probe finished
	probing chan struct{}
	wake    context.CancelFunc // wakes run's wait for a frame
	runs    retry.Log          // the current run of failures
}

// drain makes run return once the sink has every spooled frame.
func (d *destination) drain() {
	d.draining.Store(true)
	d.mu.Lock()
	if d.wake != nil {
		d.wake() // run may be waiting for a frame that will not come
	}
	d.mu.Unlock()
}

// run delivers the spool to the sink until ctx is done, or, once drain
// was called, until nothing is pending.
func (d *destination) run(ctx context.Context) {
	wctx, wake := context.WithCancel(ctx) // cancelled by drain
	defer wake()
	d.mu.Lock()
	d.wake = wake
	d.mu.Unlock()
	for {
		if d.draining.Load() && d.pending() == 0 {
			return
		}
		nctx := wctx
		if d.draining.Load() {
			nctx = ctx // pending is not zero: Next returns at once
		}
		b, err := d.rd.Next(nctx, d.batchBytes)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, spool.ErrClosed) {
				return
			}
			if errors.Is(err, context.Canceled) {
				continue // drain woke us
			}
			d.log.Error("read spool", "err", err.Error())
			if !sleep(ctx, time.Second) {
				return
			}
			continue
		}
		d.lagNanos.Store(b.Appended.UnixNano())
		if !d.deliver(ctx, b) {
			d.rd.Release(b)
			return
		}
	}
}

func (d *destination) pending() int64 {
	return d.rd.Pending()
}

// deliver writes b to the sink until it is delivered or refused for good
// (then the cursor moves past it), or ctx is done (then it stays in the
// spool). It returns false when ctx is done.
func (d *destination) deliver(ctx context.Context, b *spool.Batch) bool {
	var recs []*capture.Record // decoded once, for sinks that need records
	lw, takesLines := d.sink.(linesWriter)
	for {
		var err error
		if takesLines {
			err = lw.WriteLines(ctx, b.Payload, b.Records)
		} else {
			if recs == nil {
				recs, err = decodeSpooled(b.Payload)
				if err != nil {
					// We wrote these bytes: a failure is a bug or a disk
					// fault, and retrying cannot help.
					err = &capture.PermanentError{Err: err}
				}
			}
			if err == nil {
				err = d.sink.Write(ctx, recs)
			}
		}
		if ctx.Err() != nil && err != nil {
			return false
		}
		if err == nil {
			d.delivered.Add(int64(b.Records))
			d.lagNanos.Store(0)
			d.succeeded()
			return d.commit(b)
		}
		d.failures.Add(1)
		if isPermanent(err) {
			d.failed.Add(int64(b.Records))
			d.log.Error("sink refused a batch for good: dropped", "records", b.Records, "err", err.Error())
			d.setResult(nil) // the sink answered: it is reachable
			d.lagNanos.Store(0)
			return d.commit(b)
		}
		wait := d.failed1(err)
		if !sleep(ctx, wait) {
			return false
		}
	}
}

func (d *destination) commit(b *spool.Batch) bool {
	if err := d.rd.Commit(b); err != nil {
		if errors.Is(err, spool.ErrClosed) {
			return false
		}
		d.log.Error("save spool cursor", "err", err.Error())
	}
	return true
}

// isPermanent reports whether retrying the same batch cannot succeed. A
// sink that refuses the credentials (401, 403) is not: the batch is fine,
// the configuration is not, and the records wait in the spool until it
// is fixed.
func isPermanent(err error) bool {
	return retry.Permanent(err) && !retry.Auth(err)
}

// failed1 records a failed attempt, logs the first of a run at warn (the
// rest at debug), and returns how long to wait before the next.
func (d *destination) failed1(err error) time.Duration {
	d.mu.Lock()
	d.lastErr, d.lastAt = err, time.Now()
	n := d.runs.Failed("delivery failed", err)
	d.mu.Unlock()
	return backoff.Wait(n, err)
}

// succeeded records a delivery and logs the recovery after failures.
func (d *destination) succeeded() {
	d.mu.Lock()
	d.runs.Succeeded("delivery recovered")
	d.lastErr, d.lastAt = nil, time.Now()
	d.mu.Unlock()
}

func (d *destination) setResult(err error) {
	d.mu.Lock()
	d.lastErr, d.lastAt = err, time.Now()
	d.mu.Unlock()
}

func (d *destination) lastError() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.lastErr
}

// check answers whether the sink can be reached: the last delivery's
// result while it is fresh or failing, else a probe (one at a time).
func (d *destination) check(ctx context.Context) error {
	fresh := d.fresh
	if fresh == 0 {
		fresh = healthFresh
	}
	d.mu.Lock()
	if d.runs.Failures() > 0 || d.probe == nil || time.Since(d.lastAt) < fresh && !d.lastAt.IsZero() {
		err := d.lastErr
		d.mu.Unlock()
		return err
	}
	if d.probing != nil { // another check is probing: wait for it
		ch := d.probing
		d.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("probe: %w", ctx.Err())
		}
		return d.lastError()
	}
	ch := make(chan struct{})
	d.probing = ch
	d.mu.Unlock()

	err := d.probe(ctx)
	d.mu.Lock()
	if d.runs.Failures() == 0 { // a delivery failure meanwhile says more
		d.lastErr = err
	}
	d.lastAt = time.Now()
	d.probing = nil
	d.mu.Unlock()
	close(ch)
	return err
}

// decodeSpooled decodes a spool payload: records as JSON lines.
func decodeSpooled(payload []byte) ([]*capture.Record, error) {
	var recs []*capture.Record
	err := wire.DecodeBatch(bytes.NewReader(payload), wire.EncodingIdentity, math.MaxInt64, func(r *capture.Record) error {
		recs = append(recs, r)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("decode spooled records: %w", err)
	}
	return recs, nil
}

// sleep waits for d or ctx; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
