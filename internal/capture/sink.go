package capture

import "context"

// Sink receives batches of records and delivers them somewhere: a JSONL
// file, the forwarder, the hub, a bucket. Write may block and may fail; the
// caller (a batch loop, never the proxy's hot path) retries.
type Sink interface {
	// Write delivers recs. It returns only when they are delivered or an
	// error says why not. An error that is not worth retrying is wrapped
	// in a *PermanentError.
	Write(ctx context.Context, recs []*Record) error
	// Close releases the sink's resources. Records written before it
	// returned are delivered.
	Close() error
}

// Emitter takes finished records from the proxy's hot path. Emit never
// blocks and never fails: a record that cannot be queued is dropped and
// counted by the emitter.
type Emitter interface {
	Emit(*Record)
}

// A ReleasingEmitter also says when it is done with a record, so that the
// proxy can reuse the record's memory (goproxy's shipper: a record's
// allocations were most of the garbage a captured exchange made).
type ReleasingEmitter interface {
	Emitter
	// EmitRelease is Emit that calls done, if not nil, exactly once, when
	// nothing of the emitter's refers to r any more (delivered or
	// dropped). Until then the caller must not change r.
	EmitRelease(r *Record, done func())
}

// EmitterFunc adapts a function to Emitter.
type EmitterFunc func(*Record)

// Emit calls f(r).
func (f EmitterFunc) Emit(r *Record) { f(r) }

// PermanentError marks a sink error that retrying will not fix (a rejected
// batch, a bad credential).
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }
