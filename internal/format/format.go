// Package format names the file formats records are read from and written
// to, tells them apart, and opens a reader or a writer for each: our JSONL
// (format/jsonl), the vendor's raw.jsonl (format/raw), HAR (format/har) and
// the vendor's Markdown recordings (format/markdown). Every command and API
// that reads or writes record files goes through it, so the formats have
// one set of names: jsonl, raw, har, md.
package format

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/format/har"
	"github.com/tapwire/tapwire/internal/format/jsonl"
	"github.com/tapwire/tapwire/internal/format/raw"
)

// Name is a format's name, as flags and API parameters spell it.
type Name string

// The formats.
const (
	JSONL Name = "jsonl" // our records, one per line (records.jsonl)
	Raw   Name = "raw"   // the vendor's raw.jsonl, one RRPair per line
	HAR   Name = "har"   // HAR 1.2
)

// info is what this package knows of a format.
type info struct {
	ext, ctype, about string
	aliases           []string
}

var formats = map[Name]info{
	JSONL: {"jsonl", "application/x-ndjson", "our records, one JSON object per line", []string{"records.jsonl"}},
	Raw:   {"raw.jsonl", "application/x-ndjson", "the vendor's raw.jsonl, one RRPair per line", []string{"raw.jsonl"}},
	HAR:   {"har", "application/json", "HAR 1.2, one entry per HTTP record (TCP records are left out)", nil},
}

// Names lists the formats in the order help text shows them: the stream
// formats, then Markdown, which is a directory.
var Names = []Name{HAR, JSONL, Raw, Markdown}

// defaultCreator is HAR's creator when the caller does not name one.
var defaultCreator = har.Creator{Name: "tapwire", Version: "1"}

// Stream reports whether the format is one stream of bytes (all but
// Markdown, a directory of files).
func (n Name) Stream() bool { return n != Markdown }

// ErrUnknown is the error of Parse for a name it does not know.
var ErrUnknown = errors.New("unknown format")

// Parse returns the format named s: a Name, or an older alias the hub's
// export paths used (records.jsonl, raw.jsonl).
func Parse(s string) (Name, error) {
	for n, in := range formats {
		if s == string(n) {
			return n, nil
		}
		for _, a := range in.aliases {
			if s == a {
				return n, nil
			}
		}
	}
	return "", fmt.Errorf("%w %q: want %s", ErrUnknown, s, List())
}

// List is the names, for messages: "har, jsonl or raw".
func List() string {
	s := make([]string, len(Names))
	for i, n := range Names {
		s[i] = string(n)
	}
	return strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1]
}

// Ext is the file name extension of the format, without the dot.
func (n Name) Ext() string { return formats[n].ext }

// ContentType is the media type of the format.
func (n Name) ContentType() string { return formats[n].ctype }

// About says in a few words what the format is, for help text.
func (n Name) About() string { return formats[n].about }

// Writer writes records in one format. Close finishes the document (HAR's
// closing brackets) and flushes; it does not close the underlying writer.
type Writer interface {
	Write(*capture.Record) error
	Close() error
}

// NewWriter returns a Writer of stream format n to w. creator names the
// program where the format records it (HAR's creator). Markdown is a
// directory: see NewDirWriter.
func NewWriter(n Name, w io.Writer, creator har.Creator) (Writer, error) {
	switch n {
	case Markdown:
		return nil, fmt.Errorf("format %s writes a directory, not one stream: give a directory", n)
	case JSONL:
		return jsonl.NewWriter(w), nil
	case Raw:
		return raw.NewWriter(w), nil
	case HAR:
		return har.NewWriter(w, creator), nil
	}
	return nil, fmt.Errorf("%w %q: want %s", ErrUnknown, n, List())
}

// Sniff tells the format of the input from its first JSON value: HAR when
// the value is an object with a log member before any other that decides,
// the vendor's raw.jsonl when it has a msgType string, our JSONL otherwise,
// including input that is not JSON, for the JSONL reader to report. It
// returns a reader of the whole input again; it keeps in memory only what
// it read, the start of the input up to the member that decided (at most
// the first record).
func Sniff(r io.Reader) (Name, io.Reader, error) {
	rec := &recorder{r: r}
	f, err := sniff(json.NewDecoder(rec))
	if rec.err != nil && !errors.Is(rec.err, io.EOF) {
		return "", nil, rec.err
	}
	if err != nil {
		f = JSONL
	}
	return f, io.MultiReader(bytes.NewReader(rec.buf.Bytes()), r), nil
}

func sniff(dec *json.Decoder) (Name, error) {
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return JSONL, err
	}
	for dec.More() {
		key, err := dec.Token()
		if err != nil {
			return "", err
		}
		switch key {
		case "log":
			return HAR, nil
		case "msgType":
			var s *string
			if err := dec.Decode(&s); err != nil {
				return "", err
			}
			if s != nil {
				return Raw, nil
			}
		default:
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return "", err
			}
		}
	}
	return JSONL, nil
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

// ReadRecords reads records in any stream format (see Sniff) and calls fn
// with each valid record in order. Errors name the line (and, for HAR, the
// entry) where the input went wrong; an error from fn stops the read and
// is returned wrapped with the line.
func ReadRecords(r io.Reader, fn func(*capture.Record) error) (Name, error) {
	f, r, err := Sniff(r)
	if err != nil {
		return "", err
	}
	switch f {
	case HAR:
		return f, har.Read(r, fn)
	case Raw:
		n := 0
		return f, raw.Read(r, func(rec *capture.Record) error {
			n++
			if err := rec.Validate(); err != nil {
				return fmt.Errorf("record %d: %w", n, err)
			}
			return fn(rec)
		})
	}
	return f, jsonl.Read(r, fn)
}
