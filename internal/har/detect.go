package har

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/format/raw"
	"github.com/tapwire/tapwire/internal/wire"
)

// Format is one of the forms records are exported in.
type Format string

const (
	FormatHAR   Format = "har"   // HAR 1.2
	FormatJSONL Format = "jsonl" // our records, one per line (records.jsonl)
	FormatRaw   Format = "raw"   // the vendor's raw.jsonl, one RRPair per line
)

// Sniff tells the format of the input from its first JSON value: HAR when
// the value is an object with a log member before any other that decides,
// the vendor's raw.jsonl when it has a msgType string (the rule of `hub
// import`), our JSONL otherwise, including input that is not JSON, for
// the JSONL reader to report. It returns a reader of the whole input
// again; it keeps in memory only what it read, the start of the input up
// to the member that decided (at most the first record).
func Sniff(r io.Reader) (Format, io.Reader, error) {
	rec := &recorder{r: r}
	f, err := sniff(json.NewDecoder(rec))
	if rec.err != nil && !errors.Is(rec.err, io.EOF) {
		return "", nil, rec.err
	}
	if err != nil {
		f = FormatJSONL
	}
	return f, io.MultiReader(bytes.NewReader(rec.buf.Bytes()), r), nil
}

func sniff(dec *json.Decoder) (Format, error) {
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return FormatJSONL, err
	}
	for dec.More() {
		key, err := dec.Token()
		if err != nil {
			return "", err
		}
		switch key {
		case "log":
			return FormatHAR, nil
		case "msgType":
			var s *string
			if err := dec.Decode(&s); err != nil {
				return "", err
			}
			if s != nil {
				return FormatRaw, nil
			}
		default:
			if err := skip(dec); err != nil {
				return "", err
			}
		}
	}
	return FormatJSONL, nil
}

// recorder keeps what it reads.
type recorder struct {
	r   io.Reader
	buf bytes.Buffer
	err error
}

func (rc *recorder) Read(p []byte) (int, error) {
	n, err := rc.r.Read(p)
	rc.buf.Write(p[:n])
	if err != nil && rc.err == nil {
		rc.err = err
	}
	return n, err
}

// ReadRecords reads records in any of the three formats (see Sniff) and
// calls fn with each valid record in order. Errors name the line (and, for
// HAR, the entry) where the input went wrong; an error from fn stops the
// read and is returned wrapped with the line.
func ReadRecords(r io.Reader, fn func(*capture.Record) error) (Format, error) {
	f, r, err := Sniff(r)
	if err != nil {
		return "", err
	}
	switch f {
	case FormatHAR:
		return f, Read(r, fn)
	case FormatRaw:
		n := 0
		return f, raw.Read(r, func(rec *capture.Record) error {
			n++
			if err := rec.Validate(); err != nil {
				return fmt.Errorf("record %d: %w", n, err)
			}
			return fn(rec)
		})
	}
	line := 0
	err = wire.DecodeBatch(r, wire.EncodingIdentity, math.MaxInt64, func(rec *capture.Record) error {
		line++ // approximate for the error of fn only: blank lines are not counted
		if err := fn(rec); err != nil {
			return fmt.Errorf("record %d: %w", line, err)
		}
		return nil
	})
	var de *wire.DecodeError
	if errors.As(err, &de) && de.Line > 0 {
		return f, fmt.Errorf("line %d: %w", de.Line, de.Err)
	}
	return f, err
}
