package wire

import (
	"net/http"
	"sync/atomic"
	"time"

	"github.com/tapwire/tapwire/internal/format/jsonl"
)

// LineCost is what a server charges its Budget per byte of a long line
// while it decodes it: the line itself, the record decoded from it (a body
// is 3/4 of its base64), and the server's own encoding of the record (the
// hub's stored form, the forwarder's spool line), with room for a buffer
// that doubles as it grows.
const LineCost = 4

// MinBudget is the smallest Budget: one line of MaxLineBytes at a time.
const MinBudget = LineCost * (MaxLineBytes + jsonl.HoldStep)

// ErrMemoryBusy is the answer to a batch that needs more of the server's
// Budget than is free: 429, try again in a second.
var ErrMemoryBusy = &ServerError{Status: http.StatusTooManyRequests, Message: "too many long records in flight", Wait: time.Second}

// Budget is a server's memory for what the batches it decodes at once
// hold beyond their fixed cost: a semaphore counted in bytes, shared by
// its batches. A batch takes from it (Hold) as a line grows past
// jsonl.HoldFree, LineCost per byte, and a zstd window larger than
// EncodeWindowBytes; it never waits: a batch that does not get what it
// needs is refused with ErrMemoryBusy (429), having stored nothing, and
// gives back all it held.
type Budget struct {
	size int64
	used atomic.Int64
}

// NewBudget returns a Budget of size bytes, at least MinBudget.
func NewBudget(size int64) *Budget { return &Budget{size: max(size, MinBudget)} }

// Size returns the budget's size in bytes.
func (b *Budget) Size() int64 { return b.size }

// Used returns the bytes held now.
func (b *Budget) Used() int64 { return b.used.Load() }

func (b *Budget) take(n int64) bool {
	for {
		u := b.used.Load()
		if u+n > b.size {
			return false
		}
		if b.used.CompareAndSwap(u, u+n) {
			return true
		}
	}
}

// Hold is what one batch holds of a Budget. A nil *Hold holds nothing and
// never refuses.
type Hold struct {
	b           *Budget
	line, fixed int64
}

// Hold starts a batch's hold. Release it when the batch is done.
func (b *Budget) Hold() *Hold {
	if b == nil {
		return nil
	}
	return &Hold{b: b}
}

// Line sets what the current line holds to LineCost × n bytes (0: the
// line is done), as jsonl.Limits.Hold.
func (h *Hold) Line(n int64) error {
	if h == nil {
		return nil
	}
	want := LineCost * n
	if want <= h.line {
		h.b.used.Add(want - h.line)
		h.line = want
		return nil
	}
	if !h.b.take(want - h.line) {
		return ErrMemoryBusy
	}
	h.line = want
	return nil
}

// Add holds n bytes more until Release.
func (h *Hold) Add(n int64) error {
	if h == nil || n <= 0 {
		return nil
	}
	if !h.b.take(n) {
		return ErrMemoryBusy
	}
	h.fixed += n
	return nil
}

// Release gives back all the batch held.
func (h *Hold) Release() {
	if h == nil {
		return
	}
	h.b.used.Add(-(h.line + h.fixed))
	h.line, h.fixed = 0, 0
}
