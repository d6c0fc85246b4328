// Package content undoes the content codings of a captured HTTP body
// (Content-Encoding: gzip, deflate, br, zstd, and stacks of them), within a
// bound on what decoding produces. The hub's viewer and the stores' text
// search both read bodies through Decode, so a body the viewer shows is one
// search finds.
package content

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/zstd"
)

// ErrTooLarge is the cause of an Error when a coding's output would pass
// Decode's limit.
var ErrTooLarge = errors.New("decoded output too large")

// maxWindow bounds the history a zstd stream may ask the decoder to keep:
// a frame that wants more is not decoded.
const maxWindow = 64 << 20

// Error says why Decode's output is not the whole content.
type Error struct {
	// Coding is the coding Decode stopped in, or the first that it
	// undid only in part, as "gzip".
	Coding string
	// Partial is true when the output is the content with every coding
	// undone, but only its first bytes: a coding's stream ends early or
	// breaks after a point, or it decodes to more than the limit. It is
	// false when Decode could undo none of Coding and returned its input.
	Partial bool
	// Undone lists the codings undone, in whole or in part, as they
	// stand in the header: every one when Partial, else those after
	// Coding.
	Undone []string
	Err    error
}

func (e *Error) Error() string {
	if errors.Is(e.Err, errUnknown) {
		return fmt.Sprintf("unknown content encoding %q", e.Coding)
	}
	return e.Coding + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

var (
	errUnknown = errors.New("unknown content encoding")
	errCut     = errors.New("the captured bytes end before the stream does")
)

// Codings returns the codings named by a Content-Encoding value (one, or
// several joined by commas, as HTTP joins repeated headers), lower case,
// in the order they were applied, without identity.
func Codings(contentEncoding string) []string {
	var out []string
	for _, e := range strings.Split(contentEncoding, ",") {
		if e = strings.ToLower(strings.TrimSpace(e)); e != "" && e != "identity" {
			out = append(out, e)
		}
	}
	return out
}

// Decode undoes the codings of contentEncoding (see Codings) from the last
// applied to the first, each producing at most limit bytes (limit must be
// positive). Empty data, or data with no coding to undo, is returned as it
// is.
//
// A coding it can undo only in part (a captured body cut short, a stream
// broken after a point, more output than limit) gives the next coding the
// bytes it has: the output is then the first bytes of the content, with an
// *Error that is Partial. A coding it cannot undo at all stops it: the
// output is that coding's input, with an *Error that is not.
func Decode(contentEncoding string, data []byte, limit int) ([]byte, error) {
	if len(data) == 0 || contentEncoding == "" {
		return data, nil
	}
	encs := Codings(contentEncoding)
	var cut *Error
	for i := len(encs) - 1; i >= 0 && len(data) > 0; i-- {
		out, err := decode(encs[i], data, limit)
		switch {
		case err == nil:
		case len(out) == 0:
			return data, &Error{Coding: encs[i], Undone: encs[i+1:], Err: err}
		case cut == nil:
			cut = &Error{Coding: encs[i], Partial: true, Undone: encs, Err: err}
		}
		data = out
	}
	if cut != nil {
		return data, cut
	}
	return data, nil
}

// Encode applies the codings of contentEncoding (see Codings) to data in
// order, as a server would: Decode undoes them. Tests and tools use it.
func Encode(contentEncoding string, data []byte) ([]byte, error) {
	for _, enc := range Codings(contentEncoding) {
		var buf bytes.Buffer
		var w io.WriteCloser
		switch enc {
		case "gzip", "x-gzip":
			w = gzip.NewWriter(&buf)
		case "deflate":
			w = zlib.NewWriter(&buf)
		case "br":
			w = brotli.NewWriter(&buf)
		case "zstd":
			w, _ = zstd.NewWriter(&buf, zstd.WithEncoderConcurrency(1)) // no option is bad
		default:
			return nil, &Error{Coding: enc, Err: errUnknown}
		}
		if _, err := w.Write(data); err != nil {
			return nil, fmt.Errorf("%s: %w", enc, err)
		}
		if err := w.Close(); err != nil {
			return nil, fmt.Errorf("%s: %w", enc, err)
		}
		data = buf.Bytes()
	}
	return data, nil
}

// decode undoes one coding, producing at most limit bytes. With an error
// it returns what it decoded before the error.
func decode(enc string, data []byte, limit int) ([]byte, error) {
	var r io.Reader
	var err error
	src := bytes.NewReader(data)
	switch enc {
	case "gzip", "x-gzip":
		r, err = gzip.NewReader(src)
	case "deflate":
		// The standard says zlib; some servers send raw deflate.
		if r, err = zlib.NewReader(src); err != nil {
			r, err = flate.NewReader(bytes.NewReader(data)), nil
		}
	case "br":
		r = brotli.NewReader(src)
	case "zstd":
		var d *zstd.Decoder
		d, err = zstd.NewReader(src, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(maxWindow))
		if err == nil {
			defer d.Close()
			r = d
		}
	default:
		return nil, errUnknown
	}
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	_, err = out.ReadFrom(io.LimitReader(r, int64(limit)+1))
	if out.Len() > limit {
		out.Truncate(limit)
		err = fmt.Errorf("more than %s decoded: %w", size(limit), ErrTooLarge)
	}
	if out.Len() > 0 && errors.Is(err, io.ErrUnexpectedEOF) {
		err = errCut
	}
	return out.Bytes(), err
}

// size writes n bytes for people: "8 MiB", "4 KiB", "100 bytes".
func size(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}
