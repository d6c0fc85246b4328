package wire

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/format/jsonl"
	"github.com/tapwire/tapwire/internal/retry"
)

// Errors of a request that is not a version 1 batch, returned by ReadBatch.
var (
	ErrMethod              = errors.New("method not allowed: use POST")
	ErrUnsupportedProtocol = errors.New("unsupported protocol version")
	ErrContentType         = errors.New("unsupported content type")
	ErrRecordCount         = errors.New("record count does not match " + HeaderRecords)
)

// MaxRetryAfter caps how long a client honours a Retry-After.
const MaxRetryAfter = retry.MaxRetryAfter

// batchNamespace makes BatchID's name-based UUIDs Tapwire's own.
var batchNamespace = uuid.MustParse("6f1c5a8e-3b0d-4f57-9a43-0d7c2b8e5a11")

// BatchID returns the idempotency key of a batch: a UUID (version 5) of its
// record ids in order. The same records give the same id, so a retried batch
// keeps its key, and the halves of a split batch get their own.
func BatchID(recs []*capture.Record) string {
	// uuid.NewSHA1(batchNamespace, ids joined by newlines), hashed as the
	// ids come (through a buffer on the stack) rather than joined first: a
	// batch's ids (37 bytes each, 512 a batch) were copied into a string
	// builder that grew to twice that, for every batch. The namespace goes
	// through the buffer too, so that each write to the hash is whole
	// blocks, which it hashes with its vector code but for the last two.
	h := sha1.New()
	var buf [4096]byte
	n := copy(buf[:], batchNamespace[:])
	put := func(s string) {
		for s != "" {
			c := copy(buf[n:], s)
			if n += c; n == len(buf) {
				h.Write(buf[:])
				n = 0
			}
			s = s[c:]
		}
	}
	for _, r := range recs {
		put(r.ID)
		put("\n")
	}
	h.Write(buf[:n])
	var sum [sha1.Size]byte
	var u uuid.UUID
	copy(u[:], h.Sum(sum[:0]))
	u[6] = u[6]&0x0f | 0x50 // version 5
	u[8] = u[8]&0x3f | 0x80 // the RFC 4122 variant
	return u.String()
}

// NewRequest builds the POST of an encoded batch (the output of
// EncodeBatch) of n records to url, which ends in Path. token, if not
// empty, is sent as a bearer token.
func NewRequest(ctx context.Context, url string, body []byte, batchID string, n int, token string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("new batch request: %w", err)
	}
	req.Header.Set("Content-Type", ContentType)
	req.Header.Set("Content-Encoding", EncodingZstd)
	req.Header.Set(HeaderProtocol, itoa(Version))
	req.Header.Set(HeaderBatchID, batchID)
	req.Header.Set(HeaderRecords, itoa(n))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return req, nil
}

// Accepted is the body of a 200 answer.
type Accepted struct {
	Accepted int `json:"accepted"`
	// New, when the receiver knows it, is how many of the records it did
	// not have before (the hub says; the forwarder, which stores every
	// batch it is sent, does not).
	New *int `json:"new,omitempty"`
}

// errorBody is the body of every other answer.
type errorBody struct {
	Error string `json:"error"`
}

// ServerError is a batch refused by the server: any status but 200. The
// server side builds one with Errorf and writes it with WriteError; the
// client side gets one from ParseResponse.
type ServerError struct {
	Status  int           // HTTP status code
	Message string        // short, for the client; the "error" field of the body
	Wait    time.Duration // Retry-After; zero when absent
}

// Errorf returns a *ServerError with the given status and message.
func Errorf(status int, format string, args ...any) *ServerError {
	return &ServerError{Status: status, Message: fmt.Sprintf(format, args...)}
}

func (e *ServerError) Error() string {
	s := fmt.Sprintf("forwarder answered %d %s", e.Status, http.StatusText(e.Status))
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.Wait > 0 {
		s += fmt.Sprintf(" (retry after %s)", e.Wait)
	}
	return s
}

// StatusCode returns the HTTP status (for retry.Auth).
func (e *ServerError) StatusCode() int { return e.Status }

// RetryAfter returns how long the server asked the client to wait.
func (e *ServerError) RetryAfter() time.Duration { return e.Wait }

// Permanent reports whether sending the same batch again cannot succeed:
// every 4xx but 408 and 429, and anything that is neither 4xx nor 5xx.
// 5xx, 408 and 429 are worth retrying.
func (e *ServerError) Permanent() bool {
	switch {
	case e.Status == http.StatusRequestTimeout, e.Status == http.StatusTooManyRequests:
		return false
	case e.Status >= 500 && e.Status <= 599:
		return false
	}
	return true
}

// TooLarge reports whether the batch was refused for its size (413): the
// client should split it.
func (e *ServerError) TooLarge() bool { return e.Status == http.StatusRequestEntityTooLarge }

// ParseResponse reads the server's answer to a batch. It returns the
// answer of a 200 (Accepted -1 if the body does not say), or a
// *ServerError. It reads at most 64 KiB of the body and does not close it.
func ParseResponse(resp *http.Response) (Accepted, error) {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode == http.StatusOK {
		// 200 means the whole batch is accepted; a body we cannot read
		// does not change that (and retrying would duplicate it).
		a := Accepted{Accepted: -1}
		_ = json.Unmarshal(body, &a)
		return a, nil
	}
	e := &ServerError{Status: resp.StatusCode, Wait: ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now())}
	var eb errorBody
	if json.Unmarshal(body, &eb) == nil && eb.Error != "" {
		e.Message = eb.Error
	} else {
		e.Message = strings.TrimSpace(string(body))
		if len(e.Message) > 200 {
			e.Message = e.Message[:200]
		}
	}
	return Accepted{}, e
}

// ParseRetryAfter reads a Retry-After value: seconds or an HTTP date
// (relative to now). It returns 0 for an absent or bad value, and at most
// MaxRetryAfter.
func ParseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		if secs > int64(MaxRetryAfter/time.Second) {
			return MaxRetryAfter
		}
		d = time.Duration(secs) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), MaxRetryAfter)
}

// BatchInfo describes a request ReadBatch accepted.
type BatchInfo struct {
	ID      string // Tapwire-Batch-Id; may be empty
	Records int    // records decoded
}

// Limits bound the batches a server reads (ReadBatch).
type Limits struct {
	// Bytes bounds the decompressed body (413); if zero, MaxDecodedBytes.
	Bytes int64
	// Records bounds the records (413), by Tapwire-Records before the
	// body is read and by counting while decoding; if zero,
	// MaxBatchRecords.
	Records int
	// Budget, when set, is the server's memory for long lines and large
	// zstd windows, shared by its batches (429 when exhausted).
	Budget *Budget
}

// ReadBatch is the server side of a batch POST: it checks the method and
// headers, then decodes the body as DecodeBatch does, within lim, and
// finally checks the record count against Tapwire-Records. Records reach
// fn before that last check, so a server should commit them only when
// ReadBatch returns nil. StatusOf turns its error into the answer. It does
// not check the token.
func ReadBatch(r *http.Request, lim Limits, fn func(*capture.Record) error) (BatchInfo, error) {
	return readBatch(r, lim, nil, jsonl.Want{}, func(rec *capture.Record, _ bool) error { return fn(rec) })
}

// ReadBatchLines is ReadBatch that also gives fn each record's line, as
// DecodeBatchLines does.
func ReadBatchLines(r *http.Request, lim Limits, want jsonl.Want, fn func(rec *capture.Record, line *jsonl.Line, exact bool) error) (BatchInfo, error) {
	var l jsonl.Line
	return readBatch(r, lim, &l, want, func(rec *capture.Record, exact bool) error { return fn(rec, &l, exact) })
}

// readBatch checks the request and decodes its body into fn.
func readBatch(r *http.Request, lim Limits, line *jsonl.Line, want jsonl.Want, fn func(*capture.Record, bool) error) (BatchInfo, error) {
	info := BatchInfo{ID: r.Header.Get(HeaderBatchID)}
	if r.Method != http.MethodPost {
		return info, ErrMethod
	}
	if v := strings.TrimSpace(r.Header.Get(HeaderProtocol)); v != itoa(Version) {
		return info, fmt.Errorf("%w: %q (this server speaks %d)", ErrUnsupportedProtocol, v, Version)
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != ContentType && mt != "application/jsonl" && mt != "application/json") {
			return info, fmt.Errorf("%w: %q", ErrContentType, ct)
		}
	}
	if lim.Bytes <= 0 {
		lim.Bytes = MaxDecodedBytes
	}
	if lim.Records <= 0 {
		lim.Records = MaxBatchRecords
	}
	// A compressed body is smaller than its decoded form, give or take
	// framing; this refuses an oversized upload before reading it.
	maxRaw := lim.Bytes + lim.Bytes/64 + 4096
	if r.ContentLength > maxRaw {
		return info, &DecodeError{Err: ErrTooLarge}
	}
	count := -1
	if v := r.Header.Get(HeaderRecords); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return info, &DecodeError{Err: fmt.Errorf("%w: bad %s %q", ErrRecordCount, HeaderRecords, v)}
		}
		if n > lim.Records {
			return info, &DecodeError{Err: fmt.Errorf("%w: %s says %d, at most %d", ErrTooManyRecords, HeaderRecords, n, lim.Records)}
		}
		count = n
	}
	hold := lim.Budget.Hold()
	defer hold.Release()
	body := jsonl.LimitReader(r.Body, maxRaw)
	err := decodeBatch(body, r.Header.Get("Content-Encoding"), lim, hold, line, want, func(rec *capture.Record, exact bool) error {
		info.Records++
		return fn(rec, exact)
	})
	if err != nil {
		if errors.Is(err, jsonl.ErrLimit) {
			return info, &DecodeError{Err: ErrTooLarge}
		}
		return info, err
	}
	if count >= 0 && count != info.Records {
		return info, &DecodeError{Err: fmt.Errorf("%w: header says %d, body has %d", ErrRecordCount, count, info.Records)}
	}
	return info, nil
}

// StatusOf maps an error to the answer a server gives: a *ServerError
// anywhere in err's chain as it is; ErrTooLarge and ErrTooManyRecords 413; ErrUnsupportedEncoding
// and ErrContentType 415; ErrMethod 405; other *DecodeError and
// ErrUnsupportedProtocol 400; anything else 500 with a generic message
// (log the detail yourself).
func StatusOf(err error) *ServerError {
	var se *ServerError
	var de *DecodeError
	switch {
	case errors.As(err, &se):
		return se
	case errors.Is(err, ErrTooLarge), errors.Is(err, ErrTooManyRecords):
		return Errorf(http.StatusRequestEntityTooLarge, "%s", err)
	case errors.Is(err, ErrUnsupportedEncoding), errors.Is(err, ErrContentType):
		return Errorf(http.StatusUnsupportedMediaType, "%s", err)
	case errors.Is(err, ErrMethod):
		return Errorf(http.StatusMethodNotAllowed, "%s", err)
	case errors.As(err, &de), errors.Is(err, ErrUnsupportedProtocol):
		return Errorf(http.StatusBadRequest, "%s", err)
	}
	return Errorf(http.StatusInternalServerError, "internal error")
}

// WriteError answers with StatusOf(err): a JSON body {"error": "..."} and,
// when set, Retry-After in whole seconds (at least 1). Like WriteAnswer, it
// lists the codings the server takes in Accept-Encoding.
func WriteError(w http.ResponseWriter, err error) {
	se := StatusOf(err)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Accept-Encoding", AcceptEncoding)
	if se.Wait > 0 {
		h.Set("Retry-After", strconv.FormatInt(int64(max((se.Wait+time.Second-1)/time.Second, 1)), 10))
	}
	if se.Status == http.StatusMethodNotAllowed {
		h.Set("Allow", http.MethodPost)
	}
	w.WriteHeader(se.Status)
	_ = json.NewEncoder(w).Encode(errorBody{Error: se.Message})
}

// WriteAccepted answers 200 {"accepted": n}.
func WriteAccepted(w http.ResponseWriter, n int) { WriteAnswer(w, Accepted{Accepted: n}) }

// WriteAnswer answers 200 with a, and lists the codings the server takes
// in Accept-Encoding (AcceptEncoding, RFC 7694): a client of this package
// sends S2 from then on.
func WriteAnswer(w http.ResponseWriter, a Accepted) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Accept-Encoding", AcceptEncoding)
	w.WriteHeader(http.StatusOK)
	_ = json.NewEncoder(w).Encode(a)
}
