// Package raw reads and writes the vendor's raw.jsonl: one RRPair
// (internal/rrpair) per line, the form of a snapshot's records in the
// vendor's tools.
package raw

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"

	"github.com/google/uuid"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/rrpair"
)

// MaxLine bounds one line of a raw.jsonl file that Read accepts. A longer
// line is an error, not an allocation.
const MaxLine = 64 << 20

var maxLine = MaxLine // lowered by tests

// lineNS is the name space of ids made from the bytes of a line without a
// uuid.
var lineNS = uuid.NewSHA1(uuid.NameSpaceURL, []byte("https://github.com/tapwire/tapwire/vendor-line"))

// Read reads a vendor raw.jsonl stream, one RRPair per line, and calls fn
// with each converted record in order. Blank lines are skipped. An error
// names its line; an error from fn stops the read and is returned, wrapped
// with the line.
func Read(r io.Reader, fn func(*capture.Record) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxLine)
	line := 0
	for sc.Scan() {
		line++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		var p rrpair.Pair
		if err := json.Unmarshal(b, &p); err != nil {
			return fmt.Errorf("raw.jsonl line %d: %w: %w", line, rrpair.ErrBad, err)
		}
		rec, err := rrpair.ToRecord(&p)
		if err != nil {
			return fmt.Errorf("raw.jsonl line %d: %w", line, err)
		}
		if p.UUID == "" {
			// An id from the line's bytes rather than a random one, so
			// that importing the same file twice stores it once.
			rec.ID = uuid.NewSHA1(lineNS, b).String()
		}
		if err := fn(rec); err != nil {
			return fmt.Errorf("raw.jsonl line %d: %w", line, err)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("raw.jsonl line %d: %w", line+1, err)
	}
	return nil
}

// Writer writes records in the vendor's raw.jsonl form, one RRPair per
// line.
type Writer struct {
	bw *bufio.Writer
	n  int
}

// NewWriter returns a Writer to w. Close flushes it.
func NewWriter(w io.Writer) *Writer { return &Writer{bw: bufio.NewWriter(w)} }

// Write writes one record.
func (w *Writer) Write(r *capture.Record) error {
	b, err := json.Marshal(rrpair.FromRecord(r))
	if err != nil {
		return fmt.Errorf("encode record %d (%s): %w", w.n, r.ID, err)
	}
	b = append(b, '\n')
	if _, err := w.bw.Write(b); err != nil {
		return fmt.Errorf("write record %d: %w", w.n, err)
	}
	w.n++
	return nil
}

// Close flushes what is buffered; it does not close the underlying writer.
func (w *Writer) Close() error {
	if err := w.bw.Flush(); err != nil {
		return fmt.Errorf("write raw.jsonl: %w", err)
	}
	return nil
}

// Write writes recs to w in the raw.jsonl form.
func Write(w io.Writer, recs []*capture.Record) error {
	rw := NewWriter(w)
	for _, r := range recs {
		if err := rw.Write(r); err != nil {
			return err
		}
	}
	return rw.Close()
}
