// Package wire is version 1 of the batch protocol between goproxy (the
// client) and the forwarder (the server): a POST of compressed JSON lines
// (zstd, or S2 where the server says it takes it), one capture record per
// line. docs/shipping.md is its specification;
// this package is the one implementation both sides share.
package wire

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/format/jsonl"
	"github.com/tapwire/tapwire/internal/netyield"
)

// Protocol constants. See docs/shipping.md.
const (
	// Version is the protocol version this package speaks, sent in
	// HeaderProtocol.
	Version = 1

	// Path is where the forwarder accepts batches.
	Path = "/v1/batches"

	// ContentType is the media type of a batch body before compression.
	ContentType = "application/x-ndjson"

	HeaderProtocol = "Tapwire-Protocol" // protocol version, "1"
	HeaderBatchID  = "Tapwire-Batch-Id" // idempotency key of the batch, a UUID
	HeaderRecords  = "Tapwire-Records"  // number of records in the body
	// HeaderRedacted, optional: the fingerprint (redact.Redactor's) of the
	// redaction the sender applied to every record of the batch. A server
	// whose own rules have the same fingerprint need not apply them again.
	HeaderRedacted = "Tapwire-Redacted"

	EncodingZstd = "zstd" // what clients send
	// EncodingS2 is the S2 stream format of github.com/klauspost/compress/s2
	// (an extension of Snappy's framing format, a CRC-32C per block) with
	// blocks of at most S2BlockBytes: what goproxy sends once a server's
	// Accept-Encoding lists it. About three times cheaper to write than
	// zstd's fastest level, for a larger body: see docs/shipping.md.
	EncodingS2       = "s2"
	EncodingGzip     = "gzip"     // accepted on decode
	EncodingIdentity = "identity" // accepted on decode; also an absent Content-Encoding

	// AcceptEncoding is the Accept-Encoding a server of this package sends
	// with each answer to a batch (RFC 7694): the codings DecodeBatch takes,
	// besides identity. A client learns from it that it may send S2.
	AcceptEncoding = "zstd, s2, gzip"

	// S2BlockBytes is the largest S2 block a decoder accepts, and the
	// block size of the encoder: it bounds the memory of both (about
	// twice it), as FastWindowBytes does zstd's.
	S2BlockBytes = 256 << 10

	// MaxDecodedBytes is the largest decompressed batch body a server
	// accepts by default; larger ones get 413.
	MaxDecodedBytes = 32 << 20

	// MaxBatchRecords is the most records a server accepts in one batch
	// by default; more get 413, refused from Tapwire-Records before the
	// body is read. goproxy sends at most 512, the forwarder at most
	// what 4 MiB of lines hold (about 70 000 of the smallest records).
	MaxBatchRecords = 100_000

	// FrameBytes is the size past which the forwarder ends a spool frame
	// while it reads a batch. A batch whose lines stay under it goes to the
	// spool with one write; a larger one is staged on disk frame by frame
	// and copied into the spool once it is whole (twice the writes), so
	// goproxy sizes its batches below it (ship.Config.BatchBytes).
	FrameBytes = 1 << 20

	// MaxLineBytes is the longest line (one JSON record, without its
	// newline) a decoder accepts.
	MaxLineBytes = jsonl.MaxLineBytes

	// MaxWindowBytes is the largest zstd window a decoder accepts. It
	// bounds the decoder's memory.
	MaxWindowBytes = 8 << 20

	// EncodeWindowBytes is the window the encoder uses. Batches are a few
	// MiB at most, and on a real 2 MiB batch of records windows of 8 MiB,
	// 2 MiB and 256 KiB all compressed about 59:1, while an encoder's
	// history buffer is twice its window: the window is what a sidecar's
	// memory pays for.
	EncodeWindowBytes = 1 << 20

	// FastWindowBytes is the window of the fastest level's encoder
	// (ClientOptions.FastCompression, goproxy's): a sidecar's memory.
	FastWindowBytes = 256 << 10
)

// Errors returned by DecodeBatch, wrapped in a *DecodeError: those of
// internal/format/jsonl, and those of the compression.
var (
	ErrTooLarge            = jsonl.ErrTooLarge
	ErrTooManyRecords      = jsonl.ErrTooManyRecords
	ErrLineTooLong         = jsonl.ErrLineTooLong
	ErrBadRecord           = jsonl.ErrBadRecord
	ErrUnsupportedEncoding = errors.New("unsupported content encoding")
	ErrCorrupt             = errors.New("corrupt compressed body")
)

// DecodeError says why and where DecodeBatch rejected a body; it is
// jsonl's, with a Line of 0 for errors of the compression.
type DecodeError = jsonl.DecodeError

// The zstd coders are pooled: an encoder holds about a megabyte of tables
// and windows, and a fresh one per batch costs more than the compression
// (BenchmarkEncodeBatch/new against /pooled). Concurrency 1 keeps both
// synchronous, so a pooled coder owns no goroutine.
//
// Coders are kept in small free lists rather than a sync.Pool: a pool
// drops them at every garbage collection, and rebuilding one allocates its
// whole history buffer (a decoder: its window) again.
var (
	encoders     = make(chan *zstd.Encoder, 4)
	fastEncoders = make(chan *zstd.Encoder, 4) // zstd.SpeedFastest
	decoders     = make(chan *zstd.Decoder, 16)
	s2Encoders   = make(chan *s2.Writer, 4)
	s2Decoders   = make(chan *s2.Reader, 16)
)

// batchWriter is what encodeBatch writes lines through: a zstd or an S2
// encoder.
type batchWriter interface {
	io.WriteCloser
	Reset(io.Writer)
}

// s2Writer adapts s2.Writer's Reset, which has no result, to batchWriter.
type s2Writer struct{ *s2.Writer }

func (w s2Writer) Reset(dst io.Writer) { w.Writer.Reset(dst) }

// zstdWriter adapts zstd.Encoder's Reset.
type zstdWriter struct{ *zstd.Encoder }

func (w zstdWriter) Reset(dst io.Writer) { w.Encoder.Reset(dst) }

// getWriter takes an encoder for encoding ("zstd" at its default level,
// "zstd" at its fastest when fast, or "s2") from its free list, reset to
// write to w; put gives it back.
func getWriter(encoding string, fast bool, w io.Writer) (bw batchWriter, put func()) {
	if encoding == EncodingS2 {
		var e *s2.Writer
		select {
		case e = <-s2Encoders:
		default:
			e = s2.NewWriter(nil, s2.WriterConcurrency(1), s2.WriterBlockSize(S2BlockBytes))
		}
		e.Reset(w)
		return s2Writer{e}, func() {
			e.Reset(nil) // drop the reference to w
			select {
			case s2Encoders <- e:
			default: // the free list is full; let this one go
			}
		}
	}
	list := encoders
	if fast {
		list = fastEncoders
	}
	e := getEncoder(list, fast)
	e.Reset(w)
	return zstdWriter{e}, func() {
		e.Reset(nil)
		select {
		case list <- e:
		default:
		}
	}
}

func getS2Decoder(r io.Reader) *s2.Reader {
	select {
	case d := <-s2Decoders:
		d.Reset(r)
		return d
	default:
	}
	return s2.NewReader(r, s2.ReaderMaxBlockSize(S2BlockBytes))
}

func putS2Decoder(d *s2.Reader) {
	d.Reset(nil)
	select {
	case s2Decoders <- d:
	default:
	}
}

func getDecoder() *zstd.Decoder {
	select {
	case d := <-decoders:
		return d
	default:
	}
	d, err := zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderMaxWindow(MaxWindowBytes),
		zstd.WithDecoderMaxMemory(MaxWindowBytes),
		zstd.WithDecoderLowmem(true))
	if err != nil {
		panic("wire: zstd decoder: " + err.Error()) // constant options: cannot happen
	}
	return d
}

func putDecoder(d *zstd.Decoder) {
	_ = d.Reset(nil)
	select {
	case decoders <- d:
	default: // the free list is full; let this one go
	}
}

// EncodeBatch writes recs to w as a zstd stream of JSON lines, the body of
// a POST to Path with Content-Encoding zstd.
func EncodeBatch(w io.Writer, recs []*capture.Record) error {
	return encodeBatch(w, recs, EncodingZstd, false, nil)
}

// EncodeBatchS2 is EncodeBatch with Content-Encoding s2 (EncodingS2).
func EncodeBatchS2(w io.Writer, recs []*capture.Record) error {
	return encodeBatch(w, recs, EncodingS2, true, nil)
}

// EncodeBatchFast is EncodeBatch at zstd's fastest level, as goproxy
// compresses a batch for a server that does not list s2.
func EncodeBatchFast(w io.Writer, recs []*capture.Record) error {
	return encodeBatch(w, recs, EncodingZstd, true, nil)
}

// encodeBatch is EncodeBatch with Content-Encoding encoding (EncodingZstd
// or EncodingS2), zstd at its fastest level when fast is set. With fast,
// yield, if not nil, is called every YieldEvery, between records.
func encodeBatch(w io.Writer, recs []*capture.Record, encoding string, fast bool, yield func()) error {
	if !fast {
		buf := jsonl.GetBuffer()
		defer jsonl.PutBuffer(buf)
		if err := jsonl.Append(buf, recs); err != nil {
			return err
		}
		return compress(w, buf.Bytes(), encoding, false)
	}
	// The sidecar's way: records are encoded into a small buffer that is
	// compressed each time it fills, so that a whole batch's JSON is never
	// in memory at once.
	enc, put := getWriter(encoding, true, w)
	defer put()
	buf := jsonl.GetBuffer()
	defer jsonl.PutBuffer(buf)
	pace := netyield.Pacer{Every: YieldEvery, Yield: yield}
	var je jsonl.Encoder
	for i, r := range recs {
		n := buf.Len()
		if err := je.Append(buf, r); err != nil {
			return err
		}
		pace.Tick(buf.Len() - n)
		if buf.Len() >= 64<<10 || i == len(recs)-1 {
			if _, err := enc.Write(buf.Bytes()); err != nil {
				return fmt.Errorf("compress batch: %w", err)
			}
			buf.Reset()
		}
	}
	if err := enc.Close(); err != nil {
		return fmt.Errorf("compress batch: %w", err)
	}
	return nil
}

// compress writes lines to w as one stream of encoding (EncodingZstd or
// EncodingS2), zstd at its fastest level when fast is set, else at its
// default level.
func compress(w io.Writer, lines []byte, encoding string, fast bool) error {
	enc, put := getWriter(encoding, fast, w)
	defer put()
	if _, err := enc.Write(lines); err != nil {
		return fmt.Errorf("compress batch: %w", err)
	}
	if err := enc.Close(); err != nil {
		return fmt.Errorf("compress batch: %w", err)
	}
	return nil
}

func getEncoder(list chan *zstd.Encoder, fast bool) *zstd.Encoder {
	select {
	case e := <-list:
		return e
	default:
	}
	level, window := zstd.SpeedDefault, EncodeWindowBytes
	if fast {
		level, window = zstd.SpeedFastest, FastWindowBytes
	}
	e, err := zstd.NewWriter(nil,
		zstd.WithEncoderConcurrency(1),
		zstd.WithWindowSize(window),
		zstd.WithLowerEncoderMem(true),
		zstd.WithEncoderLevel(level))
	if err != nil {
		panic("wire: zstd encoder: " + err.Error()) // constant options: cannot happen
	}
	return e
}

// DecodeBatch reads a batch body compressed with encoding ("zstd", "gzip",
// "identity" or "") and calls fn with each record, in order. Blank lines
// are skipped; unknown JSON fields are ignored.
//
// It stops with a *DecodeError when the decompressed body exceeds
// maxDecoded bytes (ErrTooLarge; maxDecoded <= 0 means MaxDecodedBytes), a
// line exceeds MaxLineBytes (ErrLineTooLong), the compressed stream is
// corrupt (ErrCorrupt), or a line is not a valid record (ErrBadRecord,
// wrapping the JSON or Record.Validate error). Records before the bad line
// have already been passed to fn. An error from fn stops decoding and is
// returned as it is, not wrapped, so a server can tell its own failures
// (5xx) from the client's (4xx). A read error of r is returned wrapped
// but not as a *DecodeError.
func DecodeBatch(r io.Reader, encoding string, maxDecoded int64, fn func(*capture.Record) error) error {
	return decodeBatch(r, encoding, Limits{Bytes: maxDecoded}, nil, nil, jsonl.Want{}, func(rec *capture.Record, _ bool) error { return fn(rec) })
}

// DecodeBatchLines is DecodeBatch that also gives fn each record's line as
// received (without its line ending and surrounding white space), parsed
// with Line.ParseLine, and whether ParseLine took it. The Line is valid
// only until fn returns.
//
// want says what the records hold (see jsonl.Want): with LazyBodies, the
// body data of a line that ParseLine takes is left out of its record
// (Body.Data nil) when it is plain base64, checked as the decoder checks
// it; fn must not read it without calling Line.FillBodies first. Decoding
// the bodies of records that are stored as they came is most of the cost
// of decoding them.
func DecodeBatchLines(r io.Reader, encoding string, maxDecoded int64, want jsonl.Want, fn func(rec *capture.Record, line *jsonl.Line, exact bool) error) error {
	var l jsonl.Line
	return decodeBatch(r, encoding, Limits{Bytes: maxDecoded}, nil, &l, want, func(rec *capture.Record, exact bool) error {
		return fn(rec, &l, exact)
	})
}

// decodeBatch is DecodeBatch within lim (lim.Records 0: no bound),
// holding memory for long lines in hold when it is not nil; with line set,
// it parses each line into it first and tells fn whether ParseLine took it.
func decodeBatch(r io.Reader, encoding string, lim Limits, hold *Hold, line *jsonl.Line, want jsonl.Want, fn func(*capture.Record, bool) error) error {
	if lim.Bytes <= 0 {
		lim.Bytes = MaxDecodedBytes
	}
	jl := jsonl.Limits{Bytes: lim.Bytes, Records: lim.Records}
	if hold != nil {
		jl.Hold = hold.Line
	}
	src := &sourceReader{r: r}
	var body io.Reader
	switch strings.ToLower(strings.TrimSpace(encoding)) {
	case EncodingZstd:
		zsrc, err := holdWindow(src, hold)
		if err != nil {
			return err
		}
		d := getDecoder()
		// Wrap src so the decoder streams through its bounded window
		// instead of decoding a whole in-memory buffer at once.
		if err := d.Reset(struct{ io.Reader }{zsrc}); err != nil {
			putDecoder(d)
			return &DecodeError{Err: fmt.Errorf("%w: %w", ErrCorrupt, err)}
		}
		defer putDecoder(d)
		body = d
	case EncodingS2:
		// The same bound as zstd's: blocks of at most S2BlockBytes,
		// decoded as they are read, each checked against its CRC.
		d := getS2Decoder(src)
		defer putS2Decoder(d)
		body = d
	case EncodingGzip:
		zr, err := gzip.NewReader(src)
		if err != nil {
			if src.err != nil {
				return fmt.Errorf("read batch: %w", src.err)
			}
			return &DecodeError{Err: fmt.Errorf("%w: %w", ErrCorrupt, err)}
		}
		defer zr.Close()
		body = zr
	case EncodingIdentity, "":
		body = src
	default:
		return &DecodeError{Err: fmt.Errorf("%w: %q", ErrUnsupportedEncoding, encoding)}
	}

	err := jsonl.Decode(body, jl, line, want, fn)
	var re *jsonl.ReadError
	if errors.As(err, &re) {
		return readError(re.Line, re.Err, src)
	}
	return err
}

// CodingName is a batch's Content-Encoding as DecodeBatch reads it: lower
// case, "identity" for none. Only for an encoding DecodeBatch took.
func CodingName(encoding string) string {
	switch e := strings.ToLower(strings.TrimSpace(encoding)); e {
	case "":
		return EncodingIdentity
	case EncodingZstd, EncodingS2, EncodingGzip, EncodingIdentity:
		return e
	}
	return "other"
}

// holdWindow reads the header of the first zstd frame of src and holds
// its window in hold when it is larger than EncodeWindowBytes (what our
// clients use): the decoder's history buffer is that large. It returns
// the stream to decode, src with the header put back.
func holdWindow(src io.Reader, hold *Hold) (io.Reader, error) {
	if hold == nil {
		return src, nil
	}
	head := make([]byte, zstd.HeaderMaxSize)
	n, _ := io.ReadFull(src, head) // a short or failing body: the decoder says
	head = head[:n]
	var h zstd.Header
	if h.Decode(head) == nil {
		w := h.WindowSize
		if h.SingleSegment {
			w = h.FrameContentSize
		}
		if w > EncodeWindowBytes {
			if err := hold.Add(int64(min(w, MaxWindowBytes))); err != nil {
				return nil, err
			}
		}
	}
	return io.MultiReader(bytes.NewReader(head), src), nil
}

// readError classifies an error met while reading line n.
func readError(n int, err error, src *sourceReader) error {
	switch {
	case src.err != nil:
		// The transport failed (a client that went away, a body limit of
		// the server's own): not the batch's fault, whatever the decoder
		// made of the short read (S2's reader reports it as ErrCorrupt).
		return fmt.Errorf("read batch: %w", src.err)
	case errors.Is(err, io.ErrUnexpectedEOF) && src.err == nil:
		return &DecodeError{Line: n, Err: fmt.Errorf("%w: truncated stream", ErrCorrupt)}
	default:
		return &DecodeError{Line: n, Err: fmt.Errorf("%w: %w", ErrCorrupt, err)}
	}
}

// sourceReader remembers the first non-EOF error of the raw body, so that a
// transport failure is not mistaken for a corrupt stream.
type sourceReader struct {
	r   io.Reader
	err error
}

func (s *sourceReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF && s.err == nil {
		s.err = err
	}
	return n, err
}

// EstimateSize returns a cheap estimate of r's encoded JSON size in bytes:
// bodies and chunks (base64), headers, the strings of the record, and a
// constant for the rest. It never reads more than the record's fields and
// errs on the large side for typical records.
func EstimateSize(r *capture.Record) int64 {
	const base = 512 // field names, times, numbers, labels
	n := int64(base + len(r.ID) + len(r.Error))
	n += int64(len(r.Labels.Cluster) + len(r.Labels.Namespace) + len(r.Labels.Service) + len(r.Labels.Pod) + len(r.Labels.Tenant))
	n += int64(len(r.Net.ClientAddr) + len(r.Net.ServerAddr) + len(r.Net.ServerHost) + len(r.Net.ConnID))
	if r.Net.TLS != nil {
		n += 128
	}
	for k, v := range r.Tags {
		n += int64(len(k) + len(v) + 6)
	}
	for _, s := range r.Redactions {
		n += int64(len(s) + 3)
	}
	if h := r.HTTP; h != nil {
		n += int64(len(h.Req.Method)+len(h.Req.URL)+len(h.Req.Proto)+len(h.Req.Host)) + headersSize(h.Req.Headers) + b64(len(h.Req.Body.Data))
		if res := h.Res; res != nil {
			n += 64 + int64(len(res.StatusText)+len(res.Proto)) + headersSize(res.Headers) + headersSize(res.Trailers) + b64(len(res.Body.Data))
		}
		for _, m := range h.Messages {
			n += 64 + b64(len(m.Data)) + fieldsSize(m.Fields)
		}
	}
	if t := r.TCP; t != nil {
		for _, c := range t.Chunks {
			n += 40 + b64(len(c.Data))
		}
	}
	return n
}

// fieldsSize estimates decoded protobuf fields: their JSON, and the Go
// values that hold them in the queue, are far larger than the wire bytes.
func fieldsSize(fs []capture.ProtoField) int64 {
	n := int64(0)
	for _, f := range fs {
		n += 96 + int64(len(f.Bytes)*2)
		if f.String != nil {
			n += int64(len(*f.String))
		}
		n += fieldsSize(f.Message)
	}
	return n
}

func headersSize(h capture.Headers) int64 {
	n := int64(0)
	for _, f := range h {
		n += int64(len(f.Name)+len(f.Value)) + 8 // ["",""],
	}
	return n
}

func b64(n int) int64 { return int64((n + 2) / 3 * 4) }

// itoa is strconv.Itoa, named for the headers it fills.
func itoa(n int) string { return strconv.Itoa(n) }
