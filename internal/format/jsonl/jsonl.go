// Package jsonl is our record file format: one capture record per line, as
// JSON (docs/record.md), the form of the batch protocol's body
// (internal/wire), the directory sink's files, the bucket's objects and the
// hub's export. It decodes with bounds (bytes, line length) so that hostile
// input costs no more than its limit, and keeps each record's line as it
// came (Line) so that a server can store it without encoding it again.
package jsonl

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"

	gojson "github.com/goccy/go-json"

	"github.com/tapwire/tapwire/internal/capture"
)

// MaxLineBytes is the longest line (one JSON record, without its newline)
// a decoder accepts.
const MaxLineBytes = 8 << 20

// Errors of Decode, wrapped in a *DecodeError.
var (
	ErrTooLarge       = errors.New("decoded batch exceeds the size limit")
	ErrTooManyRecords = errors.New("batch exceeds the record limit")
	ErrLineTooLong    = errors.New("line exceeds the length limit")
	ErrBadRecord      = errors.New("bad record")
)

// HoldFree is how long a line may grow before Decode tells Limits.Hold,
// and HoldStep the steps in which it tells it after that: most lines are
// far shorter, and a server's fixed memory per batch covers them.
const (
	HoldFree = 64 << 10
	HoldStep = 1 << 20
)

// Limits bound what Decode reads and tell its caller what it holds.
type Limits struct {
	// Bytes bounds the bytes read from the input (ErrTooLarge); negative
	// means no bound.
	Bytes int64
	// Records bounds the records decoded (ErrTooManyRecords), checked
	// before the next record is decoded; zero means no bound.
	Records int
	// Hold, when set, is called with n > 0 before the buffer of the
	// current line grows past n bytes (past HoldFree, then in HoldStep
	// steps; n is at most MaxLineBytes plus a step), and with 0 once the
	// line's record has been passed to fn: a server reserves memory for
	// the line and its record with it. An error from Hold stops decoding
	// and is returned as it is.
	Hold func(n int64) error
}

// DecodeError says why and where a decoder rejected its input. Line is the
// 1-based line number, or 0 when the error is not tied to a line (an
// unknown encoding, a corrupt stream header, in internal/wire).
type DecodeError struct {
	Line int
	Err  error // wraps one of the Err* sentinels
}

func (e *DecodeError) Error() string {
	if e.Line == 0 {
		return "decode batch: " + e.Err.Error()
	}
	return fmt.Sprintf("decode batch: line %d: %s", e.Line, e.Err.Error())
}

func (e *DecodeError) Unwrap() error { return e.Err }

// ReadError is a failure to read the input, met at Line: not the content's
// fault. Decode returns it; a caller that reads through a decompressor
// decides whose fault it is (internal/wire).
type ReadError struct {
	Line int
	Err  error
}

func (e *ReadError) Error() string { return fmt.Sprintf("read line %d: %v", e.Line, e.Err) }
func (e *ReadError) Unwrap() error { return e.Err }

// Append writes recs to buf as JSON lines, each ending in a newline. A
// loop that appends records one at a time writes the same bytes for less
// with an Encoder.
func Append(buf *bytes.Buffer, recs []*capture.Record) error {
	var e *Encoder // none for one record: what it remembers would go unused
	if len(recs) > 1 {
		e = new(Encoder)
	}
	for i, r := range recs {
		b, err := e.appendRecord(buf.AvailableBuffer(), r)
		if err != nil {
			return fmt.Errorf("encode record %d (%s): %w", i, r.ID, err)
		}
		buf.Write(b)
	}
	return nil
}

// Writer writes records as JSON lines.
type Writer struct {
	w   io.Writer
	buf bytes.Buffer
}

// NewWriter returns a Writer to w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// Write writes one record's line.
func (w *Writer) Write(r *capture.Record) error {
	w.buf.Reset()
	if err := Append(&w.buf, []*capture.Record{r}); err != nil {
		return err
	}
	_, err := w.w.Write(w.buf.Bytes())
	return err
}

// Close does nothing: every Write has reached the underlying writer.
func (w *Writer) Close() error { return nil }

// Read reads our JSON lines from r and calls fn with each valid record in
// order, with no bound on the total size (a file the user named). Errors
// name the line.
func Read(r io.Reader, fn func(*capture.Record) error) error {
	n := 0
	err := Decode(r, Limits{Bytes: -1}, nil, Want{}, func(rec *capture.Record, _ bool) error {
		n++ // approximate for the error of fn only: blank lines are not counted
		if err := fn(rec); err != nil {
			return fmt.Errorf("record %d: %w", n, err)
		}
		return nil
	})
	var de *DecodeError
	if errors.As(err, &de) && de.Line > 0 {
		return fmt.Errorf("line %d: %w", de.Line, de.Err)
	}
	return err
}

// lineBufs and readers are free lists of Decode's buffers: a sync.Pool
// loses its items at every garbage collection, and a new 64 KiB reader is
// allocated and cleared per batch.
var (
	lineBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}
	readers  = make(chan *bufio.Reader, 16)
)

// GetBuffer returns a pooled buffer; PutBuffer gives it back.
func GetBuffer() *bytes.Buffer { return lineBufs.Get().(*bytes.Buffer) }

// PutBuffer returns b to the pool, unless it grew huge.
func PutBuffer(b *bytes.Buffer) {
	if b.Cap() > 4*MaxLineBytes { // do not pin a huge batch's buffer
		return
	}
	b.Reset()
	lineBufs.Put(b)
}

func getReader(r io.Reader) *bufio.Reader {
	select {
	case br := <-readers:
		br.Reset(r)
		return br
	default:
		return bufio.NewReaderSize(r, 64<<10)
	}
}

func putReader(br *bufio.Reader) {
	br.Reset(nil)
	select {
	case readers <- br:
	default:
	}
}

// Decode reads JSON lines from r and calls fn with each record, in order.
// Blank lines are skipped; unknown JSON fields are ignored.
//
// lim.Bytes bounds the bytes read from r (ErrTooLarge) and lim.Records the
// records (ErrTooManyRecords). A line longer than MaxLineBytes (or
// lim.Bytes) is ErrLineTooLong, a line that is not a valid record
// ErrBadRecord, each in a *DecodeError naming the line; records before it
// have been passed to fn. A read error of r is a *ReadError. An error from
// fn or lim.Hold stops decoding and is returned as it is, so a server can
// tell its own failures from its client's.
//
// With line set, each line is parsed into it first (Line.ParseLine) and fn
// is told whether it took the line, and want applies (see Want). line is
// valid only until fn returns.
func Decode(r io.Reader, lim Limits, line *Line, want Want, fn func(rec *capture.Record, exact bool) error) error {
	maxLine := int64(MaxLineBytes)
	if lim.Bytes >= 0 {
		r = &limitReader{r: r, n: lim.Bytes}
		maxLine = min(maxLine, lim.Bytes)
	}
	br := getReader(r)
	defer putReader(br)
	buf := GetBuffer()
	defer PutBuffer(buf)

	records := 0
	var partial *capture.Record // reused for the partial records (Want.Partial)
	for n := 1; ; n++ {
		buf.Reset()
		var err error
		var text []byte // in br's buffer when it was whole there (most are): not copied
		held := int64(0)
		for {
			var frag []byte
			frag, err = br.ReadSlice('\n')
			size := int64(buf.Len() + len(frag))
			if size > maxLine+1 { // +1: the newline
				return &DecodeError{Line: n, Err: fmt.Errorf("%w (%d bytes)", ErrLineTooLong, maxLine)}
			}
			if lim.Hold != nil && size > HoldFree && size > held {
				held = min((size+HoldStep-1)/HoldStep*HoldStep, maxLine+HoldStep)
				if herr := lim.Hold(held); herr != nil {
					return herr
				}
			}
			if err != bufio.ErrBufferFull && buf.Len() == 0 {
				text = frag
				break
			}
			buf.Write(frag)
			if err != bufio.ErrBufferFull {
				text = buf.Bytes()
				break
			}
		}
		if errors.Is(err, ErrLimit) {
			return &DecodeError{Line: n, Err: ErrTooLarge}
		}
		if err != nil && err != io.EOF {
			return &ReadError{Line: n, Err: err}
		}
		b := bytes.TrimSuffix(text, []byte{'\n'})
		b = bytes.TrimSuffix(b, []byte{'\r'})
		if int64(len(b)) > maxLine {
			return &DecodeError{Line: n, Err: fmt.Errorf("%w (%d bytes)", ErrLineTooLong, maxLine)}
		}
		if b = bytes.TrimSpace(b); len(b) > 0 {
			if lim.Records > 0 && records >= lim.Records {
				return &DecodeError{Line: n, Err: fmt.Errorf("%w (%d records)", ErrTooManyRecords, lim.Records)}
			}
			records++
			src, exact := b, false
			if line != nil && line.ParseLine(b) {
				exact = true
				if want.Partial && line.Typed() {
					if partial == nil {
						partial = new(capture.Record)
					}
					*partial = capture.Record{}
					if line.decodeMembers(partial, want.Members, want.Facts) == nil {
						line.partial = true
						if ferr := fn(partial, true); ferr != nil {
							return ferr
						}
						goto next
					}
				}
				if want.LazyBodies {
					src = line.blankBodies()
				}
			}
			rec := new(capture.Record)
			if jerr := gojson.Unmarshal(src, rec); jerr != nil {
				return &DecodeError{Line: n, Err: fmt.Errorf("%w: %w", ErrBadRecord, jerr)}
			}
			if verr := rec.Validate(); verr != nil {
				return &DecodeError{Line: n, Err: fmt.Errorf("%w: %w", ErrBadRecord, verr)}
			}
			if ferr := fn(rec, exact); ferr != nil {
				return ferr
			}
		}
	next:
		if held > 0 {
			if herr := lim.Hold(0); herr != nil {
				return herr
			}
		}
		if err == io.EOF {
			return nil
		}
	}
}

// Want says what Decode puts in the records it passes on, of the lines its
// Line takes (ParseLine); other lines are always decoded in full.
type Want struct {
	// LazyBodies leaves the body data out of the record (see
	// Line.FillBodies): for a caller that stores the line as it came.
	LazyBodies bool
	// Partial, for a caller that stores the line as it came with at most
	// its labels and tags written again (Line.AppendTo), decodes of a
	// typed line (Line.Typed: its full decode would succeed and pass
	// Record.Validate) only Members, FieldLabels and FieldTags: the rest of
	// the record passed on is zero, Line.Partial says so, and the record
	// is reused for the next such line (valid only until fn returns).
	// Decoding the whole record was most of a forwarder's work a line.
	Partial bool
	Members Field
	// Facts, with Partial, also decodes the members a filter reads (see
	// internal/filter): the record's start, kind, direction, labels and
	// server host, and its request's method, URL, host and headers and its
	// response's status.
	Facts bool
}

// ErrLimit is the error of a LimitReader past its limit.
var ErrLimit = errors.New("limit reached")

// LimitReader returns a reader of r that fails with ErrLimit once more than
// n bytes were read, unlike io.LimitReader which ends quietly.
func LimitReader(r io.Reader, n int64) io.Reader { return &limitReader{r: r, n: n} }

type limitReader struct {
	r io.Reader
	n int64
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.n < 0 {
		return 0, ErrLimit
	}
	if int64(len(p))-1 > l.n { // read one byte past the limit to see it crossed
		p = p[:l.n+1]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	if l.n < 0 {
		return n, ErrLimit
	}
	return n, err
}
